"""The gmqtt transport against a scripted broker: the pause holds, malformed topics are skipped."""

from __future__ import annotations

import asyncio
import struct
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from mqtt_collector._exceptions import TransportError
from mqtt_collector._mqtt.gmqtt.transport import GmqttTransport
from tests.helpers.daemon import WAIT, capture_logging, wait_until
from tests.helpers.scripted_broker import (
    PUBACK,
    ScriptedBroker,
    ScriptedConnection,
    publish_packet,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from mqtt_collector._mqtt.transport import Inbound

BODY = b"x" * 4096
PACKET = len(publish_packet(b"flood/t", BODY, mid=1))
# What gmqtt may read before the pause takes hold: its StreamReader buffer (it pauses
# itself at 128 KiB) and one recv (256 KiB), beyond receive_maximum.
GMQTT_BUFFERED = (128 + 256) * 1024 // PACKET + 1
FLOOD = 5000  # 20 MB: far more than loopback socket buffers and gmqtt's hold together


class _Counter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def _transport(broker: ScriptedBroker, **keys: Any) -> GmqttTransport:
    return GmqttTransport(
        host="127.0.0.1",
        port=broker.port,
        client_id=f"gmqtt-scripted-{uuid.uuid4().hex[:8]}",
        protocol="5",
        **keys,
    )


async def _next(messages: AsyncIterator[Inbound]) -> Inbound:
    async with asyncio.timeout(WAIT):
        return await anext(messages)


class _Flooder:
    """A broker that ignores Receive Maximum: it sends FLOOD QoS 1 messages as fast as it can."""

    def __init__(self, count: int = FLOOD) -> None:
        self.count = count
        self.sent = 0
        self.pubacks: list[int] = []
        self.done = asyncio.Event()

    async def script(self, conn: ScriptedConnection) -> None:
        await conn.read_connect()
        await conn.connack()
        request = await conn.read_subscribe()
        await conn.suback(request.mid, [1])
        flood = asyncio.create_task(self._flood(conn))
        try:
            while len(self.pubacks) < self.count:
                packet = await conn.read(timeout=None)
                if packet.type == PUBACK:
                    self.pubacks.append(struct.unpack_from("!H", packet.body, 0)[0])
            self.done.set()
            await conn.wait_closed()
        finally:
            flood.cancel()

    async def _flood(self, conn: ScriptedConnection) -> None:
        for index in range(self.count):
            # Packet ids 1..65535, never 0; FLOOD stays below 65535, so each is unique.
            await conn.send_raw(publish_packet(b"flood/t", BODY, mid=index + 1))
            self.sent += 1


async def test_pause_bounds_what_is_read_from_a_broker_ignoring_receive_maximum() -> None:
    """No ack: reading stops at receive_maximum plus gmqtt's buffer, the broker's send stalls.

    Acking resumes reading, and every message then arrives and is acked in order.
    """
    flooder = _Flooder()
    async with ScriptedBroker(flooder.script) as broker:
        transport = _transport(broker, receive_maximum=5)
        await transport.connect()
        try:
            await transport.subscribe([("flood/#", 1)])
            await wait_until(lambda: transport.unacked() >= 5, what="the first messages")
            # Nothing awaitable says "nothing more comes": give reading time to run away.
            await asyncio.sleep(1.5)
            held = transport.unacked()
            assert held == transport.backlog()  # none handed out yet
            assert 5 <= held <= 5 + GMQTT_BUFFERED, held
            sent = flooder.sent
            assert sent < FLOOD, "the broker's send never stalled"
            await asyncio.sleep(0.5)
            assert flooder.sent < FLOOD  # still stalled, not finished
            assert transport.unacked() == held
            # Acks resume reading: the whole flood arrives, acked in arrival order.
            messages = transport.messages()
            for _ in range(FLOOD):
                transport.ack(await _next(messages))
            async with asyncio.timeout(WAIT * 3):
                await flooder.done.wait()
            assert flooder.pubacks == list(range(1, FLOOD + 1))
        finally:
            await transport.disconnect()


async def test_keepalive_survives_a_long_pause() -> None:
    """Paused for over 3x keepalive (PINGRESPs unread): the connection lives; the held one acks."""
    flooder = _Flooder(count=3)
    async with ScriptedBroker(flooder.script) as broker:
        transport = _transport(broker, receive_maximum=1, keepalive=1)
        await transport.connect()
        try:
            await transport.subscribe([("flood/#", 1)])
            messages = transport.messages()
            held = await _next(messages)
            current = transport._current
            assert current is not None
            await wait_until(lambda: current.paused, what="reading to pause")
            await asyncio.sleep(3.5)  # gmqtt closes after 2x keepalive without data in
            assert transport.connected
            assert not broker.connection.closed.is_set()
            assert current.paused
            transport.ack(held)
            for _ in range(2):
                transport.ack(await _next(messages))
            async with asyncio.timeout(WAIT):
                await flooder.done.wait()
            assert flooder.pubacks == [1, 2, 3]
            assert transport.connected
        finally:
            await transport.disconnect()
        assert len(broker.connections) == 1


BAD_TOPICS = [
    pytest.param(b"bad/\xff\xfe", "not valid UTF-8", id="not-utf8"),
    pytest.param(b"bad/+/x", "wildcard", id="plus"),
    pytest.param(b"bad/#", "wildcard", id="hash"),
]


@pytest.mark.parametrize(("topic", "reason"), BAD_TOPICS)
async def test_malformed_topic_is_skipped_acked_and_logged_once(topic: bytes, reason: str) -> None:
    """A bad QoS 1 PUBLISH, then a good one: the good one arrives, both are acked, one log line."""
    counter = _Counter()
    async with ScriptedBroker() as broker:
        transport = _transport(broker, on_malformed=counter)
        with capture_logging("info") as logs:
            await transport.connect()
            try:
                await transport.subscribe([("#", 1)])
                await broker.publish(topic, b"bad", mid=1)
                await broker.publish(b"good/x", b"good", mid=2)
                message = await _next(transport.messages())
                assert (message.topic, message.body) == ("good/x", b"good")
                transport.ack(message)
                assert await broker.wait_pubacks(2) == [1, 2]
            finally:
                await transport.disconnect()
        lines = logs.events("malformed message skipped")
        assert len(lines) == 1, logs.text
        assert reason in lines[0]["reason"]
        assert counter.count == 1
        assert len(broker.connections) == 1


async def test_malformed_message_is_acked_in_its_turn() -> None:
    """Its PUBACK waits for the messages that arrived before it: acks stay in order."""
    counter = _Counter()
    async with ScriptedBroker() as broker:
        transport = _transport(broker, on_malformed=counter)
        await transport.connect()
        try:
            await transport.subscribe([("#", 1)])
            await broker.publish(b"good/1", b"1", mid=1)
            await broker.publish(b"bad/+", b"2", mid=2)
            await broker.publish(b"good/3", b"3", mid=3)
            messages = transport.messages()
            first, third = await _next(messages), await _next(messages)
            assert (first.body, third.body) == (b"1", b"3")
            assert broker.pubacks == []
            transport.ack(third)
            transport.ack(first)
            assert await broker.wait_pubacks(3) == [1, 2, 3]
            assert counter.count == 1
        finally:
            await transport.disconnect()


async def test_disconnect_ends_messages_and_acks_nothing_held() -> None:
    """The daemon's own disconnect (to have a held message sent again) ends messages().

    The held message is not acked on the way out: the broker sends it again.
    """
    async with ScriptedBroker() as broker:
        transport = _transport(broker)
        await transport.connect()
        try:
            await transport.subscribe([("#", 1)])
            await broker.publish(b"held/x", b"1", mid=1)
            messages = transport.messages()
            held = await _next(messages)
            transport.hold(held)
            reader = asyncio.ensure_future(_next(messages))
            await transport.disconnect()
            with pytest.raises(TransportError, match="connection lost"):
                await reader
            await broker.wait_closed()
            assert broker.pubacks == []
        finally:
            await transport.disconnect()


def test_a_changed_private_part_is_fatal_before_connecting() -> None:
    """A QoS 1 handler in gmqtt with other parameters: IncompatibleClientError, naming it."""
    import gmqtt  # noqa: PLC0415 - only here

    from mqtt_collector._exceptions import IncompatibleClientError  # noqa: PLC0415
    from mqtt_collector._mqtt.gmqtt.private import check_client  # noqa: PLC0415

    client = gmqtt.Client("changed")
    check_client(client)  # as verified: fine
    handler = client._package_handler
    handler._handle_qos_1_publish_packet = lambda mid, packet, topic: None
    with pytest.raises(IncompatibleClientError, match="_handle_qos_1_publish_packet"):
        check_client(client)
