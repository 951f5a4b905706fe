"""The daemon's own logic (mapping, routing, decoding, error policy, acks) on the test kit.

These ran against a real Mosquitto (tests/test_daemon_e2e.py) or a daemon subprocess
(tests/faults/test_bad_input.py), although nothing about the wire mattered to them: they run
here on ``mqtt_collector.testing.TestDaemon``, the real daemon over an in-memory transport.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mqtt_collector import Error
from mqtt_collector.testing import TestDaemon
from tests.helpers.daemon import capture_logging, recorder_entry, wait_until, write_config

P = "t"  # the topic prefix of every config here
FAULTS = "tests.helpers.collectors"


def _config(tmp_path: Path, **keys: Any) -> Path:
    """A config as tests.helpers.daemon writes it (its broker is never connected to)."""
    return write_config(tmp_path, port=1883, prefix=P, **keys)


def _records(daemon: TestDaemon, key: str = "rec") -> list[Any]:
    records: list[Any] = daemon.context(key).records
    return records


class TestDelivery:
    """What a collector receives for each message, and what is acked."""

    async def test_daemon_acks_what_it_processed(self, tmp_path: Path) -> None:
        """Every QoS 1 message processed is acked, so none is left pending."""
        async with TestDaemon(_config(tmp_path)) as daemon:
            deliveries = [await daemon.publish(f"{P}/n", index) for index in range(5)]
            assert daemon.sample("mqtt_collector_messages_acked_total") == 5
            assert daemon.transport.unacked() == 0
            assert [r.data for r in _records(daemon)] == [0, 1, 2, 3, 4]
        assert all(d.acked for d in deliveries)

    async def test_daemon_renders_payload_topics_and_captures(self, tmp_path: Path) -> None:
        """Templates with {1}, {2} and {topic} render from the captures and the MQTT topic."""
        topic = f"{P}/sensors/kitchen/t1/temperature"
        config = _config(
            tmp_path,
            subscriptions=[
                {
                    "filter": f"{P}/sensors/+/+/temperature",
                    "topics": ["temperature", "site/{1}", "{1}/{2}", "raw/{topic}"],
                }
            ],
            collectors=[
                recorder_entry("rec", ["temperature"]),
                recorder_entry("site", ["site/kitchen"]),
            ],
        )
        async with TestDaemon(config) as daemon:
            delivery = await daemon.publish(topic, {"t": 21.5})
            [got] = _records(daemon)
            assert len(_records(daemon, "site")) == 1
        assert len(delivery.results) == 2
        assert got.topics == ("temperature", "site/kitchen", "kitchen/t1", f"raw/{topic}")
        assert got.captures == ("kitchen", "t1")
        assert got.subscription == f"{P}/sensors/+/+/temperature"
        assert got.data == {"t": 21.5}

    async def test_daemon_captures_multi_level_rest(self, tmp_path: Path) -> None:
        """A trailing '#' captures the rest of the topic joined by '/'."""
        config = _config(tmp_path, subscriptions=[{"filter": f"{P}/+/#", "topics": ["all"]}])
        async with TestDaemon(config) as daemon:
            delivery = await daemon.publish(f"{P}/dev/a/b/c", 1)
        assert delivery.message is not None
        assert delivery.message.captures == ("dev", "a/b/c")

    async def test_daemon_routes_to_the_right_collectors(self, tmp_path: Path) -> None:
        """Each collector receives only the messages whose Payload topics it listens to."""
        config = _config(
            tmp_path,
            subscriptions=[
                {"filter": f"{P}/t/+", "topics": ["temperature"]},
                {"filter": f"{P}/h/+", "topics": ["humidity"]},
            ],
            collectors=[
                recorder_entry("temp", ["temperature"]),
                recorder_entry("hum", ["humidity"]),
                recorder_entry("both", ["temperature", "humidity"]),
            ],
        )
        async with TestDaemon(config) as daemon:
            await daemon.publish(f"{P}/t/1", 1)
            await daemon.publish(f"{P}/h/1", 2)
            assert [r.topic for r in _records(daemon, "temp")] == [f"{P}/t/1"]
            assert [r.topic for r in _records(daemon, "hum")] == [f"{P}/h/1"]
            assert [r.data for r in _records(daemon, "both")] == [1, 2]

    async def test_daemon_decodes_json_text_and_bytes(self, tmp_path: Path) -> None:
        """Each subscription's decode gives dict/list for json, str for text, bytes for bytes."""
        config = _config(
            tmp_path,
            subscriptions=[
                {"filter": f"{P}/json", "decode": "json", "topics": ["all"]},
                {"filter": f"{P}/text", "decode": "text", "topics": ["all"]},
                {"filter": f"{P}/bytes", "decode": "bytes", "topics": ["all"]},
            ],
        )
        async with TestDaemon(config) as daemon:
            await daemon.publish(f"{P}/json", b'{"a": [1, 2]}')
            await daemon.publish(f"{P}/text", "grüße".encode())
            await daemon.publish(f"{P}/bytes", b"\x00\xff\xfe")
            got = {r.topic.rsplit("/", 1)[1]: (r.data, r.raw) for r in _records(daemon)}
        assert got == {
            "json": ({"a": [1, 2]}, b'{"a": [1, 2]}'),
            "text": ("grüße", "grüße".encode()),
            "bytes": (b"\x00\xff\xfe", b"\x00\xff\xfe"),
        }

    async def test_daemon_refuses_undecodable_body_and_goes_on(self, tmp_path: Path) -> None:
        """A body that is not JSON is counted and acked, and the next message still arrives."""
        async with TestDaemon(_config(tmp_path)) as daemon:
            bad = await daemon.publish(f"{P}/bad", b"{not json")
            good = await daemon.publish(f"{P}/good", 1)
            assert daemon.sample("mqtt_collector_messages_rejected_total", reason="decode") == 1
            assert daemon.sample("mqtt_collector_messages_acked_total") == 2
            assert [r.topic for r in _records(daemon)] == [f"{P}/good"]
        assert (bad.refused, bad.acked, good.refused, good.acked) == ("decode", True, None, True)


