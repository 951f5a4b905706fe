"""Machine telemetry into PostgreSQL, written idempotently, by any number of daemons at once.

Named in ``config.yaml`` as::

    processor: telemetry_sink:store
    lifecycle: telemetry_sink:postgres

It reads ``factory/<line>/<machine>/telemetry`` bodies such as::

    {"ts": "2024-05-01T10:00:00.250Z", "seq": 1042, "spindle_rpm": 12000,
     "temperature_c": 41.2, "vibration_mm_s": 2.1, "state": "running"}

and stores a row per reading: the line and machine from the topic's wildcard captures, the
machine's own time ``ts`` (ISO 8601 with a zone, or Unix milliseconds), the measurements as
columns and the whole body as ``payload`` (jsonb), with the daemon that wrote it
(``received_by``, the ``instance`` option).

Idempotent: the primary key is ``(machine, ts)`` and rows go in with ``ON CONFLICT DO NOTHING``.
With QoS 1 a message is delivered at least once: after a daemon crash the broker sends again
what it had not acknowledged, possibly to another daemon of the share group, and the copy adds
no row. A reading without a usable ``ts`` cannot be keyed: it is an ``Error`` (dead-lettered
per the config), never a row that a redelivery would duplicate.

Group commit: the readings that arrive while a write is under way are written together by the
next one, in one transaction (one round trip and one commit per batch however many consumers
run), and each processor call returns once its own batch is committed, so the acknowledgement
follows the commit. A failed batch fails every message in it (retried per the config); the
connection is opened again for the next one if it was lost.

Needs psycopg 3: ``pip install 'mqtt-collector[postgres]'`` (psycopg[binary]).

Options:
    dsn: a libpq connection string or URI (required). Keep the password out of it: use
        ``PGPASSWORD`` or ``~/.pgpass``, which libpq reads.
    table: the table, created at start if missing. Default ``telemetry``.
    instance: this daemon's name, stored as ``received_by``. Default: none (NULL).
    max_batch: the most readings one transaction writes. Default 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from mqtt_collector import Context, Error, Message, Ok, Payload, Result

__all__ = ["InvalidTelemetryError", "Options", "postgres", "row", "store"]

_MEASUREMENTS = ("spindle_rpm", "temperature_c", "vibration_mm_s")
_COLUMNS = (
    "line",
    "machine",
    "ts",
    "seq",
    *_MEASUREMENTS,
    "state",
    "payload",
    "received_at",
    "received_by",
)
_SCHEMA = """
    CREATE TABLE IF NOT EXISTS {table} (
        line text NOT NULL,
        machine text NOT NULL,
        ts timestamptz NOT NULL,
        seq bigint,
        spindle_rpm double precision,
        temperature_c double precision,
        vibration_mm_s double precision,
        state text,
        payload jsonb NOT NULL,
        received_at timestamptz NOT NULL,
        received_by text,
        PRIMARY KEY (machine, ts)
    )
