"""SIGHUP reload: the plan (what is refused, what is applied), and a reload under a QoS 1 stream."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import pytest

from mqtt_collector._daemon.reload import plan_reload
from tests.helpers import config as cfg
from tests.helpers.collectors import recording_lifecycle
from tests.helpers.daemon import (
    WAIT,
    capture_logging,
    collector_ctx,
    make_config,
    recorder_entry,
    records,
    run_daemon,
    wait_until,
    write_config,
)
from tests.helpers.mqtt_client import MqttClient

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from mqtt_collector import Context
    from tests.helpers.mosquitto import Mosquitto

# What the tracked lifecycle did, in order: ("enter" | "exit", options.tag).
JOURNAL: list[tuple[str, str]] = []


@contextlib.asynccontextmanager
async def tracked_lifecycle(ctx: Context) -> AsyncIterator[None]:
    """The recording lifecycle, journalled in JOURNAL by ``options.tag``."""
    tag = str(ctx.options["tag"])
    async with recording_lifecycle(ctx):
        JOURNAL.append(("enter", tag))
        try:
            yield
        finally:
            JOURNAL.append(("exit", tag))


class TestPlan:
    """plan_reload: what a new config changes in place, and what needs a restart."""

    def plan(self, tmp_path: Path, old: dict[str, Any], new: dict[str, Any]) -> Any:
        """The plan from config ``old`` to ``new``."""
        (tmp_path / "old").mkdir()
        (tmp_path / "new").mkdir()
        return plan_reload(cfg.load(tmp_path / "old", old), cfg.load(tmp_path / "new", new))

    def test_plan_same_file_changes_nothing(self, tmp_path: Path) -> None:
        """The same configuration twice: nothing to do."""
        plan = self.plan(tmp_path, cfg.base(), cfg.base())
        assert not plan.changed

    @pytest.mark.parametrize(
        ("section", "value", "key"),
        [
            ("broker", {"host": "broker.example"}, "broker.host"),
            ("broker", {"client_id": "other"}, "broker.client_id"),
            ("broker", {"username": "u", "password": "p"}, "broker.username"),
            ("queue", {"type": "lifo"}, "queue.type"),
            ("queue", {"max_consumers": 3}, "queue.max_consumers"),
            ("logging", {"format": "console"}, "logging.format"),
            ("metrics", {"listen": "127.0.0.1:9999"}, "metrics.listen"),
        ],
    )
    def test_plan_refuses_what_needs_a_restart(
        self, tmp_path: Path, section: str, value: dict[str, Any], key: str
    ) -> None:
        """Broker keys, the queue's shape, the log format, the metrics address: refused."""
        new = cfg.base(**{section: value}, collectors=[cfg.collector(key="other")])
        plan = self.plan(tmp_path, cfg.base(), new)
        assert key in plan.refused
        assert plan.changed

    def test_plan_applies_drain_timeout_and_log_level(self, tmp_path: Path) -> None:
        """queue.drain_timeout and logging.level are applied in place."""
        new = cfg.base(queue={"drain_timeout": 5}, logging={"level": "debug"})
        plan = self.plan(tmp_path, cfg.base(), new)
        assert plan.refused == ()
        assert set(plan.applied) == {"queue.drain_timeout", "logging.level"}

    def test_plan_subscribes_added_and_unsubscribes_removed(self, tmp_path: Path) -> None:
        """A filter added is subscribed, one removed unsubscribed, a QoS change subscribed."""
        old = cfg.base(
            subscriptions=[cfg.subscription(filter="a/#"), cfg.subscription(filter="b/#")]
        )
        new = cfg.base(
            subscriptions=[cfg.subscription(filter="a/#", qos=0), cfg.subscription(filter="c/#")]
        )
        plan = self.plan(tmp_path, old, new)
        assert plan.refused == ()
        assert plan.subscribe == (("a/#", 0), ("c/#", 1))
        assert plan.unsubscribe == ("b/#",)
        assert plan.routes_changed

    def test_plan_swaps_changed_collectors(self, tmp_path: Path) -> None:
        """A changed entry is swapped, a new one added, a missing one removed, the rest kept."""
        old = cfg.base(
            collectors=[
                cfg.collector(key="same"),
                cfg.collector(key="changed"),
                cfg.collector(key="gone"),
            ]
        )
        new = cfg.base(
            collectors=[
                cfg.collector(key="same"),
                cfg.collector(key="changed", timeout=3),
                cfg.collector(key="new"),
            ]
        )
        plan = self.plan(tmp_path, old, new)
        assert (plan.added, plan.removed, plan.swapped) == (("new",), ("gone",), ("changed",))
        assert plan.subscribe == plan.unsubscribe == ()
        assert not plan.routes_changed

    def test_plan_refuses_larger_packets_than_announced(self, tmp_path: Path) -> None:
        """A max_body_bytes above the Maximum Packet Size announced at connect: refused."""
        old = cfg.base(subscriptions=[cfg.subscription(max_body_bytes=100)])
        new = cfg.base(subscriptions=[cfg.subscription(max_body_bytes=1000)])
        plan = self.plan(tmp_path, old, new)
        assert any(key.startswith("subscriptions.max_body_bytes") for key in plan.refused)