class TestRouting:
    """How subscriptions combine, priorities, and what no subscription matches."""

    async def test_daemon_unions_topics_of_matching_subscriptions(self, tmp_path: Path) -> None:
        """Two matching subscriptions give the union of their topics; the first decides decoding."""
        config = _config(
            tmp_path,
            subscriptions=[
                {"filter": f"{P}/u/+", "decode": "text", "topics": ["a", "dev/{1}"]},
                {"filter": f"{P}/u/#", "decode": "json", "topics": ["dev/{1}", "b"]},
            ],
            collectors=[recorder_entry("rec", ["a", "b"])],
        )
        async with TestDaemon(config) as daemon:
            delivery = await daemon.publish(f"{P}/u/x", b"plain text")
            # Processed once, although it has two of the collector's topics.
            [first] = _records(daemon)
        assert len(delivery.results) == 1
        assert first.topics == ("a", "dev/x", "b")
        assert first.data == "plain text"
        assert first.subscription == f"{P}/u/+"
        assert first.captures == ("x",)

    async def test_daemon_orders_by_priority(self, tmp_path: Path) -> None:
        """With a priority queue and one consumer, queued messages run lowest priority first."""
        config = _config(
            tmp_path,
            subscriptions=[
                {"filter": f"{P}/high", "priority": 1, "topics": ["all"]},
                {"filter": f"{P}/mid", "priority": 10, "topics": ["all"]},
                {"filter": f"{P}/low", "priority": 30, "topics": ["all"]},
                {"filter": f"{P}/+", "topics": ["all"]},
            ],
            collectors=[recorder_entry("rec", ["all"], block=True)],
            queue={
                "type": "priority",
                "min_consumers": 1,
                "max_consumers": 1,
                "default_priority": 1000,
            },
        )
        async with TestDaemon(config) as daemon:
            ctx = daemon.context("rec")
            sent = [asyncio.create_task(daemon.publish(f"{P}/first", 0))]
            await wait_until(lambda: ctx.running == 1, what="the first to block the consumer")
            levels = ("low", "other", "mid", "high", "low", "high")
            sent.extend(asyncio.create_task(daemon.publish(f"{P}/{lv}", [lv])) for lv in levels)
            await wait_until(lambda: daemon.daemon.queue.qsize() == 6, what="6 queued")
            ctx.gate.set()
            deliveries = await asyncio.gather(*sent)
            order = [r.priority for r in _records(daemon)]
        assert order == [1000, 1, 1, 10, 30, 30, 1000]
        assert all(d.acked for d in deliveries)

    async def test_daemon_ignores_a_topic_no_subscription_matches(self, tmp_path: Path) -> None:
        """A message the session still delivers but no subscription matches is counted and acked."""
        config = _config(tmp_path, subscriptions=[{"filter": f"{P}/new/#", "topics": ["all"]}])
        async with TestDaemon(config) as daemon:
            stale = await daemon.publish(f"{P}/old/x", ["stale"])
            fresh = await daemon.publish(f"{P}/new/x", ["fresh"])
            assert daemon.sample("mqtt_collector_messages_acked_total") == 2
            assert daemon.sample("mqtt_collector_messages_rejected_total", reason="unrouted") == 1
            assert [r.data for r in _records(daemon)] == [["fresh"]]
        assert (stale.refused, stale.acked, len(stale.results)) == ("unrouted", True, 0)
        assert fresh.acked


