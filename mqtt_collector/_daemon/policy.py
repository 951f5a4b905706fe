"""The error policy of a collector: a time bound, retries with backoff, and a dead letter."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from mqtt_collector._core.collector import Context, Processor
from mqtt_collector._core.payload import Payload
from mqtt_collector._core.result import Error, Ok, Result
from mqtt_collector._core.router import run_processor
from mqtt_collector._daemon.message import Message
from mqtt_collector._exceptions import CollectorError

__all__ = ["DeadLetter", "Policy", "UnacknowledgedError", "guard"]

logger = structlog.get_logger("mqtt_collector.policy")

Publish = Callable[..., Awaitable[None]]
"""``publish(topic, body, *, qos, user_properties)``, the daemon's transport publish."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """Where a message goes once a collector has failed it for good."""

    topic: str
    qos: int
    v5: bool  # MQTT 5: the error goes in user properties; 3.1.1: in a JSON envelope


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


def guard(  # noqa: C901 - one closure per concern reads better than a class here
    key: str,
    processor: Processor,
    policy: Policy,
    *,
    publish: Publish | None = None,
    on_outcome: Hook | None = None,
) -> Processor:
    """Wrap ``processor`` so timeouts, retries, the dead letter and logging happen per ``policy``.

    The wrapped processor never raises: every failure is an Error result, logged with the
    message's topic and counted through ``on_outcome``. A failure whose dead letter did not get
    through is ``Error(UnacknowledgedError(...))``: its message must not be acked.
    """
    timeout, attempts = policy.timeout, policy.attempts

    async def once(payload: Payload[Any], ctx: Context) -> Result:
        try:
            async with asyncio.timeout(timeout):
                return await run_processor(key, processor, payload, ctx)
        except TimeoutError:
            # Only the bound's own expiry gets here: run_processor lets the cancellation of
            # this task through, and turns a TimeoutError of the processor's into an Error.
            return Error(TimeoutError(f"processor did not finish within {timeout}s"))

    async def guarded(payload: Payload[Any], ctx: Context) -> Result:
        result = await once(payload, ctx)
        if result.__class__ is Ok:
            if on_outcome is not None:
                on_outcome(key, "ok")
            return result
        attempt = 1
        while attempt < attempts and isinstance(result, Error):
            delay = min(policy.backoff * 2 ** (attempt - 1), policy.max_backoff)
            logger.info(
                "retrying",
                collector=key,
                topic=_topic(payload),
                attempt=attempt + 1,
                of=attempts,
                delay=delay,
                error=_describe(result.exception),
            )
            if on_outcome is not None:
                on_outcome(key, "retry")
            await asyncio.sleep(delay)
            attempt += 1
            result = await once(payload, ctx)
        if isinstance(result, Ok):
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
        if policy.dead_letter is not None and publish is not None:
            return await _dead_letter(
                key=key,
                payload=payload,
                result=result,
                target=policy.dead_letter,
                publish=publish,
                on_outcome=on_outcome,
            )
        return result

    return guarded


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
        if target.v5:
            await publish(
                target.topic,
                raw,
                qos=target.qos,
                user_properties=[("error", error), ("collector", key), ("topic", topic)],
            )
        else:
            envelope = {"error": error, "collector": key, "topic": topic, **_body(raw)}
            await publish(target.topic, json.dumps(envelope).encode(), qos=target.qos)
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


def _body(raw: bytes) -> dict[str, str]:
    """The body for the JSON envelope: as text if it is UTF-8, else base64, losslessly."""
    try:
        return {"body": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body": base64.b64encode(raw).decode("ascii"), "body_encoding": "base64"}


def _topic(payload: Payload[Any]) -> str | None:
    value = payload.value
    return value.topic if isinstance(value, Message) else None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
