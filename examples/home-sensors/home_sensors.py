"""Home sensor readings (Zigbee2MQTT and Tasmota) into one SQLite table, a row per reading.

Named in ``config.yaml`` as::

    processor: home_sensors:store
    lifecycle: home_sensors:database

The two topic styles it understands, told apart by the Payload topic their subscription gives:

- ``zigbee2mqtt``: ``zigbee2mqtt/<device>`` with a flat JSON object,
  ``{"temperature": 21.5, "humidity": 48, "battery": 97, "last_seen": "2024-05-01T12:00:00Z"}``.
  One row, ``sensor`` empty.
- ``tasmota``: ``tele/<device>/SENSOR`` with one object per attached sensor,
  ``{"Time": "2024-05-01T12:00:00", "AM2301": {"Temperature": 21.3, "Humidity": 45}}``.
  One row per sensor object (``sensor`` = its name, here ``AM2301``); keys are matched
  without regard to case.

The device name is the topic's wildcard capture (``message.captures[0]``). Every name in the
``fields`` option becomes a REAL column; a reading's numeric values for them fill the row, and
anything else in the body is ignored (a message with none of them, such as a button's
``{"action": "single"}``, stores nothing).

Idempotent: the primary key is ``(source, device, sensor, measured_at)`` and rows go in with
``INSERT OR IGNORE``, so a message the broker sends again after a crash adds nothing.
``measured_at`` is the reading's own time: Tasmota's ``Time`` (local time, as the device sends
it), Zigbee2MQTT's ``last_seen`` (turn it on with ``advanced: {last_seen: ISO_8601}`` in
Zigbee2MQTT's configuration), given in UTC when it carries a zone. A reading without one is
keyed by the time the daemon received it, which a redelivered copy does not share: without
``last_seen`` a crash may leave a Zigbee reading stored twice.

Each message is committed before the processor returns, so with QoS 1 it is acknowledged only
once its rows are on disk. SQLite runs in one thread of the lifecycle's, off the event loop.

Options:
    path: the database file (required; its directory must exist).
    table: the table, created at start if missing. Default ``readings``.
    fields: the measurement columns. Default temperature, humidity, pressure, illuminance,
        battery, linkquality. A field added later becomes a new column at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from mqtt_collector import Context, Error, Message, Ok, Payload, Result

__all__ = ["Options", "database", "readings", "store"]

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
_RESERVED = frozenset({"device", "sensor", "measured_at", "source", "topic", "received_at"})


def _identifier(value: str) -> str:
    if not _IDENTIFIER.fullmatch(value) or value.startswith("sqlite_"):
        raise ValueError(f"must be a lower-case SQL identifier (a-z, 0-9, _), got {value!r}")
    return value


def _fields(value: tuple[str, ...]) -> tuple[str, ...]:
    for name in value:
        _identifier(name)
        if name in _RESERVED:
            raise ValueError(f"{name!r} is one of the table's own columns")
    if len(set(value)) != len(value):
        raise ValueError("a field is named twice")
    return value


_Identifier = Annotated[str, AfterValidator(_identifier)]


class Options(BaseModel):
    """The collector's options, as the module docstring describes them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(min_length=1)
    table: _Identifier = "readings"
    fields: Annotated[tuple[str, ...], AfterValidator(_fields)] = Field(
        default=("temperature", "humidity", "pressure", "illuminance", "battery", "linkquality"),
        min_length=1,
    )


