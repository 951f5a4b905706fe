"""Group commit: concurrent processor calls join one write, each told how its batch fared.

A sink that writes one row per call pays a round trip (or a disk sync) per message. With
``GroupCommit`` each call hands over its item and waits; one writer takes every item waiting,
writes them together, and then answers each call: ``Ok(value)`` once the batch holding its item
is committed, or ``Error(exc)`` when that write failed, so the retry policy and the dead letter
still apply per message, and ack after processing still acks a message only after its own batch
is committed.

Batching needs no tuning to start with. While a write is in flight, new items gather; when it
returns, the next write takes all of them (up to ``max_size``). So an idle sink writes each item
at once, and a busy one writes ever larger batches. ``max_delay`` makes batches larger under
load: items that arrive while a write is in flight wait up to that long after the first of them
for more to join (never longer, and not once no item has come for a quarter of it). An item that
arrives while no write is in flight is written at once, whatever ``max_delay`` says.

A batch can hold no more items than there are calls waiting: in the daemon each waiting call
holds one consumer, so batches are at most ``queue.max_consumers`` long (64 by default); raise it
(e.g. to 512) for a sink that should write hundreds of rows at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from mqtt_collector._core.result import Error, Ok, Result

__all__ = ["GroupCommit"]

T = TypeVar("T")

# While lingering for a batch to fill, a lull in arrivals of a quarter of max_delay, and at
# least this long, ends the wait.
_QUIET = 0.001

Write = Callable[[list[T]], Awaitable[Sequence[Any] | None]]
"""``async def write(batch) -> None | values``: commit ``batch`` as one unit or raise.

