"""Per-collector processing times for the demo's summary, measured around each processor.

The daemon is not changed for this: the demo wraps the processor of each collector the daemon
built, so a time covers one call of the processor (a retry is a second call), not the queue wait.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mqtt_collector._core.collector import Collector, Context, Processor
    from mqtt_collector._core.payload import Payload
    from mqtt_collector._core.result import Result

__all__ = ["Timings", "percentile", "time_processors"]


class Timings:
    """The seconds each call of one collector's processor took, in the order they finished."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        """Start with no calls."""
        self.seconds: list[float] = []

    def wrap(self, processor: Processor) -> Processor:
        """Return ``processor`` timed: each call's duration is appended, whatever it returns."""
        seconds = self.seconds
        clock = time.perf_counter

        async def timed(payload: Payload[Any], ctx: Context) -> Result:
            started = clock()
            try:
                return await processor(payload, ctx)
            finally:
                seconds.append(clock() - started)

        return timed


def time_processors(collectors: Iterable[Collector]) -> dict[str, Timings]:
    """Wrap every collector's processor with a timer; return the timings by collector key."""
    timings: dict[str, Timings] = {}
    for collector in collectors:
        timing = timings[collector.key] = Timings()
        collector.processor = timing.wrap(collector.processor)
    return timings


def percentile(values: list[float], fraction: float) -> float | None:
    """Return the nearest-rank percentile of ``values`` (``fraction`` in 0..1), None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
