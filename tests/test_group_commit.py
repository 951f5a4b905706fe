"""GroupCommit: batches form while a write is in flight, and each caller hears how its own fared.

The writes here are controlled by the test (``GatedWrite``: each one returns only when the test
releases it), so batch composition is asserted, never wall-clock timings. Where ``max_delay``
matters, the loop's clock is shifted by hand (``OffsetClock``) instead of waiting for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqtt_collector import Error, GroupCommit, Ok, Result

WAIT = 10.0  # seconds: a bound on every wait, far above what any of these takes
LONG = 1000.0  # seconds: a max_delay no test waits for in real time

Answer = Callable[[list[int]], Sequence[Any] | None]


class GatedWrite:
    """A write the test controls: it records each batch and returns once the test releases it.

    ``answer(batch)`` gives what the write returns (or raises); by default None.
    With ``gated=False`` every write returns at once.
    """

    def __init__(self, answer: Answer | None = None, *, gated: bool = True) -> None:
        """Start with no batch seen."""
        self.answer = answer
        self.gated = gated
        self.batches: list[list[int]] = []
        self.done: list[list[int]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._started: asyncio.Queue[list[int]] = asyncio.Queue()
        self._gates: list[asyncio.Event] = []

    async def __call__(self, batch: list[int]) -> Sequence[Any] | None:
        """Record ``batch``, wait for release, then answer."""
        self.batches.append(list(batch))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        gate = asyncio.Event()
        self._gates.append(gate)
        self._started.put_nowait(list(batch))
        try:
            if self.gated:
                await gate.wait()
            values = None if self.answer is None else self.answer(batch)
            self.done.append(list(batch))
            return values
        finally:
            self.in_flight -= 1

    async def started(self) -> list[int]:
        """Wait for the next write to start; return its batch."""
        async with asyncio.timeout(WAIT):
            return await self._started.get()

    def release(self, number: int = -1) -> None:
        """Let write ``number`` (in start order; the latest by default) return."""
        self._gates[number].set()

    def release_all(self) -> None:
        """Let every write started so far return, and every later one return at once."""
        self.gated = False
        for gate in self._gates:
            gate.set()


class OffsetClock:
    """The loop's clock, moved forward by hand: ``advance`` makes time pass without waiting."""

    def __init__(self, real: Callable[[], float]) -> None:
        """Follow ``real``, not yet moved."""
        self._real = real
        self._offset = 0.0

    def time(self) -> float:
        """The loop's time: the real one plus every advance so far."""
        return self._real() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward; timers due by then fire on the next loop turn."""
        self._offset += seconds


@pytest.fixture
async def clock(monkeypatch: pytest.MonkeyPatch) -> OffsetClock:
    """Shift the running loop's clock (timers, asyncio.timeout and GroupCommit all read it)."""
    loop = asyncio.get_running_loop()
    offset = OffsetClock(loop.time)
    monkeypatch.setattr(loop, "time", offset.time)
    return offset


async def _settle() -> None:
    """Let every task that can run do so until all wait (nothing here waits on a timer).

    Used only before asserting that something did *not* happen; a fixed number of loop turns,
    well above the three a submit needs to reach a write.
    """
    for _ in range(20):
        await asyncio.sleep(0)


def _submit(group: GroupCommit[int], *items: int) -> list[asyncio.Task[Result]]:
    """Submit each item from its own task, as concurrent processor calls do."""
    return [asyncio.create_task(group.submit(item)) for item in items]


async def _results(tasks: list[asyncio.Task[Result]]) -> list[Result]:
    async with asyncio.timeout(WAIT):
        return list(await asyncio.gather(*tasks))


