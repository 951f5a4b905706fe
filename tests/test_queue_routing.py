"""The collector queue's semantics (design.md §6): events, results, routing and order."""

from __future__ import annotations

import asyncio
import logging
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
    QueueType,
    Result,
    ResultList,
    Router,
    SimpleRouter,
)

TIMEOUT = 2.0  # bound on every wait; generous, since nothing here should take long


async def echo(payload: Payload[Any], ctx: Context) -> Result:
    """Return the payload's value."""
    return Ok(payload.value)


def recorder(seen: list[tuple[str, Any]], key: str) -> Collector:
    """A collector ``key`` that records (key, value) of every payload it is given."""

    async def record(payload: Payload[Any], ctx: Context) -> Result:
        seen.append((key, payload.value))
        return Ok(key)

    return Collector(key, record, topics=[f"{key}-topic", "shared"])


class TestCollectorEvent:
    """What send() returns: a handle on the results."""

    async def test_event_get_result_none_until_done_then_result_list(self) -> None:
        """get_result() is None while the processor runs, the ResultList once it is done."""
        release = asyncio.Event()
        started = asyncio.Event()

        async def slow(payload: Payload[Any], ctx: Context) -> Result:
            started.set()
            await release.wait()
            return Ok("done")

        async with CollectorQueue([Collector("c", slow)]) as queue:
            event = await queue.get_publisher().send(Payload(1))
            await asyncio.wait_for(started.wait(), TIMEOUT)
            assert event.get_result() is None
            assert not event.done()
            release.set()
            results = await event.wait(timeout=TIMEOUT)
            assert event.done()
            assert event.get_result() == results == ResultList([Ok("done")])

    async def test_event_get_result_awaitable_once_done(self) -> None:
        """`await event.get_result()` gives the ResultList once the event is done."""
        async with CollectorQueue([Collector("c", echo)]) as queue:
            event = await queue.get_publisher().send(Payload("v"))
            await event.wait(timeout=TIMEOUT)
            result = event.get_result()
            assert result is not None
            assert await result == ResultList([Ok("v")])

    async def test_event_wait_returns_same_list_every_time(self) -> None:
        """wait() and get_result() return the same ResultList object."""
        async with CollectorQueue([Collector("c", echo)]) as queue:
            event = await queue.get_publisher().send(Payload("v"))
            first = await event.wait(timeout=TIMEOUT)
            assert await event.wait(timeout=TIMEOUT) is first
            assert event.get_result() is first

    async def test_event_wait_timeout_raises_timeout_error(self) -> None:
        """wait(timeout=...) raises TimeoutError while the processor still runs."""
        release = asyncio.Event()

        async def slow(payload: Payload[Any], ctx: Context) -> Result:
            await release.wait()
            return Ok(None)

        async with CollectorQueue([Collector("c", slow)]) as queue:
            event = await queue.get_publisher().send(Payload(1))
            with pytest.raises(TimeoutError):
                await event.wait(timeout=0.01)
            release.set()
            assert await event.wait(timeout=TIMEOUT) == ResultList([Ok(None)])

    async def test_event_add_done_callback_called_on_completion(self) -> None:
        """add_done_callback(cb) calls cb(event) when the results are in, or at once if done."""
        called: list[CollectorEvent] = []
        async with CollectorQueue([Collector("c", echo)]) as queue:
            event = await queue.get_publisher().send(Payload("v"))
            event.add_done_callback(called.append)
            await event.wait(timeout=TIMEOUT)
            assert called == [event]
            event.add_done_callback(called.append)
            assert called == [event, event]

    async def test_event_callback_raising_is_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        """A done callback that raises is logged; later callbacks and waiters still run."""
        called: list[CollectorEvent] = []

        def broken(event: CollectorEvent) -> None:
            raise RuntimeError("callback broke")

        async with CollectorQueue([Collector("c", echo)]) as queue:
            event = await queue.get_publisher().send(Payload("v"))
            event.add_done_callback(broken)
            event.add_done_callback(called.append)
            with caplog.at_level(logging.ERROR, logger="mqtt_collector.queue"):
                assert (await event.wait(timeout=TIMEOUT)).first() == Ok("v")
        assert called == [event]
        (record,) = [r for r in caplog.records if r.name == "mqtt_collector.queue"]
        assert "callback" in record.getMessage()
        assert record.exc_info is not None


