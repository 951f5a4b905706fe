"""Starting and stopping a collector queue: draining, lifecycles and abandoned work."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from mqtt_collector import (
    Collector,
    CollectorEvent,
    CollectorQueue,
    Context,
    Delivery,
    Error,
    LifecycleError,
    LifecycleManager,
    Ok,
    Payload,
    QueueError,
    QueueShutDownError,
    QueueType,
    Result,
)

TIMEOUT = 2.0  # bound on every wait; generous, since nothing here should take long


async def echo(payload: Payload[Any], ctx: Context) -> Result:
    """Return the payload's value."""
    return Ok(payload.value)


def firsts(events: list[CollectorEvent]) -> list[Result | None]:
    """The first result of each event, None for an event not done (without waiting)."""
    return [None if (r := e.get_result()) is None else r.first() for e in events]


class Gate:
    """A processor that holds the payload "block" until released; others pass straight on."""

    def __init__(self) -> None:
        """Start closed."""
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.processed: list[Any] = []

    async def __call__(self, payload: Payload[Any], ctx: Context) -> Result:
        """Hold "block" until released; record every value processed."""
        if payload.value == "block":
            self.started.set()
            await self.release.wait()
        self.processed.append(payload.value)
        return Ok(payload.value)


def recording_lifecycle(
    log: list[str], key: str, *, fail_setup: bool = False, fail_teardown: bool = False
) -> LifecycleManager:
    """A lifecycle that logs "enter key" / "exit key", failing setup or teardown if asked."""

    @asynccontextmanager
    async def lifecycle(ctx: Context) -> AsyncIterator[None]:
        if fail_setup:
            log.append(f"fail {key}")
            raise RuntimeError(f"setup of {key} failed")
        log.append(f"enter {key}")
        ctx.entered = True
        yield
        log.append(f"exit {key}")
        if fail_teardown:
            raise RuntimeError(f"teardown of {key} failed")

    return lifecycle


class TestDrain:
    """shut_down_queue() without a timeout processes everything queued."""

    @pytest.mark.parametrize("queue_type", list(QueueType))
    async def test_shutdown_processes_every_queued_payload(self, queue_type: QueueType) -> None:
        """Every payload queued when shutdown starts is processed, for every queue type."""
        gate = Gate()
        queue = CollectorQueue(
            [Collector("c", gate)], min_consumers=1, max_consumers=1, queue_type=queue_type
        )
        await queue.init_queue()
        publisher = queue.get_publisher()
        events = [await publisher.send(Payload("block"))]
        await asyncio.wait_for(gate.started.wait(), TIMEOUT)
        events += [await publisher.send(Payload(i, priority=i % 3)) for i in range(20)]
        shutdown = asyncio.create_task(queue.shut_down_queue())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not shutdown.done()
        assert queue.state == "shutting down"
        gate.release.set()
        await asyncio.wait_for(shutdown, TIMEOUT)
        assert sorted(gate.processed, key=str) == sorted(["block", *range(20)], key=str)
        assert firsts(events) == [Ok(event.payload.value) for event in events]
        assert queue.consumers == 0

    async def test_shutdown_processes_sender_blocked_on_full_queue(self) -> None:
        """A sender waiting on a full queue when shutdown starts gets its payload processed."""
        gate = Gate()
        queue = CollectorQueue([Collector("c", gate)], min_consumers=1, max_consumers=1, maxsize=1)
        await queue.init_queue()
        publisher = queue.get_publisher()
        await publisher.send(Payload("block"))
        await asyncio.wait_for(gate.started.wait(), TIMEOUT)
        await publisher.send(Payload("queued"))
        blocked = asyncio.create_task(publisher.send(Payload("blocked")))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not blocked.done()
        shutdown = asyncio.create_task(queue.shut_down_queue())
        await asyncio.sleep(0)
        gate.release.set()
        await asyncio.wait_for(shutdown, TIMEOUT)
        event = await asyncio.wait_for(blocked, TIMEOUT)
        assert (await event.wait(timeout=TIMEOUT)).first() == Ok("blocked")
        assert gate.processed == ["block", "queued", "blocked"]

    async def test_shutdown_twice_and_before_init_is_harmless(self) -> None:
        """shut_down_queue() again, or on a queue never started, does nothing."""
        queue = CollectorQueue([Collector("c", echo)])
        await asyncio.wait_for(queue.shut_down_queue(), TIMEOUT)
        assert queue.state == "shut down"
        started = CollectorQueue([Collector("c", echo)])
        await started.init_queue()
        await asyncio.wait_for(started.shut_down_queue(), TIMEOUT)
        await asyncio.wait_for(started.shut_down_queue(), TIMEOUT)
        assert started.state == "shut down"


