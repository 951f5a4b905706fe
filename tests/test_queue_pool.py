"""The collector queue's consumer pool: how it grows, shrinks and idles, and back-pressure."""

from __future__ import annotations

import asyncio
import time
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
)

TIMEOUT = 2.0  # bound on every wait; generous, since nothing here should take long


async def echo(payload: Payload[Any], ctx: Context) -> Result:
    """Return the payload's value."""
    return Ok(payload.value)


async def wait_for_consumers(queue: CollectorQueue, count: int) -> None:
    """Return once only ``count`` consumers run (awaiting their exits, not polling)."""
    pending = set(queue._pool.consumers)
    async with asyncio.timeout(TIMEOUT):
        while len(pending) > count:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    assert queue.consumers == count


class Blocker:
    """A processor that counts entries and holds every call until released."""

    def __init__(self, expected: int) -> None:
        """Signal ``all_in`` once ``expected`` calls have entered."""
        self.expected = expected
        self.entered = 0
        self.all_in = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, payload: Payload[Any], ctx: Context) -> Result:
        """Enter, then wait for release."""
        self.entered += 1
        if self.entered >= self.expected:
            self.all_in.set()
        await self.release.wait()
        return Ok(payload.value)


class TestPool:
    """Sizing of the consumer pool."""

    async def test_pool_starts_min_consumers(self) -> None:
        """init_queue() starts exactly min_consumers consumers."""
        queue = CollectorQueue([Collector("c", echo)], min_consumers=3, max_consumers=10)
        assert queue.consumers == 0
        async with queue:
            assert queue.consumers == 3
        assert queue.consumers == 0

    async def test_pool_grows_to_run_blocked_processors_at_once(self) -> None:
        """50 blocked processors with max_consumers=64 all run at the same time."""
        blocker = Blocker(50)
        queue = CollectorQueue([Collector("c", blocker)], min_consumers=1, max_consumers=64)
        async with queue:
            publisher = queue.get_publisher()
            events = [await publisher.send(Payload(i)) for i in range(50)]
            await asyncio.wait_for(blocker.all_in.wait(), 1.0)
            assert blocker.entered == 50
            assert queue.consumers == 50
            assert queue.busy == 50
            blocker.release.set()
            results = await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), TIMEOUT)
        assert [r.first() for r in results] == [Ok(i) for i in range(50)]

    async def test_pool_never_exceeds_max_consumers(self) -> None:
        """With more blocked payloads than max_consumers, only max_consumers run."""
        blocker = Blocker(4)
        queue = CollectorQueue([Collector("c", blocker)], min_consumers=1, max_consumers=4)
        async with queue:
            publisher = queue.get_publisher()
            events = [await publisher.send(Payload(i)) for i in range(10)]
            await asyncio.wait_for(blocker.all_in.wait(), TIMEOUT)
            for _ in range(5):  # give any extra consumer the chance to start
                await asyncio.sleep(0)
            assert queue.consumers == 4
            assert blocker.entered == 4
            assert queue.qsize() == 6
            blocker.release.set()
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), TIMEOUT)
        assert blocker.entered == 10

    async def test_pool_shrinks_to_min_after_idle_timeout(self) -> None:
        """Consumers above min_consumers stop once idle for idle_timeout seconds."""
        blocker = Blocker(10)
        queue = CollectorQueue(
            [Collector("c", blocker)], min_consumers=2, max_consumers=10, idle_timeout=0.05
        )
        async with queue:
            publisher = queue.get_publisher()
            events = [await publisher.send(Payload(i)) for i in range(10)]
            await asyncio.wait_for(blocker.all_in.wait(), TIMEOUT)
            assert queue.consumers == 10
            blocker.release.set()
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), TIMEOUT)
            await wait_for_consumers(queue, 2)
            # ... and stays there: the remaining consumers do not expire.
            await asyncio.sleep(0.15)
            assert queue.consumers == 2
            # The shrunken pool still works.
            event = await publisher.send(Payload("after"))
            assert (await event.wait(timeout=TIMEOUT)).first() == Ok("after")

    async def test_pool_grows_again_after_shrinking(self) -> None:
        """After shrinking, the pool grows again when blocked work arrives."""
        first = Blocker(5)
        queue = CollectorQueue(
            [Collector("c", first)], min_consumers=1, max_consumers=5, idle_timeout=0.05
        )
        async with queue:
            publisher = queue.get_publisher()
            events = [await publisher.send(Payload(i)) for i in range(5)]
            await asyncio.wait_for(first.all_in.wait(), TIMEOUT)
            first.release.set()
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), TIMEOUT)
            await wait_for_consumers(queue, 1)
            first.release.clear()
            first.entered, first.all_in = 0, asyncio.Event()
            events = [await publisher.send(Payload(i)) for i in range(5)]
            await asyncio.wait_for(first.all_in.wait(), TIMEOUT)
            assert queue.consumers == 5
            first.release.set()
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), TIMEOUT)

    async def test_pool_idle_uses_no_cpu(self) -> None:
        """An idle queue of 10 consumers burns (almost) no CPU: nothing polls."""
        async with CollectorQueue(
            [Collector("c", echo)], min_consumers=10, max_consumers=20, idle_timeout=0.01
        ) as queue:
            assert queue.consumers == 10
            start = time.process_time()
            await asyncio.sleep(0.3)  # the measurement window itself
            used = time.process_time() - start
            assert queue.consumers == 10
        assert used < 0.05, f"idle queue used {used:.3f}s of CPU in 0.3s"

    async def test_pool_min_zero_starts_consumer_on_demand(self) -> None:
        """With min_consumers=0 nothing runs until a payload arrives, which is still processed."""
        queue = CollectorQueue(
            [Collector("c", echo)], min_consumers=0, max_consumers=2, idle_timeout=0.05
        )
        async with queue:
            assert queue.consumers == 0
            event = await queue.get_publisher().send(Payload("x"))
            assert (await event.wait(timeout=TIMEOUT)).first() == Ok("x")
            await wait_for_consumers(queue, 0)

    async def test_pool_long_run_of_instant_payloads_lets_other_tasks_run(self) -> None:
        """A consumer working through many queued payloads that never suspend still yields."""
        processed = 0
        count = 1000

        async def instant(payload: Payload[Any], ctx: Context) -> Result:
            nonlocal processed
            processed += 1
            return Ok(None)

        seen: list[int] = []

        async def other_task() -> None:
            seen.append(processed)

        queue = CollectorQueue([Collector("c", instant)], min_consumers=1, max_consumers=1)
        async with queue:
            publisher = queue.get_publisher()
            events = [await publisher.send(Payload(i)) for i in range(count)]
            # The consumer runs first (it was woken by the first send); the other task
            # gets its turn when the consumer yields, which must be long before the end.
            await asyncio.wait_for(asyncio.create_task(other_task()), TIMEOUT)
            await asyncio.wait_for(events[-1].wait(), TIMEOUT)
        assert len(seen) == 1
        assert 0 < seen[0] < count
        assert processed == count

    async def test_pool_qsize_counts_fanned_out_deliveries(self) -> None:
        """qsize() counts queued payloads and the deliveries of a fan-out still waiting."""
        blocker = Blocker(1)
        collectors = [Collector(key, blocker, topics=["t"]) for key in "abc"]
        queue = CollectorQueue(collectors, min_consumers=1, max_consumers=1)
        await queue.init_queue()
        try:
            publisher = queue.get_publisher()
            fanned = await publisher.send(Payload(1, delivery=Delivery.TOPIC, topics=["t"]))
            await asyncio.wait_for(blocker.all_in.wait(), TIMEOUT)
            assert queue.qsize() == 2  # deliveries to "b" and "c" wait for a consumer
            queued = await publisher.send(Payload(2, delivery=Delivery.TOPIC, topics=["t"]))
            assert queue.qsize() == 3
            blocker.release.set()
            for event in (fanned, queued):
                assert len(await event.wait(timeout=TIMEOUT)) == 3
            assert queue.qsize() == 0
        finally:
            blocker.release.set()
            await asyncio.wait_for(queue.shut_down_queue(timeout=TIMEOUT), TIMEOUT * 2)