@dataclass(frozen=True, slots=True)
class Reading:
    """One row: where it came from, when it was measured, and its values by field."""

    source: str
    device: str
    sensor: str
    measured_at: str
    values: Mapping[str, float]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _measured_at(value: Any, received_at: float) -> str:
    """The reading's time as ISO 8601: UTC if it has a zone (or is epoch ms), else as sent."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC).isoformat()  # Zigbee2MQTT: epoch ms
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return (
                moment.isoformat() if moment.tzinfo is None else moment.astimezone(UTC).isoformat()
            )
    return datetime.fromtimestamp(received_at, UTC).isoformat()


def _values(body: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, float]:
    by_name = {str(key).lower(): value for key, value in body.items()}
    values = {}
    for name in fields:
        number = _number(by_name.get(name))
        if number is not None:
            values[name] = number
    return values


def readings(message: Message, source: str, fields: tuple[str, ...]) -> Iterator[Reading]:
    """Yield the rows ``message`` holds, for a ``source`` of ``zigbee2mqtt`` or ``tasmota``.

    Raises TypeError if the body is not a JSON object.
    """
    body = message.data
    if not isinstance(body, Mapping):
        raise TypeError(f"expected a JSON object, got {type(body).__name__}")
    device = message.captures[0]
    if source == "tasmota":
        measured_at = _measured_at(body.get("Time"), message.received_at)
        for sensor, part in body.items():
            if isinstance(part, Mapping):
                values = _values(part, fields)
                if values:
                    yield Reading(source, device, str(sensor), measured_at, values)
        return
    values = _values(body, fields)
    if values:
        yield Reading(
            source, device, "", _measured_at(body.get("last_seen"), message.received_at), values
        )


@dataclass(frozen=True, slots=True)
class _Database:
    """The open database, kept as ``ctx.home_db``; used only from ``executor``'s thread."""

    executor: ThreadPoolExecutor
    connection: sqlite3.Connection
    table: str
    fields: tuple[str, ...]

    def insert(self, topic: str, received_at: float, rows: list[Reading]) -> int:
        """Insert ``rows`` in one transaction; return how many were new."""
        added = 0
        try:
            for row in rows:
                columns = ["source", "device", "sensor", "measured_at", "topic", "received_at"]
                params: list[Any] = [
                    row.source,
                    row.device,
                    row.sensor,
                    row.measured_at,
                    topic,
                    received_at,
                ]
                for name, value in row.values.items():
                    columns.append(name)
                    params.append(value)
                # The table and field names are checked identifiers (Options): safe to format.
                sql = (
                    f'INSERT OR IGNORE INTO "{self.table}" ({", ".join(columns)})'  # noqa: S608
                    f" VALUES ({', '.join('?' * len(columns))})"
                )
                added += self.connection.execute(sql, params).rowcount
            self.connection.commit()
        except sqlite3.Error:
            self.connection.rollback()
            raise
        return added


def _open(options: Options) -> sqlite3.Connection:
    """Open the database, create the table, add any missing field column."""
    connection = sqlite3.connect(options.path, timeout=5.0)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        measures = "".join(f", {name} REAL" for name in options.fields)
        connection.execute(
            f'CREATE TABLE IF NOT EXISTS "{options.table}" ('
            " source TEXT NOT NULL, device TEXT NOT NULL, sensor TEXT NOT NULL,"
            " measured_at TEXT NOT NULL, topic TEXT NOT NULL, received_at REAL NOT NULL"
            f"{measures}, PRIMARY KEY (source, device, sensor, measured_at))"
        )
        present = {row[1] for row in connection.execute(f'PRAGMA table_info("{options.table}")')}
        for name in options.fields:
            if name not in present:
                connection.execute(f'ALTER TABLE "{options.table}" ADD COLUMN {name} REAL')
        connection.commit()
    except BaseException:
        connection.close()
        raise
    return connection


@contextlib.asynccontextmanager
async def database(ctx: Context) -> AsyncIterator[None]:
    """Open the database of ``ctx.options`` as ``ctx.home_db`` for the daemon's run."""
    options: Options = ctx.options
    if not Path(options.path).parent.is_dir():
        raise FileNotFoundError(f"{ctx.key}: directory of {options.path!r} does not exist")
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{ctx.key}")
    try:
        connection = await loop.run_in_executor(executor, _open, options)
        try:
            ctx.home_db = _Database(executor, connection, options.table, options.fields)
            yield
        finally:
            await loop.run_in_executor(executor, connection.close)
    finally:
        executor.shutdown(wait=True)


async def store(payload: Payload[Message], ctx: Context) -> Result:
    """Store the readings of one message; ``Ok(rows added)``, or ``Error`` for a bad body."""
    message = payload.value
    db: _Database = ctx.home_db
    source = "tasmota" if "tasmota" in payload.topics else "zigbee2mqtt"
    try:
        rows = list(readings(message, source, db.fields))
    except TypeError as exc:
        return Error(exc)
    if not rows:
        return Ok(0)
    loop = asyncio.get_running_loop()
    added = await loop.run_in_executor(
        db.executor, db.insert, message.topic, message.received_at, rows
    )
    return Ok(added)
