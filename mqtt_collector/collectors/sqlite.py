"""A collector that stores one row per message in a SQLite table: a small local database.

Use it as::

    processor: mqtt_collector.collectors.sqlite:write
    lifecycle: mqtt_collector.collectors.sqlite:open_database
    options: {path: /var/lib/mqtt-collector/messages.db, table: readings}

The lifecycle opens the database in WAL mode (readers, e.g. ``sqlite3`` on the command line, do
not block the writer), creates the table if it is missing, and closes the database at exit::

    id INTEGER PRIMARY KEY, topic TEXT, payload BLOB, data TEXT,
    qos INTEGER, retain INTEGER, received_at REAL

``payload`` is the raw body; ``data`` the decoded body as JSON text (NULL for a ``bytes`` body or a
value JSON cannot represent); ``retain`` is 0 or 1; ``received_at`` is Unix time. The processor
returns ``Ok(id)`` of the new row.

Correctness first: every message is committed in its own transaction (``synchronous=FULL``)
before the processor returns, so with QoS 1 a message is acknowledged only once it is on disk.
That costs a disk sync per message; use it for modest rates, or write your own batching
collector. SQLite calls run in one thread owned by the lifecycle, off the event loop, so the
connection is only ever used from that thread and writes are serialised there.

Options:
    path: the database file (required); its directory must exist, the file is created if it does
        not. A relative path is relative to the daemon's working directory.
    table: the table to write to. Default ``messages``. Must be an SQL identifier (letters,
        digits and underscores, not starting with a digit or ``sqlite_``). An existing table is
        used as it is, but must have the columns above.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainValidator

from mqtt_collector import ConfigError, Context, Error, Message, Ok, Payload, Result
from mqtt_collector.collectors import _option_error, _Options, _read_options, _String, _string

__all__ = ["Options", "open_database", "write"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COLUMNS = ("id", "topic", "payload", "data", "qos", "retain", "received_at")
_SCHEMA = (
    "id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL, data TEXT,"
    " qos INTEGER NOT NULL, retain INTEGER NOT NULL, received_at REAL NOT NULL"
)
_Row = tuple[str, bytes, str | None, int, int, float]


def _table(value: object) -> str:
    """Check the ``table`` option: a plain SQL identifier, so it can be formatted into SQL."""
    table = _string(value)
    if not _IDENTIFIER.fullmatch(table) or table.lower().startswith("sqlite_"):
        raise ValueError(
            f"must be an SQL identifier (letters, digits, _; not sqlite_*), got {table!r}"
        )
    return table


class Options(_Options):
    """The sqlite collector's options, as described in the module docstring."""

    path: _String
    table: Annotated[str, PlainValidator(_table)] = "messages"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Database:
    """One sqlite collector's connection and the thread it lives in, kept as ``ctx.sqlite``."""

    executor: ThreadPoolExecutor
    connection: sqlite3.Connection
    insert: str

    def insert_row(self, row: _Row) -> int:
        """Insert and commit ``row``, returning its id; runs in the executor's thread."""
        try:
            cursor = self.connection.execute(self.insert, row)
            self.connection.commit()
        except sqlite3.Error:
            self.connection.rollback()
            raise
        # lastrowid is only None when no row was inserted, which a successful INSERT rules out.
        return cursor.lastrowid or 0


def _json_or_none(data: Any) -> str | None:
    """Return ``data`` as strict JSON text, or None for bytes or a value JSON cannot represent."""
    if isinstance(data, bytes):
        return None
    try:
        return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return None


async def write(payload: Payload[Message], ctx: Context) -> Result:
    """Insert and commit the message in ``payload.value``; ``Ok(row id)`` or ``Error(exc)``."""
    database: _Database | None = getattr(ctx, "sqlite", None)
    if database is None:
        return Error(
            ConfigError(
                f"collector {getattr(ctx, 'key', '<unnamed>')!r}: sqlite:write needs"
                " lifecycle: mqtt_collector.collectors.sqlite:open_database"
            )
        )
    message = payload.value
    row: _Row = (
        message.topic,
        message.raw,
        _json_or_none(message.data),
        message.qos,
        int(message.retain),
        message.received_at,
    )
    loop = asyncio.get_running_loop()
    try:
        row_id = await loop.run_in_executor(database.executor, database.insert_row, row)
    except sqlite3.Error as exc:
        return Error(exc)
    return Ok(row_id)


def _connect(path: str, table: str) -> tuple[sqlite3.Connection, list[str]]:
    """Open ``path``, create ``table`` if missing; return it with the columns the table lacks."""
    connection = sqlite3.connect(path, timeout=5.0)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({_SCHEMA})')
        connection.commit()
        present = {row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')}
    except BaseException:
        connection.close()
        raise
    return connection, [column for column in _COLUMNS if column not in present]


@contextlib.asynccontextmanager
async def open_database(ctx: Context) -> AsyncIterator[None]:
    """Open the database of the options as ``ctx.sqlite``, and close it at exit."""
    options = _read_options(ctx, Options)
    path, table = options.path, options.table
    if path != ":memory:" and not Path(path).parent.is_dir():
        raise _option_error(ctx, "path", f"directory '{Path(path).parent}' does not exist")
    loop = asyncio.get_running_loop()
    key = getattr(ctx, "key", "<unnamed>")
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{key}")
    try:
        try:
            connection, missing = await loop.run_in_executor(executor, _connect, path, table)
        except sqlite3.Error as exc:
            raise _option_error(ctx, "path", f"cannot open database '{path}': {exc}") from exc
        try:
            if missing:
                raise _option_error(
                    ctx, "table", f"existing table {table!r} lacks columns {', '.join(missing)}"
                )
            ctx.sqlite = _Database(
                executor=executor,
                connection=connection,
                # Options checked `table` is a plain identifier, so formatting it in is safe.
                insert=(
                    f'INSERT INTO "{table}" (topic, payload, data, qos, retain, received_at)'  # noqa: S608
                    " VALUES (?, ?, ?, ?, ?, ?)"
                ),
            )
            yield
        finally:
            # Closed in its own thread: a sqlite3 connection refuses use from any other.
            await loop.run_in_executor(executor, connection.close)
    finally:
        # The worker is idle once close() has returned, so this does not hold up the loop.
        executor.shutdown(wait=True)