class TestBackPressure:
    """A bounded queue makes senders wait."""

    async def test_back_pressure_send_waits_while_full(self) -> None:
        """With maxsize=N, the send after N queued payloads waits until a consumer takes one."""
        blocker = Blocker(1)
        queue = CollectorQueue(
            [Collector("c", blocker)], min_consumers=1, max_consumers=1, maxsize=3
        )
        async with queue:
            publisher = queue.get_publisher()
            running = await publisher.send(Payload("running"))
            await asyncio.wait_for(blocker.all_in.wait(), TIMEOUT)
            queued = [await publisher.send(Payload(i)) for i in range(3)]
            assert queue.qsize() == 3
            extra = asyncio.create_task(publisher.send(Payload("extra")))
            for _ in range(10):
                await asyncio.sleep(0)
            assert not extra.done()
            blocker.release.set()
            extra_event = await asyncio.wait_for(extra, TIMEOUT)
            values = [
                (await e.wait(timeout=TIMEOUT)).first() for e in [running, *queued, extra_event]
            ]
            assert values == [Ok("running"), Ok(0), Ok(1), Ok(2), Ok("extra")]

    async def test_back_pressure_send_times_out_when_full(self) -> None:
        """A send on a full queue does not complete within a short wait_for."""
        blocker = Blocker(1)
        queue = CollectorQueue(
            [Collector("c", blocker)], min_consumers=1, max_consumers=1, maxsize=1
        )
        async with queue:
            publisher = queue.get_publisher()
            await publisher.send(Payload("running"))
            await asyncio.wait_for(blocker.all_in.wait(), TIMEOUT)
            queued = await publisher.send(Payload("queued"))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(publisher.send(Payload("extra")), 0.02)
            blocker.release.set()
            assert (await queued.wait(timeout=TIMEOUT)).first() == Ok("queued")
        # The abandoned send left nothing behind that holds up shutdown (async with above).
        assert queue.state == "shut down"

    async def test_back_pressure_cancelled_sender_hands_its_room_on(self) -> None:
        """A sender cancelled just as it is given room passes it to the next waiting sender."""
        blocker = Blocker(1)
        first_sender: asyncio.Task[CollectorEvent] | None = None

        async def process(payload: Payload[Any], ctx: Context) -> Result:
            if payload.value == "running":
                return await blocker(payload, ctx)
            if payload.value == "queued":
                # Taking "queued" made room and woke the first sender, which has not run
                # yet: cancel it now, in the same loop turn.
                assert first_sender is not None
                first_sender.cancel()
            return Ok(payload.value)

        queue = CollectorQueue(
            [Collector("c", process)], min_consumers=1, max_consumers=1, maxsize=1
        )
        await queue.init_queue()
        try:
            publisher = queue.get_publisher()
            await publisher.send(Payload("running"))
            await asyncio.wait_for(blocker.all_in.wait(), TIMEOUT)
            await publisher.send(Payload("queued"))
            first_sender = asyncio.create_task(publisher.send(Payload("cancelled")))
            second_sender = asyncio.create_task(publisher.send(Payload("second")))
            for _ in range(3):
                await asyncio.sleep(0)  # both senders wait for room
            assert len(queue._pool.putters) == 2
            blocker.release.set()
            second = await asyncio.wait_for(second_sender, TIMEOUT)
            assert (await second.wait(timeout=TIMEOUT)).first() == Ok("second")
            assert first_sender.cancelled()
            assert queue.qsize() == 0
        finally:
            blocker.release.set()
            # Bounded, so a failure above cannot leave shutdown waiting on a stuck sender.
            await asyncio.wait_for(queue.shut_down_queue(timeout=TIMEOUT), TIMEOUT * 2)


