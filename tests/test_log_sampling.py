"""Logs that survive a flood: repeated warnings of one kind are sampled, counters stay exact."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import structlog
import yaml

from mqtt_collector._logging import LogSampler, flush_sampled
from mqtt_collector.testing import TestDaemon
from tests.helpers.daemon import WAIT, capture_logging

FLOOD = 10_000


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        """Start at 0."""
        self.now = 0.0

    def __call__(self) -> float:
        """Return the time now."""
        return self.now


class Sampled:
    """A sampler under test, with what it let through and the summaries it wrote."""

    def __init__(self, *, interval: float = 10.0, clock: Clock | None = None) -> None:
        """Sample 3 lines per ``interval``."""
        self.summaries: list[dict[str, Any]] = []
        self.written: list[str] = []
        self.summarised = threading.Event()
        kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
        self.sampler = LogSampler(self._emit, burst=3, interval=interval, **kwargs)

    def _emit(self, name: str, level: str, fields: dict[str, Any]) -> None:
        self.summaries.append({"logger": name, "level": level, **fields})
        self.summarised.set()

    def log(self, event: str, level: str = "warning", **fields: Any) -> None:
        """Pass one line through the sampler, as structlog would."""
        line = {"logger": "mqtt_collector.daemon", "level": level, "event": event, **fields}
        try:
            self.sampler(None, level, line)
        except structlog.DropEvent:
            return
        self.written.append(event)


def test_sampler_writes_the_burst_then_one_summary_with_the_exact_count() -> None:
    """Of 25 lines of one kind, 3 are written; the summary says 22 more were suppressed."""
    sampled = Sampled(clock=Clock())
    for _ in range(25):
        sampled.log("message refused", kind="decode")
    sampled.sampler.flush()
    assert sampled.written == ["message refused"] * 3
    [summary] = sampled.summaries
    assert summary["suppressed"] == 22
    assert summary["event"] == "message refused: 22 more like this in the last 10 s, suppressed"
    assert (summary["kind"], summary["level"]) == ("decode", "warning")
    sampled.sampler.close()


def test_sampler_keeps_kinds_apart() -> None:
    """A flood of one kind does not hide the first lines of another kind or event."""
    sampled = Sampled(clock=Clock())
    for _ in range(10):
        sampled.log("message refused", kind="decode")
    sampled.log("message refused", kind="too_large")
    sampled.log("collector failed", level="error", collector="db")
    assert sampled.written.count("message refused") == 4
    assert sampled.written.count("collector failed") == 1
    sampled.sampler.close()


def test_sampler_never_samples_info_or_debug() -> None:
    """Lines below warning all pass, however many."""
    sampled = Sampled(clock=Clock())
    for _ in range(20):
        sampled.log("retrying", level="info")
    assert len(sampled.written) == 20
    sampled.sampler.close()


def test_sampler_next_interval_starts_with_a_summary_and_a_new_burst() -> None:
    """A line after the interval: the summary is written first, then the line passes."""
    clock = Clock()
    sampled = Sampled(clock=clock)
    for _ in range(5):
        sampled.log("message refused", kind="decode")
    clock.now = 10.0
    sampled.log("message refused", kind="decode")
    assert [s["suppressed"] for s in sampled.summaries] == [2]
    assert len(sampled.written) == 4
    sampled.sampler.close()


def test_sampler_summary_comes_when_the_flood_stops() -> None:
    """Nothing else logged after the flood: the timer writes the summary at the interval's end."""
    sampled = Sampled(interval=0.05)
    for _ in range(10):
        sampled.log("malformed message skipped")
    assert sampled.summarised.wait(WAIT), "no summary after the interval"
    assert [s["suppressed"] for s in sampled.summaries] == [7]
    sampled.sampler.close()


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    tree = {
        "subscriptions": [{"filter": "sensors/+", "decode": "json", "topics": ["t"]}],
        "collectors": [
            {
                "key": "rec",
                "processor": "tests.helpers.collectors:record",
                "lifecycle": "tests.helpers.collectors:recording_lifecycle",
                "topics": ["t"],
            }
        ],
    }
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


async def test_flood_of_undecodable_messages_logs_a_few_lines_and_counts_all(
    tmp_path: Path,
) -> None:
    """10,000 bodies that are not JSON: a burst of lines and summaries, the counter exact."""
    with capture_logging(level="info") as logs:
        async with TestDaemon(_config(tmp_path)) as daemon:
            for _ in range(FLOOD):
                await daemon.publish("sensors/a", b"{not json")
            rejected = daemon.sample("mqtt_collector_messages_rejected_total", reason="decode")
        flush_sampled()
        refused = logs.events("message refused")
        summaries = [e for e in logs.lines() if e.get("sampled_event") == "message refused"]
    assert rejected == FLOOD
    # One interval per 10 s of the run: each writes 10 lines and one summary.
    intervals = len(summaries)
    assert 1 <= intervals <= 3, summaries
    assert len(refused) == 10 * intervals
    assert len(refused) + sum(s["suppressed"] for s in summaries) == FLOOD
    assert all(s["kind"] == "decode" and s["level"] == "warning" for s in summaries)
    assert summaries[0]["event"].startswith("message refused: ")
