"""Faults the collector queue contains (processors, routers) and bad input it refuses."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mqtt_collector import (
    Collector,
    CollectorQueue,
    Context,
    Delivery,
    Error,
    Ok,
    Payload,
    Result,
    ResultList,
    Router,
)

TIMEOUT = 2.0  # bound on every wait; generous, since nothing here should take long


async def echo(payload: Payload[Any], ctx: Context) -> Result:
    """Return the payload's value."""
    return Ok(payload.value)


async def faulty(payload: Payload[Any], ctx: Context) -> Result:
    """Misbehave as the payload's value says; otherwise return it."""
    match payload.value:
        case "value-error":
            raise ValueError("processor broke")
        case "cancelled":
            raise asyncio.CancelledError
        case "not-a-result":
            return 42  # type: ignore[return-value]  # the fault under test
        case "key-error":
            raise KeyError("missing")
    return Ok(payload.value)


async def send_and_wait(queue: CollectorQueue, payload: Payload[Any]) -> ResultList:
    """Send ``payload`` and wait (bounded) for its results."""
    event = await queue.get_publisher().send(payload)
    return await event.wait(timeout=TIMEOUT)


class TestProcessorFaults:
    """A failing processor yields an Error result and never kills its consumer."""

    @pytest.mark.parametrize(
        ("value", "exc_type", "message"),
        [
            ("value-error", ValueError, "processor broke"),
            ("cancelled", asyncio.CancelledError, ""),
            ("not-a-result", TypeError, "collector 'c': processor returned int, not Ok or Error"),
            ("key-error", KeyError, "'missing'"),
        ],
    )
    async def test_processor_fault_gives_error_and_queue_goes_on(
        self, value: str, exc_type: type[BaseException], message: str
    ) -> None:
        """The fault becomes Error(exc); the same consumers go on processing."""
        async with CollectorQueue([Collector("c", faulty)], min_consumers=2) as queue:
            consumers = set(queue._pool.consumers)
            result = (await send_and_wait(queue, Payload(value))).first()
            assert isinstance(result, Error)
            assert type(result.exception) is exc_type
            assert str(result.exception) == message
            assert (await send_and_wait(queue, Payload("fine"))).first() == Ok("fine")
            assert queue.consumers == 2
            assert set(queue._pool.consumers) == consumers

    async def test_processor_fault_in_broadcast_only_fails_that_collector(self) -> None:
        """In a broadcast, one collector's fault is its Error; the others' results are Ok."""
        collectors = [Collector("a", echo), Collector("b", faulty), Collector("c", echo)]
        async with CollectorQueue(collectors, min_consumers=1, max_consumers=1) as queue:
            results = await send_and_wait(queue, Payload("cancelled"))
            assert len(results) == 3
            assert results[0] == Ok("cancelled")
            assert isinstance(results[1], Error)
            assert isinstance(results[1].exception, asyncio.CancelledError)
            assert results[2] == Ok("cancelled")
            assert not results.is_ok()
            assert queue.consumers == 1
            assert (await send_and_wait(queue, Payload("ok"))).is_ok()


class RaisingRouter(Router):
    """A router that raises the exception named by the payload's value."""

    async def handle_event(self, payload: Payload[Any]) -> ResultList:
        """Raise, or deliver to every collector."""
        if payload.value == "router-error":
            raise RuntimeError("router broke")
        if payload.value == "router-cancelled":
            raise asyncio.CancelledError
        if payload.value == "not-a-list":
            return [Ok(1)]  # type: ignore[return-value]  # the fault under test
        return await self.deliver(payload, list(self.collectors.values()))


class DirectRouter(Router):
    """A router that awaits processors itself instead of through ``deliver``."""

    async def handle_event(self, payload: Payload[Any]) -> ResultList:
        """Call the first collector's processor directly."""
        collector = next(iter(self.collectors.values()))
        return ResultList([await collector.processor(payload, collector.ctx)])


class TestRouterFaults:
    """A failing custom router yields an Error result and never kills its consumer."""

    async def test_router_raising_gives_error(self) -> None:
        """A router that raises resolves the event to Error(exc)."""
        async with CollectorQueue([Collector("c", echo)], router=RaisingRouter) as queue:
            result = (await send_and_wait(queue, Payload("router-error"))).first()
            assert isinstance(result, Error)
            assert isinstance(result.exception, RuntimeError)
            assert (await send_and_wait(queue, Payload("fine"))).first() == Ok("fine")
            assert queue.consumers == 1

    async def test_router_returning_non_result_list_gives_type_error(self) -> None:
        """A router returning something other than a ResultList resolves to Error(TypeError)."""
        async with CollectorQueue([Collector("c", echo)], router=RaisingRouter) as queue:
            result = (await send_and_wait(queue, Payload("not-a-list"))).first()
            assert isinstance(result, Error)
            assert isinstance(result.exception, TypeError)
            assert "router returned [Ok(1)]" in str(result.exception)
            assert (await send_and_wait(queue, Payload("fine"))).first() == Ok("fine")

    async def test_router_raising_cancelled_gives_error_consumer_lives(self) -> None:
        """A router raising CancelledError (not a cancellation of the consumer) gives an Error."""
        async with CollectorQueue(
            [Collector("c", echo)], router=RaisingRouter, min_consumers=1, max_consumers=1
        ) as queue:
            consumers = set(queue._pool.consumers)
            result = (await send_and_wait(queue, Payload("router-cancelled"))).first()
            assert isinstance(result, Error)
            assert isinstance(result.exception, asyncio.CancelledError)
            assert set(queue._pool.consumers) == consumers
            assert (await send_and_wait(queue, Payload("fine"))).first() == Ok("fine")

    async def test_router_direct_processor_cancelled_consumer_lives(self) -> None:
        """A processor raising CancelledError under a router that calls it directly gives Error."""
        async with CollectorQueue(
            [Collector("c", faulty)], router=DirectRouter, min_consumers=1, max_consumers=1
        ) as queue:
            consumers = set(queue._pool.consumers)
            result = (await send_and_wait(queue, Payload("cancelled"))).first()
            assert isinstance(result, Error)
            assert isinstance(result.exception, asyncio.CancelledError)
            assert set(queue._pool.consumers) == consumers
            assert (await send_and_wait(queue, Payload("fine"))).first() == Ok("fine")


