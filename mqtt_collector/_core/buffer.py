"""The three orders a collector queue can hand out payloads in."""

from __future__ import annotations

import enum
import heapq
import itertools
from collections import deque
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mqtt_collector._core.event import CollectorEvent

__all__ = ["Buffer", "QueueType", "make_buffer"]


class QueueType(enum.Enum):
    """The order in which queued payloads are handed to consumers."""

    FIFO = "fifo"
    """First in, first out."""
    LIFO = "lifo"
    """Last in, first out."""
    PRIORITY = "priority"
    """Lowest ``priority`` first; equal priorities first in, first out."""


class Buffer(Protocol):
    """What the queue needs of its store of waiting events."""

    def __len__(self) -> int:
        """Return how many events wait."""
        ...

    def push(self, event: CollectorEvent, /) -> None:
        """Add ``event``."""
        ...

    def pop(self) -> CollectorEvent:
        """Remove and return the next event."""
        ...


class _Fifo(deque["CollectorEvent"]):
    __slots__ = ("pop", "push")

    def __init__(self) -> None:
        super().__init__()
        # Bound methods looked up once keep the hot path to a single call.
        self.push = self.append
        self.pop = self.popleft  # type: ignore[method-assign]


class _Lifo(deque["CollectorEvent"]):
    __slots__ = ("push",)

    def __init__(self) -> None:
        super().__init__()
        self.push = self.append


class _Priority:
    __slots__ = ("_default", "_heap", "_seq")

    def __init__(self, default_priority: int) -> None:
        self._heap: list[tuple[int, int, CollectorEvent]] = []
        self._seq = itertools.count()
        self._default = default_priority

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, event: CollectorEvent) -> None:
        priority = event.payload.priority
        heapq.heappush(
            self._heap,
            (self._default if priority is None else priority, next(self._seq), event),
        )

    def pop(self) -> CollectorEvent:
        return heapq.heappop(self._heap)[2]


def make_buffer(queue_type: QueueType, *, default_priority: int) -> Buffer:
    """Return an empty buffer handing out events in ``queue_type`` order."""
    if queue_type is QueueType.FIFO:
        return _Fifo()
    if queue_type is QueueType.LIFO:
        return _Lifo()
    if queue_type is QueueType.PRIORITY:
        return _Priority(default_priority)
    raise ValueError(f"unknown queue type {queue_type!r}: use QueueType.FIFO, LIFO or PRIORITY")