It may return one value per item, in order: ``Ok(value)`` answers that item's call (an
``Error`` instance answers it as failed, for a sink that can tell which item was refused).
"""


class GroupCommit(Generic[T]):
    """Let concurrent callers join one write; ``await submit(item)`` once the write is done.

    Example, in a lifecycle::

        async def write_rows(rows: list[tuple[str, str]]) -> None:
            async with pool.connection() as conn:  # one transaction per batch
                await conn.executemany("INSERT INTO t VALUES (%s, %s)", rows)

        @contextlib.asynccontextmanager
        async def lifecycle(ctx):
            async with GroupCommit(write_rows, max_size=500) as ctx.batch:
                yield

        async def processor(payload, ctx):
            return await ctx.batch.submit((payload.value.topic, payload.value.text))

    Args:
        write: the function that commits a batch (see ``Write``).
        max_size: the most items one write takes.
        max_delay: under load (the first item of a batch came while a write was in flight),
            seconds the writer may wait after that item arrived for more to join it; it stops
            waiting once no item came for a quarter of that (at least 1 ms). 0 (the default)
            writes at once when a writer is free; an item that finds no write in flight is
            always written at once.
        concurrency: how many writes may be in flight at once (e.g. the size of a connection
            pool); batches then commit in any order.
    """

    def __init__(
        self,
        write: Write[T],
        *,
        max_size: int = 1000,
        max_delay: float = 0.0,
        concurrency: int = 1,
    ) -> None:
        """Set the writer up; its tasks start with the first ``submit``."""
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size!r}")
        if max_delay < 0:
            raise ValueError(f"max_delay must not be negative, got {max_delay!r}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency!r}")
        self._write = write
        self._max_size = max_size
        self._max_delay = max_delay
        self._concurrency = concurrency
        self._items: list[T] = []
        self._futures: list[asyncio.Future[Result]] = []
        self._first_at = 0.0
        # Items are numbered in submit order; batches take them in that order, so "every item
        # before n is answered" is tracked per batch (for flush), whatever order writes end in.
        self._submitted = 0
        self._taken = 0
        self._answered = 0
        self._answered_ahead: dict[int, int] = {}
        self._hurry_until = 0
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []
        self._wakeup: asyncio.Event | None = None
        self._writers: list[asyncio.Task[None]] = []
        self._closing = False
        self._closed = False
        self._writing = 0  # writes in flight
        # The lull in arrivals that ends a linger: a quarter of max_delay, at least _QUIET.
        self._quiet = max(_QUIET, max_delay / 4)
        self._first_idle = True  # the first item waiting came while no write was in flight

    @property
    def waiting(self) -> int:
        """How many submitted items wait for a write to take them."""
        return len(self._items)

    async def submit(self, item: T) -> Result:
        """Hand ``item`` to the next write; return ``Ok(value)`` when committed, else ``Error``.

        Raises:
            RuntimeError: the group commit is closed.
        """
        if self._closing:
            raise RuntimeError("GroupCommit is closed")
        loop = asyncio.get_running_loop()
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
            self._writers = [
                loop.create_task(self._run_writer(), name=f"group-commit-writer-{number}")
                for number in range(self._concurrency)
            ]
        future: asyncio.Future[Result] = loop.create_future()
        if not self._items:
            self._first_at = loop.time()
            self._first_idle = not self._writing
        self._items.append(item)
        self._futures.append(future)
        self._submitted += 1
        self._wakeup.set()
        # Cancelling the caller does not take the item back: it may be written anyway, which
        # at-least-once delivery allows (the message was not acked and comes again).
        return await future

    async def flush(self) -> None:
        """Return once every item submitted so far is written or failed; write what waits now.

        Items of cancelled callers count too. Waiting items are written without lingering
        for ``max_delay``.
        """
        target = self._submitted
        if self._answered >= target:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flushes.append((target, future))
        self._hurry_until = max(self._hurry_until, target)
        if self._wakeup is not None:
            self._wakeup.set()
        await future

    async def aclose(self) -> None:
        """Write what is waiting, wait for writes in flight, and refuse further items."""
        if self._closed:
            return
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._writers:
            await asyncio.gather(*self._writers, return_exceptions=True)
        self._closed = True

    async def __aenter__(self) -> GroupCommit[T]:
        """Return itself: ``async with GroupCommit(write) as batch:``."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close it, writing what waits."""
        await self.aclose()

    async def _run_writer(self) -> None:
        """Take batches and write them until closed and nothing waits."""
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._items:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if (
                self._max_delay
                and not self._first_idle
                and not self._hurried()
                and len(self._items) < self._max_size
            ):
                remaining = self._first_at + self._max_delay - loop.time()
                if remaining > 0:
                    await self._linger(remaining)
                    if not self._items:  # another writer took them meanwhile
                        continue
            batch = self._items[: self._max_size]
            futures = self._futures[: self._max_size]
            del self._items[: self._max_size], self._futures[: self._max_size]
            start = self._taken
            self._taken += len(batch)
            if self._items:
                # Those left over keep _first_at: they came after the first of the batch just
                # cut, so its deadline is not later than theirs. More writers may take them.
                self._wakeup.set()
            self._writing += 1
            try:
                await self._commit(batch, futures)
            finally:
                self._writing -= 1
                self._mark_answered(start, start + len(batch))

    def _hurried(self) -> bool:
        """Whether waiting items must be written without lingering (closing, or a flush)."""
        return self._closing or self._taken < self._hurry_until

    def _mark_answered(self, start: int, end: int) -> None:
        """Record that items ``start`` to ``end`` are answered; end the flushes that covers."""
        self._answered_ahead[start] = end
        while self._answered in self._answered_ahead:
            self._answered = self._answered_ahead.pop(self._answered)
        if self._flushes and self._flushes[0][0] <= self._answered:
            waiting = []
            for target, future in self._flushes:
                if target > self._answered:
                    waiting.append((target, future))
                elif not future.done():
                    future.set_result(None)
            self._flushes = waiting

    async def _linger(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the batch to fill, while items keep coming.

        It ends early once no item came for a quarter of ``max_delay`` (at least 1 ms): then
        every caller that could join is likely waiting already (each holds a consumer), and
        waiting on gains nothing.
        """
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while len(self._items) < self._max_size and not self._hurried():
            left = deadline - loop.time()
            if left <= 0:
                return
            self._wakeup.clear()
            try:
                async with asyncio.timeout(min(left, self._quiet)):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    async def _commit(self, batch: list[T], futures: list[asyncio.Future[Result]]) -> None:
        """Write ``batch`` and answer each waiting call."""
        try:
            values = await self._write(batch)
            if values is not None and len(values) != len(batch):
                raise ValueError(  # noqa: TRY301 - answered below like any failed write
                    f"the write returned {len(values)} values for {len(batch)} items"
                )
        except Exception as exc:  # noqa: BLE001 - every failure is the batch's Error
            self._answer_all(futures, Error(exc))
            return
        except BaseException as exc:
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and not (task and task.cancelling()):
                # The write's own cancellation (a driver's timeout), not the writer's: a failure.
                self._answer_all(futures, Error(exc))
                return
            # The writer itself is cancelled (the loop is closing), or the process is exiting.
            for future in futures:
                future.cancel()
            raise
        for index, future in enumerate(futures):
            if future.done():
                continue
            value = None if values is None else values[index]
            future.set_result(value if isinstance(value, Error) else Ok(value))

    @staticmethod
    def _answer_all(futures: list[asyncio.Future[Result]], error: Error) -> None:
        """Answer every caller still waiting with ``error``."""
        for future in futures:
            if not future.done():
                future.set_result(error)
