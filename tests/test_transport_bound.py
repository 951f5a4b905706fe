"""The memory bound holds: no PUBLISH is read past receive_maximum, whatever else goes on."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest

from mqtt_collector._daemon.wiring import PACKET_OVERHEAD, max_packet_size
from mqtt_collector._mqtt.aiomqtt.transport import AiomqttTransport
from tests.helpers.daemon import WAIT, make_config, records, run_daemon, wait_until
from tests.helpers.mqtt_client import connected_client

if TYPE_CHECKING:
    from pathlib import Path

    from tests.helpers.mosquitto import Mosquitto

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
        with connected_client(mosquitto.port) as publisher:
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


async def test_publish_while_paused_reads_nothing_more(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """A dead-letter publish (acked on its own connection) lets no waiting message in."""
    topic = f"{topic_prefix}/t"
    transport = _transport(mosquitto)
    await transport.connect()
    try:
        await transport.subscribe([(topic, 1)])
        with connected_client(mosquitto.port) as publisher:
            publisher.publish(topic, b"held", qos=1)
            messages = transport.messages()
            async with asyncio.timeout(WAIT):
                held = await anext(messages)
            gate = transport._gate
            assert gate is not None
            await wait_until(lambda: gate.paused, what="reading to pause")
            for index in range(10):
                publisher.publish(topic, bytes([index]) * 1024, qos=0)
        async with asyncio.timeout(WAIT):
            await transport.publish(f"{topic_prefix}/dlq", b"dead letter", qos=1)
            await transport.publish(f"{topic_prefix}/dlq", b"dead letter", qos=0)
        assert gate.paused
        assert transport.backlog() == 0
        transport.ack(held)
        await wait_until(lambda: transport.backlog() >= 1, what="reading to resume")
    finally:
        await transport.disconnect()


async def test_publish_connects_again_after_a_broker_restart(
    private_mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """The publishing connection, lost with the broker, is made again by the next publish."""
    broker = private_mosquitto
    transport = _transport(broker)
    topic = f"{topic_prefix}/dlq"
    try:
        async with asyncio.timeout(WAIT):
            await transport.publish(topic, b"1", qos=1)
        await asyncio.to_thread(broker.restart)
        async with asyncio.timeout(WAIT):
            await transport.publish(topic, b"2", qos=1)
    finally:
        await transport.disconnect()


class TestMaxPacketSize:
    """A Maximum Packet Size is announced when every subscription bounds its bodies."""

    def test_none_unless_every_subscription_sets_max_body_bytes(self, tmp_path: Path) -> None:
        """One subscription without a bound means no announced size."""
        config = make_config(
            tmp_path,
            port=1883,
            prefix="p",
            subscriptions=[
                {"filter": "p/a", "topics": ["all"], "max_body_bytes": 1000},
                {"filter": "p/b", "topics": ["all"]},
            ],
        )
        assert max_packet_size(config) is None

    def test_the_largest_bound_plus_the_overhead(self, tmp_path: Path) -> None:
        """Every subscription bounded: the largest bound, plus topic and header room."""
        config = make_config(
            tmp_path,
            port=1883,
            prefix="p",
            subscriptions=[
                {"filter": "p/a", "topics": ["all"], "max_body_bytes": 1000},
                {"filter": "p/b", "topics": ["all"], "max_body_bytes": 5000},
            ],
        )
        assert max_packet_size(config) == 5000 + PACKET_OVERHEAD

    async def test_broker_sends_the_daemon_nothing_larger(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
    ) -> None:
        """A message far over max_body_bytes never reaches the daemon's memory."""
        config = make_config(
            tmp_path,
            port=mosquitto.port,
            prefix=topic_prefix,
            subscriptions=[
                {"filter": f"{topic_prefix}/#", "topics": ["all"], "max_body_bytes": 1000}
            ],
        )
        async with run_daemon(config) as daemon:
            with connected_client(mosquitto.port) as publisher:
                publisher.publish(f"{topic_prefix}/big", b"x" * (PACKET_OVERHEAD + 10_000))
                publisher.publish(f"{topic_prefix}/small", b"1")
            await wait_until(lambda: records(daemon), what="the small message")
            assert [r.topic for r in records(daemon)] == [f"{topic_prefix}/small"]
            received = daemon.metrics.registry.get_sample_value
            assert received("mqtt_collector_messages_received_total") == 1