class TestTimeout:
    """shut_down_queue(timeout=...) gives up on work that does not finish, resolving every event."""

    async def test_shutdown_timeout_resolves_hung_and_queued_events(self) -> None:
        """A hung processor's event gets an Error; queued ones get Error(QueueShutDownError)."""
        gate = Gate()  # never released: the processor hangs
        queue = CollectorQueue([Collector("c", gate)], min_consumers=1, max_consumers=1)
        await queue.init_queue()
        publisher = queue.get_publisher()
        hung = await publisher.send(Payload("block"))
        await asyncio.wait_for(gate.started.wait(), TIMEOUT)
        queued = [await publisher.send(Payload(i)) for i in range(3)]
        await asyncio.wait_for(queue.shut_down_queue(timeout=0.1), TIMEOUT)
        hung_result = (await hung.wait(timeout=TIMEOUT)).first()
        assert isinstance(hung_result, Error)
        assert isinstance(hung_result.exception, asyncio.CancelledError)
        for event in queued:
            result = (await event.wait(timeout=TIMEOUT)).first()
            assert isinstance(result, Error)
            assert isinstance(result.exception, QueueShutDownError)
            assert "shut down" in str(result.exception)
        assert queue.consumers == 0

    @pytest.mark.parametrize("max_consumers", [1, 2])
    async def test_shutdown_timeout_resolves_fanned_out_event(self, max_consumers: int) -> None:
        """A payload for two collectors, one hung, resolves with an Error for the hung one."""
        gate = Gate()  # never released: the "hung" collector's processor hangs
        collectors = [Collector("hung", gate, topics=["t"]), Collector("fast", echo, topics=["t"])]
        queue = CollectorQueue(collectors, min_consumers=1, max_consumers=max_consumers)
        await queue.init_queue()
        event = await queue.get_publisher().send(
            Payload("block", delivery=Delivery.TOPIC, topics=["t"])
        )
        await asyncio.wait_for(gate.started.wait(), TIMEOUT)
        await asyncio.wait_for(queue.shut_down_queue(timeout=0.05), TIMEOUT)
        assert event.done()
        results = event.get_result()
        assert results is not None
        hung, fast = results
        assert isinstance(hung, Error)
        assert isinstance(hung.exception, asyncio.CancelledError)
        if max_consumers == 1:  # the second delivery never ran
            assert isinstance(fast, Error)
            assert isinstance(fast.exception, QueueShutDownError)
        else:
            assert fast == Ok("block")
        assert queue.consumers == 0

    async def test_shutdown_timeout_fails_sender_blocked_on_full_queue(self) -> None:
        """A sender still waiting for room when a timed-out shutdown ends gets an error."""
        gate = Gate()
        queue = CollectorQueue([Collector("c", gate)], min_consumers=1, max_consumers=1, maxsize=1)
        await queue.init_queue()
        publisher = queue.get_publisher()
        await publisher.send(Payload("block"))
        await asyncio.wait_for(gate.started.wait(), TIMEOUT)
        await publisher.send(Payload("queued"))
        blocked = asyncio.create_task(publisher.send(Payload("blocked")))
        await asyncio.sleep(0)
        await asyncio.wait_for(queue.shut_down_queue(timeout=0.05), TIMEOUT)
        with pytest.raises(QueueShutDownError):
            await asyncio.wait_for(blocked, TIMEOUT)

    async def test_shutdown_timeout_leaves_fast_work_done(self) -> None:
        """Work that finishes within the timeout gets its real results."""
        queue = CollectorQueue([Collector("c", echo)])
        await queue.init_queue()
        events = [await queue.get_publisher().send(Payload(i)) for i in range(10)]
        await asyncio.wait_for(queue.shut_down_queue(timeout=1.0), TIMEOUT)
        assert firsts(events) == [Ok(i) for i in range(10)]

    async def test_shutdown_timeout_does_not_wait_for_processor_ignoring_cancel(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A processor that swallows its cancellation does not hold shutdown up."""
        release = asyncio.Event()
        started = asyncio.Event()

        async def stubborn(payload: Payload[Any], ctx: Context) -> Result:
            started.set()
            while not release.is_set():
                try:
                    await release.wait()
                except asyncio.CancelledError:
                    continue  # the misbehaviour under test
            return Ok(None)

        queue = CollectorQueue([Collector("c", stubborn)], min_consumers=1, max_consumers=1)
        await queue.init_queue()
        event = await queue.get_publisher().send(Payload("x"))
        await asyncio.wait_for(started.wait(), TIMEOUT)
        with caplog.at_level(logging.WARNING, logger="mqtt_collector.queue"):
            await asyncio.wait_for(queue.shut_down_queue(timeout=0.05), TIMEOUT + 1.5)
        assert "ignored cancellation" in caplog.text
        release.set()
        result = (await event.wait(timeout=TIMEOUT)).first()
        assert result == Ok(None)


class TestAbandoned:
    """event.abandoned says the shutdown gave up on a payload, and nothing else."""

    async def test_abandoned_marks_work_cut_off_by_the_drain_timeout(self) -> None:
        """The hung payload and the queued ones are abandoned; the finished one is not."""
        gate = Gate()  # never released: the processor hangs
        queue = CollectorQueue([Collector("c", gate)], min_consumers=1, max_consumers=1)
        await queue.init_queue()
        publisher = queue.get_publisher()
        done = await publisher.send(Payload("done"))
        hung = await publisher.send(Payload("block"))
        await asyncio.wait_for(gate.started.wait(), TIMEOUT)
        queued = await publisher.send(Payload("queued"))
        await asyncio.wait_for(queue.shut_down_queue(timeout=0.05), TIMEOUT)
        assert firsts([done]) == [Ok("done")]
        assert [done.abandoned, hung.abandoned, queued.abandoned] == [False, True, True]

    @pytest.mark.parametrize("max_consumers", [1, 2])
    async def test_abandoned_marks_fanned_out_payload_cut_off(self, max_consumers: int) -> None:
        """A payload for two collectors, one of them cut off, is abandoned."""
        gate = Gate()
        collectors = [Collector("hung", gate, topics=["t"]), Collector("fast", echo, topics=["t"])]
        queue = CollectorQueue(collectors, min_consumers=1, max_consumers=max_consumers)
        await queue.init_queue()
        event = await queue.get_publisher().send(
            Payload("block", delivery=Delivery.TOPIC, topics=["t"])
        )
        await asyncio.wait_for(gate.started.wait(), TIMEOUT)
        await asyncio.wait_for(queue.shut_down_queue(timeout=0.05), TIMEOUT)
        assert event.done()
        assert event.abandoned

    async def test_abandoned_not_set_by_a_processors_own_cancellederror_in_the_drain(
        self,
    ) -> None:
        """A CancelledError a processor raises itself while the queue drains is its failure."""
        gate = Gate()

        async def cancels(payload: Payload[Any], ctx: Context) -> Result:
            await gate(payload, ctx)
            raise asyncio.CancelledError

        queue = CollectorQueue([Collector("c", cancels)], min_consumers=1, max_consumers=1)
        await queue.init_queue()
        event = await queue.get_publisher().send(Payload("block"))
        await asyncio.wait_for(gate.started.wait(), TIMEOUT)
        shutdown = asyncio.create_task(queue.shut_down_queue(timeout=TIMEOUT))
        await asyncio.sleep(0)
        assert not queue.running
        gate.release.set()
        await asyncio.wait_for(shutdown, TIMEOUT + 1)
        result = (await event.wait(timeout=TIMEOUT)).first()
        assert isinstance(result, Error)
        assert isinstance(result.exception, asyncio.CancelledError)
        assert not event.abandoned


class TestSendWhenNotRunning:
    """send() refuses payloads outside init..shutdown."""

    async def test_send_after_shutdown_raises(self) -> None:
        """send() after shut_down_queue() raises QueueShutDownError saying it is shut down."""
        queue = CollectorQueue([Collector("c", echo)])
        async with queue:
            publisher = queue.get_publisher()
        with pytest.raises(
            QueueShutDownError, match=r"cannot send: the collector queue is shut down"
        ):
            await publisher.send(Payload(1))

    async def test_send_before_init_raises(self) -> None:
        """send() before init_queue() raises QueueShutDownError saying the queue is not started."""
        queue = CollectorQueue([Collector("c", echo)])
        with pytest.raises(
            QueueShutDownError, match=r"cannot send: the collector queue is not started"
        ):
            await queue.get_publisher().send(Payload(1))

    async def test_send_during_shutdown_raises(self) -> None:
        """send() while the queue drains raises QueueShutDownError."""
        gate = Gate()
        queue = CollectorQueue([Collector("c", gate)], min_consumers=1, max_consumers=1)
        await queue.init_queue()
        publisher = queue.get_publisher()
        await publisher.send(Payload("block"))
        await asyncio.wait_for(gate.started.wait(), TIMEOUT)
        shutdown = asyncio.create_task(queue.shut_down_queue())
        await asyncio.sleep(0)
        with pytest.raises(QueueShutDownError, match=r"shutting down"):
            await publisher.send(Payload(1))
        gate.release.set()
        await asyncio.wait_for(shutdown, TIMEOUT)


class TestLifecycle:
    """Collectors' lifecycles: entered in order at init, exited in reverse at shutdown."""

    async def test_lifecycle_entered_in_order_exited_in_reverse(self) -> None:
        """Setups run in collector order; teardowns in reverse order, after the queue drained."""
        log: list[str] = []

        async def process(payload: Payload[Any], ctx: Context) -> Result:
            log.append(f"process {payload.value}")
            return Ok(None)

        collectors = [
            Collector(key, process, lifecycle=recording_lifecycle(log, key)) for key in "abc"
        ]
        queue = CollectorQueue(collectors)
        await asyncio.wait_for(queue.init_queue(), TIMEOUT)
        assert all(c.ctx.entered for c in collectors)
        await queue.get_publisher().send(Payload("x"))
        await asyncio.wait_for(queue.shut_down_queue(), TIMEOUT)
        assert log[:3] == ["enter a", "enter b", "enter c"]
        assert sorted(log[3:6]) == ["process x"] * 3
        assert log[6:] == ["exit c", "exit b", "exit a"]

    async def test_lifecycle_failing_setup_unwinds_entered(self) -> None:
        """A setup that raises exits those entered (in reverse) and raises LifecycleError."""
        log: list[str] = []
        collectors = [
            Collector("a", echo, lifecycle=recording_lifecycle(log, "a")),
            Collector("b", echo, lifecycle=recording_lifecycle(log, "b")),
            Collector("c", echo, lifecycle=recording_lifecycle(log, "c", fail_setup=True)),
            Collector("d", echo, lifecycle=recording_lifecycle(log, "d")),
        ]
        queue = CollectorQueue(collectors)
        with pytest.raises(LifecycleError, match=r"collector 'c': lifecycle setup failed") as info:
            await asyncio.wait_for(queue.init_queue(), TIMEOUT)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert str(info.value.__cause__) == "setup of c failed"
        assert info.value.key == "c"
        assert log == ["enter a", "enter b", "fail c", "exit b", "exit a"]
        assert queue.consumers == 0
        with pytest.raises(QueueShutDownError):
            await queue.get_publisher().send(Payload(1))

    async def test_lifecycle_failing_teardown_logged_others_run(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A teardown that raises is logged on mqtt_collector.queue; the other teardowns run."""
        log: list[str] = []
        collectors = [
            Collector("a", echo, lifecycle=recording_lifecycle(log, "a")),
            Collector("b", echo, lifecycle=recording_lifecycle(log, "b", fail_teardown=True)),
            Collector("c", echo, lifecycle=recording_lifecycle(log, "c")),
        ]
        queue = CollectorQueue(collectors)
        await asyncio.wait_for(queue.init_queue(), TIMEOUT)
        with caplog.at_level(logging.ERROR, logger="mqtt_collector.queue"):
            await asyncio.wait_for(queue.shut_down_queue(), TIMEOUT)
        assert log == ["enter a", "enter b", "enter c", "exit c", "exit b", "exit a"]
        failures = [r for r in caplog.records if r.name == "mqtt_collector.queue"]
        assert len(failures) == 1
        assert "'b'" in failures[0].getMessage()
        assert "teardown failed" in failures[0].getMessage()
        assert failures[0].exc_info is not None
        assert isinstance(failures[0].exc_info[1], RuntimeError)

    async def test_lifecycle_init_twice_raises(self) -> None:
        """init_queue() on a queue already started raises QueueError."""
        queue = CollectorQueue([Collector("c", echo)])
        async with queue:
            with pytest.raises(
                QueueError, match=r"init_queue\(\) on a collector queue that is running"
            ):
                await queue.init_queue()
