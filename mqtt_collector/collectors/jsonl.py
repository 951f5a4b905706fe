"""A collector that appends one JSON object per message to a file (JSON Lines): a simple archive.

Use it as::

    processor: mqtt_collector.collectors.jsonl:write
    lifecycle: mqtt_collector.collectors.jsonl:open_file
    options: {path: /var/lib/mqtt-collector/messages.jsonl}

Each line is an object with ``topic``, ``data``, ``qos``, ``retain``, ``captures``,
``received_at`` and ``subscription``. A ``bytes`` body (``decode: bytes``), or a decoded value that
is not valid JSON (e.g. NaN), is written as the base64 of the raw body with
``"data_encoding": "base64"``. Lines never interleave, however many consumers write at once.

The file is opened for appending when the lifecycle starts and closed when it ends. If the file
does not end with a newline (the daemon was killed in the middle of a line), one is added first, so
the torn line stays alone and the next one is whole.

Options:
    path: the file to append to (required). Its directory must exist; the file is created if it
        does not. A relative path is relative to the daemon's working directory.
    fsync: what a message waits for before its collector returns (and so, with QoS 1, before it
        is acknowledged). ``false`` (default): the line is flushed to the operating system, which
        survives the daemon crashing but not the machine losing power. ``true``: the file is also
        fsync'ed to disk, which survives a power loss but costs a disk flush per message (fsyncs
        run in a thread, and messages that arrive during one share the next).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mqtt_collector import ConfigError, Context, Error, Message, Ok, Payload, Result
from mqtt_collector.collectors import _OptionReader

__all__ = ["encode", "open_file", "write"]

_KNOWN = ("path", "fsync")


@dataclass(slots=True, kw_only=True)
class _JsonlFile:
    """The open file and write state of one jsonl collector, kept as ``ctx.jsonl``."""

    file: IO[bytes]
    fsync: bool
    # Group fsync: `written` counts lines flushed, `synced` how many a finished fsync covers; a
    # writer whose line is already covered by someone else's fsync need not start another.
    sync_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    written: int = 0
    synced: int = 0


def encode(message: Message) -> bytes:
    """Return ``message`` as one JSON line (with its newline), the format this collector writes."""
    record: dict[str, Any] = {
        "topic": message.topic,
        "data": message.data,
        "qos": message.qos,
        "retain": message.retain,
        "captures": message.captures,
        "received_at": message.received_at,
        "subscription": message.subscription,
    }
    if not isinstance(message.data, bytes):
        try:
            return _dumps(record)
        except (TypeError, ValueError):
            pass  # not representable as strict JSON: keep the body losslessly as base64 instead
    record["data"] = base64.b64encode(message.raw).decode("ascii")
    record["data_encoding"] = "base64"
    return _dumps(record)


def _dumps(record: dict[str, Any]) -> bytes:
    """Serialise ``record`` as one strict-JSON line (NaN and Infinity refused)."""
    return (
        json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"
    ).encode("utf-8")


async def write(payload: Payload[Message], ctx: Context) -> Result:
    """Append the message in ``payload.value`` as one line; ``Error(OSError)`` if the file fails."""
    sink: _JsonlFile | None = getattr(ctx, "jsonl", None)
    if sink is None:
        return Error(_no_lifecycle(ctx))
    line = encode(payload.value)
    try:
        # No await between write and flush: other consumers cannot interleave a line.
        sink.file.write(line)
        sink.file.flush()
        sink.written += 1
        mine = sink.written
        if sink.fsync:
            async with sink.sync_lock:
                if sink.synced < mine:
                    covers = sink.written
                    await asyncio.to_thread(os.fsync, sink.file.fileno())
                    sink.synced = covers
    except OSError as exc:
        return Error(exc)
    return Ok(None)


def _no_lifecycle(ctx: Context) -> ConfigError:
    """The error for a write without the open_file lifecycle (forgotten in the config)."""
    return ConfigError(
        f"collector {getattr(ctx, 'key', '<unnamed>')!r}: jsonl:write needs"
        " lifecycle: mqtt_collector.collectors.jsonl:open_file"
    )


def _open_for_append(path: Path) -> IO[bytes]:
    """Open ``path`` for appending, first ending a torn last line so the next line starts clean."""
    file = path.open("ab")
    try:
        if file.tell() > 0:
            with path.open("rb") as reader:
                reader.seek(-1, os.SEEK_END)
                if reader.read(1) != b"\n":
                    file.write(b"\n")
                    file.flush()
    except BaseException:
        file.close()
        raise
    return file


@contextlib.asynccontextmanager
async def open_file(ctx: Context) -> AsyncIterator[None]:
    """Check the options, open ``path`` for appending as ``ctx.jsonl``, and close it at exit."""
    reader = _OptionReader(ctx, _KNOWN)
    path = Path(reader.string("path"))
    fsync = reader.boolean("fsync", default=False)
    if not path.parent.is_dir():
        raise reader.error("path", f"directory '{path.parent}' does not exist")
    try:
        file = _open_for_append(path)
    except OSError as exc:
        raise reader.error("path", f"cannot open '{path}' for appending: {exc}") from exc
    ctx.jsonl = _JsonlFile(file=file, fsync=fsync)
    try:
        yield
    finally:
        file.close()