class TestBatching:
    """How batches form: at once when idle, together while a write is in flight, capped."""

    async def test_group_commit_writes_an_idle_item_at_once(self) -> None:
        """With nothing in flight and no max_delay, a lone item is written on its own, now."""
        write = GatedWrite(gated=False)
        group = GroupCommit(write)
        assert await _results(_submit(group, 1)) == [Ok(None)]
        assert write.batches == [[1]]
        await group.aclose()

    async def test_group_commit_items_gather_while_a_write_is_in_flight(self) -> None:
        """Items arriving during a write go together in the next one, in arrival order."""
        write = GatedWrite()
        group = GroupCommit(write)
        first = _submit(group, 0)
        assert await write.started() == [0]
        rest = _submit(group, 1, 2, 3, 4)
        await _settle()
        assert write.batches == [[0]]
        write.release()
        assert await write.started() == [1, 2, 3, 4]
        write.release()
        assert await _results(first + rest) == [Ok(None)] * 5
        await group.aclose()

    async def test_group_commit_max_size_caps_each_batch(self) -> None:
        """No write takes more than max_size items; the rest follow in order."""
        write = GatedWrite()
        group = GroupCommit(write, max_size=3)
        tasks = _submit(group, 0)
        assert await write.started() == [0]
        tasks += _submit(group, *range(1, 8))
        await _settle()
        write.release_all()
        await _results(tasks)
        assert write.batches == [[0], [1, 2, 3], [4, 5, 6], [7]]
        await group.aclose()

    async def test_group_commit_waiting_counts_items_not_yet_taken(self) -> None:
        """``waiting`` is how many items wait for a write to take them."""
        write = GatedWrite()
        group = GroupCommit(write)
        tasks = _submit(group, 0)
        await write.started()
        tasks += _submit(group, 1, 2)
        await _settle()
        assert group.waiting == 2
        write.release_all()
        await _results(tasks)
        assert group.waiting == 0
        await group.aclose()

    @pytest.mark.parametrize(
        ("argument", "value", "message"),
        [
            ("max_size", 0, "max_size must be at least 1, got 0"),
            ("max_delay", -0.5, "max_delay must not be negative, got -0.5"),
            ("concurrency", 0, "concurrency must be at least 1, got 0"),
        ],
    )
    def test_group_commit_refuses_bad_arguments(
        self, argument: str, value: float, message: str
    ) -> None:
        """A bad size, delay or concurrency is a ValueError naming it."""
        with pytest.raises(ValueError) as info:
            GroupCommit(GatedWrite(), **{argument: value})  # type: ignore[arg-type]
        assert str(info.value) == message


class TestMaxDelay:
    """``max_delay``: under load, the writer lingers for more items, never past the delay."""

    @staticmethod
    def _lingering(write: GatedWrite, **options: Any) -> GroupCommit[int]:
        """A group with ``max_delay=LONG`` that no lull in arrivals cuts short."""
        group = GroupCommit(write, max_delay=LONG, **options)
        group._quiet = LONG
        return group

    async def test_group_commit_idle_item_is_written_at_once(self, clock: OffsetClock) -> None:
        """An item that finds no write in flight is written at once, whatever max_delay says."""
        write = GatedWrite(gated=False)
        group = self._lingering(write)
        assert await _results(_submit(group, 1)) == [Ok(None)]
        assert write.batches == [[1]]
        await group.aclose()

    async def test_group_commit_max_delay_lingers_for_more_items(self, clock: OffsetClock) -> None:
        """Items arriving while a write is in flight wait for more to join, up to max_delay."""
        write = GatedWrite()
        group = self._lingering(write)
        tasks = _submit(group, 1)
        assert await write.started() == [1]
        tasks += _submit(group, 2, 3)
        await _settle()
        write.release(0)
        await _settle()
        tasks += _submit(group, 4)
        await _settle()
        assert write.batches == [[1]]
        clock.advance(LONG)
        assert await write.started() == [2, 3, 4]
        write.release_all()
        assert await _results(tasks) == [Ok(None)] * 4
        await group.aclose()

    async def test_group_commit_max_delay_is_never_exceeded(self, clock: OffsetClock) -> None:
        """Once the first waiting item has waited max_delay the batch goes with what came."""
        write = GatedWrite()
        group = self._lingering(write)
        tasks = _submit(group, 1)
        assert await write.started() == [1]
        tasks += _submit(group, 2)
        await _settle()
        write.release(0)
        clock.advance(LONG - 1)
        tasks += _submit(group, 3)
        await _settle()
        assert write.batches == [[1]]
        clock.advance(1)
        assert await write.started() == [2, 3]
        write.release_all()
        await _results(tasks)
        await group.aclose()

    async def test_group_commit_a_lull_ends_the_linger(self, clock: OffsetClock) -> None:
        """No new item for a quarter of max_delay: the batch goes without waiting it out."""
        write = GatedWrite()
        group = GroupCommit(write, max_delay=LONG)
        tasks = _submit(group, 1)
        assert await write.started() == [1]
        tasks += _submit(group, 2, 3)
        await _settle()
        write.release(0)
        await _settle()
        assert write.batches == [[1]]
        clock.advance(LONG / 4)  # a lull of a quarter of max_delay
        assert await write.started() == [2, 3]
        write.release_all()
        await _results(tasks)
        await group.aclose()

    async def test_group_commit_max_delay_counts_from_arrival_behind_a_full_batch(
        self, clock: OffsetClock
    ) -> None:
        """Items left behind by a full batch do not start a new delay: theirs began on arrival."""
        write = GatedWrite()
        group = self._lingering(write, max_size=2)
        tasks = _submit(group, 0, 1)
        assert await write.started() == [0, 1]  # full: written without lingering
        tasks += _submit(group, 2, 3, 4)  # 4 will be left over by the next full batch
        await _settle()
        clock.advance(LONG / 2)
        write.release(0)
        assert await write.started() == [2, 3]
        clock.advance(LONG / 2)  # 4 has now waited max_delay
        write.release(1)
        assert await write.started() == [4]
        write.release_all()
        await _results(tasks)
        await group.aclose()

    async def test_group_commit_full_batch_does_not_linger(self, clock: OffsetClock) -> None:
        """A batch that reaches max_size is written at once, whatever max_delay says."""
        write = GatedWrite()
        group = self._lingering(write, max_size=3)
        tasks = _submit(group, 1)
        assert await write.started() == [1]
        tasks += _submit(group, 2, 3, 4, 5)
        await _settle()
        write.release(0)
        assert await write.started() == [2, 3, 4]
        write.release(1)
        await _settle()
        assert write.batches == [[1], [2, 3, 4]]  # 5 came under load: it lingers
        clock.advance(LONG)
        assert await write.started() == [5]
        write.release_all()
        await _results(tasks)
        await group.aclose()