async def test_pool_payload_sent_as_last_consumer_expires_is_processed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A payload sent in the loop turn the last idle consumer expires in is still processed."""
    from mqtt_collector._core import pool as _pool  # noqa: PLC0415 - patched below, so imported by name

    queue = CollectorQueue(
        [Collector("c", echo)], min_consumers=0, max_consumers=1, idle_timeout=0.01
    )
    sent: list[Any] = []
    expire = _pool._expire

    def expire_then_send(getter: asyncio.Future[object]) -> None:
        expire(getter)
        if not sent:
            # A sender that runs after the timer but before the consumer resumes, as when
            # socket data and the expiry are handled in the same turn of the loop. send()
            # on an unbounded queue never suspends, so it is driven to completion here.
            coro = queue.get_publisher().send(Payload("late"))
            try:
                coro.send(None)
            except StopIteration as stop:
                sent.append(stop.value)

    monkeypatch.setattr(_pool, "_expire", expire_then_send)
    await queue.init_queue()
    try:
        first = await queue.get_publisher().send(Payload("first"))
        assert (await first.wait(timeout=TIMEOUT)).first() == Ok("first")
        await wait_for_consumers(queue, 0)
        assert len(sent) == 1
        assert (await sent[0].wait(timeout=TIMEOUT)).first() == Ok("late")
    finally:
        await asyncio.wait_for(queue.shut_down_queue(timeout=TIMEOUT), TIMEOUT * 2)
