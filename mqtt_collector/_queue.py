"""The collector queue: a bounded publisher/consumer queue with a self-sizing consumer pool."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

from mqtt_collector._buffer import QueueType, make_buffer
from mqtt_collector._collector import Collector
from mqtt_collector._event import CollectorEvent
from mqtt_collector._exceptions import LifecycleError, QueueError, QueueShutDownError
from mqtt_collector._payload import Delivery, Payload
from mqtt_collector._result import Error, ResultList
from mqtt_collector._router import Router, SimpleRouter

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager
    from types import TracebackType

__all__ = ["CollectorQueue", "EventPublisher"]

logger = logging.getLogger("mqtt_collector.queue")

_DELIVERIES = frozenset(Delivery)
# How many payloads a consumer handles back to back before letting other tasks run, so a
# stream of processors that never suspend cannot starve the task feeding the queue.
_YIELD_EVERY = 64


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    DRAINING = "draining"
    CLOSED = "closed"


_WOKEN, _EXPIRED, _STOP = object(), object(), object()


class EventPublisher:
    """Sends payloads into a running CollectorQueue (get one with ``queue.get_publisher()``)."""

    __slots__ = ("_queue",)

    def __init__(self, queue: CollectorQueue) -> None:
        """Publish into ``queue``."""
        self._queue = queue

    async def send(self, payload: Payload[Any]) -> CollectorEvent:
        """Queue ``payload`` and return its CollectorEvent; wait while the queue is full.

        Raises:
            TypeError: ``payload`` is not a Payload.
            ValueError: its delivery is not a Delivery.
            QueueShutDownError: the queue is not running (not started, or shut down).
        """
        q = self._queue
        if not isinstance(payload, Payload):
            raise TypeError(f"send() takes a Payload, got {type(payload).__name__}: {payload!r}")
        if payload.delivery not in _DELIVERIES:
            raise ValueError(f"unknown delivery {payload.delivery!r} in {payload!r}")
        if q._state is not _State.RUNNING:  # noqa: SLF001
            raise q._not_running()  # noqa: SLF001
        buffer = q._buffer  # noqa: SLF001
        if q._maxsize and len(buffer) >= q._maxsize:  # noqa: SLF001
            await q._wait_for_room()  # noqa: SLF001
        event = CollectorEvent(payload)
        buffer.push(event)
        q._hand_out()  # noqa: SLF001
        return event


class CollectorQueue:
    """Runs collectors over the payloads sent to it, with ``min``..``max`` consumer tasks.

    Use it as ``async with CollectorQueue(...) as queue`` or call ``init_queue()`` and
    ``shut_down_queue()``. Starting enters every collector's lifecycle in order; shutting
    down processes every payload already queued, then exits the lifecycles in reverse order.

    Args:
        collectors: the Collectors, with unique keys.
        min_consumers: consumers kept running while idle (>= 0).
        max_consumers: the most consumers that run at once (>= 1); the pool grows when
            payloads wait and every consumer is busy, and shrinks back after ``idle_timeout``.
        queue_type: FIFO (default), LIFO or PRIORITY.
        router: a Router subclass, built as ``router(collectors)``; SimpleRouter by default.
        default_priority: the priority of a payload whose ``priority`` is None.
        maxsize: the most payloads queued at once; ``send`` waits while it is reached
            (0, the default, means unbounded).
        idle_timeout: seconds a consumer above ``min_consumers`` may sit idle before it stops.
    """

    def __init__(
        self,
        collectors: Sequence[Collector],
        *,
        min_consumers: int = 1,
        max_consumers: int = 100,
        queue_type: QueueType = QueueType.FIFO,
        router: Callable[[Sequence[Collector]], Router] | Router = SimpleRouter,
        default_priority: int = 1000,
        maxsize: int = 0,
        idle_timeout: float = 5.0,
    ) -> None:
        """Check the arguments and build the router; nothing runs until ``init_queue()``."""
        self._collectors = _check_collectors(collectors)
        _check_int("max_consumers", max_consumers, minimum=1)
        _check_int("min_consumers", min_consumers, minimum=0)
        if min_consumers > max_consumers:
            raise ValueError(
                f"min_consumers ({min_consumers}) is greater than max_consumers ({max_consumers})"
            )
        _check_int("maxsize", maxsize, minimum=0)
        _check_int("default_priority", default_priority)
        if not isinstance(queue_type, QueueType):
            raise TypeError(
                f"unknown queue_type {queue_type!r}: use QueueType.FIFO, LIFO or PRIORITY"
            )
        if not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be > 0, got {idle_timeout!r}")
        self._min = min_consumers
        self._max = max_consumers
        self._maxsize = maxsize
        self._idle_timeout = idle_timeout
        self.queue_type = queue_type
        self.default_priority = default_priority
        self._buffer = make_buffer(queue_type, default_priority=default_priority)
        self._router = router if isinstance(router, Router) else router(self._collectors)
        if not isinstance(self._router, Router):
            raise TypeError(f"router must be a Router subclass, got {router!r}")
        self._state = _State.NEW
        self._getters: deque[asyncio.Future[object]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._consumers: set[asyncio.Task[None]] = set()
        self._waking = 0  # consumers woken or spawned that have not yet looked at the buffer
        self._busy = 0
        self._drained: asyncio.Future[None] | None = None
        self._entered: list[tuple[Collector, AbstractAsyncContextManager[Any]]] = []
        self._publisher = EventPublisher(self)

    # -- running --------------------------------------------------------------------------

    async def init_queue(self) -> None:
        """Enter every lifecycle in order and start ``min_consumers`` consumers.

        Raises:
            LifecycleError: a lifecycle raised; those already entered have been exited.
        """
        if self._state is not _State.NEW:
            raise QueueError(f"init_queue() on a queue that is {self._state.value}")
        for collector in self._collectors:
            if collector.lifecycle is None:
                continue
            try:
                manager = collector.lifecycle(collector.ctx)
                await manager.__aenter__()
            except Exception as exc:
                await self._tear_down()
                raise LifecycleError(collector.key, exc) from exc
            self._entered.append((collector, manager))
        self._state = _State.RUNNING
        for _ in range(self._min):
            self._spawn()

    async def shut_down_queue(self, timeout: float | None = None) -> None:
        """Stop taking payloads, process every queued one, then exit the lifecycles.

        With ``timeout`` (seconds), payloads still unprocessed when it expires are
        abandoned: their events resolve to ``Error(QueueShutDownError)``.
        """
        if self._state is _State.NEW:
            self._state = _State.CLOSED
            return
        if self._state is not _State.RUNNING:
            return
        self._state = _State.DRAINING
        try:
            await asyncio.wait_for(self._wait_drained(), timeout)
        except TimeoutError:
            logger.warning(
                "collector queue: drain timed out after %ss with %d payloads queued and %d running",
                timeout,
                len(self._buffer),
                self._busy,
            )
            for task in self._consumers:
                task.cancel()
        self._state = _State.CLOSED
        while self._getters:
            self._getters.popleft().set_result(_STOP)
        if self._consumers:
            await asyncio.wait(self._consumers)
        abandoned = QueueShutDownError("the collector queue shut down before this payload ran")
        while self._buffer:
            self._buffer.pop()._resolve(ResultList([Error(abandoned)]))  # noqa: SLF001
        while self._putters:
            waiter = self._putters.popleft()
            if not waiter.done():
                waiter.set_exception(self._not_running())
        await self._tear_down()

    async def __aenter__(self) -> Self:
        """Start the queue (``init_queue``)."""
        await self.init_queue()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Shut the queue down (``shut_down_queue``), processing what is queued."""
        await self.shut_down_queue()

    def get_publisher(self) -> EventPublisher:
        """Return the EventPublisher that sends into this queue."""
        return self._publisher

    def qsize(self) -> int:
        """Return how many payloads wait for a consumer."""
        return len(self._buffer)

    @property
    def consumers(self) -> int:
        """How many consumer tasks are running."""
        return len(self._consumers)

    @property
    def busy(self) -> int:
        """How many consumers are processing a payload right now."""
        return self._busy

    @property
    def maxsize(self) -> int:
        """The bound on queued payloads (0: unbounded)."""
        return self._maxsize

    @property
    def collectors(self) -> tuple[Collector, ...]:
        """The collectors, in the order given."""
        return self._collectors

    @property
    def running(self) -> bool:
        """True between ``init_queue()`` and the start of ``shut_down_queue()``."""
        return self._state is _State.RUNNING

    # -- internals --------------------------------------------------------------------------

    def _not_running(self) -> QueueShutDownError:
        if self._state is _State.NEW:
            return QueueShutDownError("the collector queue is not running: call init_queue() first")
        return QueueShutDownError("the collector queue is shut down: no more payloads accepted")

    def _hand_out(self) -> None:
        """Wake an idle consumer for a newly queued payload, or start one if all are busy."""
        getters = self._getters
        while getters:
            getter = getters.popleft()
            if not getter.done():
                self._waking += 1
                getter.set_result(_WOKEN)
                return
        if len(self._buffer) > self._waking and len(self._consumers) < self._max:
            self._spawn()

    def _spawn(self) -> None:
        self._waking += 1
        task = asyncio.get_running_loop().create_task(self._consume())
        self._consumers.add(task)

    async def _wait_for_room(self) -> None:
        loop = asyncio.get_running_loop()
        while len(self._buffer) >= self._maxsize:
            waiter: asyncio.Future[None] = loop.create_future()
            self._putters.append(waiter)
            try:
                await waiter
            except BaseException:
                if not waiter.done():
                    waiter.cancel()
                elif not waiter.cancelled() and waiter.exception() is None:
                    self._wake_putter()  # pass the room we were given on
                raise

    def _wake_putter(self) -> None:
        putters = self._putters
        while putters:
            putter = putters.popleft()
            if not putter.done():
                putter.set_result(None)
                return

    async def _wait_drained(self) -> None:
        while self._buffer or self._busy or self._putters:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    def _check_drained(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    async def _consume(self) -> None:  # noqa: C901, PLR0912, PLR0915 - the hot loop, kept whole for speed
        loop = asyncio.get_running_loop()
        buffer, getters, router = self._buffer, self._getters, self._router
        handled = 0
        self._waking -= 1
        try:
            while True:
                if not buffer:
                    if self._state is _State.CLOSED:
                        return
                    if self._drained is not None:
                        self._check_drained()
                    getter: asyncio.Future[object] = loop.create_future()
                    getters.append(getter)
                    expiry = None
                    if len(self._consumers) > self._min:
                        expiry = loop.call_later(self._idle_timeout, _expire, getter)
                    try:
                        why = await getter
                    finally:
                        if expiry is not None:
                            expiry.cancel()
                    if why is _WOKEN:
                        self._waking -= 1
                    elif why is _STOP or len(self._consumers) > self._min:
                        return
                    continue
                event = buffer.pop()
                if self._putters:
                    self._wake_putter()
                self._busy += 1
                try:
                    result = await router.handle_event(event.payload)
                except asyncio.CancelledError as exc:
                    self._busy -= 1
                    event._resolve(ResultList([Error(exc)]))  # noqa: SLF001
                    raise
                except Exception as exc:  # noqa: BLE001 - a faulty router must not kill the consumer
                    result = ResultList([Error(exc)])
                self._busy -= 1
                if result.__class__ is not ResultList:
                    result = ResultList(
                        [Error(TypeError(f"router returned {result!r}, not a ResultList"))]
                    )
                event._resolve(result)  # noqa: SLF001
                handled += 1
                if handled % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._consumers.discard(task)
            if self._drained is not None:
                self._check_drained()

    async def _tear_down(self) -> None:
        """Exit entered lifecycles in reverse order; a failing one is logged, the rest still run."""
        while self._entered:
            collector, manager = self._entered.pop()
            try:
                await manager.__aexit__(None, None, None)
            except Exception:
                logger.exception("collector %r: lifecycle teardown failed", collector.key)


def _expire(getter: asyncio.Future[object]) -> None:
    if not getter.done():
        getter.set_result(_EXPIRED)


def _check_int(name: str, value: object, *, minimum: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def _check_collectors(collectors: Sequence[Collector]) -> tuple[Collector, ...]:
    if isinstance(collectors, (str, bytes)) or not isinstance(collectors, Sequence):
        raise TypeError(f"collectors must be a list of Collector, got {collectors!r}")
    seen: set[str] = set()
    for index, collector in enumerate(collectors):
        if not isinstance(collector, Collector):
            raise TypeError(f"collectors[{index}] is not a Collector: {collector!r}")
        if collector.key in seen:
            raise ValueError(f"duplicate collector key {collector.key!r} at collectors[{index}]")
        seen.add(collector.key)
    return tuple(collectors)
