"""Rows/s of the batching sinks at the collector level: group commit against one row per call.

Each sink's processor is called directly (no MQTT, no queue) by ``--callers`` concurrent tasks,
64 by default: as many as ``queue.max_consumers``, since in the daemon each waiting call holds
one consumer. Each task calls again as soon as its call returns, so ``--callers`` rows are in
flight at any time. The same collector is timed twice over ``--messages`` rows: with
``batch_size: 1`` (a transaction per message) and with its default ``batch_size`` (group
commit: the calls waiting while a transaction commits go together in the next one). Every call
returns only once its row is committed, so a row counted is a row stored. What it should show:
group commit >= 10x one row per call. The ratio is against ``batch_size 1`` of the same sink,
in the same run.

Run: ``python benchmarks/sink_bench.py [--messages N] [--callers N] [--dir PATH] [--dsn DSN]``.

- sqlite: a fresh database file per mode in ``--dir`` (default: a temporary directory), in WAL
  mode with ``synchronous=FULL``, so its figures are those of that disk's fsync.
- postgres: added when ``mqtt_collector.collectors.postgres`` (the ``postgres`` extra) is
  importable and ``--dsn`` (default ``postgresql://127.0.0.1:5432/test``) answers; each mode
  writes a table of its own, dropped after. Otherwise the row says why it was skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import platform
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

from mqtt_collector import Context, Message, Ok, Payload

DSN = "postgresql://127.0.0.1:5432/test"


@dataclass
class Sink:
    """One built-in collector to time: its module, and how each mode's options are made."""

    name: str
    module: ModuleType | None
    """The collector's module (``write``, ``open_database``, ``Options``); None if skipped."""
    options: Callable[[], dict[str, Any]]
    """Fresh options for one mode's run (a new file or table), without ``batch_size``."""
    count: Callable[[dict[str, Any]], int]
    """How many rows that run's options point at hold, read back after the run."""
    cleanup: Callable[[dict[str, Any]], None] = lambda options: None  # noqa: ARG005
    skipped: str = ""
    """Why the sink is not timed (empty when it is)."""
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    sink: str
    mode: str
    rate: float
    ratio: float | None


def _message(number: int) -> Message:
    """A small JSON reading, as the mapper would build it."""
    data = {"seq": number, "celsius": 21.5, "unit": "C"}
    site = f"site{number % 8}"
    return Message(
        topic=f"bench/{site}/temperature",
        data=data,
        raw=json.dumps(data).encode(),
        qos=1,
        retain=False,
        captures=(site,),
        subscription="bench/+/temperature",
        received_at=time.time(),
    )


async def feed(sink: Sink, options: dict[str, Any], messages: int, callers: int) -> float:
    """Open the sink, write ``messages`` rows from ``callers`` concurrent tasks; rows/s."""
    assert sink.module is not None
    module = sink.module
    ctx = Context(key=f"bench-{sink.name}", options=MappingProxyType(options))
    payloads = [Payload(_message(number)) for number in range(min(messages, 4096))]
    failures: list[object] = []

    async def caller(first: int) -> None:
        for number in range(first, messages, callers):
            result = await module.write(payloads[number % len(payloads)], ctx)
            if not isinstance(result, Ok):
                failures.append(result)

    async with module.open_database(ctx):
        start = time.perf_counter()
        await asyncio.gather(*(caller(first) for first in range(callers)))
        elapsed = time.perf_counter() - start
    if failures:
        raise SystemExit(f"{sink.name}: {len(failures)} calls failed, e.g. {failures[0]!r}")
    stored = sink.count(options)
    if stored != messages:
        raise SystemExit(f"{sink.name}: {stored} rows stored for {messages} calls")
    return messages / elapsed


def sqlite_sink(directory: Path) -> Sink:
    """The sqlite collector, a new database file in ``directory`` for each run."""
    from mqtt_collector.collectors import sqlite  # noqa: PLC0415 - next to its siblings

    def options() -> dict[str, Any]:
        return {"path": str(directory / f"bench-{uuid.uuid4().hex}.db")}

    def count(options: dict[str, Any]) -> int:
        with contextlib.closing(sqlite3.connect(options["path"])) as connection:
            (rows,) = connection.execute("SELECT count(*) FROM messages").fetchone()
        return int(rows)

    def cleanup(options: dict[str, Any]) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(options["path"] + suffix).unlink(missing_ok=True)

    note = f"sqlite {sqlite3.sqlite_version}, WAL, synchronous=FULL, files in {directory}"
    return Sink("sqlite", sqlite, options, count, cleanup, notes=[note])