class TestDelivery:
    """The SimpleRouter's choice of collectors."""

    async def test_delivery_empty_gives_empty_result_list_first_ok_none(self) -> None:
        """A payload reaching no collector resolves to an empty ResultList; first() is Ok(None)."""
        seen: list[tuple[str, Any]] = []
        async with CollectorQueue([recorder(seen, "a")]) as queue:
            publisher = queue.get_publisher()
            for payload in (
                Payload(1, delivery=Delivery.KEY, keys=["nobody"]),
                Payload(2, delivery=Delivery.TOPIC, topics=["nowhere"]),
                Payload(3, delivery=Delivery.KEY),
            ):
                results = await (await publisher.send(payload)).wait(timeout=TIMEOUT)
                assert len(results) == 0
                assert results.first() == Ok(None)
        assert seen == []

    async def test_delivery_key_reaches_named_collectors_once(self) -> None:
        """A collector named twice in keys gets the payload once; unknown keys are skipped."""
        seen: list[tuple[str, Any]] = []
        collectors = [recorder(seen, "a"), recorder(seen, "b"), recorder(seen, "c")]
        async with CollectorQueue(collectors) as queue:
            payload = Payload("k", delivery=Delivery.KEY, keys=["c", "a", "c", "zz"])
            results = await (await queue.get_publisher().send(payload)).wait(timeout=TIMEOUT)
        assert results == ResultList([Ok("c"), Ok("a")])
        assert sorted(seen) == [("a", "k"), ("c", "k")]

    async def test_delivery_topic_reaches_collector_on_two_topics_once(self) -> None:
        """A collector listening on two of the payload's topics gets it once."""
        seen: list[tuple[str, Any]] = []
        collectors = [recorder(seen, "a"), recorder(seen, "b")]
        async with CollectorQueue(collectors) as queue:
            payload = Payload("t", delivery=Delivery.TOPIC, topics=["a-topic", "shared"])
            results = await (await queue.get_publisher().send(payload)).wait(timeout=TIMEOUT)
        assert sorted(seen) == [("a", "t"), ("b", "t")]
        assert sorted(r.value for r in results if isinstance(r, Ok)) == ["a", "b"]

    async def test_delivery_topic_listed_twice_by_collector_delivered_once(self) -> None:
        """A collector whose topics list the same topic twice gets the payload once."""
        seen: list[Any] = []

        async def record(payload: Payload[Any], ctx: Context) -> Result:
            seen.append(payload.value)
            return Ok(None)

        collector = Collector("a", record, topics=["x", "x"])
        async with CollectorQueue([collector]) as queue:
            payload = Payload("t", delivery=Delivery.TOPIC, topics=["x"])
            results = await (await queue.get_publisher().send(payload)).wait(timeout=TIMEOUT)
        assert seen == ["t"]
        assert len(results) == 1

    async def test_delivery_broadcast_reaches_every_collector(self) -> None:
        """A broadcast payload reaches every collector once, results in collector order."""
        seen: list[tuple[str, Any]] = []
        collectors = [recorder(seen, key) for key in "abcd"]
        async with CollectorQueue(collectors, max_consumers=4) as queue:
            results = await (await queue.get_publisher().send(Payload("b"))).wait(timeout=TIMEOUT)
        assert results == ResultList([Ok("a"), Ok("b"), Ok("c"), Ok("d")])
        assert sorted(seen) == [(key, "b") for key in "abcd"]

    async def test_deliver_to_no_collectors_gives_empty_result_list(self) -> None:
        """Router.deliver() with no collectors returns an empty ResultList, as handle_event does."""
        router = SimpleRouter([Collector("a", echo, topics=["t"])])
        payload = Payload(1, delivery=Delivery.TOPIC, topics=["nowhere"])
        assert await router.deliver(payload, []) == ResultList()
        assert await router.handle_event(payload) == ResultList()


class TestPayload:
    """The Payload envelope."""

    def test_payload_defaults(self) -> None:
        """A bare Payload broadcasts, with no keys, no topics and no priority."""
        payload = Payload({"data": 1})
        assert payload.value == {"data": 1}
        assert payload.delivery is Delivery.BROADCAST
        assert payload.keys == ()
        assert payload.topics == ()
        assert payload.priority is None

    def test_payload_keys_and_topics_stored_as_tuples(self) -> None:
        """Lists (or any iterable of str) of keys and topics are kept as tuples."""
        payload = Payload(1, delivery=Delivery.KEY, keys=["a", "b"], topics=iter(["t"]))
        assert payload.keys == ("a", "b")
        assert payload.topics == ("t",)


