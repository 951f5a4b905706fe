"""The daemon in process against a real Mosquitto: subscribe, map, route, deliver, ack."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.daemon_helpers import (
    Publisher,
    collector_ctx,
    make_config,
    recorder,
    records,
    run_daemon,
    wait_until,
)
from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.broker


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """Return a metric sample's value (0 when it has none yet)."""
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


class TestDelivery:
    """What a collector receives for each message."""

    async def test_daemon_delivers_each_qos(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
    ) -> None:
        """Messages arrive at the QoS sent, at most the subscription's: 2 comes as 1."""
        config = make_config(
            tmp_path,
            port=mosquitto.port,
            prefix=topic_prefix,
            subscriptions=[{"filter": f"{topic_prefix}/q/+", "qos": 1, "topics": ["all"]}],
        )
        async with run_daemon(config) as daemon:
            with Publisher(mosquitto.port) as publisher:
                for qos in (0, 1, 2):
                    publisher.publish_json(f"{topic_prefix}/q/{qos}", {"qos": qos}, qos=qos)
            await wait_until(lambda: len(records(daemon)) == 3, what="3 messages")
            got = {r.topic: (r.qos, r.data) for r in records(daemon)}
        assert got == {f"{topic_prefix}/q/{q}": (min(q, 1), {"qos": q}) for q in (0, 1, 2)}

    async def test_daemon_acks_what_it_processed(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
    ) -> None:
        """Every QoS 1 message processed is acked, so none is left pending."""
        config = make_config(tmp_path, port=mosquitto.port, prefix=topic_prefix)
        async with run_daemon(config) as daemon:
            with Publisher(mosquitto.port) as publisher:
                for index in range(5):
                    publisher.publish_json(f"{topic_prefix}/n", index)
            registry = daemon.metrics.registry
            await wait_until(
                lambda: _sample(registry, "mqtt_collector_messages_acked_total") == 5,
                what="5 acks",
            )
            assert len(daemon.acker) == 0
            assert [r.data for r in records(daemon)] == [0, 1, 2, 3, 4]

    async def test_daemon_renders_payload_topics_and_captures(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
    ) -> None:
        """Templates with {1}, {2} and {topic} render from the captures and the MQTT topic."""
        p = topic_prefix
        topic = f"{p}/sensors/kitchen/t1/temperature"
        expected = ("temperature", "site/kitchen", "kitchen/t1", f"raw/{topic}")
        config = make_config(
            tmp_path,
            port=mosquitto.port,
            prefix=p,
            subscriptions=[
                {
                    "filter": f"{p}/sensors/+/+/temperature",
                    "topics": ["temperature", "site/{1}", "{1}/{2}", "raw/{topic}"],
                }
            ],
            collectors=[recorder("rec", ["temperature"]), recorder("site", ["site/kitchen"])],
        )
        async with run_daemon(config) as daemon:
            with Publisher(mosquitto.port) as publisher:
                publisher.publish_json(topic, {"t": 21.5})
            await wait_until(
                lambda: records(daemon) and records(daemon, "site"), what="both collectors"
            )
            [got] = records(daemon)
        assert got.topics == expected
        assert got.captures == ("kitchen", "t1")
        assert got.subscription == f"{p}/sensors/+/+/temperature"
        assert got.data == {"t": 21.5}

    async def test_daemon_captures_multi_level_rest(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
    ) -> None:
        """A trailing '#' captures the rest of the topic joined by '/'."""
        p = topic_prefix
        config = make_config(
            tmp_path,
            port=mosquitto.port,
            prefix=p,
            subscriptions=[{"filter": f"{p}/+/#", "topics": ["all"]}],
        )
        async with run_daemon(config) as daemon:
            with Publisher(mosquitto.port) as publisher:
                publisher.publish_json(f"{p}/dev/a/b/c", 1)
            await wait_until(lambda: records(daemon), what="the message")
        assert records(daemon)[0].captures == ("dev", "a/b/c")

    async def test_daemon_routes_to_the_right_collectors(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
    ) -> None:
        """Each collector receives only the messages whose Payload topics it listens to."""
        p = topic_prefix
        config = make_config(
            tmp_path,
            port=mosquitto.port,
            prefix=p,
            subscriptions=[
                {"filter": f"{p}/t/+", "topics": ["temperature"]},
                {"filter": f"{p}/h/+", "topics": ["humidity"]},
            ],
            collectors=[
                recorder("temp", ["temperature"]),
                recorder("hum", ["humidity"]),
                recorder("both", ["temperature", "humidity"]),
            ],
        )
        async with run_daemon(config) as daemon:
            with Publisher(mosquitto.port) as publisher:
                publisher.publish_json(f"{p}/t/1", 1)
                publisher.publish_json(f"{p}/h/1", 2)
            await wait_until(lambda: len(records(daemon, "both")) == 2, what="2 messages")
            await wait_until(
                lambda: records(daemon, "temp") and records(daemon, "hum"), what="1 message each"
            )
        assert [r.topic for r in records(daemon, "temp")] == [f"{p}/t/1"]
        assert [r.topic for r in records(daemon, "hum")] == [f"{p}/h/1"]
        assert sorted(r.data for r in records(daemon, "both")) == [1, 2]

    async def test_daemon_decodes_json_text_and_bytes(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
    ) -> None:
        """Each subscription's decode gives dict/list for json, str for text, bytes for bytes."""
        p = topic_prefix
        config = make_config(
            tmp_path,
            port=mosquitto.port,
            prefix=p,
            subscriptions=[
                {"filter": f"{p}/json", "decode": "json", "topics": ["all"]},
                {"filter": f"{p}/text", "decode": "text", "topics": ["all"]},
                {"filter": f"{p}/bytes", "decode": "bytes", "topics": ["all"]},
            ],
        )
        async with run_daemon(config) as daemon:
            with Publisher(mosquitto.port) as publisher:
                publisher.publish(f"{p}/json", b'{"a": [1, 2]}')
                publisher.publish(f"{p}/text", "grüße".encode())
                publisher.publish(f"{p}/bytes", b"\x00\xff\xfe")
            await wait_until(lambda: len(records(daemon)) == 3, what="3 messages")
        got = {r.topic.rsplit("/", 1)[1]: (r.data, r.raw) for r in records(daemon)}
        assert got == {
            "json": ({"a": [1, 2]}, b'{"a": [1, 2]}'),
            "text": ("grüße", "grüße".encode()),
            "bytes": (b"\x00\xff\xfe", b"\x00\xff\xfe"),
        }

    async def test_daemon_refuses_undecodable_body_and_goes_on(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
    ) -> None:
        """A body that is not JSON is counted and acked, and the next message still arrives."""
        config = make_config(tmp_path, port=mosquitto.port, prefix=topic_prefix)
        async with run_daemon(config) as daemon:
            with Publisher(mosquitto.port) as publisher:
                publisher.publish(f"{topic_prefix}/bad", b"{not json")
                publisher.publish_json(f"{topic_prefix}/good", 1)
            await wait_until(lambda: records(daemon), what="the good message")
            registry = daemon.metrics.registry
            assert _sample(registry, "mqtt_collector_messages_rejected_total", reason="decode") == 1
            await wait_until(
                lambda: _sample(registry, "mqtt_collector_messages_acked_total") == 2,
                what="both acked",
            )
        assert [r.topic for r in records(daemon)] == [f"{topic_prefix}/good"]

    async def test_daemon_passes_retain_flag(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
    ) -> None:
        """A retained message sent on subscribe arrives with retain set; a live one without."""
        p = topic_prefix
        config = make_config(tmp_path, port=mosquitto.port, prefix=p)
        with Publisher(mosquitto.port) as publisher:
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
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
    ) -> None:
        """MQTT 5 user properties and content type reach message.properties."""
        config = make_config(tmp_path, port=mosquitto.port, prefix=topic_prefix)
        async with run_daemon(config) as daemon:
            with Publisher(mosquitto.port) as publisher:
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
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
    ) -> None:
        """A message sent without properties arrives with an empty properties mapping."""
        config = make_config(tmp_path, port=mosquitto.port, prefix=topic_prefix)
        async with run_daemon(config) as daemon:
            with Publisher(mosquitto.port) as publisher:
                publisher.publish(f"{topic_prefix}/p", b"{}")
            await wait_until(lambda: records(daemon), what="the message")
        assert records(daemon)[0].properties == {}


