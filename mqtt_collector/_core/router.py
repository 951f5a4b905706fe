"""Routers: decide which collectors a payload goes to, and run them."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mqtt_collector._core.payload import Delivery, Payload
from mqtt_collector._core.result import Result, ResultList

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from mqtt_collector._core.collector import Collector

__all__ = ["Router", "SimpleRouter", "run_collector"]


async def run_collector(collector: Collector, payload: Payload[Any]) -> Result:
    """Run one collector on ``payload`` (``collector.run``); every failure becomes an Error."""
    return await collector.run(payload)


if sys.version_info >= (3, 12):

    def _start(coro: Coroutine[Any, Any, Result]) -> asyncio.Future[Result]:
        # An eager task runs synchronously until its first suspension, so a processor
        # that never awaits anything costs no trip through the event loop.
        return asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)

else:  # pragma: no cover - exercised on 3.11 only

    def _start(coro: Coroutine[Any, Any, Result]) -> asyncio.Future[Result]:
        return asyncio.ensure_future(coro)


class Router:
    """Base class of routers; subclass it and implement ``select`` or ``handle_event``.

    ``select(payload)`` (the selection hook) returns the collectors a payload goes to; the
    queue's consumers then run those deliveries themselves, without awaiting the router.
    A router that overrides ``handle_event`` instead decides and delivers itself: the
    queue awaits it for each payload (and ignores ``select``).

    The queue builds its router once, as ``router(collectors)``, with the queue's collectors
    in the order given. A subclass may use:

    - ``self.collectors``: a dict of key -> Collector, in that order;
    - ``self.by_topic``: a dict of topic -> tuple of the Collectors listening to it;
    - ``await self.deliver(payload, collectors)``: run those collectors concurrently and
      return their ResultList, every failure contained as an Error.

    ``handle_event`` must return a ResultList.
    """

    def __init__(self, collectors: Sequence[Collector]) -> None:
        """Index ``collectors`` by key and by topic."""
        self.collectors: dict[str, Collector] = {c.key: c for c in collectors}
        by_topic: dict[str, list[Collector]] = {}
        for collector in collectors:
            for topic in dict.fromkeys(collector.topics):
                by_topic.setdefault(topic, []).append(collector)
        self.by_topic: dict[str, tuple[Collector, ...]] = {
            topic: tuple(found) for topic, found in by_topic.items()
        }

    async def handle_event(self, payload: Payload[Any]) -> ResultList:
        """Deliver ``payload`` to the collectors ``select`` chose; return their results."""
        return await self.deliver(payload, self.select(payload))

    def select(self, payload: Payload[Any]) -> Sequence[Collector]:
        """Return the collectors ``payload`` goes to; implement it or ``handle_event``."""
        raise NotImplementedError(
            f"{type(self).__name__} implements neither select nor handle_event"
        )

    async def deliver(self, payload: Payload[Any], collectors: Sequence[Collector]) -> ResultList:
        """Run ``collectors`` on ``payload`` concurrently; results in the order given."""
        count = len(collectors)
        if count == 1:
            return ResultList([await run_collector(collectors[0], payload)])
        if count == 0:
            return ResultList([])
        # All but the last run as tasks; the last runs inline in the caller's task.
        tasks = [_start(run_collector(c, payload)) for c in collectors[:-1]]
        try:
            last = await run_collector(collectors[-1], payload)
            if not all(task.done() for task in tasks):
                await asyncio.wait(tasks)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            raise
        results = [task.result() for task in tasks]
        results.append(last)
        return ResultList(results)


class SimpleRouter(Router):
    """Delivers by ``payload.delivery``: to every collector, to ``keys``, or to ``topics``.

    A collector is delivered a payload at most once, however many of its keys or topics match.
    A key or topic that matches nothing is skipped; a payload that reaches no collector gives
    an empty ResultList.
    """

    def __init__(self, collectors: Sequence[Collector]) -> None:
        """Index ``collectors``."""
        super().__init__(collectors)
        self._all = tuple(self.collectors.values())

    def select(self, payload: Payload[Any]) -> Sequence[Collector]:
        """Return the collectors ``payload`` goes to, each once."""
        delivery = payload.delivery
        if delivery is Delivery.TOPIC:
            topics = payload.topics
            if len(topics) == 1:
                return self.by_topic.get(topics[0], ())
            by_topic = self.by_topic
            chosen: dict[str, Collector] = {}
            for topic in topics:
                for collector in by_topic.get(topic, ()):
                    chosen.setdefault(collector.key, collector)
            return tuple(chosen.values())
        if delivery is Delivery.BROADCAST:
            return self._all
        if delivery is Delivery.KEY:
            found = self.collectors
            return [found[k] for k in dict.fromkeys(payload.keys) if k in found]
        raise ValueError(f"unknown delivery {delivery!r}")
