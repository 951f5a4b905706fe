"""CollectorEvent: waiters cancelled as the event resolves, and done callbacks on every path."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mqtt_collector import (
    Collector,
    CollectorEvent,
    CollectorQueue,
    Context,
    Delivery,
    Ok,
    Payload,
    Result,
    ResultList,
)

TIMEOUT = 2.0  # bound on every wait; generous, since nothing here should take long


async def wait_on(event: CollectorEvent, timeout: float | None, entered: asyncio.Event) -> Any:
    """Signal ``entered``, then wait on ``event`` (suspended in wait() once ``entered`` is seen)."""
    entered.set()
    return await event.wait(timeout=timeout)


class TestWaitCancelled:
    """A waiter cancelled in the loop turn its event resolves in still sees CancelledError."""

    @pytest.mark.parametrize("timeout", [None, TIMEOUT], ids=["no-timeout", "timeout"])
    @pytest.mark.parametrize("order", ["cancel-then-resolve", "resolve-then-cancel"])
    async def test_wait_cancelled_as_event_resolves_raises_cancelled_error(
        self, timeout: float | None, order: str
    ) -> None:
        """wait() raises CancelledError, not AttributeError or a normal return, either order."""
        started = asyncio.Event()
        release = asyncio.Event()
        entered = asyncio.Event()
        waiter_task: asyncio.Task[Any] | None = None

        async def gated(payload: Payload[Any], ctx: Context) -> Result:
            started.set()
            await release.wait()
            if order == "cancel-then-resolve":
                assert waiter_task is not None
                waiter_task.cancel()  # the consumer resolves the event before anything else runs
            return Ok("done")

        async with CollectorQueue([Collector("c", gated)]) as queue:
            event = await queue.get_publisher().send(Payload(1))
            waiter_task = asyncio.create_task(wait_on(event, timeout, entered))
            async with asyncio.timeout(TIMEOUT):
                await started.wait()
                await entered.wait()
            assert not waiter_task.done()
            if order == "resolve-then-cancel":
                # Callbacks run right after the waiters are woken, in the same loop turn.
                event.add_done_callback(lambda _: waiter_task.cancel())
            release.set()
            done, _ = await asyncio.wait([waiter_task], timeout=TIMEOUT)
            assert waiter_task in done
            assert waiter_task.cancelled(), (
                f"wait() ended with {waiter_task.exception() or waiter_task.result()!r}"
            )
            assert await event.wait(timeout=TIMEOUT) == ResultList([Ok("done")])

    async def test_wait_timeout_then_resolve_forgets_the_waiter(self) -> None:
        """A timed-out wait() leaves no waiter behind; a later wait() gets the result."""
        release = asyncio.Event()

        async def gated(payload: Payload[Any], ctx: Context) -> Result:
            await release.wait()
            return Ok("late")

        async with CollectorQueue([Collector("c", gated)]) as queue:
            event = await queue.get_publisher().send(Payload(1))
            with pytest.raises(TimeoutError):
                await event.wait(timeout=0.01)
            with pytest.raises(TimeoutError):
                await event.wait(timeout=0)
            assert not event._waiters  # no waiter left behind
            release.set()
            assert await event.wait(timeout=TIMEOUT) == ResultList([Ok("late")])


class TestDoneCallbacks:
    """The daemon acks through done callbacks, so they run however the event resolves."""

    async def test_done_callback_runs_for_fanned_out_payload(self) -> None:
        """A callback added while a payload for two collectors runs is called once both finish."""
        release = asyncio.Event()
        called = asyncio.Event()
        seen: list[CollectorEvent] = []

        async def slow(payload: Payload[Any], ctx: Context) -> Result:
            await release.wait()
            return Ok("slow")

        async def fast(payload: Payload[Any], ctx: Context) -> Result:
            return Ok("fast")

        def on_done(event: CollectorEvent) -> None:
            seen.append(event)
            called.set()

        collectors = [Collector("a", slow, topics=["t"]), Collector("b", fast, topics=["t"])]
        async with CollectorQueue(collectors, max_consumers=2) as queue:
            event = await queue.get_publisher().send(
                Payload(1, delivery=Delivery.TOPIC, topics=["t"])
            )
            event.add_done_callback(on_done)
            assert not event.done()
            release.set()
            await asyncio.wait_for(called.wait(), TIMEOUT)
        assert seen == [event]
        assert event.get_result() == ResultList([Ok("slow"), Ok("fast")])

    async def test_done_callback_runs_for_payload_with_no_target(self) -> None:
        """A callback added to a payload no collector listens to is called when it is handled."""
        called = asyncio.Event()
        seen: list[CollectorEvent] = []

        def on_done(event: CollectorEvent) -> None:
            seen.append(event)
            called.set()

        async def echo(payload: Payload[Any], ctx: Context) -> Result:
            return Ok(payload.value)

        async with CollectorQueue([Collector("c", echo, topics=["t"])]) as queue:
            payload = Payload(1, delivery=Delivery.TOPIC, topics=["nowhere"])
            event = await queue.get_publisher().send(payload)
            event.add_done_callback(on_done)
            assert not event.done()
            await asyncio.wait_for(called.wait(), TIMEOUT)
        assert seen == [event]
        assert event.get_result() == ResultList()