class TestAnswers:
    """What each caller gets back: its own value, its own Error, or its batch's Error."""

    async def test_group_commit_each_caller_gets_its_own_value(self) -> None:
        """A write returning one value per item answers each caller with Ok of its value."""
        write = GatedWrite(lambda batch: [item * 10 for item in batch])
        group = GroupCommit(write)
        tasks = _submit(group, 0)
        await write.started()
        tasks += _submit(group, 1, 2, 3)
        write.release_all()
        assert await _results(tasks) == [Ok(0), Ok(10), Ok(20), Ok(30)]
        assert write.batches == [[0], [1, 2, 3]]
        await group.aclose()

    async def test_group_commit_error_value_answers_only_its_caller(self) -> None:
        """An Error among the values fails that caller alone (the same Error instance)."""
        refused = Error(ValueError("item 2 refused"))
        write = GatedWrite(lambda batch: [refused if item == 2 else item for item in batch])
        group = GroupCommit(write)
        tasks = _submit(group, 0)
        await write.started()
        tasks += _submit(group, 1, 2, 3)
        write.release_all()
        results = await _results(tasks)
        assert results == [Ok(0), Ok(1), refused, Ok(3)]
        assert results[2] is refused
        await group.aclose()

    async def test_group_commit_raising_write_fails_its_batch_only(self) -> None:
        """Every caller of a batch whose write raised gets Error of it; later batches succeed."""
        boom = OSError("disk gone")

        def answer(batch: list[int]) -> None:
            if 1 in batch:
                raise boom

        write = GatedWrite(answer)
        group = GroupCommit(write)
        tasks = _submit(group, 0)
        await write.started()
        tasks += _submit(group, 1, 2, 3)
        await _settle()
        write.release_all()
        results = await _results(tasks)
        assert results == [Ok(None), Error(boom), Error(boom), Error(boom)]
        assert write.batches == [[0], [1, 2, 3]]
        assert await _results(_submit(group, 4, 5)) == [Ok(None), Ok(None)]
        await group.aclose()

    async def test_group_commit_wrong_number_of_values_is_an_error(self) -> None:
        """A write returning a value count unlike its batch fails every caller of it."""
        write = GatedWrite(lambda batch: [0])
        group = GroupCommit(write)
        tasks = _submit(group, 0)
        await write.started()
        tasks += _submit(group, 1, 2)
        write.release_all()
        first, *rest = await _results(tasks)
        assert first == Ok(0)
        for result in rest:
            assert isinstance(result, Error)
            assert isinstance(result.exception, ValueError)
            assert str(result.exception) == "the write returned 1 values for 2 items"
        await group.aclose()

    async def test_group_commit_write_raising_cancelled_error_is_an_error(self) -> None:
        """A write raising CancelledError of its own is that batch's Error; the writer goes on."""
        own = asyncio.CancelledError("driver gave up")

        def answer(batch: list[int]) -> None:
            if batch == [0]:
                raise own

        group = GroupCommit(GatedWrite(answer, gated=False))
        assert await _results(_submit(group, 0)) == [Error(own)]
        assert await _results(_submit(group, 1)) == [Ok(None)]
        await group.aclose()


