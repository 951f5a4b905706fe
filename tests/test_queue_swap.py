"""Collectors added, removed and swapped on a running CollectorQueue (swap_collectors)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import pytest

from mqtt_collector import (
    Collector,
    CollectorEvent,
    CollectorQueue,
    Context,
    Delivery,
    LifecycleError,
    Ok,
    Payload,
    QueueError,
    Result,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

TIMEOUT = 5.0  # bound on every wait


class Journal:
    """What every collector instance did, in order: ('enter'|'exit'|'run', name, value)."""

    def __init__(self) -> None:
        """Start empty."""
        self.entries: list[tuple[str, str, Any]] = []

    def collector(
        self, key: str, name: str, *, topics: tuple[str, ...] = ("t",), delay: float = 0.0
    ) -> Collector:
        """A collector ``key`` journalled as instance ``name``."""

        async def process(payload: Payload[Any], ctx: Context) -> Result:
            if delay:
                await asyncio.sleep(delay)
            self.entries.append(("run", name, payload.value))
            return Ok(None)

        @contextlib.asynccontextmanager
        async def lifecycle(ctx: Context) -> AsyncIterator[None]:
            self.entries.append(("enter", name, None))
            yield
            self.entries.append(("exit", name, None))

        return Collector(key, process, lifecycle=lifecycle, topics=topics)

    def runs(self, *names: str) -> list[Any]:
        """The values the instances ``names`` ran on, in order."""
        return [value for kind, name, value in self.entries if kind == "run" and name in names]

    def index(self, kind: str, name: str) -> int:
        """Where ``name`` did ``kind`` first."""
        return next(i for i, (k, n, _) in enumerate(self.entries) if (k, n) == (kind, name))


def payload(number: int) -> Payload[int]:
    """A payload for topic ``t``."""
    return Payload(number, delivery=Delivery.TOPIC, topics=["t"])


async def test_swap_under_stream_loses_and_repeats_nothing() -> None:
    """A swapped collector gets every payload once across its two instances; the other all."""
    journal = Journal()
    queue = CollectorQueue(
        [journal.collector("keep", "keep"), journal.collector("swap", "old", delay=0.001)],
        max_consumers=8,
    )
    sent: list[CollectorEvent] = []
    async with queue:
        publisher = queue.get_publisher()

        midway = asyncio.Event()

        async def stream() -> None:
            for number in range(400):
                sent.append(await publisher.send(payload(number)))
                if number == 100:
                    midway.set()
                await asyncio.sleep(0)

        streaming = asyncio.create_task(stream())
        async with asyncio.timeout(TIMEOUT):
            await midway.wait()
            await queue.swap_collectors(add=[journal.collector("swap", "new")], remove=["swap"])
            await streaming
            for event in sent:
                await event.wait()
    assert journal.runs("keep") == list(range(400))
    assert sorted(journal.runs("old", "new")) == list(range(400))
    # The new instance was entered before it ran; the old one ran nothing after its exit.
    assert journal.index("enter", "new") < journal.index("run", "new")
    last_old = max(i for i, (k, n, _) in enumerate(journal.entries) if (k, n) == ("run", "old"))
    assert last_old < journal.index("exit", "old")
    assert [c.key for c in queue.collectors] == ["keep", "swap"]


async def test_swap_waits_for_removed_collector_in_flight() -> None:
    """A removed collector's running delivery finishes before its lifecycle exits."""
    journal = Journal()
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(payload: Payload[Any], ctx: Context) -> Result:
        started.set()
        await release.wait()
        journal.entries.append(("run", "slow", payload.value))
        return Ok(None)

    @contextlib.asynccontextmanager
    async def lifecycle(ctx: Context) -> AsyncIterator[None]:
        yield
        journal.entries.append(("exit", "slow", None))

    async with CollectorQueue(
        [Collector("slow", slow, lifecycle=lifecycle, topics=["t"]), journal.collector("k", "k")]
    ) as queue:
        event = await queue.get_publisher().send(payload(1))
        await asyncio.wait_for(started.wait(), TIMEOUT)
        swap = asyncio.create_task(queue.swap_collectors(remove=["slow"]))
        await asyncio.sleep(0.05)
        assert not swap.done()  # waiting for the delivery under way
        later = await queue.get_publisher().send(payload(2))
        await later.wait(TIMEOUT)
        release.set()
        await asyncio.wait_for(swap, TIMEOUT)
        await event.wait(TIMEOUT)
    assert journal.entries.index(("run", "slow", 1)) < journal.entries.index(("exit", "slow", None))
    assert journal.runs("slow") == [1]  # payload 2 went to "k" only
    assert journal.runs("k") == [1, 2]


async def test_swap_on_idle_queue_returns() -> None:
    """With nothing running, a removal finishes at once (idle consumers are woken)."""
    journal = Journal()
    async with CollectorQueue(
        [journal.collector("a", "a"), journal.collector("b", "b")], min_consumers=3
    ) as queue:
        await asyncio.wait_for(queue.swap_collectors(remove=["b"]), TIMEOUT)
        await (await queue.get_publisher().send(payload(7))).wait(TIMEOUT)
    assert journal.runs("a") == [7]
    assert journal.runs("b") == []
    assert ("exit", "b", None) in journal.entries


async def test_swap_failing_lifecycle_changes_nothing() -> None:
    """An added collector whose lifecycle fails: LifecycleError, the others exited, no change."""
    journal = Journal()

    @contextlib.asynccontextmanager
    async def broken(ctx: Context) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield

    async def never(payload: Payload[Any], ctx: Context) -> Result:
        raise AssertionError

    async with CollectorQueue([journal.collector("a", "a")]) as queue:
        with pytest.raises(LifecycleError):
            await queue.swap_collectors(
                add=[journal.collector("b", "b"), Collector("c", never, lifecycle=broken)],
                remove=["a"],
            )
        assert [c.key for c in queue.collectors] == ["a"]
        await (await queue.get_publisher().send(payload(1))).wait(TIMEOUT)
    assert journal.entries == [
        ("enter", "a", None),
        ("enter", "b", None),
        ("exit", "b", None),
        ("run", "a", 1),
        ("exit", "a", None),
    ]


async def test_swap_refuses_unknown_and_taken_keys() -> None:
    """Removing an unknown key or adding a taken one is a QueueError."""
    journal = Journal()
    async with CollectorQueue([journal.collector("a", "a")]) as queue:
        with pytest.raises(QueueError, match="unknown"):
            await queue.swap_collectors(remove=["zz"])
        with pytest.raises(QueueError, match="taken"):
            await queue.swap_collectors(add=[journal.collector("a", "a2")])
