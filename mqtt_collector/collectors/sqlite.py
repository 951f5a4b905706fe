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
returns ``Ok(id)`` of the message's own row.

Messages are written in batches, with :class:`mqtt_collector.GroupCommit`: concurrent processor
calls join one transaction, committed with ``synchronous=FULL``, and each call returns only once
the transaction holding its row is committed, so with QoS 1 a message is acknowledged only after
its row is on disk. One disk sync then serves a whole batch instead of one message. A batch that
cannot be committed (the table gone, the disk full) is an ``Error`` for each of its messages,
which the collector's ``retry`` policy and ``dead_letter`` then handle one by one; a row the
table refuses (a ``CHECK`` or ``UNIQUE`` constraint) is an ``Error`` for its own message only,
the others are committed. An idle collector writes each message at once; under load, the
messages arriving while a transaction commits go together in the next one. A batch holds at most
``batch_size`` rows and at most as many as there are messages waiting, which is at most
``queue.max_consumers`` (each waiting message holds a consumer; 64 by default): raise that too
(e.g. to 512) for batches of hundreds of rows. At exit the lifecycle writes what waits before it
closes the database. SQLite calls run in one thread owned by the lifecycle, off the event loop,
so the connection is only ever used from that thread and writes are serialised there. A batch
goes in by multi-row ``INSERT`` statements when ``id`` is the table's rowid (``id INTEGER PRIMARY
KEY``, as in the table the collector creates) and the table has no triggers: the rows then get
the ids that follow one another, which the collector reads back and checks before it commits.
Otherwise, or when a row is refused, each row goes in by its own ``INSERT ... RETURNING id``,
which needs SQLite 3.35 or later (the one Python links to:
``python -c "import sqlite3; print(sqlite3.sqlite_version)"``); an older one is refused at start.

Options:
    path: the database file (required); its directory must exist, the file is created if it does
        not. A relative path is relative to the daemon's working directory.
    table: the table to write to. Default ``messages``. Must be an SQL identifier (letters,
        digits and underscores, not starting with a digit or ``sqlite_``). An existing table is
        used as it is, but must have the columns above.
    batch_size: the most rows one transaction writes; 1 commits each message alone. Default 500.
    batch_delay: under load (a transaction being committed), seconds the next batch may wait
        for more rows after its first arrives, never longer; a message that finds no
        transaction under way is written at once. Default 0.01; 0 writes as soon as the
        previous transaction is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainValidator

from mqtt_collector import ConfigError, Context, Error, GroupCommit, Message, Payload, Result
from mqtt_collector.collectors import (
    _BatchDelay,
    _BatchSize,
    _dump_json,
    _needs_lifecycle,
    _option_error,
    _Options,
    _read_options,
    _String,
    _string,
)

