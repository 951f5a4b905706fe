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
message at once (``batch_delay: 0``).

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
    batch_delay: seconds a batch may wait for more rows after its first arrives (never longer);
        0 (default) writes at once whenever a connection is free.
    pool_size: connections to the database, so batches in flight at once. Default 2.
    connect_timeout: seconds to wait for a connection, at start and for each batch, before the
        batch fails. Default 5.
    write_timeout: seconds one batch's write may take before it fails. Default 30. Keep the
        collector's own ``timeout`` (if set) above ``connect_timeout + write_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import PlainValidator, ValidationInfo

from mqtt_collector import Context, Error, GroupCommit, Message, Payload, Result
from mqtt_collector.collectors import (
    _at_least_one,
    _BatchDelay,
    _BatchSize,
    _Boolean,
    _dump_json,
    _needs_lifecycle,
    _option_error,
    _Options,
    _read_options,
    _seconds,
    _string,
)

try:
    import psycopg
    from psycopg import errors, sql
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import AsyncConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"mqtt_collector.collectors.postgres needs psycopg 3 and psycopg-pool ({exc}):"
        " pip install 'mqtt-collector[postgres]'"
    ) from exc

__all__ = ["Column", "Options", "open_database", "write"]

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_. ]*(\([0-9, ]*\))?[A-Za-z0-9_ ]*(\[[0-9]*\])*")
_CAPTURE = re.compile(r"\{([1-9][0-9]*)\}")
_HASH = "message_hash"
_STAGING = "mqtt_collector_staging"
# A pooled connection idle longer than this is checked (one round trip) before a batch uses it,
# so one that a database restart broke while idle is replaced instead of failing a batch; one
# in steady use is not, and a failure on it fails its batch, retried like any other.
_CHECK_IDLE = 1.0
# Each a one-off wait for a pool slot that failed to reconnect: given up after this many
# seconds, the next batch tries at once, so a database back from an outage is found within it.
_RECONNECT_TIMEOUT = 5.0
_SOURCE_TYPES = {
    "topic": "text",
    "{topic}": "text",
    "captures": "text[]",
    "data": "jsonb",
    "payload": "bytea",
    "received_at": "timestamptz",
    "qos": "smallint",
    "retain": "boolean",
    "subscription": "text",
}
_SOURCES = (
    "topic, {1}, {2}..., captures, data, data.<field>..., payload, received_at, qos, retain,"
    " subscription"
)
_DEFAULT_TYPES = {
    "topic": "text NOT NULL",
    "captures": "text[] NOT NULL",
    "data": "jsonb",
    "payload": "bytea",
    "received_at": "timestamptz NOT NULL",
    "qos": "smallint NOT NULL",
    "retain": "boolean NOT NULL",
}
Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Column:
    """One column of ``columns:``: its name, where its value comes from, its PostgreSQL type."""

    name: str
    source: str
    type: str


def _source_type(source: str) -> str:
    """The default type of ``source``; ValueError naming the known sources if it is none."""
    if source in _SOURCE_TYPES:
        return _SOURCE_TYPES[source]
    if _CAPTURE.fullmatch(source):
        return "text"
    if source.startswith("data.") and all(source.removeprefix("data.").split(".")):
        return "jsonb"
    raise ValueError(f"unknown source {source!r} (known: {_SOURCES})")


def _column(name: object, spec: object) -> Column:
    """Check one ``columns:`` entry, ``name: SOURCE`` or ``name: SOURCE::TYPE``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"column {name!r}: a name must be a lower-case SQL identifier (a-z, 0-9, _)"
        )
    if name == _HASH:
        raise ValueError(f"column {name!r}: the name is kept for idempotent mode's hash")
    if isinstance(spec, Mapping):
        raise ValueError(  # noqa: TRY004 - pydantic reports a ValueError
            f"column {name!r}: quote the source ({{1}} unquoted is a YAML mapping)"
        )
    if not isinstance(spec, str):
        raise ValueError(  # noqa: TRY004 - pydantic reports a ValueError
            f"column {name!r}: must be a source such as 'data.x::real', got {spec!r}"
        )
    source, cast, declared = (part.strip() for part in spec.partition("::"))
    try:
        default = _source_type(source)
    except ValueError as exc:
        raise ValueError(f"column {name!r}: {exc}") from None
    column_type = " ".join(declared.split()) if cast else default
    if not _TYPE.fullmatch(column_type):
        raise ValueError(f"column {name!r}: {declared!r} is not a PostgreSQL type name")
    return Column(name, source, column_type)


def _columns(value: object) -> tuple[Column, ...] | None:
    """Check the ``columns`` option: a mapping of column names to sources."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise ValueError("must be a mapping of column names to sources, e.g. {celsius: data.c}")
    return tuple(_column(name, spec) for name, spec in value.items())


