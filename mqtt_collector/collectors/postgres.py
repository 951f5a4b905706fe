"""A collector that writes messages into a PostgreSQL table, in batches, one COPY per batch.

Use it as::

    processor: mqtt_collector.collectors.postgres:write
    lifecycle: mqtt_collector.collectors.postgres:open_database
    options: {dsn: "postgresql://collector@db.example/telemetry", table: readings}
    retry: {attempts: 20, backoff: 0.5, max_backoff: 5}  # ride out a database restart

Needs the ``postgres`` extra (``pip install 'mqtt-collector[postgres]'``: psycopg 3 and
psycopg-pool).

Messages that arrive together are written together (:class:`mqtt_collector.GroupCommit`): one
``COPY`` per batch, in one transaction, and each message's processor call returns once its own
batch is committed, so a QoS 1 message is acknowledged only after its row is in the database.
A batch holds at most ``batch_size`` rows and at most as many as there are messages waiting,
which is at most ``queue.max_consumers`` (each waiting message holds a consumer): raise that
too (e.g. to 512) for batches of hundreds of rows under load. An idle collector writes each
message at once; under load a batch waits up to ``batch_delay`` for more rows.

The lifecycle connects once at start and prepares the table: created if missing (and
``create_table`` is on), else checked for the columns it needs; a database it cannot reach is
a one-line error and the daemon exits 1 (systemd's ``Restart=on-failure`` tries again). It then
keeps a pool of ``pool_size`` connections, up to that many batches in flight at once. Once
running, the database going away never stops the daemon: each message of a batch that could
not be written gets an ``Error`` (after ``connect_timeout`` when no connection can be had),
which the collector's ``retry`` policy tries again, holding the message's acknowledgement; the
pool reconnects by itself. Set ``retry`` to cover the outages to ride out (attempts times the
backoff), and a ``dead_letter`` for the rest. A row PostgreSQL refuses (a value a column's type
does not take, a NULL in a ``NOT NULL`` column) fails only its own message: the batch is then
written again a row at a time, the others committed.

The default table::

    topic text NOT NULL, captures text[] NOT NULL, data jsonb, payload bytea,
    received_at timestamptz NOT NULL, qos smallint NOT NULL, retain boolean NOT NULL

``data`` is the decoded body (``decode: json``, or a ``text`` body as a JSON string) and
``payload`` is NULL; for a ``bytes`` body, or a value ``jsonb`` cannot hold (NaN, a NUL
character), ``data`` is NULL and ``payload`` holds the raw body. ``captures`` are the topic
levels the filter's wildcards matched.

``columns:`` replaces that shape with typed columns of your own, e.g. a TimescaleDB-style
table::

    columns:
      time: received_at
      site: "{1}"                      # quoted: unquoted, {1} is a YAML mapping
      sensor: "{2}"
      celsius: "data.celsius::double precision"
      battery: "data.status.battery::smallint"

Each column is ``SOURCE`` or ``SOURCE::TYPE`` (a PostgreSQL type). Sources: ``topic``;
``{1}``, ``{2}``, ... a wildcard capture; ``captures`` (``text[]``); ``data``, the whole decoded
body (``jsonb``); ``data.a.b``, a field of it (``jsonb`` unless typed; a number in the path
indexes a list); ``payload``, the raw body (``bytea``); ``received_at`` (``timestamptz``);
``qos`` (``smallint``); ``retain`` (``boolean``); ``subscription`` (``text``). Captures and the
topic default to ``text``. A value goes to PostgreSQL as text for the column's type to parse
(``"21.5"`` into ``double precision``, an ISO 8601 string into ``timestamptz``), an object or
list as its JSON text (a list into an array column as an array). A source a message lacks (a
missing field, a capture past the filter's wildcards) gives NULL. Names are used as written:
lower-case identifiers.

Idempotent mode (``idempotent: true``) makes a redelivered message add no row: after a crash
the broker sends again what was not acknowledged, some of it already written. Rows are
``COPY``'d into a temporary staging table and moved with ``INSERT ... SELECT ... ON CONFLICT DO
NOTHING`` over a unique key: the ``key`` columns (created ``NOT NULL``, with a ``UNIQUE``
constraint), or without ``key`` a ``message_hash bytea`` column (128-bit BLAKE2b of the topic
and the raw body). The trade-offs: every row pays for a unique index (slower inserts, more
space), and with the hash two distinct messages with the same topic and body (a reading
repeated without a timestamp or sequence number) are stored once; choose a ``key`` that
identifies a reading (a device and its own timestamp) when that matters, and for a TimescaleDB
hypertable, whose unique indexes must hold its time column. An existing table must have a
unique index over exactly the key columns. The staging table is per connection: it does not
work through PgBouncer in transaction pooling mode.

Options:
    dsn: a libpq connection string or URI (required), e.g. ``postgresql://user@host/db`` or
        ``host=db dbname=telemetry sslmode=verify-full``. Keep a password out of the file: use
        ``${PG_PASSWORD}`` (the config's environment substitution), ``PGPASSWORD`` or
        ``~/.pgpass``, which libpq reads.
    table: the table, ``name`` or ``schema.name`` (lower-case identifiers). Default
        ``messages``.
    columns: the table's columns and their sources, as above. Default: the table above.
    create_table: create the table (with its unique key) if it is missing. Default true; with
        false a missing table is an error at start.
    idempotent: write with ``ON CONFLICT DO NOTHING`` over the key, as above. Default false.
    key: the columns of the unique key in idempotent mode (a list of ``columns`` names, or of
        the default table's). Default: the ``message_hash`` column.
    batch_size: the most rows one batch writes; 1 writes each message alone. Default 500.
    batch_delay: under load (a batch being written), seconds the next batch may wait for more
        rows after its first arrives, never longer; a message that finds no batch being written
        is written at once. Default 0.01; 0 writes whenever a connection is free.
    pool_size: connections to the database, so batches in flight at once. Default 2.
    connect_timeout: seconds to wait for a connection, at start and for each batch, before the
        batch fails. Default 5.
    write_timeout: seconds one batch's write may take before it fails. Default 30. Keep the
        collector's own ``timeout`` (if set) above ``connect_timeout + write_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from pydantic import PlainValidator, ValidationInfo

from mqtt_collector import Context, Error, GroupCommit, Message, Payload, Result
from mqtt_collector.collectors import (
    _at_least_one,
    _BatchDelay,
    _BatchSize,
    _Boolean,
    _needs_lifecycle,
    _option_error,
    _Options,
    _read_options,
    _seconds,
    _string,
)
from mqtt_collector.collectors._postgres_rows import (
    DEFAULT_TYPES,
    NAME,
    Column,
    check_columns,
    table_shape,
)

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    # The database side needs psycopg and psycopg-pool too: imported here, under this message.
    from mqtt_collector.collectors._postgres_writer import (
        Writer,
        connect_arguments,
        one_line,
        prepare,
    )
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"mqtt_collector.collectors.postgres needs psycopg 3 and psycopg-pool ({exc}):"
        " pip install 'mqtt-collector[postgres]'"
    ) from exc

__all__ = ["Column", "Options", "open_database", "write"]


def _qualified_name(value: object) -> str:
    """Check the ``table`` option: ``name`` or ``schema.name``, lower-case identifiers."""
    table = _string(value)
    if not all(NAME.fullmatch(part) for part in table.split(".")) or table.count(".") > 1:
        raise ValueError(f"must be name or schema.name, lower-case identifiers, got {table!r}")
    return table


def _dsn(value: object) -> str:
    """Check the ``dsn`` option parses as libpq's (not echoed: it may hold a password)."""
    dsn = _string(value)
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise ValueError("is not a libpq connection string or URI") from None
    return dsn


