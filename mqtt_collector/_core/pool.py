"""The consumer pool behind a CollectorQueue: waiting payloads, and the tasks that run them."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from mqtt_collector._core.collector import Collector
from mqtt_collector._core.payload import Delivery
from mqtt_collector._core.result import Error, Ok, Result, ResultList
from mqtt_collector._core.router import Router, SimpleRouter

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from mqtt_collector._core.buffer import Buffer
    from mqtt_collector._core.event import CollectorEvent
    from mqtt_collector._core.payload import Payload

__all__ = ["Pool"]

logger = logging.getLogger("mqtt_collector.queue")

# How many deliveries a consumer runs back to back before letting other tasks run, so a
# stream of processors that never suspend cannot starve the task feeding the queue.
_YIELD_EVERY = 64
# Seconds cancelled consumers get to finish before shutdown goes on without them.
_CANCEL_GRACE = 1.0
_WOKEN, _EXPIRED, _STOP = object(), object(), object()
_TOPIC, _BROADCAST = Delivery.TOPIC, Delivery.BROADCAST
_PLAIN_RUN = Collector.run  # a collector whose run is this one is run inline


class _Fanout:
    """One payload on its way to several collectors; resolves its event when all are done."""

    __slots__ = ("event", "remaining", "results")

    def __init__(self, event: CollectorEvent, count: int) -> None:
        self.event = event
        self.remaining = count
        self.results: list[Result] = [_PENDING] * count

    def abandon(self, index: int, exc: BaseException) -> None:
        """Record that the shutdown gave up on delivery ``index``."""
        self.event.abandoned = True
        self.record(index, Error(exc))

    def record(self, index: int, result: Result) -> None:
        self.results[index] = result
        self.remaining -= 1
        if not self.remaining:
            self.event._resolve(ResultList(self.results))  # noqa: SLF001


_PENDING: Result = Ok(None)


class Pool:
    """Waiting payloads, idle and busy consumers, and the sizing rules of the pool.

    Payloads for one collector run inline in a consumer. A payload for several collectors
    is fanned out: one delivery runs in the consumer that took it, the others wait in
    ``fanout`` (served before new payloads) for any consumer, so deliveries run
    concurrently across the pool without a task per delivery.
    """

    def __init__(
        self,
        *,
        buffer: Buffer,
        router: Router,
        min_consumers: int,
        max_consumers: int,
        maxsize: int,
        idle_timeout: float,
    ) -> None:
        """Hold the buffer and sizing rules; no task runs until ``start()``."""
        self.buffer = buffer
        self.router = router
        self.select: Callable[[Payload[Any]], Sequence[Collector]] | None = None
        self.inline = False
        self.set_router(router)
        self.min = min_consumers
        self.max = max_consumers
        self.maxsize = maxsize
        self.idle_timeout = idle_timeout
        self.fanout: deque[tuple[_Fanout, int, Collector]] = deque()
        self.getters: deque[asyncio.Future[object]] = deque()
        self.putters: deque[asyncio.Future[None]] = deque()
        self.consumers: set[asyncio.Task[None]] = set()
        self.waking = 0  # consumers woken or started that have not yet looked for work
        # Counted on the idle path, not per delivery: busy is what is not idle.
        self.idle = 0
        self.accepting = False  # set by the queue while it takes new payloads
        self.closed = False
        self.drained: asyncio.Future[None] | None = None
        # While collectors are being retired: them, the consumers that may still be running
        # one of them, and the future retire() waits on.
        self.retiring: frozenset[Collector] = frozenset()
        self.unsettled: set[asyncio.Task[None]] = set()
        self.retired: asyncio.Future[None] | None = None

    def set_router(self, router: Router) -> None:
        """Route by ``router`` from now on; each consumer takes it up at its next payload."""
        self.router = router
        # The router's selection hook is a plain function call; the consumer then runs
        # the deliveries itself. A router that overrides handle_event is awaited instead.
        self.select = router.select if type(router).handle_event is Router.handle_event else None
        # SimpleRouter's own choice (not an override of it) is inlined in consume().
        self.inline = type(router).select is SimpleRouter.select

    async def retire(self, collectors: frozenset[Collector]) -> None:
        """Return once no delivery to ``collectors`` chosen before now runs or waits.

        Call it right after ``set_router`` with a router without them: every consumer may
        be running a delivery chosen by the old one until it next looks for work, and
        fanned-out deliveries to them may still wait. Idle consumers are woken to say so.
        """
        self.retiring = collectors
        self.unsettled = set(self.consumers)
        self.retired = asyncio.get_running_loop().create_future()
        getters = self.getters
        while getters:
            getter = getters.popleft()
            if not getter.done():
                self.waking += 1
                getter.set_result(_WOKEN)
        try:
            self.settle(None)
            await self.retired
        finally:
            self.retiring = frozenset()
            self.unsettled = set()
            self.retired = None

    def settle(self, consumer: asyncio.Task[None] | None) -> None:
        """Note that ``consumer`` runs nothing chosen by an old router; resolve ``retire``."""
        unsettled = self.unsettled
        unsettled.discard(consumer)
        retired = self.retired
        if unsettled or retired is None or retired.done():
            return
        retiring = self.retiring
        if not any(collector in retiring for _, _, collector in self.fanout):
            retired.set_result(None)

    @property
    def busy(self) -> int:
        """Consumers not waiting for work (running a delivery, or about to look for one)."""
        return len(self.consumers) - self.idle

    def start(self) -> None:
        """Start ``min_consumers`` consumers."""
        for _ in range(self.min):
            self.spawn()

    def hand_out(self) -> None:
        """Wake an idle consumer for new work, or start one if all are busy."""
        getters = self.getters
        while getters:
            getter = getters.popleft()
            if not getter.done():
                self.waking += 1
                getter.set_result(_WOKEN)
                return
        if len(self.buffer) + len(self.fanout) > self.waking and len(self.consumers) < self.max:
            self.spawn()

    def spawn(self) -> None:
        """Start one more consumer."""
        self.waking += 1
        self.consumers.add(asyncio.get_running_loop().create_task(self.consume()))

    async def wait_for_room(self) -> None:
        """Wait until the buffer holds fewer than ``maxsize`` payloads."""
        loop = asyncio.get_running_loop()
        while len(self.buffer) >= self.maxsize:
            waiter: asyncio.Future[None] = loop.create_future()
            self.putters.append(waiter)
            try:
                await waiter
            except BaseException:
                if not waiter.done():
                    waiter.cancel()
                elif not waiter.cancelled() and waiter.exception() is None:
                    self.wake_putter()  # pass on the room this sender was given
                raise

    def wake_putter(self) -> None:
        """Let one waiting sender go on."""
        putters = self.putters
        while putters:
            putter = putters.popleft()
            if not putter.done():
                putter.set_result(None)
                return

    async def drain(self) -> None:
        """Return once nothing is queued, running or waiting for room."""
        while self.buffer or self.fanout or self.putters or self.busy:
            self.drained = asyncio.get_running_loop().create_future()
            await self.drained

    async def stop(self, *, cancel: bool, abandoned: BaseException) -> None:
        """Stop every consumer (cancelling busy ones if ``cancel``); fail what is left."""
        self.closed = True
        if cancel:
            for task in self.consumers:
                task.cancel()
        while self.getters:
            getter = self.getters.popleft()
            if not getter.done():
                getter.set_result(_STOP)
        if self.consumers:
            _, stuck = await asyncio.wait(self.consumers, timeout=_CANCEL_GRACE if cancel else None)
            if stuck:
                # A processor that swallows its cancellation keeps its consumer; shutdown
                # does not wait for it (its own payload's event resolves if it ever returns).
                logger.warning(
                    "collector queue: %d consumers ignored cancellation; leaving them", len(stuck)
                )
        self._fail_leftovers(abandoned)

    def _fail_leftovers(self, abandoned: BaseException) -> None:
        """Resolve every payload no consumer will run, and fail every waiting sender."""
        while self.fanout:
            fan, index, _ = self.fanout.popleft()
            fan.abandon(index, abandoned)
        while self.buffer:
            event = self.buffer.pop()
            event.abandoned = True
            event._resolve(Error(abandoned))  # noqa: SLF001
        while self.putters:
            putter = self.putters.popleft()
            if not putter.done():
                putter.set_exception(abandoned)

    def _signal_drained(self) -> None:
        drained = self.drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    async def _idle(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Wait for work as an idle consumer; return False when this consumer should exit."""
        if self.closed:
            return False
        self._signal_drained()
        getter: asyncio.Future[object] = loop.create_future()
        self.getters.append(getter)
        expiry = None
        if len(self.consumers) > self.min:
            expiry = loop.call_later(self.idle_timeout, _expire, getter)
        self.idle += 1
        try:
            why = await getter
        finally:
            self.idle -= 1
            if expiry is not None:
                expiry.cancel()
        if why is _WOKEN:
            self.waking -= 1
            return True
        if why is _EXPIRED:
            # A payload sent after the timer fired but before we resumed found our getter
            # done and started no consumer for it (we still counted towards max): stay for it.
            return len(self.consumers) <= self.min or bool(self.buffer or self.fanout)
        return False

    async def consume(self) -> None:  # noqa: C901, PLR0912, PLR0915 - the hot loop, kept whole
        """Take payloads and run their deliveries until stopped (or idle above the minimum)."""
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None  # consume() only ever runs as a task
        buffer, fanout, select, putters = self.buffer, self.fanout, self.select, self.putters
        router, inline = self.router, self.inline
        by_topic = router.by_topic
        every = tuple(router.collectors.values())
        handled = 0
        self.waking -= 1
        event: CollectorEvent | None = None
        fan: _Fanout | None = None
        try:
            while True:
                if self.retired is not None:  # rare: collectors are being removed
                    self.settle(me)
                if fanout:
                    fan, index, collector = fanout.popleft()
                    payload: Payload[Any] = fan.event.payload
                    event = None
                    if collector in self.retiring:
                        self.unsettled.add(me)
                elif buffer:
                    event = buffer.pop()
                    if putters:
                        self.wake_putter()
                    payload = event.payload
                    if self.router is not router:  # the collectors changed: route anew
                        router, select, inline = self.router, self.select, self.inline
                        by_topic = router.by_topic
                        every = tuple(router.collectors.values())
                    if select is None:
                        fan = None
                        try:
                            results = await self.router.handle_event(payload)
                        except asyncio.CancelledError as exc:
                            # Only our own cancellation stops us; a CancelledError the router
                            # (or a processor it awaited) raised is just its failure.
                            if me.cancelling():
                                raise
                            results = ResultList([Error(exc)])
                        except Exception as exc:  # noqa: BLE001 - a faulty router must not kill us
                            results = ResultList([Error(exc)])
                        if results.__class__ is not ResultList:
                            results = ResultList([Error(TypeError(f"router returned {results!r}"))])
                        event._resolve(results)  # noqa: SLF001
                        event = None
                        continue
                    # SimpleRouter.select() inlined for its two commonest cases.
                    delivery = payload.delivery
                    if not inline:
                        try:
                            targets: Sequence[Collector] = select(payload)
                        except Exception as exc:  # noqa: BLE001
                            event._resolve(Error(exc))  # noqa: SLF001
                            continue
                    elif delivery is _TOPIC and len(payload.topics) == 1:
                        targets = by_topic.get(payload.topics[0], ())
                    elif delivery is _BROADCAST:
                        targets = every
                    else:
                        try:
                            targets = select(payload)
                        except Exception as exc:  # noqa: BLE001
                            event._resolve(Error(exc))  # noqa: SLF001
                            continue
                    count = len(targets)
                    if count == 1:
                        fan = None
                        collector = targets[0]
                    elif count == 0:
                        event._resolve(ResultList())  # noqa: SLF001
                        continue
                    else:
                        fan = _Fanout(event, count)
                        event = None
                        index = 0
                        collector = targets[0]
                        for more in range(1, count):
                            fanout.append((fan, more, targets[more]))
                            self.hand_out()
                else:
                    if not await self._idle(loop):
                        return
                    continue

                # Run one delivery: Collector.run, unrolled here for speed, unless a
                # subclass overrides it (then it contains the processor's faults itself).
                try:
                    if collector.__class__.run is _PLAIN_RUN:
                        result = await collector.processor(payload, collector.ctx)
                    else:
                        result = await collector.run(payload)
                except asyncio.CancelledError as exc:
                    if me.cancelling():  # our own task is being cancelled: let it through
                        raise
                    result = Error(exc)
                except Exception as exc:  # noqa: BLE001 - containing processor faults is the point
                    result = Error(exc)
                else:
                    cls = result.__class__
                    if cls is not Ok and cls is not Error:
                        result = Error(
                            TypeError(
                                f"collector {collector.key!r}: processor returned "
                                f"{cls.__name__}, not Ok or Error"
                            )
                        )
                if fan is None:
                    # CollectorEvent._resolve() inlined: the event is not done yet.
                    event._result = result  # type: ignore[union-attr]  # noqa: SLF001
                    if event._waiters is not None or event._callbacks is not None:  # type: ignore[union-attr]  # noqa: SLF001
                        event._notify()  # type: ignore[union-attr]  # noqa: SLF001
                    event = None
                else:
                    fan.record(index, result)
                    fan = None
                handled += 1
                if handled % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        except asyncio.CancelledError as exc:
            # Cancelled mid-delivery (shutdown gave up waiting): resolve what we held.
            if fan is not None:
                fan.abandon(index, exc)
            elif event is not None and not event.done():
                event.abandoned = True
                event._resolve(Error(exc))  # noqa: SLF001
            raise
        finally:
            self.consumers.discard(me)
            if self.retired is not None:
                self.settle(me)
            self._signal_drained()


def _expire(getter: asyncio.Future[object]) -> None:
    if not getter.done():
        getter.set_result(_EXPIRED)