def _bad_input_config(tmp_path: Path) -> Path:
    """One subscription per kind of input, as the bad-input fault tests had them."""

    def sub(kind: str, decode: str, **extra: Any) -> dict[str, Any]:
        return {"filter": f"{P}/{kind}/#", "decode": decode, "topics": ["good"], **extra}

    return _config(
        tmp_path,
        subscriptions=[
            sub("json", "json"),
            sub("text", "text"),
            sub("bytes", "bytes"),
            sub("limited", "bytes", max_body_bytes=1000),
            {"filter": f"{P}/proc/+", "decode": "json", "topics": ["{1}"]},
        ],
        collectors=[
            recorder_entry("rec", ["good"]),
            {"key": "raises", "processor": f"{FAULTS}:raises", "topics": ["raises"]},
            {"key": "returns_42", "processor": f"{FAULTS}:returns_42", "topics": ["r42"]},
            {"key": "hangs", "processor": f"{FAULTS}:hangs", "topics": ["hangs"]}
            | {"timeout": 0.2},
        ],
    )


class TestBadInput:
    """Bad input never crashes the daemon nor blocks the messages behind it."""

    @pytest.mark.parametrize(
        ("kind", "body", "reason"),
        [
            ("json", b"{not json", "invalid JSON"),
            ("text", b"\xff\xfe\xfa", "UTF-8"),
            ("json", b"", "empty"),
        ],
        ids=["invalid-json", "invalid-utf8-text", "empty-json"],
    )
    async def test_bad_input_undecodable_body_is_refused_and_logged(
        self, tmp_path: Path, kind: str, body: bytes, reason: str
    ) -> None:
        """A body its decode refuses is logged with its topic; the message behind it runs."""
        bad, good = f"{P}/{kind}/bad", f"{P}/{kind}/good"
        with capture_logging("info") as logs:
            async with TestDaemon(_bad_input_config(tmp_path)) as daemon:
                refused = await daemon.publish(bad, body)
                processed = await daemon.publish(good, b"1")
                assert [r.topic for r in _records(daemon)] == [good]
        [entry] = [e for e in logs.events("message refused") if e["topic"] == bad]
        assert reason in entry["reason"]
        assert (refused.refused, refused.acked) == ("decode", True)
        assert processed.results.is_ok()

    async def test_bad_input_empty_bytes_body_is_processed(self, tmp_path: Path) -> None:
        """An empty body where bytes are wanted is a valid message and reaches the collector."""
        async with TestDaemon(_bad_input_config(tmp_path)) as daemon:
            delivery = await daemon.publish(f"{P}/bytes/empty", b"")
            [record] = _records(daemon)
        assert record.raw == b""
        assert (delivery.refused, delivery.acked) == (None, True)

    async def test_bad_input_body_over_max_body_bytes_is_refused_and_logged(
        self, tmp_path: Path
    ) -> None:
        """A body over max_body_bytes is refused with its size logged; the next one is processed."""
        bad, good = f"{P}/limited/large", f"{P}/limited/good"
        with capture_logging("info") as logs:
            async with TestDaemon(_bad_input_config(tmp_path)) as daemon:
                refused = await daemon.publish(bad, b"x" * 1001)
                await daemon.publish(good, b"x" * 1000)
                assert [r.topic for r in _records(daemon)] == [good]
        [entry] = [e for e in logs.events("message refused") if e["topic"] == bad]
        assert entry["size"] == 1001
        assert "max_body_bytes" in entry["reason"]
        assert (refused.refused, refused.acked) == ("too_large", True)

    @pytest.mark.parametrize(
        ("collector", "error"),
        [("raises", "RuntimeError"), ("r42", "TypeError"), ("hangs", "TimeoutError")],
        ids=["raises", "returns-non-result", "hangs"],
    )
    async def test_bad_input_faulty_processor_is_logged_and_does_not_block(
        self, tmp_path: Path, collector: str, error: str
    ) -> None:
        """A processor that raises, returns 42 or hangs gives a logged Error; the next one runs."""
        bad = f"{P}/proc/{collector}"
        with capture_logging("info") as logs:
            async with TestDaemon(_bad_input_config(tmp_path)) as daemon:
                faulty = await daemon.publish(bad, {"n": 1})
                good = await daemon.publish(f"{P}/proc/good", 2)
                assert [r.data for r in _records(daemon)] == [2]
        [result] = faulty.results
        assert isinstance(result, Error)
        assert type(result.exception).__name__ == error
        assert faulty.acked  # no dead letter: a failure is acked like a success
        assert good.results.is_ok()
        [entry] = [e for e in logs.events("collector failed") if e["topic"] == bad]
        assert entry["error"].startswith(error), entry

    async def test_bad_input_failing_teardown_does_not_stop_other_teardowns(
        self, tmp_path: Path
    ) -> None:
        """A lifecycle whose teardown raises is logged; the lifecycles around it still tear down."""
        first, last = tmp_path / "first.marker", tmp_path / "last.marker"

        def marked(key: str, marker: Path) -> dict[str, Any]:
            return {
                "key": key,
                "processor": "tests.sample_collectors:store",
                "lifecycle": f"{FAULTS}:marker",
                "topics": ["t"],
                "options": {"marker": str(marker)},
            }

        config = _config(
            tmp_path,
            subscriptions=[{"filter": f"{P}/#", "topics": ["t"]}],
            collectors=[
                marked("first", first),
                {
                    "key": "broken",
                    "processor": "tests.sample_collectors:store",
                    "lifecycle": f"{FAULTS}:teardown_raises",
                    "topics": ["t"],
                },
                marked("last", last),
            ],
        )
        with capture_logging("info") as logs:
            async with TestDaemon(config):
                pass  # leaving raises nothing: the daemon exits cleanly
        logged = [e for e in logs.lines() if "teardown" in str(e.get("event"))]
        assert logged
        assert "broken" in str(logged[0]), logged
        assert first.read_text() == "first"
        assert last.read_text() == "last"