"""


class Options(BaseModel):
    """The collector's options, as the module docstring describes them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dsn: str = Field(min_length=1)
    table: str = Field(default="telemetry", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    instance: str | None = None
    max_batch: int = Field(default=500, ge=1)


class InvalidTelemetryError(ValueError):
    """A reading that cannot be stored: it goes to the dead letter."""


def _timestamp(value: Any) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is not None:
                return moment
    raise InvalidTelemetryError(f"ts must be ISO 8601 with a zone or Unix ms, got {value!r}")


def _number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidTelemetryError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def row(message: Message, instance: str | None) -> tuple[Any, ...]:
    """Return the table row for ``message``, in ``_COLUMNS`` order; InvalidTelemetryError if bad."""
    body = message.data
    if not isinstance(body, Mapping):
        raise InvalidTelemetryError(f"expected a JSON object, got {type(body).__name__}")
    line, machine = message.captures
    seq = body.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
        raise InvalidTelemetryError(f"seq must be an integer, got {seq!r}")
    state = body.get("state")
    return (
        line,
        machine,
        _timestamp(body.get("ts")),
        seq,
        *(_number(body, name) for name in _MEASUREMENTS),
        None if state is None else str(state),
        Jsonb(body),
        datetime.fromtimestamp(message.received_at, UTC),
        instance,
    )


@dataclass(slots=True, kw_only=True)
class _Writer:
    """One collector's connection and the rows waiting for it, kept as ``ctx.telemetry``."""

    options: Options
    insert: sql.Composed
    connection: psycopg.AsyncConnection[Any] | None = None
    pending: list[tuple[tuple[Any, ...], asyncio.Future[None]]] = field(default_factory=list)
    writer: asyncio.Task[None] | None = None

    async def write(self, values: tuple[Any, ...]) -> None:
        """Return once ``values`` is committed in a batch; raise that batch's error."""
        done = asyncio.get_running_loop().create_future()
        self.pending.append((values, done))
        if self.writer is None:
            # Started after this turn of the loop: what arrives meanwhile joins the batch.
            self.writer = asyncio.create_task(self._write_batches(), name="telemetry-writer")
        await done

    async def _write_batches(self) -> None:
        batch: list[tuple[tuple[Any, ...], asyncio.Future[None]]] = []
        try:
            while self.pending:
                size = self.options.max_batch
                batch, self.pending = self.pending[:size], self.pending[size:]
                error: Exception | None = None
                try:
                    await self._insert([values for values, _ in batch])
                except psycopg.Error as exc:
                    error = exc
                    await self._drop_broken_connection()
                for _, done in batch:
                    if done.done():  # its caller was cancelled (a timeout)
                        continue
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)
                batch = []
        finally:
            self.writer = None
            for _, done in (*batch, *self.pending):
                done.cancel()
            self.pending = []

    async def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        if self.connection is None:
            self.connection = await psycopg.AsyncConnection.connect(self.options.dsn)
        async with self.connection.transaction(), self.connection.cursor() as cursor:
            await cursor.executemany(self.insert, rows)

    async def _drop_broken_connection(self) -> None:
        connection = self.connection
        if connection is not None and (connection.broken or connection.closed):
            self.connection = None
            with contextlib.suppress(psycopg.Error):
                await connection.close()


@contextlib.asynccontextmanager
async def postgres(ctx: Context) -> AsyncIterator[None]:
    """Connect, create the table if missing, and keep the writer as ``ctx.telemetry``."""
    options: Options = ctx.options
    table = sql.Identifier(options.table)
    insert = sql.SQL("INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT DO NOTHING")
    connection = await psycopg.AsyncConnection.connect(options.dsn)
    writer = _Writer(
        options=options,
        insert=insert.format(
            table=table,
            columns=sql.SQL(", ").join(sql.Identifier(name) for name in _COLUMNS),
            values=sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS)),
        ),
        connection=connection,
    )
    try:
        try:
            async with connection.transaction():
                await connection.execute(sql.SQL(_SCHEMA).format(table=table))
        except (errors.UniqueViolation, errors.DuplicateTable):
            pass  # another daemon of the group created it at the same moment
        ctx.telemetry = writer
        yield
        # The queue has drained: a write still under way finishes before the connection closes.
        while writer.writer is not None:
            await asyncio.wait([writer.writer])
    finally:
        if writer.connection is not None:
            await writer.connection.close()


async def store(payload: Payload[Message], ctx: Context) -> Result:
    """Store one reading; ``Ok(None)`` once committed, ``Error`` if invalid or not written."""
    writer: _Writer = ctx.telemetry
    try:
        values = row(payload.value, writer.options.instance)
    except InvalidTelemetryError as exc:
        return Error(exc)
    try:
        await writer.write(values)
    except psycopg.Error as exc:
        return Error(exc)  # logged and retried by the daemon, per the config's retry
    return Ok(None)
