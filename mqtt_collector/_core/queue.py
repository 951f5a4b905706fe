"""The collector queue: a bounded publisher/consumer queue with a self-sizing consumer pool."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self

from mqtt_collector._core.buffer import QueueType, make_buffer
from mqtt_collector._core.collector import Collector
from mqtt_collector._core.event import CollectorEvent
from mqtt_collector._core.payload import Delivery, Payload
from mqtt_collector._core.pool import Pool
from mqtt_collector._core.router import Router, SimpleRouter
from mqtt_collector._exceptions import LifecycleError, QueueError, QueueShutDownError

__all__ = ["CollectorQueue", "EventPublisher"]

logger = logging.getLogger("mqtt_collector.queue")


class _State(enum.Enum):
    NEW = "not started"
    RUNNING = "running"
    DRAINING = "shutting down"
    CLOSED = "shut down"


class EventPublisher:
    """Sends payloads into a running CollectorQueue (get one with ``queue.get_publisher()``)."""

    __slots__ = ("_pool", "_queue")

    def __init__(self, queue: CollectorQueue, pool: Pool) -> None:
        """Publish into ``queue``, whose consumers are ``pool``."""
        self._queue = queue
        self._pool = pool

    async def send(self, payload: Payload[Any]) -> CollectorEvent:
        """Queue ``payload`` and return its CollectorEvent; wait while the queue is full.

        Raises:
            TypeError: ``payload`` is not a Payload.
            ValueError: its delivery is not a Delivery.
            QueueShutDownError: the queue is not running (not started, or shut down).
        """
        if payload.__class__ is not Payload and not isinstance(payload, Payload):
            raise TypeError(f"send() takes a Payload, got {type(payload).__name__}: {payload!r}")
        if payload.delivery.__class__ is not Delivery:
            raise ValueError(f"unknown delivery {payload.delivery!r} in {payload!r}")
        pool = self._pool
        if not pool.accepting:
            raise QueueShutDownError(f"cannot send: the collector queue is {self._queue.state}")
        buffer = pool.buffer
        if pool.maxsize and len(buffer) >= pool.maxsize:
            await pool.wait_for_room()
        event = CollectorEvent(payload)
        buffer.push(event)
        # hand_out() inlined for the common case: an idle consumer to wake, or none needed.
        if pool.getters or (len(buffer) > pool.waking and len(pool.consumers) < pool.max):
            pool.hand_out()
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
        router: a Router subclass, built as ``router(collectors)`` (or a Router instance);
            SimpleRouter by default.
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
        built = router if isinstance(router, Router) else router(self._collectors)
        if not isinstance(built, Router):
            raise TypeError(f"router must be a Router subclass, got {router!r}")
        self._router_factory = None if isinstance(router, Router) else router
        self.queue_type = queue_type
        self.default_priority = default_priority
        self._state = _State.NEW
        self._entered: list[tuple[Collector, AbstractAsyncContextManager[Any]]] = []
        self._pool = Pool(
            buffer=make_buffer(queue_type, default_priority=default_priority),
            router=built,
            min_consumers=min_consumers,
            max_consumers=max_consumers,
            maxsize=maxsize,
            idle_timeout=idle_timeout,
        )
        self._publisher = EventPublisher(self, self._pool)

    async def init_queue(self) -> None:
        """Enter every lifecycle in order and start ``min_consumers`` consumers.

        Raises:
            LifecycleError: a lifecycle raised; those already entered have been exited.
            QueueError: the queue was started before.
        """
        if self._state is not _State.NEW:
            raise QueueError(f"init_queue() on a collector queue that is {self._state.value}")
        for collector in self._collectors:
            if collector.lifecycle is None:
                continue
            try:
                manager = collector.lifecycle(collector.ctx)
                await manager.__aenter__()
            except Exception as exc:
                await self._tear_down()
                self._state = _State.CLOSED
                raise LifecycleError(collector.key, exc) from exc
            self._entered.append((collector, manager))
        self._state = _State.RUNNING
        self._pool.accepting = True
        self._pool.start()

    async def shut_down_queue(self, timeout: float | None = None) -> None:
        """Stop taking payloads, process every queued one, then exit the lifecycles.

        With ``timeout`` (seconds), payloads still unprocessed when it expires are
        abandoned: running processors are cancelled and every unfinished event resolves
        to an Error result. Calling it again, or on a queue never started, does nothing.
        """
        if self._state is not _State.RUNNING:
            if self._state is _State.NEW:
                self._state = _State.CLOSED
            return
        self._state = _State.DRAINING
        pool = self._pool
        pool.accepting = False
        timed_out = False
        try:
            await asyncio.wait_for(pool.drain(), timeout)
        except TimeoutError:
            timed_out = True
            logger.warning(
                "collector queue: drain timed out after %ss; abandoning %d queued and %d running",
                timeout,
                len(pool.buffer) + len(pool.fanout),
                pool.busy,
            )
        self._state = _State.CLOSED
        await pool.stop(
            cancel=timed_out,
            abandoned=QueueShutDownError("the collector queue shut down before this payload ran"),
        )
        await self._tear_down()

    async def swap_collectors(
        self,
        *,
        add: Sequence[Collector] = (),
        remove: Sequence[str] = (),
        timeout: float | None = None,
    ) -> None:
        """Remove the collectors keyed ``remove`` and add ``add`` on a running queue.

        A key in both is a swap: the new instance takes the old one's place in the order.
        The added lifecycles are entered first, in order; if one raises, those entered are
        exited and LifecycleError is raised with nothing changed. Then the router is rebuilt
        (each consumer takes it up at its next payload): payloads sent from then on go to
        the new set, and the others' deliveries never stop. Last, the removed collectors'
        deliveries still running or waiting finish (``timeout`` seconds at most; then they
        are left running, logged) and their lifecycles are exited, in reverse order.

        Raises:
            QueueError: the queue is not running, its router was given as an instance,
                a key to remove is unknown, or an added key is already taken.
            LifecycleError: an added collector's lifecycle failed to start.
        """
        if self._state is not _State.RUNNING:
            raise QueueError(f"swap_collectors() on a collector queue that is {self.state}")
        if self._router_factory is None:
            raise QueueError("swap_collectors() needs the router as a class, not an instance")
        removed = dict.fromkeys(remove)
        current = {c.key: c for c in self._collectors}
        if unknown := [key for key in removed if key not in current]:
            raise QueueError(f"cannot remove unknown collectors {unknown}")
        added = _check_collectors(add)
        if taken := [c.key for c in added if c.key in current and c.key not in removed]:
            raise QueueError(f"cannot add collectors {taken}: the keys are taken")
        entered = await self._enter(added)
        by_key = {c.key: c for c in added}
        collectors = [by_key.pop(c.key, c) for c in self._collectors if c.key not in removed]
        collectors.extend(by_key.values())
        old = [current[key] for key in removed]
        router = self._router_factory(collectors)
        self._collectors = tuple(collectors)
        self._pool.set_router(router)
        leaving = [pair for pair in self._entered if pair[0].key in removed]
        self._entered = [pair for pair in self._entered if pair[0].key not in removed]
        self._entered.extend(entered)
        try:
            await asyncio.wait_for(self._pool.retire(frozenset(old)), timeout)
        except TimeoutError:
            logger.warning(
                "collector queue: removed collectors %s still busy after %ss; exiting them",
                list(removed),
                timeout,
            )
        finally:
            while leaving:
                collector, manager = leaving.pop()
                try:
                    await manager.__aexit__(None, None, None)
                except Exception:
                    logger.exception("collector %r: lifecycle teardown failed", collector.key)

    async def _enter(
        self, collectors: Sequence[Collector]
    ) -> list[tuple[Collector, AbstractAsyncContextManager[Any]]]:
        """Enter the lifecycles of ``collectors`` in order: all, or none (LifecycleError)."""
        entered: list[tuple[Collector, AbstractAsyncContextManager[Any]]] = []
        for collector in collectors:
            if collector.lifecycle is None:
                continue
            try:
                manager = collector.lifecycle(collector.ctx)
                await manager.__aenter__()
            except Exception as exc:
                while entered:
                    done, manager = entered.pop()
                    try:
                        await manager.__aexit__(None, None, None)
                    except Exception:
                        logger.exception("collector %r: lifecycle teardown failed", done.key)
                raise LifecycleError(collector.key, exc) from exc
            entered.append((collector, manager))
        return entered

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
        """Return how many payloads (and fanned-out deliveries) wait for a consumer."""
        return len(self._pool.buffer) + len(self._pool.fanout)

    @property
    def consumers(self) -> int:
        """How many consumer tasks are running."""
        return len(self._pool.consumers)

    @property
    def busy(self) -> int:
        """How many deliveries are running right now."""
        return self._pool.busy

    @property
    def maxsize(self) -> int:
        """The bound on queued payloads (0: unbounded)."""
        return self._pool.maxsize

    @property
    def collectors(self) -> tuple[Collector, ...]:
        """The collectors, in the order given."""
        return self._collectors

    @property
    def running(self) -> bool:
        """True between ``init_queue()`` and the start of ``shut_down_queue()``."""
        return self._state is _State.RUNNING

    @property
    def state(self) -> str:
        """``not started``, ``running``, ``shutting down`` or ``shut down``."""
        return self._state.value

    async def _tear_down(self) -> None:
        """Exit entered lifecycles in reverse order; a failing one is logged, the rest still run."""
        while self._entered:
            collector, manager = self._entered.pop()
            try:
                await manager.__aexit__(None, None, None)
            except Exception:
                logger.exception("collector %r: lifecycle teardown failed", collector.key)


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