async def run_in_order(
    queue_type: QueueType, payloads: list[Payload[str]], *, default_priority: int = 1000
) -> list[str]:
    """Queue ``payloads`` behind a blocked single consumer; return the order they ran in."""
    order: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def record(payload: Payload[str], ctx: Context) -> Result:
        if payload.value == "blocker":
            started.set()
            await release.wait()
        else:
            order.append(payload.value)
        return Ok(None)

    queue = CollectorQueue(
        [Collector("c", record)],
        min_consumers=1,
        max_consumers=1,
        queue_type=queue_type,
        default_priority=default_priority,
    )
    async with queue:
        publisher = queue.get_publisher()
        await publisher.send(Payload("blocker"))
        await asyncio.wait_for(started.wait(), TIMEOUT)
        events = [await publisher.send(payload) for payload in payloads]
        release.set()
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in events)), TIMEOUT)
    return order


class TestOrder:
    """The order a single consumer takes queued payloads in."""

    async def test_order_fifo_first_in_first_out(self) -> None:
        """FIFO hands out payloads in the order sent."""
        payloads = [Payload(v) for v in "abcd"]
        assert await run_in_order(QueueType.FIFO, payloads) == list("abcd")

    async def test_order_lifo_last_in_first_out(self) -> None:
        """LIFO hands out the most recently sent payload first."""
        payloads = [Payload(v) for v in "abcd"]
        assert await run_in_order(QueueType.LIFO, payloads) == list("dcba")

    async def test_order_priority_lowest_first_fifo_among_equals(self) -> None:
        """PRIORITY hands out the lowest priority first, equal priorities in the order sent."""
        payloads = [
            Payload("a", priority=3),
            Payload("b", priority=1),
            Payload("c", priority=2),
            Payload("d", priority=1),
            Payload("e", priority=-5),
        ]
        assert await run_in_order(QueueType.PRIORITY, payloads) == list("ebdca")

    async def test_order_priority_none_takes_default_priority(self) -> None:
        """A payload with priority None ranks at the queue's default_priority."""
        payloads = [
            Payload("default-1"),
            Payload("high", priority=10),
            Payload("low", priority=50),
            Payload("default-2", priority=None),
            Payload("equal", priority=20),
        ]
        order = await run_in_order(QueueType.PRIORITY, payloads, default_priority=20)
        assert order == ["high", "default-1", "default-2", "equal", "low"]


async def test_queue_never_configures_logging() -> None:
    """Using the queue, failures and all, leaves the logging configuration untouched."""
    root_handlers, root_level = list(logging.root.handlers), logging.root.level

    async def fail(payload: Payload[Any], ctx: Context) -> Result:
        raise ValueError(payload.value)

    async with CollectorQueue([Collector("c", fail)]) as queue:
        await (await queue.get_publisher().send(Payload(1))).wait(timeout=TIMEOUT)
    await queue.shut_down_queue()
    assert logging.root.handlers == root_handlers
    assert logging.root.level == root_level
    for name in ("mqtt_collector", "mqtt_collector.queue"):
        logger = logging.getLogger(name)
        assert logger.handlers == []
        assert logger.propagate is True
        assert logger.level == logging.NOTSET


class TestSelectionHook:
    """A router may implement only ``select``: the queue's consumers run its deliveries."""

    async def test_select_hook_of_a_custom_router_chooses_the_collectors(self) -> None:
        """A Router subclass with only ``select`` gets each payload to the collectors it picks."""

        class Odd(Router):
            def select(self, payload: Payload[Any]) -> list[Collector]:
                # Every payload is BROADCAST: the pool must not take its own shortcut.
                return [self.collectors["odd" if payload.value % 2 else "even"]]

        async def odd(payload: Payload[Any], ctx: Context) -> Result:
            return Ok(("odd", payload.value))

        async def even(payload: Payload[Any], ctx: Context) -> Result:
            return Ok(("even", payload.value))

        collectors = [Collector("odd", odd), Collector("even", even)]
        async with CollectorQueue(collectors, router=Odd) as queue:
            events = [await queue.get_publisher().send(Payload(i)) for i in range(4)]
            results = [(await e.wait(timeout=TIMEOUT)).first() for e in events]
        assert results == [Ok(("even", 0)), Ok(("odd", 1)), Ok(("even", 2)), Ok(("odd", 3))]

    async def test_select_hook_ignored_when_handle_event_is_overridden(self) -> None:
        """A router overriding ``handle_event`` is awaited for each payload, select or not."""

        class Own(SimpleRouter):
            async def handle_event(self, payload: Payload[Any]) -> ResultList:
                return ResultList([Ok("own")])

        async with CollectorQueue([Collector("c", echo_value)], router=Own) as queue:
            event = await queue.get_publisher().send(Payload(1))
            assert (await event.wait(timeout=TIMEOUT)).first() == Ok("own")


async def echo_value(payload: Payload[Any], ctx: Context) -> Result:
    """Return the payload's value."""
    return Ok(payload.value)
