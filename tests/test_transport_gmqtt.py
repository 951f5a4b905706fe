"""The gmqtt transport against a real Mosquitto: receive, ack after processing, flow control."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from mqtt_collector._exceptions import PublishRefusedError
from mqtt_collector._mqtt.gmqtt.transport import GmqttTransport
from mqtt_collector._mqtt.tls import TLSOptions
from tests.helpers.daemon import WAIT, wait_until
from tests.helpers.mqtt_client import connected_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from mqtt_collector._mqtt.transport import Inbound
    from tests.helpers.mosquitto import Mosquitto, MosquittoFactory

pytestmark = pytest.mark.broker


def _transport(broker: Mosquitto, **keys: Any) -> GmqttTransport:
    keys.setdefault("port", broker.port)
    keys.setdefault("client_id", f"gmqtt-{uuid.uuid4().hex[:8]}")
    return GmqttTransport(host=broker.host, protocol="5", **keys)


async def _next(messages: AsyncIterator[Inbound]) -> Inbound:
    async with asyncio.timeout(WAIT):
        return await anext(messages)


async def test_receives_qos0_and_qos1_with_properties(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """Both QoS arrive whole: topic, body, QoS, user properties; the QoS 1 one awaits its ack."""
    transport = _transport(mosquitto)
    await transport.connect()
    try:
        assert await transport.subscribe([(f"{topic_prefix}/#", 1)]) == [1]
        messages = transport.messages()
        with connected_client(mosquitto.port) as publisher:
            publisher.publish(f"{topic_prefix}/zero", b"0", qos=0)
            first = await _next(messages)
            publisher.publish(f"{topic_prefix}/one", b"1", qos=1)
            second = await _next(messages)
        assert (first.topic, first.body, first.qos) == (f"{topic_prefix}/zero", b"0", 0)
        assert (second.topic, second.body, second.qos) == (f"{topic_prefix}/one", b"1", 1)
        assert transport.unacked() == 1
        transport.ack(second)
        assert transport.unacked() == 0
    finally:
        await transport.disconnect()


async def test_not_acked_until_ack_then_redelivered(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """Unacked at disconnect: the persistent session sends it again; acked: it does not."""
    client_id = f"gmqtt-{uuid.uuid4().hex[:8]}"
    topic = f"{topic_prefix}/t"

    def persistent() -> GmqttTransport:
        return _transport(mosquitto, client_id=client_id, persistent=True, session_expiry=60)

    transport = persistent()
    await transport.connect()
    try:
        await transport.subscribe([(topic, 1)])
        with connected_client(mosquitto.port) as publisher:
            publisher.publish(topic, b"a", qos=1)
            unacked = await _next(transport.messages())
        assert unacked.body == b"a"
    finally:
        await transport.disconnect()  # without acking it
    transport = persistent()
    try:
        info = await transport.connect()
        assert info.session_present
        again = await _next(transport.messages())
        assert again.body == b"a"
        transport.ack(again)
        await wait_until(lambda: transport.unacked() == 0, what="the ack")
    finally:
        await transport.disconnect()
    # Acked this time: a third connection gets nothing of it.
    transport = persistent()
    try:
        await transport.connect()
        await transport.subscribe([(topic, 1)])  # the SUBACK follows anything resent
        assert transport.backlog() == 0
    finally:
        await transport.disconnect()


async def test_acks_leave_in_arrival_order(mosquitto: Mosquitto, topic_prefix: str) -> None:
    """Acking the second message first sends nothing; acking the first then sends both."""
    transport = _transport(mosquitto)
    acked: list[int] = []
    transport.on_ack = lambda: acked.append(transport.unacked())
    await transport.connect()
    try:
        await transport.subscribe([(f"{topic_prefix}/t", 1)])
        messages = transport.messages()
        with connected_client(mosquitto.port) as publisher:
            publisher.publish(f"{topic_prefix}/t", b"1", qos=1)
            publisher.publish(f"{topic_prefix}/t", b"2", qos=1)
            first, second = await _next(messages), await _next(messages)
        transport.ack(second)
        assert transport.unacked() == 2
        assert acked == []
        transport.ack(first)
        assert transport.unacked() == 0
        assert len(acked) == 2
    finally:
        await transport.disconnect()


async def test_flow_control_holds_at_receive_maximum(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """With receive_maximum 5 and 40 large ones sent, reading pauses: 5 plus what was read.

    What gmqtt had already read from the socket is still parsed: its stream buffer (up to
    128 KiB) and one read (up to 256 KiB), so about 6 messages of 64 KiB past the bound.
    """
    transport = _transport(mosquitto, receive_maximum=5)
    body = b"x" * 65_000
    bound = 5 + 7
    topic = f"{topic_prefix}/t"
    await transport.connect()
    try:
        await transport.subscribe([(topic, 1)])
        with connected_client(mosquitto.port) as publisher:
            for index in range(40):
                publisher.publish(topic, str(index).encode() + body, qos=1)
            await wait_until(lambda: transport.unacked() >= 5, what="5 messages")
            await asyncio.sleep(1)  # two probes: nothing more is read
            held = transport.unacked()
            # Mosquitto honours Receive Maximum; the pause is the bound when it does not.
            assert held <= bound
            got: list[bytes] = []
            messages = transport.messages()
            while len(got) < 40:
                message = await _next(messages)
                got.append(message.body)
                transport.ack(message)
                assert transport.unacked() <= bound  # read, or handed out and not acked
        assert got == [str(index).encode() + body for index in range(40)]
    finally:
        await transport.disconnect()


async def test_shared_subscription(mosquitto: Mosquitto, topic_prefix: str) -> None:
    """A `$share` filter is subscribed and its messages come with the plain topic."""
    transport = _transport(mosquitto)
    await transport.connect()
    try:
        codes = await transport.subscribe([(f"$share/g{uuid.uuid4().hex[:6]}/{topic_prefix}/s", 1)])
        assert codes == [1]
        with connected_client(mosquitto.port) as publisher:
            publisher.publish(f"{topic_prefix}/s", b"shared", qos=1)
            message = await _next(transport.messages())
        assert (message.topic, message.body) == (f"{topic_prefix}/s", b"shared")
        transport.ack(message)
    finally:
        await transport.disconnect()


async def test_lost_connection_ends_messages(mosquitto: Mosquitto, topic_prefix: str) -> None:
    """A broker that kicks the client (same client id elsewhere): messages() raises."""
    client_id = f"gmqtt-{uuid.uuid4().hex[:8]}"
    transport = _transport(mosquitto, client_id=client_id)
    info = await transport.connect()
    try:
        await transport.subscribe([(f"{topic_prefix}/t", 1)])
        with (
            connected_client(mosquitto.port, client_id=client_id),
            pytest.raises(Exception, match="connection lost"),
        ):
            await _next(transport.messages())
        assert transport.connected  # until disconnect(), as aiomqtt: a loss is not ours
        with pytest.raises(Exception, match="connection lost"):
            await transport.subscribe([(f"{topic_prefix}/u", 1)])
        # gmqtt may close the connection before parsing the broker's DISCONNECT (0x8E).
        assert info.disconnect_reason in {None, 0x8E}
    finally:
        await transport.disconnect()


@pytest.fixture
def acl_broker(make_mosquitto: MosquittoFactory, tmp_path: Path) -> Mosquitto:
    """A broker whose ACL lets anonymous clients write `ok/#` and nothing else."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite ok/#\n")
    return make_mosquitto(extra_conf=f"acl_file {acl}")


