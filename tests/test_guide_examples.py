"""Every code example of the event-collector guide, run against mqtt_collector.

Each test holds one example as the guide writes it, with ``event_collector`` read as
``mqtt_collector``. Changes from the guide's text, all marked ``# guide:`` where made:
``Collector_Queue`` is ``CollectorQueue``; section C awaits ``publisher.send`` and has the
colon its ``while True`` lacks; the lifecycle is annotated ``AsyncIterator[None]`` (an
async generator cannot return ``None``); ``...`` placeholders are filled minimally; the
``your_application`` imports are the stubs below.
"""

# The guide annotates with a bare ``Payload``; strict mypy wants ``Payload[Any]``, but the
# examples are kept exactly as the guide writes them.
# mypy: disable-error-code="type-arg"

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
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
    EventPublisher,
    Ok,
    Payload,
    Processor,
    QueueType,
    Result,
    ResultList,
    Router,
)

TIMEOUT = 2.0  # bound on every wait the examples do not bound themselves


# --- `your_application`: the stubs the guide's examples import --------------------------------


class SensorDataRepository:
    """A stand-in for a database repository: records its setup and shutdown."""

    instances: list[SensorDataRepository] = []  # noqa: RUF012 - a record the tests read

    def __init__(self) -> None:
        """Record the new repository."""
        self.calls: list[str] = []
        self.instances.append(self)

    def setup(self) -> None:
        """Record setup."""
        self.calls.append("setup")

    def shutdown(self) -> None:
        """Record shutdown."""
        self.calls.append("shutdown")


# --- A. Defining Collectors: the minimal processor --------------------------------------------


async def event_handler(payload: Payload, ctx: Context) -> Result:
    """Process event payload and prepare result."""
    result = payload.value  # guide: `...`
    return Ok(result)


# --- A. Defining Collectors: the lifecycle ----------------------------------------------------


@asynccontextmanager
async def lifecycle(ctx: Context) -> AsyncIterator[None]:  # guide: `-> None`
    """Perform setup and shutdown steps for collector."""
    try:
        ctx.repository = SensorDataRepository()
        ctx.repository.setup()
        yield
    finally:
        ctx.repository.shutdown()


@pytest.fixture(autouse=True)
def _fresh_repositories() -> None:
    """Start every test with no repository recorded."""
    SensorDataRepository.instances.clear()


