"""The daemon in process against a real Mosquitto: what the wire decides (QoS, retain, properties).

The daemon's own logic (mapping, routing, decoding, acks) is tested on the in-memory test kit,
in tests/test_daemon_logic.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.helpers.daemon import (
    make_config,
    recorder_entry,
    records,
    run_daemon,
    wait_until,
)
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.mqtt_client import connected_client

pytestmark = pytest.mark.broker


@pytest.fixture(params=["aiomqtt", "gmqtt"])
def client(request: pytest.FixtureRequest) -> str:
    """The MQTT client library: each wire test runs on both transports (MQTT 5)."""
    return str(request.param)


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """Return a metric sample's value (0 when it has none yet)."""
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


class TestDelivery:
    """What a collector receives for each message."""

    async def test_daemon_delivers_each_qos(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path, client: str
    ) -> None:
        """Messages arrive at the QoS sent, at most the subscription's: 2 comes as 1."""
        config = make_config(
            tmp_path,
            port=mosquitto.port,
            prefix=topic_prefix,
            broker={"client": client},
            subscriptions=[{"filter": f"{topic_prefix}/q/+", "qos": 1, "topics": ["all"]}],
        )
        async with run_daemon(config) as daemon:
            with connected_client(mosquitto.port) as publisher:
                for qos in (0, 1, 2):
                    publisher.publish_json(f"{topic_prefix}/q/{qos}", {"qos": qos}, qos=qos)
            await wait_until(lambda: len(records(daemon)) == 3, what="3 messages")
            got = {r.topic: (r.qos, r.data) for r in records(daemon)}
        assert got == {f"{topic_prefix}/q/{q}": (min(q, 1), {"qos": q}) for q in (0, 1, 2)}

    async def test_daemon_passes_retain_flag(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path, client: str
    ) -> None:
        """A retained message sent on subscribe arrives with retain set; a live one without."""
        p = topic_prefix
        config = make_config(tmp_path, port=mosquitto.port, prefix=p, broker={"client": client})
        with connected_client(mosquitto.port) as publisher:
            publisher.publish_json(f"{p}/kept", "old", retain=True)
            try:
                async with run_daemon(config) as daemon:
                    await wait_until(lambda: records(daemon), what="the retained message")
                    publisher.publish_json(f"{p}/live", "new")
                    await wait_until(lambda: len(records(daemon)) == 2, what="the live message")
            finally:
                publisher.publish(f"{p}/kept", b"", retain=True)  # clear it
        assert [(r.data, r.retain) for r in records(daemon)] == [("old", True), ("new", False)]

    async def test_daemon_passes_mqtt5_properties(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path, client: str
    ) -> None:
        """MQTT 5 user properties and content type reach message.properties."""
        config = make_config(
            tmp_path, port=mosquitto.port, prefix=topic_prefix, broker={"client": client}
        )
        async with run_daemon(config) as daemon:
            with connected_client(mosquitto.port) as publisher:
                publisher.publish(
                    f"{topic_prefix}/p",
                    b"{}",
                    user_properties=[("site", "north"), ("unit", "C")],
                    content_type="application/json",
                )
            await wait_until(lambda: records(daemon), what="the message")
        properties = records(daemon)[0].properties
        assert properties["user_properties"] == [("site", "north"), ("unit", "C")]
        assert properties["content_type"] == "application/json"

    async def test_daemon_gives_no_properties_without_any(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path, client: str
    ) -> None:
        """A message sent without properties arrives with an empty properties mapping."""
        config = make_config(
            tmp_path, port=mosquitto.port, prefix=topic_prefix, broker={"client": client}
        )
        async with run_daemon(config) as daemon:
            with connected_client(mosquitto.port) as publisher:
                publisher.publish(f"{topic_prefix}/p", b"{}")
            await wait_until(lambda: records(daemon), what="the message")
        assert records(daemon)[0].properties == {}


class TestSubscribing:
    """Shared subscriptions and protocol versions."""

    @pytest.mark.parametrize("style", ["share_group", "filter"])
    async def test_daemon_receives_on_a_shared_subscription(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path, client: str, style: str
    ) -> None:
        """A share_group (or a $share/ filter) subscribes as a group and gets every message."""
        p = topic_prefix
        if style == "share_group":
            subscription = {"filter": f"{p}/s/+", "share_group": "collectors", "topics": ["{1}"]}
            expected_subscription = f"{p}/s/+"
        else:
            subscription = {"filter": f"$share/collectors/{p}/s/+", "topics": ["{1}"]}
            expected_subscription = f"$share/collectors/{p}/s/+"
        config = make_config(
            tmp_path,
            port=mosquitto.port,
            prefix=p,
            broker={"client": client},
            subscriptions=[subscription],
            collectors=[recorder_entry("rec", ["a", "b"])],
        )
        async with run_daemon(config) as daemon:
            with connected_client(mosquitto.port) as publisher:
                publisher.publish_json(f"{p}/s/a", 1)
                publisher.publish_json(f"{p}/s/b", 2)
            await wait_until(lambda: len(records(daemon)) == 2, what="2 messages")
        got = [(r.data, r.captures, r.topics, r.subscription) for r in records(daemon)]
        assert got == [
            (1, ("a",), ("a",), expected_subscription),
            (2, ("b",), ("b",), expected_subscription),
        ]

    async def test_daemon_speaks_mqtt_311(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
    ) -> None:
        """With protocol 3.1.1 messages arrive, acked, with empty properties."""
        config = make_config(
            tmp_path,
            port=mosquitto.port,
            prefix=topic_prefix,
            broker={"protocol": "3.1.1"},
            subscriptions=[{"filter": f"{topic_prefix}/#", "qos": 1, "topics": ["all"]}],
        )
        async with run_daemon(config) as daemon:
            with connected_client(mosquitto.port, protocol=4) as publisher:
                publisher.publish_json(f"{topic_prefix}/a", 1, qos=1)
                publisher.publish_json(f"{topic_prefix}/b", 2, qos=2)
            await wait_until(lambda: len(records(daemon)) == 2, what="2 messages")
            registry = daemon.metrics.registry
            await wait_until(
                lambda: _sample(registry, "mqtt_collector_messages_acked_total") == 2,
                what="both acked",
            )
        assert [(r.data, r.qos, r.properties) for r in records(daemon)] == [
            (1, 1, {}),
            (2, 1, {}),
        ]
