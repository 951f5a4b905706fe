"""A collector for the daemon tests that records what it receives, in memory and maybe in a file.

Name it in a test config as::

    processor: tests.recording:record
    lifecycle: tests.recording:recorder
    options: {path: /tmp/.../records.jsonl, block: true, delay: 0.2}

The lifecycle puts on the Context a list ``records`` (one :class:`Record` per payload, in the order
the processor ran), an ``asyncio.Event`` ``gate`` the processor waits for (set at once unless
``block`` is true, so a test can hold the collector until several payloads are queued) and a count
``running`` of processor calls under way. ``delay`` makes each call take that many seconds more.
With ``path``, every record is also appended to that file as one JSON object per line, for a
daemon running in another process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from mqtt_collector import Context, Message, Ok, Payload, Result

__all__ = ["Record", "failing_lifecycle", "record", "recorder"]


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
    """Make a record field JSON-serialisable: bytes as base64, mappings and tuples as JSON."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@contextlib.asynccontextmanager
async def recorder(ctx: Context) -> AsyncIterator[None]:
    """Set up ``ctx.records``, ``ctx.gate`` and ``ctx.running``; open ``options.path`` if given."""
    options: Mapping[str, Any] = ctx.options
    ctx.records = []
    ctx.gate = asyncio.Event()
    ctx.running = 0
    if not options.get("block", False):
        ctx.gate.set()
    path = options.get("path")
    file: IO[str] | None = None
    if path is not None:
        # A test helper: a blocking open of a local file at start is fine here.
        file = Path(str(path)).open("a", encoding="utf-8")  # noqa: SIM115, ASYNC230
    ctx.file = file
    try:
        yield
    finally:
        if file is not None:
            file.close()


async def record(payload: Payload[Message], ctx: Context) -> Result:
    """Wait for ``ctx.gate``, then record the payload (and append it to the file, if any)."""
    ctx.running += 1
    try:
        await ctx.gate.wait()
        await asyncio.sleep(float(ctx.options.get("delay", 0)))
    finally:
        ctx.running -= 1
    message = payload.value
    entry = Record(
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
    ctx.records.append(entry)
    file: IO[str] | None = ctx.file
    if file is not None:
        file.write(json.dumps(_jsonable(asdict(entry))) + "\n")
        file.flush()
    return Ok(None)


@contextlib.asynccontextmanager
async def failing_lifecycle(ctx: Context) -> AsyncIterator[None]:
    """A lifecycle whose setup fails, as a database that cannot be reached would."""
    raise ConnectionRefusedError(f"collector {ctx.key}: database at db.invalid:5432 refused")
    yield  # pragma: no cover - makes this an async generator
