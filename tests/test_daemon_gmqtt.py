"""The daemon with ``broker.client: gmqtt`` against a real Mosquitto: processes and acks."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from mqtt_collector._mqtt.gmqtt.transport import GmqttTransport
from tests.helpers.daemon import make_config, records, run_daemon, wait_until
from tests.helpers.mqtt_client import connected_client

if TYPE_CHECKING:
    from pathlib import Path

    from tests.helpers.mosquitto import Mosquitto

pytestmark = pytest.mark.broker

COUNT = 20


async def test_daemon_on_gmqtt_processes_and_acks(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """QoS 1 messages are processed and acked: a second run on the same session gets none again."""
    config = make_config(
        tmp_path,
        port=mosquitto.port,
        prefix=topic_prefix,
        broker={
            "client": "gmqtt",
            "client_id": f"gmqtt-daemon-{uuid.uuid4().hex[:8]}",
            "session": {"persistent": True, "expiry": 60},
        },
    )
    async with run_daemon(config) as daemon:
        assert isinstance(daemon.transport, GmqttTransport)
        with connected_client(mosquitto.port) as publisher:
            for index in range(COUNT):
                publisher.publish_json(f"{topic_prefix}/n", index, qos=1)
        await wait_until(lambda: len(records(daemon)) == COUNT, what=f"{COUNT} messages")
        sample = daemon.metrics.registry.get_sample_value
        await wait_until(
            lambda: sample("mqtt_collector_messages_acked_total") == COUNT, what="every ack"
        )
        assert daemon.transport.unacked() == 0
    assert [r.data for r in records(daemon)] == list(range(COUNT))
    # Same session again: had any PUBACK not reached the broker, it would resend that one.
    async with run_daemon(config) as again:
        with connected_client(mosquitto.port) as publisher:
            publisher.publish_json(f"{topic_prefix}/n", "marker", qos=1)
        await wait_until(lambda: records(again), what="the marker")
        assert [r.data for r in records(again)] == ["marker"]
