"""What the demo shows, read from the daemon's own metrics and the processor timings."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mqtt_collector._demo.timing import Timings, percentile

if TYPE_CHECKING:
    from mqtt_collector._daemon.metrics import HotCounter, Metrics

__all__ = ["CollectorLine", "Progress", "Stats"]

_FINAL = ("ok", "error", "dead_letter", "dead_letter_failed")  # "retry" is not an end
_RATE_WINDOW = 2.0  # seconds the live rate is measured over


def _samples(counter: HotCounter) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in counter.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    ]


@dataclass(frozen=True, slots=True)
class Progress:
    """The live line's counts.

    Messages received, processed (done by every collector and acked), refused (never reached
    a collector), deliveries that failed, and messages processed per second.
    """

    received: int
    processed: int
    refused: int
    errors: int
    rate: float

    def line(self) -> str:
        """Return the progress as one line of text."""
        return (
            f"received {self.received:,}  processed {self.processed:,}"
            f"  refused {self.refused:,}  errors {self.errors:,}  {self.rate:,.0f} msg/s"
        )


@dataclass(frozen=True, slots=True)
class CollectorLine:
    """One collector's row of the summary; the times are in seconds, None without a call."""

    key: str
    messages: int
    ok: int
    errors: int
    p50: float | None
    p99: float | None


class Stats:
    """Reads a running daemon's metrics into progress lines and summary rows."""

    def __init__(self, metrics: Metrics, timings: dict[str, Timings]) -> None:
        """Read ``metrics`` (the daemon's) and ``timings`` (by collector key, in config order)."""
        self._metrics = metrics
        self._timings = timings
        self._history: deque[tuple[float, int]] = deque()
        self.started = time.monotonic()

    def received(self) -> int:
        """Messages the daemon received from the broker."""
        return int(sum(value for _, value in _samples(self._metrics.received)))

    def refused(self) -> dict[str, int]:
        """Messages refused before any collector, by reason (decode, too_large, ...)."""
        return {
            labels["reason"]: int(value)
            for labels, value in _samples(self._metrics.rejected)
            if value
        }

    def processed(self) -> int:
        """Messages every collector has finished with and the daemon has acked."""
        acked = sum(value for _, value in _samples(self._metrics.acked))
        return max(0, int(acked) - sum(self.refused().values()))

    def collectors(self) -> list[CollectorLine]:
        """A summary row per collector, in config order."""
        outcomes: dict[str, dict[str, int]] = {key: {} for key in self._timings}
        for labels, value in _samples(self._metrics.outcomes):
            outcomes.setdefault(labels["collector"], {})[labels["outcome"]] = int(value)
        lines = []
        for key, counts in outcomes.items():
            messages = sum(counts.get(outcome, 0) for outcome in _FINAL)
            ok = counts.get("ok", 0)
            seconds = self._timings[key].seconds if key in self._timings else []
            lines.append(
                CollectorLine(
                    key=key,
                    messages=messages,
                    ok=ok,
                    errors=messages - ok,
                    p50=percentile(seconds, 0.50),
                    p99=percentile(seconds, 0.99),
                )
            )
        return lines

    def all_seconds(self) -> list[float]:
        """Every processor call's duration, whichever the collector."""
        return [second for timing in self._timings.values() for second in timing.seconds]

    def progress(self) -> Progress:
        """The live line now; the rate is over the last couple of seconds."""
        now, processed = time.monotonic(), self.processed()
        history = self._history
        history.append((now, processed))
        # Keep the newest sample at least a window old: the rate spans one window or more.
        while len(history) > 2 and now - history[1][0] >= _RATE_WINDOW:  # noqa: PLR2004
            history.popleft()
        then, before = history[0]
        rate = (processed - before) / (now - then) if now > then else 0.0
        return Progress(
            received=self.received(),
            processed=processed,
            refused=sum(self.refused().values()),
            errors=sum(line.errors for line in self.collectors()),
            rate=rate,
        )