def _skipped(name: str, reason: str) -> Sink:
    """A sink that is not timed, and why."""
    return Sink(name, None, dict, lambda options: 0, skipped=reason)  # noqa: ARG005


def postgres_sink(dsn: str) -> Sink:
    """The postgres collector, a new table for each run; skipped (saying why) if unavailable."""
    try:
        module = importlib.import_module("mqtt_collector.collectors.postgres")
        import psycopg  # noqa: PLC0415 - the postgres extra: optional
        from psycopg import sql  # noqa: PLC0415
    except ImportError as exc:
        return _skipped("postgres", f"not available ({exc})")
    try:
        with psycopg.connect(dsn, connect_timeout=3) as connection:
            version = connection.info.server_version
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return _skipped("postgres", f"{dsn} unreachable ({reason})")

    def options() -> dict[str, Any]:
        return {"dsn": dsn, "table": f"sink_bench_{uuid.uuid4().hex[:12]}"}

    def count(options: dict[str, Any]) -> int:
        with psycopg.connect(dsn) as connection:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(options["table"]))
            found = connection.execute(query).fetchone()
        return int(found[0]) if found else 0

    def cleanup(options: dict[str, Any]) -> None:
        with psycopg.connect(dsn, autocommit=True) as connection:
            drop = sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(options["table"]))
            connection.execute(drop)

    defaults = module.Options.model_validate({"dsn": dsn})
    note = (
        f"postgres {version // 10000}.{version % 10000}, {dsn},"
        f" pool_size {defaults.pool_size} (the default)"
    )
    return Sink("postgres", module, options, count, cleanup, notes=[note])


def run(sinks: list[Sink], messages: int, callers: int) -> Iterator[Row]:
    """Time each available sink with batch_size 1, then with its default batch_size."""
    for sink in sinks:
        if sink.module is None:
            continue
        default = sink.module.Options.model_fields["batch_size"].default
        rates: list[float] = []
        for batch_size in (1, None):
            options = sink.options()
            if batch_size is not None:
                options["batch_size"] = batch_size
            try:
                rates.append(asyncio.run(feed(sink, options, messages, callers)))
            finally:
                sink.cleanup(options)
        yield Row(sink.name, "batch_size 1 (one row per call)", rates[0], None)
        yield Row(sink.name, f"batch_size {default} (default)", rates[1], rates[1] / rates[0])


def main() -> None:
    """Parse the flags, time every sink, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10_000, help="rows per run (10,000)")
    parser.add_argument(
        "--callers", type=int, default=64, help="concurrent calls: queue.max_consumers (64)"
    )
    parser.add_argument("--dir", type=Path, help="where the sqlite files go (a temporary one)")
    parser.add_argument("--dsn", default=DSN, help=f"the PostgreSQL to use ({DSN})")
    args = parser.parse_args()
    if args.messages < 1 or args.callers < 1:
        parser.error("--messages and --callers must be at least 1")

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="sink-bench-") as directory:
        sinks = [sqlite_sink(Path(directory)), postgres_sink(args.dsn)]
        print(
            f"{args.messages:,} rows per run from {args.callers} concurrent callers;"
            f" Python {platform.python_version()}, {os.cpu_count()} CPUs"
        )
        for sink in sinks:
            for note in sink.notes:
                print(f"  {note}")
        print()
        print(f"{'sink':<10} {'mode':<34} {'rows/s':>10} {'ratio':>7}")
        for row in run(sinks, args.messages, args.callers):
            ratio = "" if row.ratio is None else f"{row.ratio:.1f}x"
            print(f"{row.sink:<10} {row.mode:<34} {row.rate:>10,.0f} {ratio:>7}", flush=True)
        for sink in sinks:
            if sink.skipped:
                print(f"{sink.name:<10} skipped: {sink.skipped}")


if __name__ == "__main__":
    main()