async def test_refused_publish_raises(acl_broker: Mosquitto) -> None:
    """PUBACK 0x87 Not authorized on the publishing connection: PublishRefusedError."""
    transport = _transport(acl_broker)
    try:
        async with asyncio.timeout(WAIT):
            await transport.publish("ok/allowed", b"x", qos=1)
            with pytest.raises(PublishRefusedError) as caught:
                await transport.publish("dlq/denied", b"x", qos=1)
    finally:
        await transport.disconnect()
    assert caught.value.reason_code == 0x87


async def test_tls_and_password(mosquitto: Mosquitto, topic_prefix: str) -> None:
    """It connects and receives over TLS (test CA), mutual TLS, and with a password."""
    for keys in (
        {"port": mosquitto.tls_port, "tls": TLSOptions(ca_file=str(mosquitto.ca_file))},
        {
            "port": mosquitto.mtls_port,
            "tls": TLSOptions(
                ca_file=str(mosquitto.ca_file),
                cert_file=str(mosquitto.cert_file),
                key_file=str(mosquitto.key_file),
            ),
        },
        {
            "port": mosquitto.auth_port,
            "username": mosquitto.username,
            "password": mosquitto.password,
        },
    ):
        transport = _transport(mosquitto, **keys)
        await transport.connect()
        try:
            await transport.subscribe([(f"{topic_prefix}/t", 1)])
            with connected_client(mosquitto.port) as publisher:
                publisher.publish(f"{topic_prefix}/t", b"secure", qos=1)
                message = await _next(transport.messages())
            assert message.body == b"secure"
            transport.ack(message)
        finally:
            await transport.disconnect()


