"""The error policy: timeouts, retries with backoff, the dead letter and the outcome hook."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import MappingProxyType
from typing import Any

import pytest
import structlog.testing

from mqtt_collector._core.collector import Context, Processor
from mqtt_collector._core.payload import Delivery, Payload
from mqtt_collector._core.result import Error, Ok, Result
from mqtt_collector._daemon.message import Message
from mqtt_collector._daemon.policy import (
    DeadLetter,
    GuardedCollector,
    Policy,
    Publish,
    UnacknowledgedError,
)
from mqtt_collector._exceptions import TransportError

TOPIC = "sensors/a/temperature"


def _payload(raw: bytes = b'{"t": 21}') -> Payload[Message]:
    message = Message(
        topic=TOPIC,
        data=None,
        raw=raw,
        qos=1,
        retain=False,
        captures=("a",),
        subscription="sensors/+/temperature",
        received_at=0.0,
        properties=MappingProxyType({}),
    )
    return Payload(message, delivery=Delivery.TOPIC, topics=("t",))


class FakePublish:
    """Records what the policy publishes, as the daemon's transport would send it."""

    def __init__(self, *, fail: bool = False) -> None:
        """Record calls; raise ConnectionError on each if ``fail``."""
        self.sent: list[tuple[str, bytes, int, list[tuple[str, str]] | None]] = []
        self.fail = fail

    async def __call__(
        self,
        topic: str,
        body: bytes,
        *,
        qos: int,
        user_properties: list[tuple[str, str]] | None = None,
    ) -> None:
        """Record one publish."""
        if self.fail:
            raise ConnectionError("broker gone")
        self.sent.append((topic, body, qos, user_properties))


class Script:
    """A processor that plays back a list of outcomes: a Result, an exception, or a value."""

    def __init__(self, *outcomes: object) -> None:
        """Play ``outcomes`` in order, repeating the last."""
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self, payload: Payload[Any], ctx: Context) -> Result:
        """Return (or raise) the next outcome."""
        self.calls += 1
        outcome = self.outcomes[min(self.calls, len(self.outcomes)) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]


def _guard(
    processor: Processor, publish: Publish | None = None, **policy: Any
) -> tuple[Processor, Counter[str]]:
    """Return a processor-shaped call of a GuardedCollector's run, and its outcome counts."""
    outcomes: Counter[str] = Counter()
    collector = GuardedCollector(
        "store",
        processor,
        Policy(**policy),
        publish=publish,
        on_outcome=lambda key, outcome: outcomes.update([f"{key}:{outcome}"]),
    )

    async def guarded(payload: Payload[Any], ctx: Context) -> Result:
        return await collector.run(payload)

    return guarded, outcomes