class TestConcurrency:
    """``concurrency``: several writes in flight at once, never more than that."""

    async def test_group_commit_concurrency_lets_writes_overlap(self) -> None:
        """With concurrency 2 a second write starts while the first is still in flight."""
        write = GatedWrite()
        group = GroupCommit(write, concurrency=2)
        tasks = _submit(group, 0)
        assert await write.started() == [0]
        tasks += _submit(group, 1)
        assert await write.started() == [1]
        assert write.in_flight == 2
        tasks += _submit(group, 2, 3)
        await _settle()
        assert write.batches == [[0], [1]]
        write.release(1)  # the later write commits first: batches commit in any order
        assert await write.started() == [2, 3]
        assert await _results(tasks[1:2]) == [Ok(None)]
        assert not tasks[0].done()
        write.release_all()
        await _results(tasks)
        assert write.most_in_flight == 2
        await group.aclose()


class TestClosing:
    """``aclose``, ``async with`` and ``flush``."""

    async def test_group_commit_aclose_writes_what_waits_then_refuses(self) -> None:
        """Closing writes the waiting items, waits for the write in flight, then submit raises."""
        write = GatedWrite()
        group = GroupCommit(write)
        tasks = _submit(group, 0)
        await write.started()
        tasks += _submit(group, 1, 2)
        await _settle()
        closing = asyncio.create_task(group.aclose())
        await _settle()
        assert not closing.done()
        write.release_all()
        async with asyncio.timeout(WAIT):
            await closing
        assert write.done == [[0], [1, 2]]
        assert await _results(tasks) == [Ok(None)] * 3
        with pytest.raises(RuntimeError, match="GroupCommit is closed"):
            await group.submit(3)
        await group.aclose()  # a second close is harmless

    async def test_group_commit_aclose_cuts_the_delay_short(self) -> None:
        """Closing writes a lingering batch at once instead of waiting out max_delay."""
        write = GatedWrite(gated=False)
        group = GroupCommit(write, max_delay=LONG)
        tasks = _submit(group, 1, 2)
        await _settle()
        async with asyncio.timeout(WAIT):
            await group.aclose()
        assert await _results(tasks) == [Ok(None)] * 2
        assert write.batches == [[1, 2]]

    async def test_group_commit_async_with_closes_at_exit(self) -> None:
        """Leaving ``async with`` writes what waits and closes the group commit."""
        write = GatedWrite()
        async with GroupCommit(write) as group:
            tasks = _submit(group, 0)
            await write.started()
            tasks += _submit(group, 1)
            await _settle()
            write.release_all()
        assert write.done == [[0], [1]]
        assert await _results(tasks) == [Ok(None)] * 2
        with pytest.raises(RuntimeError):
            await group.submit(2)

    async def test_group_commit_aclose_unused_is_harmless(self) -> None:
        """Closing a group commit nothing was submitted to returns at once."""
        group = GroupCommit(GatedWrite())
        await group.aclose()
        with pytest.raises(RuntimeError):
            await group.submit(0)

    async def test_group_commit_flush_waits_for_the_write_in_flight(self) -> None:
        """A flush returns only once items already taken by a write are committed."""
        write = GatedWrite()
        group = GroupCommit(write)
        tasks = _submit(group, 0)
        await write.started()
        flushing = asyncio.create_task(group.flush())
        await _settle()
        assert not flushing.done()
        write.release()
        async with asyncio.timeout(WAIT):
            await flushing
        assert write.done == [[0]]
        await _results(tasks)
        await group.aclose()

    async def test_group_commit_flush_waits_for_waiting_items_not_later_ones(self) -> None:
        """A flush covers every item submitted before it, and not one submitted after."""
        write = GatedWrite()
        group = GroupCommit(write, max_size=2)
        tasks = _submit(group, 0)
        await write.started()
        tasks += _submit(group, 1, 2)
        await _settle()
        flushing = asyncio.create_task(group.flush())
        await _settle()
        tasks += _submit(group, 3, 4)
        await _settle()
        write.release(0)
        assert await write.started() == [1, 2]
        await _settle()
        assert not flushing.done()
        write.release(1)
        assert await write.started() == [3, 4]
        async with asyncio.timeout(WAIT):
            await flushing  # while [3, 4], submitted after the flush, is still in flight
        assert write.done == [[0], [1, 2]]
        write.release_all()
        await _results(tasks)
        await group.aclose()

    async def test_group_commit_flush_writes_a_lingering_batch_at_once(self) -> None:
        """A flush does not wait out max_delay: what waits is written now."""
        write = GatedWrite(gated=False)
        group = GroupCommit(write, max_delay=LONG)
        tasks = _submit(group, 1, 2)
        await _settle()
        async with asyncio.timeout(WAIT):
            await group.flush()
        assert write.done == [[1, 2]]
        await _results(tasks)
        await group.aclose()

    async def test_group_commit_flush_with_nothing_submitted_returns(self) -> None:
        """A flush on an unused group commit returns at once."""
        group = GroupCommit(GatedWrite())
        async with asyncio.timeout(WAIT):
            await group.flush()
        await group.aclose()


