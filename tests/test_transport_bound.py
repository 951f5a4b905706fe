"""The memory bound holds: no PUBLISH is read past receive_maximum, whatever else goes on."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest

from mqtt_collector._aiomqtt import AiomqttTransport
from tests.daemon_helpers import WAIT, Publisher, wait_until

if TYPE_CHECKING:
    from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.broker


def _transport(broker: Mosquitto, **keys: object) -> AiomqttTransport:
    return AiomqttTransport(
        host=broker.host,
        port=broker.port,
        client_id=f"bound-{uuid.uuid4().hex[:8]}",
        protocol="5",
        receive_maximum=1,
        **keys,  # type: ignore[arg-type]
    )


async def test_paused_probe_reads_no_trickle_of_small_messages(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """A few small QoS 0 messages arriving while paused stay unread, probe after probe."""
    topic = f"{topic_prefix}/t"
    transport = _transport(mosquitto)
    await transport.connect()
    try:
        await transport.subscribe([(topic, 1)])
        with Publisher(mosquitto.port) as publisher:
            publisher.publish(topic, b"held", qos=1)
            messages = transport.messages()
            async with asyncio.timeout(WAIT):
                held = await anext(messages)
            gate = transport._gate
            assert gate is not None
            await wait_until(lambda: gate.paused, what="reading to pause")
            for index in range(5):
                publisher.publish(topic, str(index).encode(), qos=0)
        # Several probes (every 0.5 s) go by: none may read them.
        await asyncio.sleep(2)
        assert transport.backlog() == 0
        transport.ack(held)
        await wait_until(lambda: transport.backlog() >= 1, what="reading to resume")
    finally:
        await transport.disconnect()