__all__ = ["Options", "open_database", "write"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COLUMNS = ("id", "topic", "payload", "data", "qos", "retain", "received_at")
_SCHEMA = (
    "id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL, data TEXT,"
    " qos INTEGER NOT NULL, retain INTEGER NOT NULL, received_at REAL NOT NULL"
)
_RETURNING = (3, 35, 0)  # the first SQLite with INSERT ... RETURNING
_Row = tuple[str, bytes, str | None, int, int, float]
_FIELDS = 6  # the columns of a row the collector inserts
_PLACEHOLDERS = "(" + ", ".join("?" * _FIELDS) + ")"
_RowId = int | Error | None
"""What a row of a batch became: its id, the Error refusing it, or None if the table ignored it."""


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
    batch_size: _BatchSize = 500
    batch_delay: _BatchDelay = 0.01


@dataclass(frozen=True, slots=True, kw_only=True)
class _Database:
    """One sqlite collector's connection and the thread it lives in."""

    executor: ThreadPoolExecutor
    connection: sqlite3.Connection
    insert: str  # one row, RETURNING its id
    insert_many: str | None  # INSERT ... VALUES without the rows, when ids can be told apart
    check_ids: str  # the rows with an id in a range, in id order, to check a batch's ids

    async def write_batch(self, rows: list[_Row]) -> list[_RowId]:
        """Insert ``rows`` in one transaction, in the database's thread; see ``insert_rows``."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.insert_rows, rows)

    def insert_rows(self, rows: list[_Row]) -> list[_RowId]:
        """Insert ``rows`` and commit them as one transaction; runs in the executor's thread.

        Returns each row's id, in order: None for a row the table's own ``ON CONFLICT IGNORE``
        skipped, an Error for a row it refused (its statement alone is undone, so the rest are
        committed). Raises, with nothing committed, when the transaction as a whole fails.
        """
        if self.insert_many is not None:
            try:
                ids = self._insert_many(rows)
            except sqlite3.Error:
                ids = None  # a row refused: the slow way below finds which
            if ids is not None:
                self.connection.commit()
                return ids
            self.connection.rollback()
        refused: dict[int, Error] = {}
        try:
            while True:
                ids = self._insert(rows, refused)
                if ids is not None:
                    self.connection.commit()
                    return ids
        except BaseException:
            self.connection.rollback()
            raise

    def _insert_many(self, rows: list[_Row]) -> list[_RowId] | None:
        """Insert ``rows`` by multi-row INSERTs; their ids, or None if they cannot be told.

        One statement takes as many rows as SQLite's limit on parameters allows, so the
        database's thread lets go of the GIL once per statement, not once per row (the event
        loop's thread would have to give it back each time). ``id`` is the rowid and no
        trigger writes the table, so the rows get the ids that follow the last one, in order:
        read back and compared, not assumed (a row the table's ``ON CONFLICT IGNORE`` skipped,
        or ids SQLite picked at random past the largest rowid, fail the check). Leaves the
        transaction open, for commit or rollback.
        """
        connection = self.connection
        assert self.insert_many is not None
        per_statement = max(
            1,
            min(len(rows), connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // _FIELDS),
        )
        before = connection.total_changes
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            values = ", ".join([_PLACEHOLDERS] * len(chunk))
            connection.execute(
                f"{self.insert_many} {values}", [value for row in chunk for value in row]
            )
        if connection.total_changes - before != len(rows):
            return None
        last = connection.execute("SELECT last_insert_rowid()").fetchone()[0]
        first = last - len(rows) + 1
        stored = connection.execute(self.check_ids, (first, last)).fetchall()
        if stored != [(row[0], row[1], row[5]) for row in rows]:
            return None
        return list(range(first, last + 1))

    def _insert(self, rows: list[_Row], refused: dict[int, Error]) -> list[_RowId] | None:
        """Insert the rows not yet ``refused``; None if a refusal undid the transaction so far."""
        ids: list[_RowId] = []
        for index, row in enumerate(rows):
            if index in refused:
                ids.append(refused[index])
                continue
            try:
                # One statement per row: its RETURNING is that row's id, whatever the order
                # SQLite returns the rows of a multi-row INSERT in (which it does not promise).
                returned = self.connection.execute(self.insert, row).fetchall()
            except (sqlite3.IntegrityError, sqlite3.DataError) as exc:
                refused[index] = Error(exc)
                ids.append(refused[index])
                if not self.connection.in_transaction:
                    # The table's ON CONFLICT ROLLBACK (or a trigger's RAISE(ROLLBACK)) undid
                    # the rows before this one too: write them again, without those refused.
                    return None
                continue
            ids.append(returned[0][0] if returned else None)
        return ids


def _json_or_none(data: Any) -> str | None:
    """Return ``data`` as strict JSON text, or None for bytes or a value JSON cannot represent."""
    if isinstance(data, bytes):
        return None
    try:
        return _dump_json(data)
    except (TypeError, ValueError):
        return None


async def write(payload: Payload[Message], ctx: Context) -> Result:
    """Insert the message in ``payload.value``; ``Ok(row id)`` once committed, else ``Error``."""
    batch: GroupCommit[_Row] | None = getattr(ctx, "sqlite", None)
    if batch is None:
        return Error(_needs_lifecycle(ctx, "sqlite:write", "sqlite:open_database"))
    message = payload.value
    row: _Row = (
        message.topic,
        message.raw,
        _json_or_none(message.data),
        message.qos,
        int(message.retain),
        message.received_at,
    )
    return await batch.submit(row)


def _connect(path: str, table: str) -> tuple[sqlite3.Connection, list[str], bool]:
    """Open ``path``, create ``table`` if missing.

    Returns the connection, the columns the table lacks, and whether a batch can go in by
    multi-row INSERTs (``id`` is the rowid and no trigger writes the table).
    """
    connection = sqlite3.connect(path, timeout=5.0)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({_SCHEMA})')
        connection.commit()
        columns = list(connection.execute(f'PRAGMA table_info("{table}")'))
        keys = [(row[1], str(row[2]).upper()) for row in columns if row[5]]
        (created,) = connection.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        (triggers,) = connection.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
            (table,),
        ).fetchone()
    except BaseException:
        connection.close()
        raise
    rowid = keys == [("id", "INTEGER")] and "WITHOUT ROWID" not in " ".join(created.upper().split())
    present = {row[1] for row in columns}
    missing = [column for column in _COLUMNS if column not in present]
    return connection, missing, rowid and not triggers


@contextlib.asynccontextmanager
async def open_database(ctx: Context) -> AsyncIterator[None]:
    """Open the database of the options, writing through ``ctx.sqlite``; close it at exit.

    ``ctx.sqlite`` is the collector's GroupCommit; at exit it writes what waits, then the
    database is closed.
    """
    options = _read_options(ctx, Options)
    if sqlite3.sqlite_version_info < _RETURNING:
        raise ConfigError(
            f"collector {getattr(ctx, 'key', '<unnamed>')!r}: the sqlite collector needs"
            f" SQLite >= 3.35 (INSERT ... RETURNING); Python's sqlite3 has {sqlite3.sqlite_version}"
        )
    path, table = options.path, options.table
    if path != ":memory:" and not Path(path).parent.is_dir():
        raise _option_error(ctx, "path", f"directory '{Path(path).parent}' does not exist")
    loop = asyncio.get_running_loop()
    key = getattr(ctx, "key", "<unnamed>")
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{key}")
    try:
        try:
            connection, missing, many = await loop.run_in_executor(executor, _connect, path, table)
        except sqlite3.Error as exc:
            raise _option_error(ctx, "path", f"cannot open database '{path}': {exc}") from exc
        try:
            if missing:
                raise _option_error(
                    ctx, "table", f"existing table {table!r} lacks columns {', '.join(missing)}"
                )
            # Options checked `table` is a plain identifier, so formatting it in is safe.
            insert = (
                f'INSERT INTO "{table}" (topic, payload, data, qos, retain, received_at) VALUES'
            )
            database = _Database(
                executor=executor,
                connection=connection,
                insert=f"{insert} {_PLACEHOLDERS} RETURNING id",
                insert_many=insert if many else None,
                check_ids=(
                    f'SELECT topic, payload, received_at FROM "{table}"'  # noqa: S608
                    " WHERE id BETWEEN ? AND ? ORDER BY id"
                ),
            )
            async with GroupCommit(
                database.write_batch, max_size=options.batch_size, max_delay=options.batch_delay
            ) as ctx.sqlite:
                yield
        finally:
            # Closed in its own thread: a sqlite3 connection refuses use from any other.
            await loop.run_in_executor(executor, connection.close)
    finally:
        # The worker is idle once close() has returned, so this does not hold up the loop.
        executor.shutdown(wait=True)