class TestCancelledCallers:
    """A caller cancelled while it waits leaves its batch, and the group commit, working."""

    async def test_group_commit_caller_cancelled_while_waiting(self) -> None:
        """The batch is still written whole (its item too); the other callers get Ok."""
        write = GatedWrite(list)
        group = GroupCommit(write)
        tasks = _submit(group, 0)
        await write.started()
        tasks += _submit(group, 1, 2, 3)
        await _settle()
        tasks[2].cancel()
        write.release_all()
        async with asyncio.timeout(WAIT):
            done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[2], asyncio.CancelledError)
        assert [done[0], done[1], done[3]] == [Ok(0), Ok(1), Ok(3)]
        assert write.done == [[0], [1, 2, 3]]
        assert await _results(_submit(group, 4)) == [Ok(4)]
        await group.aclose()

    async def test_group_commit_caller_cancelled_during_its_write(self) -> None:
        """Cancelling a caller whose write is in flight answers the rest of the batch."""
        write = GatedWrite(list)
        group = GroupCommit(write)
        tasks = _submit(group, 0)
        await write.started()
        tasks += _submit(group, 1, 2)
        await _settle()
        write.release(0)
        assert await write.started() == [1, 2]
        tasks[1].cancel()
        write.release_all()
        async with asyncio.timeout(WAIT):
            done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[1], asyncio.CancelledError)
        assert [done[0], done[2]] == [Ok(0), Ok(2)]
        assert await _results(_submit(group, 3)) == [Ok(3)]
        await group.aclose()

    async def test_group_commit_flush_waits_for_a_cancelled_callers_item(self) -> None:
        """The item of a cancelled caller is still written, and flush waits for it."""
        write = GatedWrite()
        group = GroupCommit(write)
        tasks = _submit(group, 0)
        await write.started()
        tasks += _submit(group, 1)
        await _settle()
        tasks[1].cancel()
        flushing = asyncio.create_task(group.flush())
        await _settle()
        write.release(0)
        assert await write.started() == [1]
        await _settle()
        assert not flushing.done()
        write.release_all()
        async with asyncio.timeout(WAIT):
            await flushing
        assert write.done == [[0], [1]]
        await asyncio.gather(*tasks, return_exceptions=True)
        await group.aclose()


async def _run_random(
    count: int, max_size: int, concurrency: int, yields: list[int], arrivals: list[int]
) -> None:
    """Submit ``count`` items in bursts against a write that yields; check every answer."""
    written: list[int] = []
    batch_sizes: list[int] = []
    in_flight = 0
    most_in_flight = 0
    step = 0

    async def write(batch: list[int]) -> list[Any]:
        nonlocal in_flight, most_in_flight, step
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        batch_sizes.append(len(batch))
        step += 1
        for _ in range(yields[step % len(yields)]):
            await asyncio.sleep(0)
        written.extend(batch)
        in_flight -= 1
        # Every seventh item is refused on its own; the caller must get that very Error.
        return [Error(KeyError(item)) if item % 7 == 6 else item * 3 for item in batch]

    async with GroupCommit(write, max_size=max_size, concurrency=concurrency) as group:
        tasks: list[asyncio.Task[Result]] = []
        for index in range(count):
            tasks.append(asyncio.create_task(group.submit(index)))
            for _ in range(arrivals[index % len(arrivals)]):
                await asyncio.sleep(0)
        async with asyncio.timeout(WAIT):
            results = await asyncio.gather(*tasks)
    assert sorted(written) == list(range(count))  # each item written exactly once
    for index, result in enumerate(results):
        if index % 7 == 6:
            assert isinstance(result, Error)
            assert result.exception.args == (index,)
        else:
            assert result == Ok(index * 3)
    assert max(batch_sizes) <= max_size
    assert most_in_flight <= concurrency


@settings(deadline=None, max_examples=200)
@given(
    count=st.integers(min_value=1, max_value=120),
    max_size=st.integers(min_value=1, max_value=40),
    concurrency=st.integers(min_value=1, max_value=4),
    yields=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=8),
    arrivals=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=8),
)
def test_group_commit_every_item_written_once_and_answered(
    count: int, max_size: int, concurrency: int, yields: list[int], arrivals: list[int]
) -> None:
    """Any sizes, concurrency and interleaving: each item written once, each caller its value."""
    asyncio.run(_run_random(count, max_size, concurrency, yields, arrivals))