def _qualified_name(value: object) -> str:
    """Check the ``table`` option: ``name`` or ``schema.name``, lower-case identifiers."""
    table = _string(value)
    if not all(_NAME.fullmatch(part) for part in table.split(".")) or table.count(".") > 1:
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
    known = [c.name for c in columns] if columns else list(_DEFAULT_TYPES)
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
    columns: Annotated[tuple[Column, ...] | None, PlainValidator(_columns)] = None
    create_table: _Boolean = True
    idempotent: _Boolean = False
    key: Annotated[tuple[str, ...] | None, PlainValidator(_key)] = None
    batch_size: _BatchSize = 500
    batch_delay: _BatchDelay = 0.0
    pool_size: Annotated[int, PlainValidator(_at_least_one)] = 2
    connect_timeout: Annotated[float, _seconds(zero=False)] = 5.0
    write_timeout: Annotated[float, _seconds(zero=False)] = 30.0


def _json_text(value: Any) -> str | None:
    """``value`` as JSON text for a json/jsonb column; ValueError if jsonb cannot hold it."""
    if value is None:
        return None
    if isinstance(value, bytes):
        raise TypeError("a bytes body is not JSON")
    text = _dump_json(value)
    if "\\u0000" in text:
        raise ValueError("jsonb cannot hold a NUL character (\\u0000)")
    return text


def _text_value(value: Any) -> Any:
    """A value psycopg's text COPY takes as it is; booleans, objects and lists as JSON text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


def _array(items: Sequence[Any]) -> str:
    """A PostgreSQL array literal of ``items`` as text (quicker than psycopg's list dumper)."""
    elements = (
        "NULL"
        if item is None
        else '"' + str(_text_value(item)).replace("\\", "\\\\").replace('"', '\\"') + '"'
        for item in items
    )
    return "{" + ",".join(elements) + "}"


def _field(data: Any, path: Sequence[str]) -> Any:
    """Follow ``path`` into decoded JSON: keys of objects, indexes of lists; None if absent."""
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _extractor(source: str) -> Callable[[Message], Any]:
    """The function taking a column's raw value out of a message."""
    if capture := _CAPTURE.fullmatch(source):
        index = int(capture[1]) - 1
        return lambda m: m.captures[index] if index < len(m.captures) else None
    if source.startswith("data."):
        path = tuple(source.removeprefix("data.").split("."))
        return lambda m: _field(m.data, path)
    extractors: dict[str, Callable[[Message], Any]] = {
        "topic": lambda m: m.topic,
        "{topic}": lambda m: m.topic,
        "captures": lambda m: _array(m.captures),
        "data": lambda m: m.data,
        "payload": lambda m: m.raw,
        "received_at": lambda m: datetime.fromtimestamp(m.received_at, UTC),
        "qos": lambda m: m.qos,
        "retain": lambda m: m.retain,
        "subscription": lambda m: m.subscription,
    }
    return extractors[source]


def _converter(column: Column) -> Callable[[Message], Any]:
    """The function giving ``column``'s value for a message, ready for a text COPY."""
    extract = _extractor(column.source)
    base = column.type.lower()
    if base in {"json", "jsonb"}:

        def json_value(message: Message) -> Any:
            try:
                return _json_text(extract(message))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"column {column.name!r}: {exc}") from None

        return json_value
    if base.endswith("]"):
        return lambda m: (
            _array(value) if isinstance(value := extract(m), list) else _text_value(value)
        )
    return lambda m: _text_value(extract(m))


def _default_row(message: Message) -> Row:
    """The default table's row: data as jsonb when it can be, else the raw body."""
    try:
        data = None if isinstance(message.data, bytes) else _json_text(message.data)
    except (TypeError, ValueError):
        data = None
    return (
        message.topic,
        _array(message.captures),
        data,
        message.raw if data is None else None,
        datetime.fromtimestamp(message.received_at, UTC),
        message.qos,
        message.retain,
    )


def _message_hash(message: Message) -> bytes:
    """The idempotency key without ``key``: topic and body (a topic holds no NUL)."""
    return hashlib.blake2b(message.topic.encode() + b"\0" + message.raw, digest_size=16).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Shape:
    """What the collector writes: column names and types, and how a message becomes a row."""

    names: tuple[str, ...]
    types: tuple[str, ...]
    key: tuple[str, ...]  # the unique key in idempotent mode, () otherwise
    row: Callable[[Message], Row]


def _row_of_columns(columns: Sequence[Column]) -> Callable[[Message], Row]:
    """The row builder of ``columns:``: each column's value, converted for its type."""
    converters = tuple(_converter(column) for column in columns)
    return lambda message: tuple(convert(message) for convert in converters)


def _row_with_hash(build: Callable[[Message], Row]) -> Callable[[Message], Row]:
    """``build``'s row followed by the message's hash (idempotent mode without ``key``)."""
    return lambda message: (*build(message), _message_hash(message))