async def test_wrong_password_is_a_connect_error(mosquitto: Mosquitto) -> None:
    """A refused CONNACK raises ConnectError at once (gmqtt does not retry it)."""
    transport = _transport(mosquitto, port=mosquitto.auth_port, username="x", password="wrong")
    with pytest.raises(Exception, match="cannot connect"):
        async with asyncio.timeout(WAIT):
            await transport.connect()
    await transport.disconnect()


async def test_acks_due_together_leave_in_one_write_before_the_disconnect(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """Acks settled in one turn go in one write, and a disconnect right after still sends them."""
    client_id = f"gmqtt-{uuid.uuid4().hex[:8]}"
    topic = f"{topic_prefix}/t"

    def persistent() -> GmqttTransport:
        return _transport(mosquitto, client_id=client_id, persistent=True, session_expiry=60)

    transport = persistent()
    await transport.connect()
    try:
        await transport.subscribe([(topic, 1)])
        messages = transport.messages()
        with connected_client(mosquitto.port) as publisher:
            for number in range(20):
                publisher.publish(topic, str(number).encode(), qos=1)
            received = [await _next(messages) for _ in range(20)]
        assert [message.body for message in received] == [str(n).encode() for n in range(20)]
        reading = transport._current.reading  # type: ignore[union-attr]
        assert reading is not None
        writes: list[bytes] = []
        write = reading.write

        def counting_write(data: bytes | bytearray | memoryview) -> None:
            writes.append(bytes(data))
            write(data)

        reading.write = counting_write  # type: ignore[method-assign]
        for message in received[:10]:
            transport.ack(message)
        await asyncio.sleep(0)  # one turn: the write goes out
        assert len(writes) == 1
        assert [writes[0][i : i + 4] for i in range(0, 40, 4)] == [
            b"\x40\x02" + message.mid.to_bytes(2, "big") for message in received[:10]
        ]
        for message in received[10:]:
            transport.ack(message)
    finally:
        await transport.disconnect()  # no turn of the loop since the last acks
    # Until the broker has read the DISCONNECT, a new connection with the same client id would
    # take the session over and drop the old one's unread bytes, acks included.
    await wait_until(
        lambda: f"Client {client_id} disconnected" in mosquitto.log_path.read_text(),
        what="the broker to read the DISCONNECT",
    )
    transport = persistent()
    try:
        info = await transport.connect()
        assert info.session_present
        await transport.subscribe([(topic, 1)])  # the SUBACK follows anything resent
        assert transport.backlog() == 0
    finally:
        await transport.disconnect()
