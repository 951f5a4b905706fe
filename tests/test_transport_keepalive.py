"""Keepalive while reading is paused: the connection stays up, a dead one is still seen."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest

from mqtt_collector._exceptions import TransportError
from mqtt_collector._mqtt.aiomqtt.transport import AiomqttTransport
from tests.helpers.daemon import WAIT, wait_until
from tests.helpers.mqtt_client import connected_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from mqtt_collector._mqtt.transport import Inbound
    from tests.helpers.mosquitto import Mosquitto

pytestmark = pytest.mark.broker

KEEPALIVE = 2


def _transport(broker: Mosquitto, client_id: str) -> AiomqttTransport:
    return AiomqttTransport(
        host=broker.host,
        port=broker.port,
        client_id=client_id,
        protocol="5",
        keepalive=KEEPALIVE,
        receive_maximum=1,
        persistent=True,
        session_expiry=600,
    )


async def _next(messages: AsyncIterator[Inbound]) -> Inbound:
    async with asyncio.timeout(WAIT):
        return await anext(messages)


async def test_paused_connection_outlives_keepalive_and_the_held_message_acks(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """One message held, 8 KB of QoS 0 unread behind it: still connected after 3.5 keepalives."""
    client_id = f"keepalive-{uuid.uuid4().hex[:8]}"
    topic = f"{topic_prefix}/t"
    transport = _transport(mosquitto, client_id)
    await transport.connect()
    try:
        await transport.subscribe([(topic, 1)])
        with connected_client(mosquitto.port) as publisher:
            publisher.publish(topic, b"held", qos=1)
            messages = transport.messages()
            held = await _next(messages)
            assert transport._gate is not None
            await wait_until(
                lambda: transport._gate is not None and transport._gate.paused, what="paused"
            )
            for index in range(8):
                publisher.publish(topic, bytes([index]) * 1024, qos=0)
        # Nothing may be yielded (paused), nor may the connection end, for 3.5 keepalives.
        following = asyncio.ensure_future(anext(messages))
        done, _ = await asyncio.wait({following}, timeout=3.5 * KEEPALIVE)
        assert not done, following.exception() if done else None
        assert transport.connection == 1
        transport.ack(held)
        first = await asyncio.wait_for(following, WAIT)
        assert (first.body[:1], first.connection) == (b"\x00", 1)
    finally:
        await transport.disconnect()
    # The ack got through: the session has nothing to send again.
    again = _transport(mosquitto, client_id)
    await again.connect()
    try:
        with connected_client(mosquitto.port) as publisher:
            publisher.publish(topic, b"after", qos=1)
        assert (await _next(again.messages())).body == b"after"
    finally:
        await again.disconnect()


async def test_paused_connection_to_a_killed_broker_still_ends(
    private_mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """With keepalive's timeout suspended, a broker that dies is still seen, within keepalives."""
    broker = private_mosquitto
    topic = f"{topic_prefix}/t"
    transport = _transport(broker, f"keepalive-{uuid.uuid4().hex[:8]}")
    await transport.connect()
    try:
        await transport.subscribe([(topic, 1)])
        with connected_client(broker.port) as publisher:
            publisher.publish(topic, b"held", qos=1)
            messages = transport.messages()
            await _next(messages)
            await wait_until(
                lambda: transport._gate is not None and transport._gate.paused, what="paused"
            )
            for index in range(8):
                publisher.publish(topic, bytes([index]) * 1024, qos=0)
        # A PUBLISH waits first in line: only the socket can tell the broker is gone.
        await asyncio.to_thread(broker.kill)
        with pytest.raises(TransportError):
            async with asyncio.timeout(3 * KEEPALIVE):
                await anext(messages)
    finally:
        await transport.disconnect()