def _numbers(found: list[Any], kind: str) -> list[int]:
    return [r.data["n"] for r in found if r.topic.split("/")[-2] == kind]


def _store(tag: str, topics: tuple[str, ...]) -> dict[str, Any]:
    entry = recorder_entry("store", topics, tag=tag)
    entry["lifecycle"] = "tests.test_reload:tracked_lifecycle"
    return entry


async def test_reload_under_qos1_stream_loses_and_repeats_nothing(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """+1 filter, -1 filter, a collector swapped, a bad file: 0 lost, 0 twice, 1 connection."""
    JOURNAL.clear()
    prefix = topic_prefix

    def sections(store_tag: str, kinds: tuple[str, ...]) -> dict[str, Any]:
        return {
            "subscriptions": [{"filter": f"{prefix}/{k}/+", "topics": [k]} for k in kinds],
            "collectors": [
                recorder_entry("rec", ("a", "b", "c")),
                _store(store_tag, ("a",)),
            ],
        }

    config = make_config(tmp_path, port=mosquitto.port, prefix=prefix, **sections("v1", ("a", "b")))
    published = 0  # how many numbers were published on every kind
    stop = asyncio.Event()
    client = MqttClient()
    assert client.connect(mosquitto.port)

    def publish_round(number: int) -> None:
        for kind in ("a", "b", "c"):
            client.publish_json(f"{prefix}/{kind}/{number}", {"n": number})

    async def stream() -> None:
        nonlocal published
        while not stop.is_set():
            await asyncio.to_thread(publish_round, published)
            published += 1
            await asyncio.sleep(0.003)

    with capture_logging("info") as logs:
        async with run_daemon(config) as daemon:
            old_store = collector_ctx(daemon, "store")
            streaming = asyncio.create_task(stream())
            try:
                await wait_until(lambda: published >= 30, what="the stream to flow")
                # Reload: +c, -b, store swapped (its options changed).
                write_config(
                    tmp_path, port=mosquitto.port, prefix=prefix, **sections("v2", ("a", "c"))
                )
                b_before = published  # every b up to here was acked by the broker: must arrive
                task = daemon.reload()
                assert task is not None
                await asyncio.wait_for(task, WAIT)
                c_after = published  # every c from here on must arrive
                await wait_until(lambda: published >= c_after + 30, what="more of the stream")
                # A bad file: logged, the running configuration stays.
                (tmp_path / "config.yaml").write_text("subscriptions: [\n", encoding="utf-8")
                task = daemon.reload()
                assert task is not None
                await asyncio.wait_for(task, WAIT)
                end = published + 30
                await wait_until(lambda: published >= end, what="the stream after the bad file")
            finally:
                stop.set()
                await asyncio.wait_for(streaming, WAIT)
            new_store = collector_ctx(daemon, "store")
            await wait_until(
                lambda: len(_numbers(records(daemon), "a")) >= published,
                what="every message on a to be processed",
            )
            await wait_until(
                lambda: len(new_store.records) + len(old_store.records) >= published,
                what="every message on a to reach store",
            )
            connections = daemon.metrics.registry.get_sample_value(
                "mqtt_collector_connections_total"
            )
            rec = records(daemon)
            daemon_config = daemon.config
    client.close()

    everything = list(range(published))
    assert _numbers(rec, "a") == everything  # 0 lost, 0 twice, in order
    b = _numbers(rec, "b")
    assert sorted(b) == list(range(len(b)))  # a prefix: no gap, none twice
    assert len(b) >= b_before  # what the broker had before the reload arrived
    c = _numbers(rec, "c")
    assert sorted(c) == list(range(c[0], published))  # a suffix: no gap, none twice
    assert c[0] <= c_after
    store = _numbers(list(old_store.records) + list(new_store.records), "a")
    assert sorted(store) == everything  # across the two instances: 0 lost, 0 twice
    assert new_store.records  # the new instance took over
    assert JOURNAL == [("enter", "v1"), ("enter", "v2"), ("exit", "v1"), ("exit", "v2")]
    assert connections == 1
    assert daemon_config.subscriptions[1].filter == f"{prefix}/c/+"
    (reloaded,) = logs.events("reloaded")
    assert reloaded["subscribed"] == [f"{prefix}/c/+"]
    assert reloaded["unsubscribed"] == [f"{prefix}/b/+"]
    assert reloaded["collectors_swapped"] == ["store"]
    (failed,) = logs.events("reload failed: the running configuration stays")
    assert "invalid YAML" in failed["error"]


async def test_reload_refuses_broker_change_and_keeps_running(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """A broker change is refused with one line naming it; nothing else is applied."""
    config = make_config(tmp_path, port=mosquitto.port, prefix=topic_prefix)
    with capture_logging("info") as logs:
        async with run_daemon(config) as daemon:
            write_config(
                tmp_path,
                port=mosquitto.port,
                prefix=topic_prefix,
                broker={"host": "localhost"},
                collectors=[recorder_entry(), recorder_entry("more")],
            )
            task = daemon.reload()
            assert task is not None
            await asyncio.wait_for(task, WAIT)
            assert [c.key for c in daemon.queue.collectors] == ["rec"]
            assert daemon.config is config
    (refused,) = logs.events("reload refused: restart needed; the running configuration stays")
    assert refused["changed"] == ["broker.host"]