class TestBadInput:
    """Bad arguments are refused with a message naming the value."""

    def test_collector_empty_key_raises(self) -> None:
        """An empty collector key is a ValueError."""
        with pytest.raises(ValueError, match=r"collector key must be a non-empty string, got ''"):
            Collector("", echo)

    def test_collector_non_callable_processor_raises(self) -> None:
        """A processor that is not callable is a TypeError naming the collector and value."""
        with pytest.raises(TypeError, match=r"collector 'k': processor must be callable, got 42"):
            Collector("k", 42)  # type: ignore[arg-type]  # the bad input under test

    def test_queue_duplicate_key_raises(self) -> None:
        """Two collectors with the same key is a ValueError naming the key and position."""
        with pytest.raises(ValueError, match=r"duplicate collector key 'a' at collectors\[2\]"):
            CollectorQueue([Collector("a", echo), Collector("b", echo), Collector("a", echo)])

    def test_queue_min_above_max_raises(self) -> None:
        """min_consumers > max_consumers is a ValueError naming both values."""
        with pytest.raises(
            ValueError, match=r"min_consumers \(5\) is greater than max_consumers \(2\)"
        ):
            CollectorQueue([Collector("a", echo)], min_consumers=5, max_consumers=2)

    @pytest.mark.parametrize("max_consumers", [0, -1])
    def test_queue_max_below_one_raises(self, max_consumers: int) -> None:
        """max_consumers < 1 is a ValueError naming the value."""
        with pytest.raises(ValueError, match=rf"max_consumers must be >= 1, got {max_consumers}"):
            CollectorQueue([Collector("a", echo)], min_consumers=0, max_consumers=max_consumers)

    def test_queue_negative_min_raises(self) -> None:
        """min_consumers < 0 is a ValueError naming the value."""
        with pytest.raises(ValueError, match=r"min_consumers must be >= 0, got -1"):
            CollectorQueue([Collector("a", echo)], min_consumers=-1)

    def test_queue_negative_maxsize_raises(self) -> None:
        """A negative maxsize is a ValueError naming the value."""
        with pytest.raises(ValueError, match=r"maxsize must be >= 0, got -1"):
            CollectorQueue([Collector("a", echo)], maxsize=-1)

    def test_queue_maxsize_is_kept(self) -> None:
        """The maxsize given is the queue's bound; 0, the default, is unbounded."""
        assert CollectorQueue([Collector("a", echo)], maxsize=7).maxsize == 7
        assert CollectorQueue([Collector("a", echo)]).maxsize == 0

    @pytest.mark.parametrize(
        ("argument", "value"),
        [
            ("maxsize", 1.5),
            ("maxsize", "10"),
            ("maxsize", True),
            ("max_consumers", 2.0),
            ("max_consumers", True),
            ("min_consumers", "1"),
            ("min_consumers", None),
            ("default_priority", 1.0),
            ("default_priority", False),
        ],
    )
    def test_queue_non_int_argument_raises(self, argument: str, value: object) -> None:
        """A count or priority that is not an int (a bool included) is a TypeError naming it."""
        arguments: dict[str, Any] = {argument: value}
        with pytest.raises(TypeError, match=rf"{argument} must be an int, got {value!r}"):
            CollectorQueue([Collector("a", echo)], **arguments)

    async def test_send_non_payload_raises(self) -> None:
        """Sending something that is not a Payload is a TypeError naming it."""
        async with CollectorQueue([Collector("a", echo)]) as queue:
            with pytest.raises(TypeError, match=r"send\(\) takes a Payload, got dict: \{'x': 1\}"):
                await queue.get_publisher().send({"x": 1})  # type: ignore[arg-type]

    def test_payload_unknown_delivery_raises(self) -> None:
        """A delivery that is not a Delivery is a ValueError naming it."""
        with pytest.raises(ValueError, match=r"unknown delivery 'bogus'"):
            Payload(1, delivery="bogus")  # type: ignore[arg-type]  # the bad input under test

    async def test_send_mutated_delivery_raises(self) -> None:
        """A payload whose delivery was changed to a non-Delivery is refused at send()."""
        payload = Payload(1, delivery=Delivery.KEY, keys=["a"])
        payload.delivery = "bogus"  # type: ignore[assignment]  # the bad input under test
        async with CollectorQueue([Collector("a", echo)]) as queue:
            with pytest.raises(ValueError, match=r"unknown delivery 'bogus'"):
                await queue.get_publisher().send(payload)
            assert queue.qsize() == 0

    def test_payload_keys_as_string_raises(self) -> None:
        """A keys argument that is one string, not a list of them, is a TypeError naming it."""
        with pytest.raises(TypeError, match=r"Payload keys must be a list of strings, not .*'abc'"):
            Payload(1, delivery=Delivery.KEY, keys="abc")

    def test_payload_priority_not_int_raises(self) -> None:
        """A priority that is not an int is a TypeError naming the value."""
        with pytest.raises(TypeError, match=r"Payload priority must be an int or None, got '1'"):
            Payload(1, priority="1")  # type: ignore[arg-type]  # the bad input under test
