"""Manual acknowledgement through aiomqtt's private paho client, checked on a real broker."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import TYPE_CHECKING

import aiomqtt
import paho.mqtt.client as paho
import pytest

from mqtt_collector._exceptions import IncompatibleClientError
from mqtt_collector._mqtt.aiomqtt.private import enable_manual_ack, message_queue, send_ack
from mqtt_collector._mqtt.aiomqtt.transport import AiomqttTransport

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from mqtt_collector._mqtt.transport import Inbound
    from tests.helpers.mosquitto import Mosquitto

TIMEOUT = 10.0


class TestPrivateAccess:
    """The reach into aiomqtt's private parts works, or fails loudly (and fatally)."""

    async def test_enable_manual_ack_switches_paho_to_manual(self) -> None:
        """A real aiomqtt.Client's paho client is in manual-ack mode afterwards."""
        client = aiomqtt.Client("127.0.0.1", 1)
        inner = client._client
        assert isinstance(inner, paho.Client)
        assert inner._manual_ack is False
        enable_manual_ack(client)
        assert inner._manual_ack is True

    def test_enable_manual_ack_without_private_client_raises(self) -> None:
        """An aiomqtt that no longer exposes `_client` makes enabling fail, not ack on receipt."""
        stub = SimpleNamespace()
        with pytest.raises(IncompatibleClientError, match="_client"):
            enable_manual_ack(stub)  # type: ignore[arg-type]

    def test_enable_manual_ack_with_foreign_private_client_raises(self) -> None:
        """A `_client` that is not a paho client is refused too."""
        stub = SimpleNamespace(_client=object())
        with pytest.raises(IncompatibleClientError, match="_client"):
            enable_manual_ack(stub)  # type: ignore[arg-type]

    def test_send_ack_without_private_client_raises(self) -> None:
        """Acking through a client without `_client` raises IncompatibleClientError."""
        with pytest.raises(IncompatibleClientError, match="_client"):
            send_ack(SimpleNamespace(), 1, 1)  # type: ignore[arg-type]

    def test_message_queue_without_private_queue_raises(self) -> None:
        """A client without aiomqtt's `_queue` raises IncompatibleClientError."""
        with pytest.raises(IncompatibleClientError, match="_queue"):
            message_queue(SimpleNamespace())  # type: ignore[arg-type]

    async def test_message_queue_of_real_client_is_an_asyncio_queue(self) -> None:
        """A real aiomqtt.Client keeps its received messages in an asyncio.Queue."""
        assert isinstance(message_queue(aiomqtt.Client("127.0.0.1", 1)), asyncio.Queue)


def _transport(broker: Mosquitto, client_id: str, protocol: str) -> AiomqttTransport:
    return AiomqttTransport(
        host=broker.host,
        port=broker.port,
        client_id=client_id,
        protocol=protocol,
        persistent=True,
        session_expiry=600,
        keepalive=10,
    )


async def _take(messages: AsyncIterator[Inbound], count: int) -> list[Inbound]:
    taken: list[Inbound] = []
    async with asyncio.timeout(TIMEOUT):
        while len(taken) < count:
            taken.append(await anext(messages))
    return taken


async def _publish(broker: Mosquitto, topic: str, bodies: list[bytes]) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as publisher:
        for body in bodies:
            await publisher.publish(topic, body, qos=1)


@pytest.mark.broker
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_manual_ack_unacked_message_is_redelivered_after_reconnect(
    mosquitto: Mosquitto, topic_prefix: str, protocol: str
) -> None:
    """A persistent session gets a received but unacked QoS 1 message again, an acked one not."""
    client_id = f"manual-ack-{uuid.uuid4().hex[:8]}"
    topic = f"{topic_prefix}/m"
    first = _transport(mosquitto, client_id, protocol)
    await first.connect()
    try:
        await first.subscribe([(topic, 1)])
        await _publish(mosquitto, topic, [b"acked", b"unacked"])
        acked, unacked = await _take(first.messages(), 2)
        assert (acked.body, unacked.body) == (b"acked", b"unacked")
        first.ack(acked)
        # The PUBACK is on the wire once a round trip after it has come back.
        await _publish(mosquitto, f"{topic_prefix}/flush", [b"x"])
    finally:
        await first.disconnect()

    second = _transport(mosquitto, client_id, protocol)
    await second.connect()
    try:
        await _publish(mosquitto, topic, [b"after"])
        again = await _take(second.messages(), 2)
        bodies = [message.body for message in again]
        assert bodies == [b"unacked", b"after"], bodies
        for message in again:
            second.ack(message)
    finally:
        await second.disconnect()
