"""The error policy of a collector: a time bound, retries with backoff, and a dead letter.

``GuardedCollector`` is a Collector whose ``run`` applies the policy around the core's own
contained runs (``run_processor``, what ``Collector.run`` does): a processor's faults are
contained once, there, and the policy only decides what an Error leads to. Dead letters carry
the failure as user properties; how they travel on MQTT 3.1.1, which has none, is the
transport's business.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from mqtt_collector._core.collector import (
    Collector,
    Context,
    LifecycleManager,
    Processor,
    run_processor,
)
from mqtt_collector._core.payload import Payload
from mqtt_collector._core.result import Error, Result
from mqtt_collector._daemon.message import Message
from mqtt_collector._exceptions import CollectorError

__all__ = ["DeadLetter", "GuardedCollector", "Policy", "UnacknowledgedError"]

logger = structlog.get_logger("mqtt_collector.policy")

Publish = Callable[..., Awaitable[None]]
"""``publish(topic, body, *, qos, retain, user_properties)``, the daemon's transport publish."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """Where a message goes once a collector has failed it for good."""

    topic: str
    qos: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """How one collector's failures are handled."""

    timeout: float | None = None
    attempts: int = 1
    backoff: float = 0.5
    max_backoff: float = 30.0
    dead_letter: DeadLetter | None = None


class UnacknowledgedError(CollectorError):
    """Why a failed message must stay unacknowledged: its dead letter did not get through.

    A guarded processor returns ``Error(UnacknowledgedError(...))`` instead of the collector's own
    Error when the dead-letter publish raised (the broker refused it, or the connection went):
    acking the original would lose the message. The daemon holds its ack, so the broker sends
    it again on the next connection. ``error`` is the collector's failure; ``reason`` (and
    ``__cause__``) why the dead letter failed.
    """

    def __init__(self, error: BaseException, reason: str) -> None:
        """Wrap the collector's ``error``; ``reason`` says why the dead letter failed."""
        super().__init__(f"{_describe(error)}; dead letter not published: {reason}")
        self.error = error
        self.reason = reason


Hook = Callable[[str, str], None]
"""``hook(collector_key, outcome)`` for metrics.

The outcome is ok, error, retry, dead_letter, or dead_letter_failed (the message is left
unacknowledged).
"""


class GuardedCollector(Collector):
    """A Collector whose runs follow its error policy: time bound, retries, dead letter, logs.

    ``run`` never raises (but for its own task's cancellation): every failure is an Error
    result, logged with the message's topic and counted through ``on_outcome``. A failure
    whose dead letter did not get through is ``Error(UnacknowledgedError(...))``: its message
    must not be acked.
    """

    __slots__ = ("on_outcome", "policy", "publish")

    def __init__(
        self,
        key: str,
        processor: Processor,
        policy: Policy,
        *,
        publish: Publish | None = None,
        on_outcome: Hook | None = None,
        lifecycle: LifecycleManager | None = None,
        topics: Iterable[str] | None = None,
        ctx: Context | None = None,
    ) -> None:
        """Build the collector as Collector does, with its ``policy``, ``publish`` and hook."""
        super().__init__(key, processor, lifecycle=lifecycle, topics=topics, ctx=ctx)
        self.policy = policy
        self.publish = publish
        self.on_outcome = on_outcome

    async def _once(self, payload: Payload[Any]) -> Result:
        timeout = self.policy.timeout
        if timeout is None:
            return await run_processor(self.key, self.processor, payload, self.ctx)
        try:
            async with asyncio.timeout(timeout):
                return await run_processor(self.key, self.processor, payload, self.ctx)
        except TimeoutError:
            # Only the bound's own expiry gets here: run_processor lets the cancellation of
            # this task through, and turns a TimeoutError of the processor's into an Error.
            return Error(TimeoutError(f"processor did not finish within {timeout}s"))

    async def run(self, payload: Payload[Any]) -> Result:
        """Run the processor per the policy; return its Result (an Error once it gave up)."""
        key, policy, on_outcome = self.key, self.policy, self.on_outcome
        if policy.timeout is None:  # _once() inlined: the common case costs one call less
            result = await run_processor(key, self.processor, payload, self.ctx)
        else:
            result = await self._once(payload)
        attempt = 1
        while isinstance(result, Error) and attempt < policy.attempts:
            delay = min(policy.backoff * 2 ** (attempt - 1), policy.max_backoff)
            logger.info(
                "retrying",
                collector=key,
                topic=_topic(payload),
                attempt=attempt + 1,
                of=policy.attempts,
                delay=delay,
                error=_describe(result.exception),
            )
            if on_outcome is not None:
                on_outcome(key, "retry")
            await asyncio.sleep(delay)
            attempt += 1
            result = await self._once(payload)
        if not isinstance(result, Error):
            if on_outcome is not None:
                on_outcome(key, "ok")
            return result
        logger.error(
            "collector failed",
            collector=key,
            topic=_topic(payload),
            attempts=attempt,
            error=_describe(result.exception),
        )
        if on_outcome is not None:
            on_outcome(key, "error")
        if policy.dead_letter is not None and self.publish is not None:
            return await _dead_letter(
                key=key,
                payload=payload,
                result=result,
                target=policy.dead_letter,
                publish=self.publish,
                on_outcome=on_outcome,
            )
        return result


async def _dead_letter(
    *,
    key: str,
    payload: Payload[Any],
    result: Error,
    target: DeadLetter,
    publish: Publish,
    on_outcome: Hook | None,
) -> Error:
    """Publish the dead letter; return ``result``, or an Error(UnacknowledgedError) if it failed.

    Any exception of ``publish`` means the dead letter did not get through (the transport
    raises when the broker refuses it, e.g. MQTT 5 PUBACK 0x87 "not authorized").
    """
    value = payload.value
    topic = value.topic if isinstance(value, Message) else ""
    raw = value.raw if isinstance(value, Message) else repr(value).encode()
    error = _describe(result.exception)
    try:
        await publish(
            target.topic,
            raw,
            qos=target.qos,
            user_properties=[("error", error), ("collector", key), ("topic", topic)],
        )
    except Exception as exc:  # noqa: BLE001 - any failure: the original must not be acked
        reason = _describe(exc)
        logger.error(
            "dead letter not published, message left unacknowledged: the broker sends it again",
            collector=key,
            topic=topic,
            dead_letter_topic=target.topic,
            reason=reason,
        )
        if on_outcome is not None:
            on_outcome(key, "dead_letter_failed")
        unacknowledged = UnacknowledgedError(result.exception, reason)
        unacknowledged.__cause__ = exc
        return Error(unacknowledged)
    logger.warning("dead-lettered", collector=key, topic=topic, dead_letter_topic=target.topic)
    if on_outcome is not None:
        on_outcome(key, "dead_letter")
    return result


def _topic(payload: Payload[Any]) -> str | None:
    value = payload.value
    return value.topic if isinstance(value, Message) else None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
