"""Collectors the fault-injection tests name by dotted path, e.g. ``tests.fault_collectors:record``.

Each recording collector appends one JSON line per message (topic, body if short, its first
bytes as ``head``, size) to ``ctx.options["path"]`` and flushes it before returning, so that
what it wrote survives the daemon being killed right after.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mqtt_collector import Context, Error, Message, Ok, Payload, Result

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = [
    "fails",
    "flaky",
    "hangs",
    "marker",
    "raises",
    "record",
    "returns_42",
    "slow",
    "teardown_raises",
]

_SHORT = 100  # bodies up to this many bytes are written whole; longer ones by size only
_HEAD = 20  # the first bytes of every body are written, so a long numbered body shows its number


def _file(ctx: Context) -> IO[str]:
    handle: IO[str] | None = getattr(ctx, "record_file", None)
    if handle is None:
        # Opened once and kept on the Context; line-buffered text, flushed per write anyway.
        handle = Path(ctx.options["path"]).open("a", encoding="utf-8")  # noqa: SIM115
        ctx.record_file = handle
    return handle


def _write(payload: Payload[Any], ctx: Context) -> None:
    message = payload.value
    assert isinstance(message, Message)
    raw = message.raw
    body = raw.decode("utf-8", "backslashreplace") if len(raw) <= _SHORT else None
    head = raw[:_HEAD].decode("utf-8", "backslashreplace")
    line = {"topic": message.topic, "body": body, "head": head, "size": len(raw)}
    handle = _file(ctx)
    handle.write(json.dumps(line) + "\n")
    handle.flush()


async def record(payload: Payload[Any], ctx: Context) -> Result:
    """Append the message (topic, body, size) as a JSON line and flush it."""
    _write(payload, ctx)
    return Ok(None)


async def slow(payload: Payload[Any], ctx: Context) -> Result:
    """Take 50 ms per message, then record it."""
    await asyncio.sleep(0.05)
    _write(payload, ctx)
    return Ok(None)


async def fails(payload: Payload[Any], ctx: Context) -> Result:
    """Always return an Error."""
    return Error(RuntimeError(f"fails on purpose: {payload.value.topic}"))


async def flaky(payload: Payload[Any], ctx: Context) -> Result:
    """Fail the first ``options.failures`` tries of each message, then record it."""
    tries: dict[bytes, int] = ctx.__dict__.setdefault("tries", {})
    raw = payload.value.raw
    tries[raw] = tries.get(raw, 0) + 1
    if tries[raw] <= int(ctx.options.get("failures", 1)):
        return Error(RuntimeError(f"try {tries[raw]} fails on purpose"))
    _write(payload, ctx)
    return Ok(None)


async def raises(payload: Payload[Any], ctx: Context) -> Result:
    """Raise instead of returning."""
    raise RuntimeError(f"raises on purpose: {payload.value.topic}")


async def hangs(payload: Payload[Any], ctx: Context) -> Result:
    """Never return (until cancelled)."""
    await asyncio.Event().wait()
    return Ok(None)  # pragma: no cover - never reached


async def returns_42(payload: Payload[Any], ctx: Context) -> Result:
    """Return something that is not a Result."""
    return 42  # type: ignore[return-value]


@asynccontextmanager
async def marker(ctx: Context) -> AsyncIterator[None]:
    """Write ``options.marker`` (the collector key) when torn down."""
    yield
    # Blocking on purpose: a tiny write at teardown, and the test reads it after exit.
    Path(ctx.options["marker"]).write_text(ctx.key, encoding="utf-8")  # noqa: ASYNC240


@asynccontextmanager
async def teardown_raises(ctx: Context) -> AsyncIterator[None]:
    """Raise when torn down."""
    yield
    raise RuntimeError(f"teardown of {ctx.key} fails on purpose")