def _key(value: object, info: ValidationInfo) -> tuple[str, ...] | None:
    """Check ``key`` against ``idempotent`` and the table's columns (validated before it)."""
    if value is None:
        return None
    if not info.data.get("idempotent", True):
        raise ValueError("is only used with idempotent: true")
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"must be a list of column names, got {value!r}")
    columns = info.data.get("columns")
    known = [c.name for c in columns] if columns else list(DEFAULT_TYPES)
    for name in value:
        if name not in known:
            raise ValueError(f"no column {name!r} (columns: {', '.join(known)})")
    if len(set(value)) != len(value):
        raise ValueError(f"names a column twice: {value!r}")
    return tuple(value)


class Options(_Options):
    """The postgres collector's options, as described in the module docstring."""

    dsn: Annotated[str, PlainValidator(_dsn)]
    table: Annotated[str, PlainValidator(_qualified_name)] = "messages"
    columns: Annotated[tuple[Column, ...] | None, PlainValidator(check_columns)] = None
    create_table: _Boolean = True
    idempotent: _Boolean = False
    key: Annotated[tuple[str, ...] | None, PlainValidator(_key)] = None
    batch_size: _BatchSize = 500
    batch_delay: _BatchDelay = 0.01
    pool_size: Annotated[int, PlainValidator(_at_least_one)] = 2
    connect_timeout: Annotated[float, _seconds(zero=False)] = 5.0
    write_timeout: Annotated[float, _seconds(zero=False)] = 30.0


async def write(payload: Payload[Message], ctx: Context) -> Result:
    """Write the message in ``payload.value``; ``Ok(None)`` once its batch is committed."""
    writer: Writer | None = getattr(ctx, "postgres", None)
    if writer is None or writer.group is None:
        return Error(_needs_lifecycle(ctx, "postgres:write", "postgres:open_database"))
    try:
        row = writer.shape.row(payload.value)
    except (TypeError, ValueError) as exc:
        return Error(exc)
    return await writer.group.submit(row)


@contextlib.asynccontextmanager
async def open_database(ctx: Context) -> AsyncIterator[None]:
    """Prepare the table, open the connection pool as ``ctx.postgres``; close both at exit."""
    options = _read_options(ctx, Options)
    shape = table_shape(options.columns, idempotent=options.idempotent, key=options.key)
    try:
        async with asyncio.timeout(options.connect_timeout):
            connection = await psycopg.AsyncConnection.connect(
                options.dsn, **connect_arguments(options.dsn, options.connect_timeout)
            )
    except (psycopg.OperationalError, TimeoutError) as exc:
        reason = one_line(exc) if str(exc) else f"no answer in {options.connect_timeout:g} s"
        raise _option_error(ctx, "dsn", f"cannot connect to PostgreSQL: {reason}") from None
    async with connection:
        await prepare(
            ctx, connection, table=options.table, create_table=options.create_table, shape=shape
        )

    writer = Writer(
        dsn=options.dsn,
        table=options.table,
        shape=shape,
        idempotent=options.idempotent,
        pool_size=options.pool_size,
        connect_timeout=options.connect_timeout,
        write_timeout=options.write_timeout,
        name=getattr(ctx, "key", "<unnamed>"),
    )
    await writer.pool.open()
    try:
        async with GroupCommit(
            writer.write_batch,
            max_size=options.batch_size,
            max_delay=options.batch_delay,
            concurrency=options.pool_size,
        ) as writer.group:
            ctx.postgres = writer
            yield
    finally:
        await writer.pool.close()