class TestRetry:
    """Retries with exponential backoff."""

    async def test_policy_retries_error_until_ok(self) -> None:
        """An Error then Ok is retried once and Ok is returned."""
        script = Script(Error(RuntimeError("once")), Ok(1))
        guarded, outcomes = _guard(script, attempts=3, backoff=0.001)
        assert await guarded(_payload(), Context()) == Ok(1)
        assert script.calls == 2
        assert outcomes == Counter({"store:retry": 1, "store:ok": 1})

    async def test_policy_retries_exception_until_ok(self) -> None:
        """A raised exception is retried like an Error."""
        script = Script(ValueError("bad"), Ok(2))
        guarded, _ = _guard(script, attempts=2, backoff=0.001)
        assert await guarded(_payload(), Context()) == Ok(2)
        assert script.calls == 2

    async def test_policy_backoff_doubles_up_to_max(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The waits between tries are backoff, 2*backoff, ... capped at max_backoff."""
        delays: list[float] = []
        real_sleep = asyncio.sleep

        async def sleep(delay: float) -> None:
            delays.append(delay)
            await real_sleep(0)

        monkeypatch.setattr("mqtt_collector._daemon.policy.asyncio.sleep", sleep)
        script = Script(Error(RuntimeError("always")))
        guarded, _ = _guard(script, attempts=5, backoff=0.01, max_backoff=0.03)
        await guarded(_payload(), Context())
        assert delays == [0.01, 0.02, 0.03, 0.03]

    async def test_policy_exhausted_returns_last_error(self) -> None:
        """After every attempt failed, the last Error is returned and counted once."""
        last = RuntimeError("third")
        script = Script(Error(RuntimeError("1")), Error(RuntimeError("2")), Error(last))
        guarded, outcomes = _guard(script, attempts=3, backoff=0.001)
        result = await guarded(_payload(), Context())
        assert isinstance(result, Error)
        assert result.exception is last
        assert script.calls == 3
        assert outcomes == Counter({"store:retry": 2, "store:error": 1})

    async def test_policy_single_attempt_is_not_retried(self) -> None:
        """attempts=1 (the default) tries once."""
        script = Script(Error(RuntimeError("no")), Ok(1))
        guarded, outcomes = _guard(script)
        assert isinstance(await guarded(_payload(), Context()), Error)
        assert script.calls == 1
        assert outcomes == Counter({"store:error": 1})


class TestDeadLetter:
    """A finally failed message is published to the dead-letter topic."""

    async def test_policy_dead_letter_has_user_properties(self) -> None:
        """The raw body, with error, collector and topic as user properties (any protocol)."""
        publish = FakePublish()
        target = DeadLetter(topic="dead/store", qos=1)
        script = Script(Error(RuntimeError("disk full")))
        guarded, outcomes = _guard(script, publish, attempts=2, backoff=0.001, dead_letter=target)
        await guarded(_payload(b"\xff\x00raw"), Context())
        assert publish.sent == [
            (
                "dead/store",
                b"\xff\x00raw",
                1,
                [("error", "RuntimeError: disk full"), ("collector", "store"), ("topic", TOPIC)],
            )
        ]
        assert outcomes["store:dead_letter"] == 1

    async def test_policy_dead_letter_failure_is_not_raised(self) -> None:
        """A dead letter that cannot be published is logged and counted; an Error is returned."""
        target = DeadLetter(topic="dead/store", qos=1)
        guarded, outcomes = _guard(
            Script(Error(RuntimeError("no"))), FakePublish(fail=True), dead_letter=target
        )
        assert isinstance(await guarded(_payload(), Context()), Error)
        assert outcomes == Counter({"store:error": 1, "store:dead_letter_failed": 1})

    async def test_policy_without_dead_letter_only_logs_and_counts(self) -> None:
        """With publish wired (as the daemon does) and no dead letter, nothing is published."""
        publish = FakePublish()
        failure = RuntimeError("no")
        guarded, outcomes = _guard(Script(Error(failure)), publish)
        with structlog.testing.capture_logs() as logs:
            result = await guarded(_payload(), Context())
        assert isinstance(result, Error)
        assert result.exception is failure
        assert publish.sent == []
        assert outcomes == Counter({"store:error": 1})
        assert [entry for entry in logs if "dead" in entry["event"]] == []
        assert [entry["log_level"] for entry in logs] == ["error"]

    async def test_policy_success_is_not_dead_lettered(self) -> None:
        """A message that succeeds on retry publishes nothing."""
        publish = FakePublish()
        target = DeadLetter(topic="dead/store", qos=1)
        script = Script(Error(RuntimeError("once")), Ok(None))
        guarded, _ = _guard(script, publish, attempts=2, backoff=0.001, dead_letter=target)
        await guarded(_payload(), Context())
        assert publish.sent == []


class RaisingPublish:
    """A dead-letter publish that raises ``exc``, as the transport does on a failure."""

    def __init__(self, exc: Exception) -> None:
        """Raise ``exc`` on every call."""
        self.exc = exc
        self.calls = 0

    async def __call__(self, topic: str, body: bytes, **kwargs: Any) -> None:
        """Count the call, then raise."""
        self.calls += 1
        raise self.exc


class TestDeadLetterFailed:
    """A dead letter that did not get through leaves the original unacknowledged."""

    @pytest.mark.parametrize(
        "exc",
        [
            TransportError("the broker refused the publish to 'dead/store': Not authorized"),
            TransportError("not connected"),
            ConnectionError("broker gone"),
        ],
        ids=["refused", "not-connected", "os-error"],
    )
    async def test_policy_dead_letter_failed_returns_unacknowledged(self, exc: Exception) -> None:
        """The result is Error(UnacknowledgedError) around the collector's error, caused by exc."""
        failure = RuntimeError("disk full")
        publish = RaisingPublish(exc)
        target = DeadLetter(topic="dead/store", qos=1)
        guarded, _ = _guard(Script(Error(failure)), publish, dead_letter=target)
        result = await guarded(_payload(), Context())
        assert publish.calls == 1
        assert isinstance(result, Error)
        assert isinstance(result.exception, UnacknowledgedError)
        assert result.exception.error is failure
        assert result.exception.__cause__ is exc
        assert result.exception.reason == f"{type(exc).__name__}: {exc}"

    async def test_policy_dead_letter_failed_is_counted(self) -> None:
        """The failure is counted as dead_letter_failed, never as dead_letter."""
        target = DeadLetter(topic="dead/store", qos=1)
        publish = RaisingPublish(TransportError("refused"))
        guarded, outcomes = _guard(
            Script(Error(RuntimeError("no"))),
            publish,
            attempts=2,
            backoff=0.001,
            dead_letter=target,
        )
        await guarded(_payload(), Context())
        assert outcomes == Counter(
            {"store:retry": 1, "store:error": 1, "store:dead_letter_failed": 1}
        )

    async def test_policy_dead_letter_failed_logs_one_error_line(self) -> None:
        """One error line names collector, topic, dead-letter topic, reason and what happens."""
        target = DeadLetter(topic="dead/store", qos=1)
        publish = RaisingPublish(TransportError("refused: Not authorized"))
        guarded, _ = _guard(Script(Error(RuntimeError("no"))), publish, dead_letter=target)
        with structlog.testing.capture_logs() as logs:
            await guarded(_payload(), Context())
        dead = [entry for entry in logs if "dead" in entry["event"]]
        assert len(dead) == 1, logs
        [line] = dead
        assert line["log_level"] == "error"
        assert "left unacknowledged: the broker sends it again" in line["event"]
        assert (line["collector"], line["topic"], line["dead_letter_topic"]) == (
            "store",
            TOPIC,
            "dead/store",
        )
        assert line["reason"] == "TransportError: refused: Not authorized"

    async def test_policy_dead_letter_published_returns_the_collectors_error(self) -> None:
        """A dead letter that got through returns the collector's own Error (acked as handled)."""
        failure = RuntimeError("no")
        target = DeadLetter(topic="dead/store", qos=1)
        guarded, _ = _guard(Script(Error(failure)), FakePublish(), dead_letter=target)
        result = await guarded(_payload(), Context())
        assert isinstance(result, Error)
        assert result.exception is failure


class TestFaults:
    """Faults of the processor become Error results."""

    async def test_policy_timeout_turns_hang_into_error(self) -> None:
        """A processor that never returns is cut off at ``timeout`` with a TimeoutError."""

        async def hang(payload: Payload[Any], ctx: Context) -> Result:
            await asyncio.Event().wait()
            return Ok(None)

        guarded, outcomes = _guard(hang, timeout=0.05)
        async with asyncio.timeout(5):
            result = await guarded(_payload(), Context())
        assert isinstance(result, Error)
        assert isinstance(result.exception, TimeoutError)
        assert "0.05" in str(result.exception)
        assert outcomes == Counter({"store:error": 1})

    async def test_policy_processor_timeout_error_is_kept(self) -> None:
        """A TimeoutError the processor raises itself is reported as is, not as the bound."""
        own = TimeoutError("socket timed out")
        guarded, _ = _guard(Script(own), timeout=5)
        result = await guarded(_payload(), Context())
        assert isinstance(result, Error)
        assert result.exception is own

    async def test_policy_non_result_becomes_error(self) -> None:
        """A processor returning 42 gives an Error naming the type."""
        guarded, _ = _guard(Script(42))
        result = await guarded(_payload(), Context())
        assert isinstance(result, Error)
        assert isinstance(result.exception, TypeError)
        assert "int" in str(result.exception)

    async def test_policy_processor_cancelled_error_becomes_error(self) -> None:
        """A CancelledError the processor raises on its own (not a cancel of us) is an Error."""
        guarded, outcomes = _guard(Script(asyncio.CancelledError()))
        result = await guarded(_payload(), Context())
        assert isinstance(result, Error)
        assert isinstance(result.exception, asyncio.CancelledError)
        assert outcomes == Counter({"store:error": 1})

    async def test_policy_cancel_of_the_task_propagates(self) -> None:
        """Cancelling the task running the guarded processor cancels it, not an Error."""
        started = asyncio.Event()

        async def wait(payload: Payload[Any], ctx: Context) -> Result:
            started.set()
            await asyncio.Event().wait()
            return Ok(None)

        guarded, _ = _guard(wait)
        task: asyncio.Task[Result] = asyncio.ensure_future(guarded(_payload(), Context()))
        async with asyncio.timeout(5):
            await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def test_policy_ok_is_counted(self) -> None:
        """A success is returned as is and counted as ok."""
        guarded, outcomes = _guard(Script(Ok("v")))
        assert await guarded(_payload(), Context()) == Ok("v")
        assert outcomes == Counter({"store:ok": 1})