class TestDefiningCollectors:
    """Section A."""

    async def test_guide_a_minimal_processor_returns_ok(self) -> None:
        """The minimal processor returns Ok with its result."""
        assert await event_handler(Payload({"data": 1}), Context()) == Ok({"data": 1})

    def test_guide_a_collector_from_key_and_processor(self) -> None:
        """Collector(key, event_handler) holds the key, the processor and an empty Context."""
        key = "demo-collector"
        collector = Collector(key, event_handler)
        assert collector.key == "demo-collector"
        assert collector.processor is event_handler
        assert vars(collector.ctx) == {}

    def test_guide_a_processor_type_accepts_event_handler(self) -> None:
        """An event handler is a Processor: Callable[[Payload, Context], Awaitable[Result]]."""
        # guide: `type Processor = ...` is 3.12 syntax; the alias is exported instead.
        handler: Processor = event_handler
        also: Callable[[Payload, Context], Awaitable[Result]] = handler
        assert also is event_handler

    def test_guide_a_collector_with_own_context(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A Context given as ctx= is the one the collector keeps, with its values."""
        monkeypatch.setenv("CONFIG_VALUE", "from-env")
        key = "demo-collector"
        ctx = Context()
        ctx.config_value = os.getenv("CONFIG_VALUE")
        collector = Collector(
            key,
            event_handler,
            lifecycle=lifecycle,
            ctx=ctx,
        )
        assert collector.ctx is ctx
        assert collector.ctx.config_value == "from-env"
        assert collector.lifecycle is lifecycle

    async def test_guide_a_lifecycle_sets_up_then_shuts_down(self) -> None:
        """The lifecycle sets the repository up at init and shuts it down at shutdown."""
        seen: list[Any] = []

        async def uses_repository(payload: Payload, ctx: Context) -> Result:
            seen.append(ctx.repository.calls[:])
            return Ok(None)

        # Create Collector
        key = "demo-collector"
        topics = ["sensor-data", "temperature"]
        collector = Collector(key, event_handler, lifecycle=lifecycle, topics=topics)
        assert collector.topics == ["sensor-data", "temperature"]
        collector.processor = uses_repository
        async with CollectorQueue([collector]) as queue:
            (repository,) = SensorDataRepository.instances
            assert repository.calls == ["setup"]
            payload = Payload(1, delivery=Delivery.TOPIC, topics=["temperature"])
            await (await queue.get_publisher().send(payload)).wait(timeout=TIMEOUT)
        assert seen == [["setup"]]
        assert repository.calls == ["setup", "shutdown"]


class TestConfiguringQueue:
    """Section B."""

    async def test_guide_b_async_context_manager_runs_queue(self) -> None:
        """`async with collector_queue` runs the queue and gives a working publisher."""
        key = "demo-collector"
        collector = Collector(key, event_handler)
        collectors = [collector]
        min_consumers = 1
        max_consumers = 1000
        collector_queue = CollectorQueue(
            collectors,
            min_consumers=min_consumers,
            max_consumers=max_consumers,
        )
        async with collector_queue:
            publisher = collector_queue.get_publisher()
            assert isinstance(publisher, EventPublisher)
            assert collector_queue.running
            event = await publisher.send(Payload("hello"))
            assert (await event.wait(timeout=TIMEOUT)).first() == Ok("hello")
        assert not collector_queue.running

    async def test_guide_b_manual_init_and_shut_down(self) -> None:
        """init_queue() then shut_down_queue() in try/finally runs and stops the queue."""
        key = "demo-collector"
        errors: list[Exception] = []
        try:
            collector = Collector(key, event_handler)
            collectors = [collector]
            min_consumers = 1
            max_consumers = 1000
            # Create and initialize collector queue
            collector_queue = CollectorQueue(  # guide: `Collector_Queue`
                collectors,
                min_consumers=min_consumers,
                max_consumers=max_consumers,
            )
            await collector_queue.init_queue()
            # Get the EventPublisher to send events
            publisher = collector_queue.get_publisher()
            event = await publisher.send(Payload("manual"))  # guide: `...`
        except Exception as e:  # noqa: BLE001 - the guide's catch-all, recorded for the test
            # Handle any exceptions
            errors.append(e)  # guide: `...`
        finally:
            # Shut down collector queue
            await collector_queue.shut_down_queue()
        assert errors == []
        assert collector_queue.state == "shut down"
        assert (await event.wait(timeout=TIMEOUT)).first() == Ok("manual")


class TestSendingPayloads:
    """Section C."""

    async def test_guide_c_app_service_sends_every_input(self) -> None:
        """The app service sends each input payload; the queue processes all before exiting."""
        received: list[Any] = []

        async def store(payload: Payload, ctx: Context) -> Result:
            received.append(payload.value)
            return Ok(None)

        collectors = [Collector("store", store)]
        min_consumers, max_consumers = 1, 4
        inputs = [{"n": n} for n in range(5)]

        async def get_input_event_payload() -> dict[str, int]:
            return inputs.pop(0)

        def get_collector_queue() -> CollectorQueue:
            collector_queue = CollectorQueue(
                collectors,
                min_consumers=min_consumers,
                max_consumers=max_consumers,
            )
            return collector_queue  # noqa: RET504 - as the guide writes it

        async def your_app_service() -> None:
            collector_queue = get_collector_queue()
            async with collector_queue:
                publisher = collector_queue.get_publisher()
                while True:  # guide: no colon
                    # use the publisher to send input event payloads to the
                    # collector queue
                    data = await get_input_event_payload()
                    payload = Payload(data)
                    await publisher.send(payload)  # guide: not awaited
                    if not inputs:  # guide: `...`
                        break

        await asyncio.wait_for(your_app_service(), TIMEOUT)
        assert received == [{"n": n} for n in range(5)]


class DeliveryRecorder:
    """Three collectors recording what each one receives, as in section D's examples."""

    def __init__(self) -> None:
        """Build 'custom-collector' (topic sensor-data), 'other' and 'third' (topic other)."""
        self.received: dict[str, list[Any]] = {"custom-collector": [], "other": [], "third": []}
        self.collectors = [
            Collector(
                "custom-collector", self.processor("custom-collector"), topics=["sensor-data"]
            ),
            Collector("other", self.processor("other"), topics=["other"]),
            Collector("third", self.processor("third"), topics=["other", "sensor-data-2"]),
        ]

    def processor(self, key: str) -> Processor:
        """A processor recording its payloads under ``key``."""

        async def record(payload: Payload, ctx: Context) -> Result:
            self.received[key].append(payload.value)
            return Ok(key)

        return record


class TestDelivery:
    """Section D."""

    async def test_guide_d_default_payload_broadcasts(self) -> None:
        """Payload(payload_data) with the default delivery reaches every collector."""
        recorder = DeliveryRecorder()
        async with CollectorQueue(recorder.collectors) as collector_queue:
            publisher = collector_queue.get_publisher()
            payload_data = {
                "data": "payload data",
            }
            payload = Payload(payload_data)
            event = await publisher.send(payload)
            results = await event.wait(timeout=TIMEOUT)
        assert results == ResultList([Ok("custom-collector"), Ok("other"), Ok("third")])
        assert all(got == [{"data": "payload data"}] for got in recorder.received.values())

    async def test_guide_d_key_delivery_reaches_named_collector(self) -> None:
        """Delivery.KEY with keys=["custom-collector"] reaches that collector only."""
        recorder = DeliveryRecorder()
        async with CollectorQueue(recorder.collectors) as collector_queue:
            publisher = collector_queue.get_publisher()
            payload_data = {
                "data": "payload data",
            }
            delivery = Delivery.KEY
            keys = ["custom-collector"]
            payload = Payload(payload_data, delivery=delivery, keys=keys)
            event = await publisher.send(payload)
            results = await event.wait(timeout=TIMEOUT)
        assert results == ResultList([Ok("custom-collector")])
        assert recorder.received == {
            "custom-collector": [{"data": "payload data"}],
            "other": [],
            "third": [],
        }

    async def test_guide_d_topic_delivery_reaches_listeners(self) -> None:
        """Delivery.TOPIC with topics=["sensor-data"] reaches the collectors listening to it."""
        recorder = DeliveryRecorder()
        async with CollectorQueue(recorder.collectors) as collector_queue:
            publisher = collector_queue.get_publisher()
            payload_data = {
                "data": "payload data",
            }
            delivery = Delivery.TOPIC
            topics = ["sensor-data"]
            payload = Payload(payload_data, delivery=delivery, topics=topics)
            event = await publisher.send(payload)
            results = await event.wait(timeout=TIMEOUT)
        assert results == ResultList([Ok("custom-collector")])
        assert recorder.received["other"] == recorder.received["third"] == []

    async def test_guide_d_broadcast_explicit_or_simple(self) -> None:
        """Delivery.BROADCAST, given or by default, reaches every collector."""
        recorder = DeliveryRecorder()
        async with CollectorQueue(recorder.collectors) as collector_queue:
            publisher = collector_queue.get_publisher()
            payload_data = {
                "data": "payload data",
            }
            delivery = Delivery.BROADCAST
            payload = Payload(payload_data, delivery=delivery)
            first = await publisher.send(payload)
            # or simply
            payload_data = {
                "data": "payload data",
            }
            payload = Payload(payload_data)
            second = await publisher.send(payload)
            for event in (first, second):
                assert len(await event.wait(timeout=TIMEOUT)) == 3
        assert all(len(got) == 2 for got in recorder.received.values())

    async def test_guide_d_unmatched_key_or_topic_gives_empty_ok(self) -> None:
        """A key or topic matching no collector gives an empty ResultList: first() is Ok(None)."""
        recorder = DeliveryRecorder()
        async with CollectorQueue(recorder.collectors) as collector_queue:
            publisher = collector_queue.get_publisher()
            unmatched: list[Payload[dict[str, Any]]] = [
                Payload({}, delivery=Delivery.KEY, keys=["no-such-collector"]),
                Payload({}, delivery=Delivery.TOPIC, topics=["no-such-topic"]),
            ]
            for payload in unmatched:
                results = await (await publisher.send(payload)).wait(timeout=TIMEOUT)
                assert results.first() == Ok(None)
                assert len(results) == 0
        assert all(got == [] for got in recorder.received.values())

    def test_guide_d_payload_attributes(self) -> None:
        """A Payload has value, delivery, keys, topics and priority."""
        payload = Payload(
            {"data": 1}, delivery=Delivery.TOPIC, keys=["k"], topics=["t"], priority=7
        )
        assert payload.value == {"data": 1}
        assert payload.delivery is Delivery.TOPIC
        assert list(payload.keys) == ["k"]
        assert list(payload.topics) == ["t"]
        assert payload.priority == 7


class TestCustomizingQueue:
    """Section E."""

    def test_guide_e_queue_types(self) -> None:
        """queue_type selects FIFO, PRIORITY or LIFO."""
        collectors = [Collector("demo-collector", event_handler)]
        min_consumers, max_consumers = 1, 10
        collector_queue = CollectorQueue(
            collectors=collectors,
            min_consumers=min_consumers,
            max_consumers=max_consumers,
            queue_type=QueueType.FIFO,
        )
        assert collector_queue.queue_type is QueueType.FIFO
        # or
        collector_queue = CollectorQueue(
            collectors=collectors,
            min_consumers=min_consumers,
            max_consumers=max_consumers,
            queue_type=QueueType.PRIORITY,
        )
        assert collector_queue.queue_type is QueueType.PRIORITY
        # or
        collector_queue = CollectorQueue(
            collectors=collectors,
            min_consumers=min_consumers,
            max_consumers=max_consumers,
            queue_type=QueueType.LIFO,
        )
        assert collector_queue.queue_type is QueueType.LIFO

    async def test_guide_e_priority_payload_runs_before_default(self) -> None:
        """A payload sent with priority 0 runs before queued default-priority (1000) ones."""
        order: list[Any] = []
        started, release = asyncio.Event(), asyncio.Event()

        async def record(payload: Payload, ctx: Context) -> Result:
            if payload.value == "blocker":
                started.set()
                await release.wait()
            order.append(payload.value)
            return Ok(None)

        collectors = [Collector("demo-collector", record)]
        min_consumers = max_consumers = 1  # one consumer, so the queue order is the run order
        collector_queue = CollectorQueue(
            collectors=collectors,
            min_consumers=min_consumers,
            max_consumers=max_consumers,
            queue_type=QueueType.PRIORITY,
            default_priority=1000,
        )
        await collector_queue.init_queue()  # guide: the example shows a running queue
        publisher = collector_queue.get_publisher()
        await publisher.send(Payload("blocker"))
        await asyncio.wait_for(started.wait(), TIMEOUT)
        await publisher.send(Payload("default"))  # priority None: the default, 1000
        priority = 0
        payload = Payload({"data": "payload_data"}, priority=priority)
        await publisher.send(payload)
        release.set()
        await asyncio.wait_for(collector_queue.shut_down_queue(), TIMEOUT)
        assert order == ["blocker", {"data": "payload_data"}, "default"]


class CustomRouter(Router):
    """Section F's custom router: delivers to the collectors named in the value's "to" list."""

    async def handle_event(self, payload: Payload) -> ResultList:
        """
        Custom routing logic here. Return value must be ResultList.
        """  # noqa: D200, D212 - the guide's docstring, as written (bar a stray fourth quote)
        targets = [self.collectors[key] for key in payload.value["to"] if key in self.collectors]
        return await self.deliver(payload, targets)


class TestCustomRouter:
    """Section F."""

    async def test_guide_f_custom_router_decides_delivery(self) -> None:
        """router=CustomRouter routes by the payload's value, ignoring its delivery mode."""
        recorder = DeliveryRecorder()
        collectors = recorder.collectors
        min_consumers, max_consumers = 1, 10
        collector_queue = CollectorQueue(
            collectors=collectors,
            router=CustomRouter,
            min_consumers=min_consumers,
            max_consumers=max_consumers,
        )
        async with collector_queue:
            publisher = collector_queue.get_publisher()
            event = await publisher.send(Payload({"to": ["third", "custom-collector", "nope"]}))
            results = await event.wait(timeout=TIMEOUT)
        assert results == ResultList([Ok("third"), Ok("custom-collector")])
        assert recorder.received["other"] == []


@pytest.fixture
async def publisher() -> AsyncIterator[EventPublisher]:
    """The publisher of a running queue with two collectors, both on topic "sensor-data"."""

    async def double(payload: Payload, ctx: Context) -> Result:
        return Ok(payload.value["data"] * 2)

    collectors = [
        Collector("demo-collector", event_handler, topics=["sensor-data"]),
        Collector("doubler", double, topics=["sensor-data", "temperature-readings"]),
    ]
    async with CollectorQueue(collectors) as collector_queue:
        yield collector_queue.get_publisher()


class TestReturnValues:
    """Section G."""

    async def test_guide_g_wait_and_get_result(self, publisher: EventPublisher) -> None:
        """send() returns a CollectorEvent; wait() and `await get_result()` give the ResultList."""
        payload_data = {
            "data": "payload data",
        }
        delivery = Delivery.TOPIC
        topics = ["sensor-data", "temperature-readings"]
        payload = Payload(payload_data, delivery=delivery, topics=topics)
        # The publisher.send method will return a CollectorEvent object when called
        event = await publisher.send(payload)
        assert isinstance(event, CollectorEvent)
        # Fetch the ResultList
        result_list = await event.wait()
        assert isinstance(result_list, ResultList)
        # Or, use get_result if you know the event is already done
        result_list = await event.get_result()  # type: ignore[misc]  # None until done; done here
        assert result_list == ResultList(
            [Ok({"data": "payload data"}), Ok("payload datapayload data")]
        )

    async def test_guide_g_single_result_match_takes_ok_branch(
        self, publisher: EventPublisher, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """first() and a match statement take the Ok branch and print the value."""
        payload = Payload({"data": "one"}, delivery=Delivery.KEY, keys=["demo-collector"])
        event = await publisher.send(payload)
        # (1) Fetch the ResultList
        result_list = await event.wait()
        # (2) To get only one Result object, use the "first" method
        result = result_list.first()
        # (3) Check if result is Ok or Error
        match result:
            case Error(_):
                # Handle exception
                print("error")  # noqa: T201 - guide: `...`; printed so the test sees the branch
            case Ok(value):
                # value is the return value from the collector
                print(value)  # noqa: T201 - the guide's example prints
        assert capsys.readouterr().out == "{'data': 'one'}\n"

    async def test_guide_g_multiple_results_async_for_match(
        self, publisher: EventPublisher, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`async for` over iter() matches each result; both Ok values are printed."""
        payload = Payload({"data": "ab"}, delivery=Delivery.TOPIC, topics=["sensor-data"])
        event = await publisher.send(payload)
        # (1) Fetch the ResultList
        result_list = await event.wait()
        # (2) To get all Result object, use the "iter" method
        async for result in result_list.iter():
            # (3) Check each result to see if it is Ok or Error
            match result:
                case Error(_):
                    # Handle exception
                    print("error")  # noqa: T201 - guide: `...`; printed so the test sees it
                case Ok(value):
                    # value is the return value from the collector
                    print(value)  # noqa: T201 - the guide's example prints
        assert capsys.readouterr().out == "{'data': 'ab'}\nabab\n"

    async def test_guide_g_match_takes_error_branch_on_failure(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The same match statement takes the Error branch when the processor raised."""

        async def broken(payload: Payload, ctx: Context) -> Result:
            raise RuntimeError("collector down")

        async with CollectorQueue([Collector("broken", broken)]) as collector_queue:
            publisher = collector_queue.get_publisher()
            event = await publisher.send(Payload({"data": 1}))
            result_list = await event.wait()
            result = result_list.first()
            match result:
                case Error(exc):
                    print(f"error: {exc}")  # noqa: T201 - shows which branch ran
                case Ok(value):
                    print(value)  # noqa: T201 - shows which branch ran
        assert capsys.readouterr().out == "error: collector down\n"

    async def test_guide_g_fire_and_forget(self) -> None:
        """A payload sent without looking at the event is still processed."""
        received: list[Any] = []

        async def store(payload: Payload, ctx: Context) -> Result:
            received.append(payload.value)
            return Ok(None)

        async with CollectorQueue([Collector("store", store)]) as collector_queue:
            publisher = collector_queue.get_publisher()
            payload = Payload({"data": "forget me"})
            await publisher.send(payload)
        assert received == [{"data": "forget me"}]
