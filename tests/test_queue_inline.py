"""The consumer's inlined copies behave like their originals, and an overridden run is used.

The pool runs a plain Collector's processor, SimpleRouter's choice of collectors and the
event's resolution inline, for speed. Each copy is checked here against the function it
copies, on the same inputs.
"""

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
    Error,
    Ok,
    Payload,
    Result,
    SimpleRouter,
)
from mqtt_collector._core.collector import run_processor

OUTCOMES = [
    pytest.param(Ok(1), id="ok"),
    pytest.param(Error(ValueError("bad")), id="error"),
    pytest.param(RuntimeError("boom"), id="raises"),
    pytest.param(asyncio.CancelledError("own"), id="raises-cancelled"),
    pytest.param(42, id="not-a-result"),
]


def _processor(outcome: object) -> Any:
    async def processor(payload: Payload[Any], ctx: Context) -> Result:
        await asyncio.sleep(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]

    return processor


def _same(first: Result, second: Result) -> None:
    """Two results are alike: same class; same value, or same exception type and text."""
    assert first.__class__ is second.__class__
    if isinstance(first, Error) and isinstance(second, Error):
        assert type(first.exception) is type(second.exception)
        assert str(first.exception) == str(second.exception)
    else:
        assert first == second


async def _through_queue(collectors: list[Collector], payload: Payload[Any]) -> CollectorEvent:
    async with CollectorQueue(collectors, min_consumers=1, max_consumers=2) as queue:
        event = await queue.get_publisher().send(payload)
        await asyncio.wait_for(event.wait(), 5)
    return event


@pytest.mark.parametrize("outcome", OUTCOMES)
async def test_inline_run_behaves_like_run_processor(outcome: object) -> None:
    """One target: the consumer's inline run gives what run_processor gives."""
    processor = _processor(outcome)
    payload = Payload(0, delivery=Delivery.TOPIC, topics=["t"])
    event = await _through_queue([Collector("c", processor, topics=["t"])], payload)
    expected = await run_processor("c", processor, payload, Context())
    _same(event.get_result().first(), expected)  # type: ignore[union-attr]


@pytest.mark.parametrize("outcome", OUTCOMES)
async def test_inline_fanout_run_behaves_like_run_processor(outcome: object) -> None:
    """Several targets: each fanned-out delivery gives what run_processor gives."""
    processor = _processor(outcome)
    payload = Payload(0)
    collectors = [Collector("a", processor), Collector("b", processor)]
    event = await _through_queue(collectors, payload)
    expected = await run_processor("a", processor, payload, Context())
    results = list(event.get_result() or ())
    assert len(results) == len(collectors)
    for result in results:
        if isinstance(expected, Error) and isinstance(expected.exception, TypeError):
            # The message names the collector: compare all but the name.
            assert isinstance(result, Error)
            assert isinstance(result.exception, TypeError)
        else:
            _same(result, expected)


SELECTIONS = [
    pytest.param(Payload(0, delivery=Delivery.TOPIC, topics=["x"]), id="one-topic"),
    pytest.param(Payload(0, delivery=Delivery.TOPIC, topics=["x", "y", "x"]), id="topics"),
    pytest.param(Payload(0, delivery=Delivery.TOPIC, topics=["none"]), id="no-match"),
    pytest.param(Payload(0), id="broadcast"),
    pytest.param(Payload(0, delivery=Delivery.KEY, keys=["b", "a", "b"]), id="keys"),
]


@pytest.mark.parametrize("payload", SELECTIONS)
async def test_inline_select_behaves_like_simple_router_select(payload: Payload[Any]) -> None:
    """The consumer's inlined choice of collectors is SimpleRouter.select's, each once."""
    ran: list[str] = []

    def collector(key: str, topics: list[str]) -> Collector:
        async def processor(payload: Payload[Any], ctx: Context) -> Result:
            ran.append(key)
            return Ok(key)

        return Collector(key, processor, topics=topics)

    collectors = [collector("a", ["x"]), collector("b", ["x", "y"]), collector("c", ["z"])]
    await _through_queue(collectors, payload)
    expected = [c.key for c in SimpleRouter(collectors).select(payload)]
    assert sorted(ran) == sorted(expected)


async def test_inline_resolution_wakes_waiters_and_runs_callbacks() -> None:
    """The inlined _resolve notifies as _resolve does: waiter and done callback both see it."""
    seen: list[Result | None] = []
    gate = asyncio.Event()

    async def slow(payload: Payload[Any], ctx: Context) -> Result:
        await gate.wait()
        return Ok("done")

    async with CollectorQueue([Collector("c", slow)], min_consumers=1) as queue:
        event = await queue.get_publisher().send(Payload(0))
        event.add_done_callback(lambda e: seen.append(e.get_result().first()))  # type: ignore[union-attr]
        waiter = asyncio.create_task(event.wait())
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.wait_for(waiter, 5)
    assert results.first() == Ok("done")
    assert seen == [Ok("done")]


class _Wrapping(Collector):
    """A Collector whose run adds to what the core's own contained run gives."""

    __slots__ = ("runs",)

    def __init__(self, key: str, processor: Any) -> None:
        super().__init__(key, processor)
        self.runs = 0

    async def run(self, payload: Payload[Any]) -> Result:
        self.runs += 1
        result = await Collector.run(self, payload)
        return Ok(("wrapped", result))


async def test_overridden_run_is_what_the_queue_calls() -> None:
    """A subclass's run replaces the inline path: one or several targets alike."""
    single, fanned = (
        _Wrapping("a", _processor(RuntimeError("x"))),
        _Wrapping("b", _processor(Ok(2))),
    )
    event = await _through_queue([single], Payload(0, delivery=Delivery.KEY, keys=["a"]))
    [result] = list(event.get_result() or ())
    assert isinstance(result, Ok)
    tag, inner = result.value
    assert tag == "wrapped"
    assert isinstance(inner, Error)
    assert isinstance(inner.exception, RuntimeError)
    event = await _through_queue([single, fanned], Payload(0))
    assert [r.value[0] for r in event.get_result() or ()] == ["wrapped", "wrapped"]  # type: ignore[union-attr]
    assert (single.runs, fanned.runs) == (2, 1)


async def test_overridden_run_that_raises_is_contained() -> None:
    """A faulty override still cannot kill a consumer: its exception is an Error."""

    class Faulty(Collector):
        async def run(self, payload: Payload[Any]) -> Result:
            raise LookupError("override bug")

    async def fine(payload: Payload[Any], ctx: Context) -> Result:
        return Ok(1)

    event = await _through_queue([Faulty("f", fine)], Payload(0))
    result = event.get_result().first()  # type: ignore[union-attr]
    assert isinstance(result, Error)
    assert isinstance(result.exception, LookupError)
