"""The collectors the daemon tests name by dotted path: one that records, and ones that misbehave.

The recording collector::

    processor: tests.helpers.collectors:record
    lifecycle: tests.helpers.collectors:recording_lifecycle
    options: {path: /tmp/.../records.jsonl, block: true, delay: 0.2}

The lifecycle puts on the Context an ``asyncio.Event`` ``gate`` the processor waits for (set at
once unless ``block`` is true, so a test can hold the collector until several payloads are
queued), a count ``running`` of processor calls under way, and a list ``records``. ``delay``
makes each call take that many seconds more.

Without ``path``, each payload is appended to ``ctx.records`` as a :class:`Record`, in the order
the processor ran, for a daemon running in the test. With ``path`` (a daemon in another process)
each is instead appended to that file as one JSON line, flushed before the processor returns so
that it survives the daemon being killed right after: ``topic``, ``collector``, ``size``, the
first bytes as ``head`` (so a long numbered body shows its number), and for bodies up to 100
bytes the body and decoded ``data``; :func:`tests.faults.helpers.read_records` reads them back.
Nothing is kept in memory then, so a long run's memory is the daemon's own.

The others fail on purpose, each in its own way (an Error, an exception, a hang, a wrong return
type, a failing lifecycle setup or teardown); ``flaky`` fails the first tries, then records.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mqtt_collector import Context, Error, Message, Ok, Payload, Result

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = [
    "Record",
    "failing_lifecycle",
    "fails",
    "flaky",
    "hangs",
    "marker",
    "raises",
    "record",
    "recording_lifecycle",
    "returns_42",
    "teardown_raises",
]

_SHORT = 100  # bodies up to this many bytes are written whole; longer ones by size and head only
_HEAD = 20  # the first bytes of every body are written, so a long numbered body shows its number


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """What one processor call received."""

    collector: str
    topic: str
    data: Any
    raw: bytes
    captures: tuple[str, ...]
    subscription: str
    qos: int
    retain: bool
    properties: Mapping[str, Any]
    priority: int | None
    topics: tuple[str, ...]


def _jsonable(value: Any) -> Any:
    """Make a value JSON-serialisable: bytes as base64, mappings and tuples as JSON."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@contextlib.asynccontextmanager
async def recording_lifecycle(ctx: Context) -> AsyncIterator[None]:
    """Set up ``ctx.records``, ``ctx.gate`` and ``ctx.running``; close the file at teardown."""
    options: Mapping[str, Any] = ctx.options
    ctx.records = []
    ctx.gate = asyncio.Event()
    ctx.running = 0
    if not options.get("block", False):
        ctx.gate.set()
    try:
        yield
    finally:
        file: IO[str] | None = ctx.__dict__.get("record_file")
        if file is not None:
            file.close()


def _file(ctx: Context) -> IO[str]:
    """The Context's record file, opened at the first write and kept on the Context."""
    handle: IO[str] | None = ctx.__dict__.get("record_file")
    if handle is None:
        # A test helper: a blocking open of a local file once is fine here.
        handle = Path(str(ctx.options["path"])).open("a", encoding="utf-8")  # noqa: SIM115
        ctx.record_file = handle
    return handle


def _write(payload: Payload[Any], ctx: Context) -> None:
    """Append the payload to the record file as one JSON line, and flush it."""
    message = payload.value
    assert isinstance(message, Message)
    raw = message.raw
    short = len(raw) <= _SHORT
    line = {
        "collector": ctx.key,
        "topic": message.topic,
        "body": raw.decode("utf-8", "backslashreplace") if short else None,
        "data": _jsonable(message.data) if short else None,
        "head": raw[:_HEAD].decode("utf-8", "backslashreplace"),
        "size": len(raw),
    }
    handle = _file(ctx)
    handle.write(json.dumps(line) + "\n")
    handle.flush()


async def record(payload: Payload[Message], ctx: Context) -> Result:
    """Wait for ``ctx.gate`` (and ``options.delay``), then record the payload."""
    ctx.running += 1
    try:
        await ctx.gate.wait()
        await asyncio.sleep(float(ctx.options.get("delay", 0)))
    finally:
        ctx.running -= 1
    if "path" in ctx.options:
        _write(payload, ctx)
        return Ok(None)
    message = payload.value
    ctx.records.append(
        Record(
            collector=ctx.key,
            topic=message.topic,
            data=message.data,
            raw=message.raw,
            captures=message.captures,
            subscription=message.subscription,
            qos=message.qos,
            retain=message.retain,
            properties=dict(message.properties),
            priority=payload.priority,
            topics=payload.topics,
        )
    )
    return Ok(None)


async def flaky(payload: Payload[Any], ctx: Context) -> Result:
    """Fail the first ``options.failures`` tries of each message, then write it to the file."""
    tries: dict[bytes, int] = ctx.__dict__.setdefault("tries", {})
    raw = payload.value.raw
    tries[raw] = tries.get(raw, 0) + 1
    if tries[raw] <= int(ctx.options.get("failures", 1)):
        return Error(RuntimeError(f"try {tries[raw]} fails on purpose"))
    _write(payload, ctx)
    return Ok(None)


async def fails(payload: Payload[Any], ctx: Context) -> Result:
    """Always return an Error."""
    return Error(RuntimeError(f"fails on purpose: {payload.value.topic}"))


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


@contextlib.asynccontextmanager
async def failing_lifecycle(ctx: Context) -> AsyncIterator[None]:
    """A lifecycle whose setup fails, as a database that cannot be reached would."""
    raise ConnectionRefusedError(f"collector {ctx.key}: database at db.invalid:5432 refused")
    yield  # pragma: no cover - makes this an async generator


@contextlib.asynccontextmanager
async def marker(ctx: Context) -> AsyncIterator[None]:
    """Write ``options.marker`` (the collector key) when torn down."""
    yield
    # Blocking on purpose: a tiny write at teardown, and the test reads it after exit.
    Path(ctx.options["marker"]).write_text(ctx.key, encoding="utf-8")  # noqa: ASYNC240


@contextlib.asynccontextmanager
async def teardown_raises(ctx: Context) -> AsyncIterator[None]:
    """Raise when torn down."""
    yield
    raise RuntimeError(f"teardown of {ctx.key} fails on purpose")