class TestRouting:
    """How subscriptions combine, and what no subscription matches."""

    async def test_daemon_unions_topics_of_matching_subscriptions(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
    ) -> None:
        """Two matching subscriptions give the union of their topics; the first decides decoding."""
        p = topic_prefix
        config = make_config(
            tmp_path,
            port=mosquitto.port,
            prefix=p,
            subscriptions=[
                {"filter": f"{p}/u/+", "decode": "text", "topics": ["a", "dev/{1}"]},
                {"filter": f"{p}/u/#", "decode": "json", "topics": ["dev/{1}", "b"]},
            ],
            collectors=[recorder("rec", ["a", "b"])],
        )
        async with run_daemon(config) as daemon:
            with Publisher(mosquitto.port) as publisher:
                publisher.publish(f"{p}/u/x", b"plain text")
            await wait_until(lambda: records(daemon), what="the message")
            with Publisher(mosquitto.port) as publisher:
                publisher.publish(f"{p}/u/y", b"sentinel")
            await wait_until(lambda: len(records(daemon)) == 2, what="the sentinel")
        # Delivered once, although two subscriptions match and it has two of the collector's topics.
        assert [r.data for r in records(daemon)] == ["plain text", "sentinel"]
        first = records(daemon)[0]
        assert first.topics == ("a", "dev/x", "b")
        assert first.data == "plain text"
        assert first.subscription == f"{p}/u/+"
        assert first.captures == ("x",)

    async def test_daemon_orders_by_priority(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
    ) -> None:
        """With a priority queue and one consumer, queued messages run lowest priority first."""
        p = topic_prefix
        config = make_config(
            tmp_path,
            port=mosquitto.port,
            prefix=p,
            subscriptions=[
                {"filter": f"{p}/high", "priority": 1, "topics": ["all"]},
                {"filter": f"{p}/mid", "priority": 10, "topics": ["all"]},
                {"filter": f"{p}/low", "priority": 30, "topics": ["all"]},
                {"filter": f"{p}/+", "topics": ["all"]},
            ],
            collectors=[recorder("rec", ["all"], block=True)],
            queue={
                "type": "priority",
                "min_consumers": 1,
                "max_consumers": 1,
                "default_priority": 1000,
            },
        )
        async with run_daemon(config) as daemon:
            ctx = collector_ctx(daemon)
            with Publisher(mosquitto.port) as publisher:
                publisher.publish_json(f"{p}/first", 0)
                await wait_until(lambda: ctx.running == 1, what="the first to block the consumer")
                for level in ("low", "other", "mid", "high", "low", "high"):
                    publisher.publish_json(f"{p}/{level}", level)
            await wait_until(lambda: daemon.queue.qsize() == 6, what="6 queued")
            ctx.gate.set()
            await wait_until(lambda: len(records(daemon)) == 7, what="7 processed")
        order = [r.priority for r in records(daemon)]
        assert order == [1000, 1, 1, 10, 30, 30, 1000]

    async def test_daemon_ignores_a_topic_no_subscription_matches(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
    ) -> None:
        """A message the session still delivers but no subscription matches is counted and acked."""
        p = topic_prefix
        broker = {"client_id": f"unrouted-{p.rsplit('/', 1)[1]}", "session": {"persistent": True}}
        before = make_config(
            tmp_path,
            port=mosquitto.port,
            prefix=p,
            broker=broker,
            subscriptions=[
                {"filter": f"{p}/old/#", "topics": ["all"]},
                {"filter": f"{p}/new/#", "topics": ["all"]},
            ],
        )
        async with run_daemon(before):
            pass  # the broker's session now holds both subscriptions
        # Resume the session, configured with the new filter only.
        after = make_config(
            tmp_path,
            port=mosquitto.port,
            prefix=p,
            broker=broker,
            subscriptions=[{"filter": f"{p}/new/#", "topics": ["all"]}],
        )
        async with run_daemon(after) as daemon:
            with Publisher(mosquitto.port) as publisher:
                publisher.publish_json(f"{p}/old/x", "stale")
                publisher.publish_json(f"{p}/new/x", "fresh")
            await wait_until(lambda: records(daemon), what="the routed message")
            registry = daemon.metrics.registry
            await wait_until(
                lambda: _sample(registry, "mqtt_collector_messages_acked_total") == 2,
                what="both acked",
            )
            assert (
                _sample(registry, "mqtt_collector_messages_rejected_total", reason="unrouted") == 1
            )
        assert [r.data for r in records(daemon)] == ["fresh"]


class TestSubscribing:
    """Shared subscriptions and protocol versions."""

    @pytest.mark.parametrize("style", ["share_group", "filter"])
    async def test_daemon_receives_on_a_shared_subscription(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path, style: str
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
            subscriptions=[subscription],
            collectors=[recorder("rec", ["a", "b"])],
        )
        async with run_daemon(config) as daemon:
            with Publisher(mosquitto.port) as publisher:
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
            with Publisher(mosquitto.port, protocol=4) as publisher:
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
