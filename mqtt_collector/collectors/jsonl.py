"""A collector that appends one JSON object per message to a file (JSON Lines): a simple archive.

Use it as::

    processor: mqtt_collector.collectors.jsonl:write
    lifecycle: mqtt_collector.collectors.jsonl:open_file
    options: {path: /var/lib/mqtt-collector/messages.jsonl}

Each line is an object with ``topic``, ``data``, ``qos``, ``retain``, ``captures``,
``received_at`` and ``subscription``. A ``bytes`` body (``decode: bytes``), or a decoded value that
is not valid JSON (e.g. NaN), is written as the base64 of the raw body with
``"data_encoding": "base64"``. Lines never interleave, however many consumers write at once.

The file is written by a worker thread, never on the event loop. Lines that arrive while a write
is under way are written together by the next one (one write, and with ``fsync`` one fsync, per
batch), and each message's collector returns once its own batch is written: that is what a QoS 1
message's acknowledgement waits for.

The file is opened for appending when the lifecycle starts and closed when it ends. If the file
does not end with a newline (the daemon was killed in the middle of a line, or a write failed
halfway), one is added first, so the torn line stays alone and the next one is whole.

Options:
    path: the file to append to (required). Its directory must exist; the file is created if it
        does not. A relative path is relative to the daemon's working directory.
    fsync: what a message waits for before its collector returns (and so, with QoS 1, before it
        is acknowledged). ``false`` (default): the line is written to the operating system, which
        survives the daemon crashing but not the machine losing power. ``true``: the file is also
        fsync'ed to disk, which survives a power loss but costs a disk flush per batch. When a
        write or an fsync fails, every message of that batch gets an ``Error`` (not
        acknowledged, so the broker sends it again), even if its line is in the file: a later
        fsync that succeeds does not prove that the failed one's data reached the disk.
    mode: the permissions a new file is created with, as quoted octal digits: ``"0600"``
        (default: only the daemon's user can read it) or e.g. ``"0640"`` to let its group read.
        Applied exactly, whatever the umask. An existing file keeps its permissions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import os
import re
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from io import FileIO
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainValidator

from mqtt_collector import Context, Error, Message, Ok, Payload, Result
from mqtt_collector.collectors import (
    _Boolean,
    _dump_json,
    _needs_lifecycle,
    _option_error,
    _Options,
    _read_options,
    _String,
)

__all__ = ["Options", "encode", "open_file", "write"]

_MODE = re.compile(r"0?[0-7]{3}")
_NEWLINE = ord("\n")


def _mode(value: object) -> str:
    """Check the ``mode`` option: quoted octal permissions like "0640"."""
    if not isinstance(value, str) or not _MODE.fullmatch(value):
        raise ValueError(f'must be octal permissions in quotes, like "0640", got {value!r}')
    return value


class Options(_Options):
    """The jsonl collector's options, as described in the module docstring."""

    path: _String
    fsync: _Boolean = False
    mode: Annotated[str, PlainValidator(_mode)] = "0600"

    @property
    def permissions(self) -> int:
        """``mode`` as permission bits."""
        return int(self.mode, 8)


@dataclass(slots=True, kw_only=True)
class _JsonlFile:
    """The open file of one jsonl collector and the lines waiting for it, kept as ``ctx.jsonl``."""

    file: FileIO  # unbuffered: every write goes straight to the operating system
    fsync: bool
    # True when the file ends in the middle of a line: the next write starts with a newline.
    line_open: bool = False
    # Lines waiting for the next batch, each with the future its writer waits on: None once
    # written, or the OSError that failed its batch.
    pending: list[tuple[bytes, asyncio.Future[OSError | None]]] = field(default_factory=list)
    writer: asyncio.Task[None] | None = None

    async def append(self, line: bytes) -> OSError | None:
        """Write ``line`` in the next batch; return None once written, or the batch's OSError."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[OSError | None] = loop.create_future()
        self.pending.append((line, done))
        if self.writer is None:
            # Started after this turn of the loop: every line sent meanwhile joins the batch.
            self.writer = loop.create_task(self._write_batches(), name="jsonl-writer")
        return await done

    async def _write_batches(self) -> None:
        """Write the waiting lines a batch at a time in a worker thread, until none wait."""
        batch: list[tuple[bytes, asyncio.Future[OSError | None]]] = []
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                error: OSError | None = None
                try:
                    await asyncio.to_thread(self._write, b"".join(line for line, _ in batch))
                except OSError as exc:
                    error = exc
                for _, done in batch:
                    if not done.done():  # its writer may have been cancelled (a timeout)
                        done.set_result(error)
                batch = []
        finally:
            self.writer = None
            # Reached with lines left only when this task is cancelled: never leave a writer
            # waiting for an outcome that will not come.
            for _, done in (*batch, *self.pending):
                done.cancel()
            self.pending = []

    def _write(self, data: bytes) -> None:
        """Append ``data`` whole, then fsync if asked (in a worker thread, one at a time)."""
        view = memoryview(b"\n" + data if self.line_open else data)
        while view:
            written = self.file.write(view)
            if not written:
                raise OSError(errno.EIO, f"wrote nothing to {self.file.name!r}")
            self.line_open = view[written - 1] != _NEWLINE
            view = view[written:]
        if self.fsync:
            os.fsync(self.file.fileno())


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
    return (_dump_json(record) + "\n").encode("utf-8")


async def write(payload: Payload[Message], ctx: Context) -> Result:
    """Append the message in ``payload.value`` as one line; ``Error(OSError)`` if the file fails."""
    sink: _JsonlFile | None = getattr(ctx, "jsonl", None)
    if sink is None:
        return Error(_needs_lifecycle(ctx, "jsonl:write", "jsonl:open_file"))
    error = await sink.append(encode(payload.value))
    return Ok(None) if error is None else Error(error)


def _open_for_append(path: Path, mode: int) -> tuple[FileIO, bool]:
    """Open ``path`` for appending, creating it with exactly ``mode``; say if it ends mid-line."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        fd = os.open(path, flags)
    else:
        try:
            os.fchmod(fd, mode)  # the umask took bits away: give exactly what was asked
        except BaseException:
            os.close(fd)
            raise
    file = open(fd, "ab", buffering=0)  # noqa: PTH123, SIM115 - an fd; closed by open_file
    try:
        info = os.fstat(fd)
        line_open = False
        if stat.S_ISREG(info.st_mode) and info.st_size > 0:
            with path.open("rb") as reader:
                reader.seek(-1, os.SEEK_END)
                line_open = reader.read(1) != b"\n"
    except BaseException:
        file.close()
        raise
    return file, line_open


@contextlib.asynccontextmanager
async def open_file(ctx: Context) -> AsyncIterator[None]:
    """Open the ``path`` option for appending as ``ctx.jsonl``, and close it at exit."""
    options = _read_options(ctx, Options)
    path = Path(options.path)
    if not path.parent.is_dir():
        raise _option_error(ctx, "path", f"directory '{path.parent}' does not exist")
    try:
        file, line_open = await asyncio.to_thread(_open_for_append, path, options.permissions)
    except OSError as exc:
        raise _option_error(ctx, "path", f"cannot open '{path}' for appending: {exc}") from exc
    sink = _JsonlFile(file=file, fsync=options.fsync, line_open=line_open)
    ctx.jsonl = sink
    try:
        yield
    finally:
        # A write still under way (its message timed out) finishes before the file closes.
        while sink.writer is not None:
            await asyncio.wait([sink.writer])
        await asyncio.to_thread(file.close)
