"""The postgres collector's database side: the table prepared at start, the batches written."""

from __future__ import annotations

import asyncio
import math
import weakref
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from mqtt_collector import Context, Error, GroupCommit
from mqtt_collector.collectors import _option_error
from mqtt_collector.collectors._postgres_rows import Row, Shape

__all__ = ["Writer", "connect_arguments", "one_line", "prepare"]

_STAGING = "mqtt_collector_staging"
# A pooled connection idle longer than this is checked (one round trip) before a batch uses it,
# so one that a database restart broke while idle is replaced instead of failing a batch; one
# in steady use is not, and a failure on it fails its batch, retried like any other.
_CHECK_IDLE = 1.0
# Each a one-off wait for a pool slot that failed to reconnect: given up after this many
# seconds, the next batch tries at once, so a database back from an outage is found within it.
_RECONNECT_TIMEOUT = 5.0


def one_line(exc: BaseException) -> str:
    """An error's message on one line (libpq's span several)."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or repr(exc)


def connect_arguments(dsn: str, connect_timeout: float) -> dict[str, Any]:
    """Arguments for each connection: autocommit, and libpq's ``connect_timeout`` if unset.

    Without it an attempt through a link that went silent would hold a pool slot for minutes.
    """
    arguments: dict[str, Any] = {"autocommit": True}
    if "connect_timeout" not in conninfo_to_dict(dsn):
        arguments["connect_timeout"] = max(2, math.ceil(connect_timeout))  # libpq's least
    return arguments


class Writer:
    """One collector's connection pool and statements, kept as ``ctx.postgres``.

    ``write_batch`` is the group commit's write; ``group`` is set by the lifecycle.
    """

    def __init__(
        self,
        *,
        dsn: str,
        table: str,
        shape: Shape,
        idempotent: bool,
        pool_size: int,
        connect_timeout: float,
        write_timeout: float,
        name: str,
    ) -> None:
        """Compose the statements and make the pool (not opened yet)."""
        self.shape = shape
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout
        self.group: GroupCommit[Row] | None = None
        self._last_used: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float]
        self._last_used = weakref.WeakKeyDictionary()
        target, staging = _identifier(table), sql.Identifier(_STAGING)
        names = sql.SQL(", ").join(map(sql.Identifier, shape.names))
        self._copy_rows = sql.SQL("COPY {} ({}) FROM STDIN").format(
            staging if idempotent else target, names
        )
        self._insert: sql.Composed | None = None  # idempotent mode: staging table to target
        self._create_staging: sql.Composed | None = None
        if idempotent:
            self._insert = sql.SQL(
                "INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING"
            ).format(target, names, names, staging)
            self._create_staging = sql.SQL(
                "CREATE TEMPORARY TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS"
                " AS SELECT {} FROM {} WITH NO DATA"
            ).format(staging, names, target)
        self.pool = AsyncConnectionPool(
            dsn,
            min_size=pool_size,
            max_size=pool_size,
            kwargs=connect_arguments(dsn, connect_timeout),
            configure=self._configure,
            check=self._check,
            name=f"mqtt-collector-{name}",
            timeout=connect_timeout,
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


def _identifier(table: str) -> sql.Identifier:
    """The ``table`` option, ``name`` or ``schema.name``, as an SQL identifier."""
    return sql.Identifier(*table.split("."))


async def prepare(
    ctx: Context,
    connection: psycopg.AsyncConnection[Any],
    *,
    table: str,
    create_table: bool,
    shape: Shape,
) -> None:
    """Create ``table`` if missing (and allowed); check it has the columns and key needed."""
    identifier = _identifier(table)
    name = identifier.as_string(connection)
    cursor = await connection.execute("SELECT to_regclass(%s)::oid", [name])
    found = await cursor.fetchone()
    oid = found[0] if found else None
    if oid is None:
        if not create_table:
            raise _option_error(ctx, "table", f"{table!r} does not exist (create_table)")
        columns = [
            sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t))
            for n, t in zip(shape.names, shape.types, strict=True)
        ]
        if shape.key:
            unique = sql.SQL(", ").join(map(sql.Identifier, shape.key))
            columns.append(sql.SQL("UNIQUE ({})").format(unique))
        create = sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})")
        try:
            await connection.execute(create.format(identifier, sql.SQL(", ").join(columns)))
        except (errors.UniqueViolation, errors.DuplicateTable):
            pass  # another daemon created it at the same moment
        except psycopg.Error as exc:
            raise _option_error(ctx, "table", f"cannot create it: {one_line(exc)}") from exc
    cursor = await connection.execute(
        "SELECT attname::text FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        [name],
    )
    present = {column for (column,) in await cursor.fetchall()}
    missing = [column for column in shape.names if column not in present]
    if missing:
        raise _option_error(
            ctx, "table", f"existing table {table!r} lacks columns {', '.join(missing)}"
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
                f"table {table!r} has no unique index on ({', '.join(shape.key)}),"
                " which idempotent mode needs",
            )