def _shape(options: Options) -> _Shape:
    """The table shape and row builder the options describe."""
    if options.columns is None:
        names, types = tuple(_DEFAULT_TYPES), tuple(_DEFAULT_TYPES.values())
        build: Callable[[Message], Row] = _default_row
    else:
        names = tuple(column.name for column in options.columns)
        types = tuple(column.type for column in options.columns)
        build = _row_of_columns(options.columns)
    if not options.idempotent:
        return _Shape(names=names, types=types, key=(), row=build)
    if options.key is None:
        return _Shape(
            names=(*names, _HASH),
            types=(*types, "bytea NOT NULL"),
            key=(_HASH,),
            row=_row_with_hash(build),
        )
    # The key's columns are NOT NULL: NULLs are distinct, so would never conflict.
    types = tuple(
        f"{kind} NOT NULL" if name in options.key and "NOT NULL" not in kind else kind
        for name, kind in zip(names, types, strict=True)
    )
    return _Shape(names=names, types=types, key=options.key, row=build)


def _one_line(exc: BaseException) -> str:
    """An error's message on one line (libpq's span several)."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or repr(exc)


def _connect_arguments(options: Options) -> dict[str, Any]:
    """Arguments for each connection: autocommit, and libpq's ``connect_timeout`` if unset.

    Without it an attempt through a link that went silent would hold a pool slot for minutes.
    """
    arguments: dict[str, Any] = {"autocommit": True}
    if "connect_timeout" not in conninfo_to_dict(options.dsn):
        arguments["connect_timeout"] = max(2, math.ceil(options.connect_timeout))  # libpq's least
    return arguments


class _Writer:
    """One collector's connection pool and statements, kept as ``ctx.postgres``.

    ``write_batch`` is the group commit's write; ``group`` is set by the lifecycle.
    """

    def __init__(self, options: Options, shape: _Shape, *, name: str) -> None:
        """Compose the statements and make the pool (not opened yet)."""
        self.shape = shape
        self.connect_timeout = options.connect_timeout
        self.write_timeout = options.write_timeout
        self.group: GroupCommit[Row] | None = None
        self._last_used: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float]
        self._last_used = weakref.WeakKeyDictionary()
        table, staging = _table(options), sql.Identifier(_STAGING)
        names = sql.SQL(", ").join(map(sql.Identifier, shape.names))
        self._copy_rows = sql.SQL("COPY {} ({}) FROM STDIN").format(
            staging if options.idempotent else table, names
        )
        self._insert: sql.Composed | None = None  # idempotent mode: staging table to target
        self._create_staging: sql.Composed | None = None
        if options.idempotent:
            self._insert = sql.SQL(
                "INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING"
            ).format(table, names, names, staging)
            self._create_staging = sql.SQL(
                "CREATE TEMPORARY TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS"
                " AS SELECT {} FROM {} WITH NO DATA"
            ).format(staging, names, table)
        self.pool = AsyncConnectionPool(
            options.dsn,
            min_size=options.pool_size,
            max_size=options.pool_size,
            kwargs=_connect_arguments(options),
            configure=self._configure,
            check=self._check,
            name=f"mqtt-collector-{name}",
            timeout=options.connect_timeout,
            reconnect_timeout=_RECONNECT_TIMEOUT,
            open=False,
        )

    async def _configure(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """Set a new connection up: idempotent mode's staging table (one per session)."""
        if self._create_staging is not None:
            await connection.execute(self._create_staging)

    async def _check(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """The pool's check before lending ``connection``: a round trip if it has been idle."""
        idle = asyncio.get_running_loop().time() - self._last_used.get(connection, -math.inf)
        if idle > _CHECK_IDLE:
            await AsyncConnectionPool.check_connection(connection)

    async def write_batch(self, rows: list[Row]) -> list[Error | None] | None:
        """Commit ``rows``; if PostgreSQL refused one, commit the others and fail only it."""
        try:
            await self._commit(rows)
        except (psycopg.OperationalError, TimeoutError, ConnectionError):
            raise  # the database, not a row: every message of the batch fails and is retried
        except Exception:
            if len(rows) == 1:
                raise
            return await self._write_each(rows)
        return None

    async def _write_each(self, rows: list[Row]) -> list[Error | None]:
        """Commit each row alone; an Error for each one refused (and all left, if cut off)."""
        results: list[Error | None] = []
        for index, row in enumerate(rows):
            try:
                await self._commit([row])
            except (psycopg.OperationalError, TimeoutError, ConnectionError) as exc:
                results.extend([Error(exc)] * (len(rows) - index))
                break
            except Exception as exc:  # noqa: BLE001 - this row's own failure
                results.append(Error(exc))
            else:
                results.append(None)
        return results

    async def _commit(self, rows: list[Row]) -> None:
        """Write ``rows`` in one transaction, within the timeouts."""
        try:
            async with (
                asyncio.timeout(self.write_timeout),
                self.pool.connection(timeout=self.connect_timeout) as connection,
            ):
                if self._insert is None:
                    await self._copy(connection, rows)  # one COPY: its own transaction
                else:
                    async with connection.transaction():
                        await self._copy(connection, rows)
                        await connection.execute(self._insert)
                self._last_used[connection] = asyncio.get_running_loop().time()
        except PoolTimeout as exc:
            raise ConnectionError(
                f"no connection to PostgreSQL within {self.connect_timeout:g} s"
                " (connect_timeout): the database is unreachable or the pool is busy"
            ) from exc
        except TimeoutError as exc:
            raise TimeoutError(
                f"writing {len(rows)} row(s) took more than {self.write_timeout:g} s"
                " (write_timeout)"
            ) from exc

    async def _copy(self, connection: psycopg.AsyncConnection[Any], rows: list[Row]) -> None:
        async with connection.cursor() as cursor, cursor.copy(self._copy_rows) as copy:
            for row in rows:
                await copy.write_row(row)


async def write(payload: Payload[Message], ctx: Context) -> Result:
    """Write the message in ``payload.value``; ``Ok(None)`` once its batch is committed."""
    writer: _Writer | None = getattr(ctx, "postgres", None)
    if writer is None or writer.group is None:
        return Error(_needs_lifecycle(ctx, "postgres:write", "postgres:open_database"))
    try:
        row = writer.shape.row(payload.value)
    except (TypeError, ValueError) as exc:
        return Error(exc)
    return await writer.group.submit(row)


def _table(options: Options) -> sql.Identifier:
    return sql.Identifier(*options.table.split("."))


async def _prepare(
    ctx: Context, connection: psycopg.AsyncConnection[Any], options: Options, shape: _Shape
) -> None:
    """Create the table if missing (and allowed); check it has the columns and key needed."""
    table = _table(options)
    name = table.as_string(connection)
    cursor = await connection.execute("SELECT to_regclass(%s)::oid", [name])
    found = await cursor.fetchone()
    oid = found[0] if found else None
    if oid is None:
        if not options.create_table:
            raise _option_error(ctx, "table", f"{options.table!r} does not exist (create_table)")
        columns = [
            sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t))
            for n, t in zip(shape.names, shape.types, strict=True)
        ]
        if shape.key:
            unique = sql.SQL(", ").join(map(sql.Identifier, shape.key))
            columns.append(sql.SQL("UNIQUE ({})").format(unique))
        create = sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})")
        try:
            await connection.execute(create.format(table, sql.SQL(", ").join(columns)))
        except (errors.UniqueViolation, errors.DuplicateTable):
            pass  # another daemon created it at the same moment
        except psycopg.Error as exc:
            raise _option_error(ctx, "table", f"cannot create it: {_one_line(exc)}") from exc
    cursor = await connection.execute(
        "SELECT attname::text FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        [name],
    )
    present = {column for (column,) in await cursor.fetchall()}
    missing = [column for column in shape.names if column not in present]
    if missing:
        raise _option_error(
            ctx, "table", f"existing table {options.table!r} lacks columns {', '.join(missing)}"
        )
    if shape.key:
        cursor = await connection.execute(
            "SELECT array_agg(a.attname::text) FROM pg_index i JOIN pg_attribute a"
            " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indrelid = %s::regclass AND i.indisunique AND i.indpred IS NULL"
            " AND i.indexprs IS NULL GROUP BY i.indexrelid",
            [name],
        )
        if not any(set(names) == set(shape.key) for (names,) in await cursor.fetchall()):
            raise _option_error(
                ctx,
                "key",
                f"table {options.table!r} has no unique index on ({', '.join(shape.key)}),"
                " which idempotent mode needs",
            )


@contextlib.asynccontextmanager
async def open_database(ctx: Context) -> AsyncIterator[None]:
    """Prepare the table, open the connection pool as ``ctx.postgres``; close both at exit."""
    options = _read_options(ctx, Options)
    shape = _shape(options)
    try:
        async with asyncio.timeout(options.connect_timeout):
            connection = await psycopg.AsyncConnection.connect(
                options.dsn, **_connect_arguments(options)
            )
    except (psycopg.OperationalError, TimeoutError) as exc:
        reason = _one_line(exc) if str(exc) else f"no answer in {options.connect_timeout:g} s"
        raise _option_error(ctx, "dsn", f"cannot connect to PostgreSQL: {reason}") from None
    async with connection:
        await _prepare(ctx, connection, options, shape)

    writer = _Writer(options, shape, name=getattr(ctx, "key", "<unnamed>"))
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
