"""mqtt_collector.collectors.postgres against a real PostgreSQL: rows, options, outages, crashes.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth, database ``test``; ``PG_DSN`` names another):
locally the tests are skipped without it, with ``CI`` set they fail, as the broker tests do.
Each test writes a table of its own, dropped at the end. The daemon tests run the CLI as a
subprocess against a private Mosquitto, the database behind a TCP proxy they cut.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from mqtt_collector import (
    Collector,
    CollectorQueue,
    Context,
    Delivery,
    Error,
    LifecycleError,
    Message,
    Ok,
    Payload,
    Result,
)
from tests.conftest import in_ci
from tests.faults.helpers import numbers
from tests.helpers.config import base, collector, error
from tests.helpers.daemon import free_port
from tests.helpers.daemon_process import DaemonProcess, wait_for
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.mqtt_client import connected_client
from tests.helpers.tcp_proxy import TcpProxy

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from mqtt_collector.collectors import postgres
except ImportError as exc:  # the postgres extra is missing
    if in_ci():
        raise
    pytest.skip(f"the postgres extra is not installed: {exc}", allow_module_level=True)

DSN = "postgresql://postgres@127.0.0.1:5432/test"
WAIT = 10.0  # seconds: a bound on every wait, far above what any of these takes
_PG = {
    "processor": "mqtt_collector.collectors.postgres:write",
    "lifecycle": "mqtt_collector.collectors.postgres:open_database",
}


def _dsn() -> str:
    import os  # noqa: PLC0415 - read once, here

    return os.environ.get("PG_DSN", DSN)


def _via(port: int) -> str:
    """The test DSN, pointed at 127.0.0.1:``port`` (a proxy, or nothing listening)."""
    return make_conninfo(_dsn(), host="127.0.0.1", port=str(port))


def _target() -> tuple[str, int]:
    """Where the test database listens, for a proxy to forward to."""
    info = conninfo_to_dict(_dsn())
    return str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432)


def _query(statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(_dsn(), connect_timeout=5, autocommit=True) as db:
        cursor = db.execute(statement)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture(scope="module")
def database() -> str:
    """The test DSN; skip (fail in CI) when PostgreSQL cannot be reached."""
    try:
        _query("SELECT 1")
    except psycopg.OperationalError as exc:
        message = f"cannot reach PostgreSQL at {_dsn()}: {exc}"
        if in_ci():
            pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)")
        pytest.skip(message)
    return _dsn()


@pytest.fixture
def table(database: str) -> Iterator[str]:
    """A table name of this test's own, dropped at the end."""
    name = f"pg_test_{uuid.uuid4().hex[:12]}"
    yield name
    _query(f'DROP TABLE IF EXISTS "{name}"')


def _message(
    topic: str = "sensors/kitchen/temperature",
    data: Any = None,
    *,
    raw: bytes | None = None,
    retain: bool = False,
    captures: tuple[str, ...] = ("kitchen",),
) -> Message:
    """A message as the mapper builds it: data {"celsius": 21.5} with its JSON raw body."""
    if data is None:
        data = {"celsius": 21.5}
    if raw is None:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return Message(
        topic=topic,
        data=data,
        raw=raw,
        qos=1,
        retain=retain,
        captures=captures,
        subscription="sensors/+/temperature",
        received_at=1_700_000_000.25,
    )


def _collector(options: Mapping[str, Any]) -> Collector:
    ctx = Context(key="c1", options=MappingProxyType(dict(options)))
    return Collector("c1", postgres.write, lifecycle=postgres.open_database, topics=["t"], ctx=ctx)


async def _deliver(
    collector: Collector, messages: Iterable[Message], *, consumers: int = 64
) -> list[Result]:
    """Send every message (all queued before any is awaited); their results in order."""
    async with CollectorQueue([collector], min_consumers=1, max_consumers=consumers) as queue:
        return await _send(queue, messages)


async def _send(queue: CollectorQueue, messages: Iterable[Message]) -> list[Result]:
    publisher = queue.get_publisher()
    events = [
        await publisher.send(Payload(m, delivery=Delivery.TOPIC, topics=["t"])) for m in messages
    ]
    async with asyncio.timeout(WAIT):
        return [(await event.wait()).first() for event in events]


async def _lifecycle_error(options: Mapping[str, Any]) -> str:
    """Start a queue whose lifecycle must fail; the message of the original error."""
    with pytest.raises(LifecycleError) as info:
        async with asyncio.timeout(WAIT), CollectorQueue([_collector(options)], min_consumers=1):
            pass
    return str(info.value.__cause__)


def _columns(table: str) -> dict[str, tuple[str, str]]:
    """Each column of ``table``: its type and whether it is nullable."""
    rows = _query(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
        f" WHERE table_name = '{table}'"
    )
    return {name: (kind, nullable) for name, kind, nullable in rows}


class TestDefaultTable:
    """Without ``columns:``: topic, captures, data or payload, time, QoS and retain."""

    async def test_postgres_default_table_holds_every_field(self, table: str) -> None:
        """A JSON body is data (jsonb); a bytes body, or NaN, is the raw payload instead."""
        messages = [
            _message(retain=True),
            _message(data=b"\x00\x01", captures=("hall",)),
            _message(data=float("nan"), raw=b"NaN"),
        ]
        results = await _deliver(_collector({"dsn": _dsn(), "table": table}), messages)
        assert results == [Ok(None)] * 3
        rows = _query(
            "SELECT topic, captures, data, payload, extract(epoch FROM received_at), qos, retain"
            f' FROM "{table}" ORDER BY captures, payload NULLS FIRST'
        )
        topic = "sensors/kitchen/temperature"
        assert [(*row[:4], float(row[4]), *row[5:]) for row in rows] == [
            (topic, ["hall"], None, b"\x00\x01", 1_700_000_000.25, 1, False),
            (topic, ["kitchen"], {"celsius": 21.5}, None, 1_700_000_000.25, 1, True),
            (topic, ["kitchen"], None, b"NaN", 1_700_000_000.25, 1, False),
        ]
        assert _columns(table) == {
            "topic": ("text", "NO"),
            "captures": ("ARRAY", "NO"),
            "data": ("jsonb", "YES"),
            "payload": ("bytea", "YES"),
            "received_at": ("timestamp with time zone", "NO"),
            "qos": ("smallint", "NO"),
            "retain": ("boolean", "NO"),
        }

    async def test_postgres_concurrent_messages_share_transactions(self, table: str) -> None:
        """Messages that wait together are committed together: fewer transactions than rows."""
        messages = [_message(data={"n": n}) for n in range(300)]
        results = await _deliver(_collector({"dsn": _dsn(), "table": table}), messages)
        assert results == [Ok(None)] * 300
        [(rows, transactions)] = _query(
            f'SELECT count(*), count(DISTINCT xmin::text) FROM "{table}"'
        )
        assert rows == 300
        assert transactions < 300 / 4

    async def test_postgres_batch_size_one_writes_each_message_alone(self, table: str) -> None:
        """``batch_size: 1``: one transaction per message."""
        messages = [_message(data={"n": n}) for n in range(40)]
        options = {"dsn": _dsn(), "table": table, "batch_size": 1}
        assert await _deliver(_collector(options), messages) == [Ok(None)] * 40
        assert _query(f'SELECT count(*), count(DISTINCT xmin::text) FROM "{table}"') == [(40, 40)]

    async def test_postgres_existing_table_lacking_columns_is_refused(self, table: str) -> None:
        """An existing table without the needed columns fails the start, naming them."""
        _query(f'CREATE TABLE "{table}" (topic text, data jsonb)')
        error = await _lifecycle_error({"dsn": _dsn(), "table": table})
        assert error == (
            f"collector 'c1': option 'table': existing table '{table}' lacks columns"
            " captures, payload, received_at, qos, retain"
        )

    async def test_postgres_missing_table_without_create_table_is_refused(self, table: str) -> None:
        """``create_table: false`` and no table: the start fails naming the option."""
        error = await _lifecycle_error({"dsn": _dsn(), "table": table, "create_table": False})
        assert error == f"collector 'c1': option 'table': '{table}' does not exist (create_table)"

    async def test_postgres_unreachable_at_start_is_one_line(self, database: str) -> None:
        """A database that cannot be reached at start fails it in one line naming ``dsn``."""
        port = free_port()
        error = await _lifecycle_error({"dsn": _via(port)})
        assert error.startswith("collector 'c1': option 'dsn': cannot connect to PostgreSQL: ")
        assert f'"127.0.0.1", port {port} failed: Connection refused' in error
        assert "\n" not in error


class TestColumns:
    """``columns:``: captures and body fields into typed columns."""

    async def test_postgres_columns_are_typed_and_filled(self, table: str) -> None:
        """Captures, fields (nested, list, missing) and the time go into the declared types."""
        options = {
            "dsn": _dsn(),
            "table": table,
            "columns": {
                "time": "received_at",
                "site": "{1}",
                "sensor": "{2}::integer",
                "celsius": "data.celsius::double precision",
                "battery": "data.status.battery::smallint",
                "first_tag": "data.tags.0",
                "tags": "data.tags::text[]",
                "ok": "data.ok::boolean",
                "absent": "data.nothing::real",
                "beyond": "{3}",
            },
        }
        body = {"celsius": "21.5", "status": {"battery": 3}, "tags": ["a", "b c"], "ok": True}
        message = _message("sensors/hall/7", body, captures=("hall", "7"))
        assert await _deliver(_collector(options), [message]) == [Ok(None)]
        assert _query(f'SELECT * FROM "{table}"') == [
            (
                _query("SELECT to_timestamp(1700000000.25)")[0][0],
                "hall",
                7,
                21.5,
                3,
                "a",
                ["a", "b c"],
                True,
                None,
                None,
            )
        ]
        assert _columns(table) == {
            "time": ("timestamp with time zone", "YES"),
            "site": ("text", "YES"),
            "sensor": ("integer", "YES"),
            "celsius": ("double precision", "YES"),
            "battery": ("smallint", "YES"),
            "first_tag": ("jsonb", "YES"),
            "tags": ("ARRAY", "YES"),
            "ok": ("boolean", "YES"),
            "absent": ("real", "YES"),
            "beyond": ("text", "YES"),
        }

    async def test_postgres_refused_row_fails_only_its_message(self, table: str) -> None:
        """A value its column refuses is that message's Error; the batch's others are stored."""
        options = {
            "dsn": _dsn(),
            "table": table,
            "columns": {"n": "data.n::integer"},
            "batch_delay": 0.5,  # the five wait for one another: one batch
        }
        messages = [_message(data={"n": n}) for n in (1, 2, "three", 4, 5)]
        results = await _deliver(_collector(options), messages)
        assert [type(result) for result in results] == [Ok, Ok, Error, Ok, Ok]
        assert isinstance(results[2], Error)
        assert isinstance(results[2].exception, psycopg.errors.InvalidTextRepresentation)
        assert _query(f'SELECT n FROM "{table}" ORDER BY n') == [(1,), (2,), (4,), (5,)]

    async def test_postgres_value_jsonb_cannot_hold_is_an_error(self, table: str) -> None:
        """A NaN bound for a jsonb column is the message's Error, naming the column."""
        options = {"dsn": _dsn(), "table": table, "columns": {"body": "data"}}
        [result] = await _deliver(_collector(options), [_message(data=float("nan"), raw=b"NaN")])
        assert isinstance(result, Error)
        assert str(result.exception).startswith("column 'body': ")


class TestIdempotent:
    """``idempotent: true``: a message written again adds no row."""

    async def test_postgres_idempotent_hash_stores_a_message_once(self, table: str) -> None:
        """The same message in one batch, and again later, is one row; others are not lost."""
        options = {"dsn": _dsn(), "table": table, "idempotent": True, "batch_delay": 0.2}
        first = [_message(data={"n": 1}), _message(data={"n": 1}), _message(data={"n": 2})]
        collector = _collector(options)
        async with CollectorQueue([collector], min_consumers=1, max_consumers=8) as queue:
            assert await _send(queue, first) == [Ok(None)] * 3
            assert await _send(queue, [_message(data={"n": 1})]) == [Ok(None)]
        assert _query(f"SELECT data FROM \"{table}\" ORDER BY data->>'n'") == [
            ({"n": 1},),
            ({"n": 2},),
        ]

    async def test_postgres_idempotent_off_stores_each_delivery(self, table: str) -> None:
        """Without idempotent mode a redelivered message is a second row (what the mode is for)."""
        options = {"dsn": _dsn(), "table": table}
        messages = [_message(data={"n": 1}), _message(data={"n": 1})]
        assert await _deliver(_collector(options), messages) == [Ok(None)] * 2
        assert _query(f'SELECT count(*) FROM "{table}"') == [(2,)]

    async def test_postgres_idempotent_key_columns(self, table: str) -> None:
        """With ``key``, rows with the same key values are one, whatever else differs."""
        options = {
            "dsn": _dsn(),
            "table": table,
            "idempotent": True,
            "key": ["sensor", "ts"],
            "columns": {"sensor": "{1}", "ts": "data.ts::timestamptz", "c": "data.c::real"},
        }
        messages = [
            _message(data={"ts": "2024-05-01T10:00:00Z", "c": 1}),
            _message(data={"ts": "2024-05-01T10:00:00Z", "c": 2}),
            _message(data={"ts": "2024-05-01T10:00:01Z", "c": 3}),
            _message(data={"c": 4}),  # no ts: the key column is NOT NULL
        ]
        results = await _deliver(_collector(options), messages)
        assert results[:3] == [Ok(None)] * 3
        assert isinstance(results[3], Error)
        assert isinstance(results[3].exception, psycopg.errors.NotNullViolation)
        assert _query(f'SELECT count(*) FROM "{table}"') == [(2,)]

    async def test_postgres_idempotent_needs_a_unique_index(self, table: str) -> None:
        """An existing table without a unique index on the key fails the start, naming ``key``."""
        _query(f'CREATE TABLE "{table}" (sensor text, ts timestamptz)')
        options = {
            "dsn": _dsn(),
            "table": table,
            "idempotent": True,
            "key": ["sensor", "ts"],
            "columns": {"sensor": "{1}", "ts": "data.ts::timestamptz"},
        }
        error = await _lifecycle_error(options)
        assert error == (
            f"collector 'c1': option 'key': table '{table}' has no unique index on"
            " (sensor, ts), which idempotent mode needs"
        )
        _query(f'CREATE UNIQUE INDEX ON "{table}" (ts, sensor)')
        message = _message(data={"ts": "2024-05-01T10:00:00Z"})
        assert await _deliver(_collector(options), [message, message]) == [Ok(None)] * 2
        assert _query(f'SELECT count(*) FROM "{table}"') == [(1,)]


class TestOptions:
    """Wrong options are refused in one line naming the option, before anything connects."""

    @pytest.mark.parametrize(
        ("options", "expected"),
        [
            pytest.param({}, "option 'dsn': is required", id="no-dsn"),
            pytest.param(
                {"dsn": "host=a =b"},
                "option 'dsn': is not a libpq connection string or URI",
                id="bad-dsn",
            ),
            pytest.param(
                {"dsn": DSN, "table": "Readings"},
                "option 'table': must be name or schema.name, lower-case identifiers,"
                " got 'Readings'",
                id="table",
            ),
            pytest.param(
                {"dsn": DSN, "columns": {"t": "body.celsius"}},
                "option 'columns': column 't': unknown source 'body.celsius' (known: topic,"
                " {1}, {2}..., captures, data, data.<field>..., payload, received_at, qos,"
                " retain, subscription)",
                id="unknown-source",
            ),
            pytest.param(
                {"dsn": DSN, "columns": {"t": "data.t::real; DROP TABLE x"}},
                "option 'columns': column 't': 'real; DROP TABLE x' is not a PostgreSQL type name",
                id="bad-type",
            ),
            pytest.param(
                {"dsn": DSN, "columns": {"site": {1: None}}},
                "option 'columns': column 'site': quote the source ({1} unquoted is a YAML"
                " mapping)",
                id="unquoted-capture",
            ),
            pytest.param(
                {"dsn": DSN, "columns": {"Site": "{1}"}},
                "option 'columns': column 'Site': a name must be a lower-case SQL identifier"
                " (a-z, 0-9, _)",
                id="column-name",
            ),
            pytest.param(
                {"dsn": DSN, "columns": []},
                "option 'columns': must be a mapping of column names to sources,"
                " e.g. {celsius: data.c}",
                id="columns-list",
            ),
            pytest.param(
                {"dsn": DSN, "key": ["topic"]},
                "option 'key': is only used with idempotent: true",
                id="key-without-idempotent",
            ),
            pytest.param(
                {"dsn": DSN, "idempotent": True, "key": ["sensor"]},
                "option 'key': no column 'sensor' (columns: topic, captures, data, payload,"
                " received_at, qos, retain)",
                id="key-unknown-column",
            ),
            pytest.param(
                {"dsn": DSN, "batch_size": True},
                "option 'batch_size': must be an integer >= 1, got True",
                id="batch-size",
            ),
            pytest.param(
                {"dsn": DSN, "batch_delay": -1},
                "option 'batch_delay': must be a number of seconds >= 0, got -1",
                id="batch-delay",
            ),
            pytest.param(
                {"dsn": DSN, "connect_timeout": 0},
                "option 'connect_timeout': must be a number of seconds > 0, got 0",
                id="connect-timeout",
            ),
            pytest.param(
                {"dsn": DSN, "idempotent": "yes"},
                "option 'idempotent': must be true or false, got 'yes'",
                id="idempotent",
            ),
            pytest.param(
                {"dsn": DSN, "colums": {}},
                "option 'colums': unknown option (known: batch_delay, batch_size, columns,"
                " connect_timeout, create_table, dsn, idempotent, key, pool_size, table,"
                " write_timeout)",
                id="typo",
            ),
        ],
    )
    async def test_postgres_bad_option_is_one_line(
        self, options: dict[str, Any], expected: str
    ) -> None:
        """The lifecycle refuses a bad option, naming the collector and the option."""
        assert await _lifecycle_error(options) == f"collector 'c1': {expected}"

    def test_postgres_bad_option_refused_at_load(self, tmp_path: Path) -> None:
        """The config loader refuses it too, with the key path (``mqtt-collector check``)."""
        entry = collector(**_PG, options={"dsn": DSN, "columns": {"c": "data.c::"}})
        assert error(tmp_path, base(collectors=[entry])) == (
            "collectors[0].options.columns: column 'c': '' is not a PostgreSQL type name"
        )

    def test_postgres_bad_dsn_is_not_echoed(self, tmp_path: Path) -> None:
        """A DSN that does not parse is refused without its text (it may hold a password)."""
        entry = collector(**_PG, options={"dsn": "password=s3cret host"})
        message = error(tmp_path, base(collectors=[entry]))
        assert message == "collectors[0].options.dsn: is not a libpq connection string or URI"


class TestOutage:
    """The database going away is an Error per message; the pool reconnects by itself."""

    async def test_postgres_outage_is_an_error_then_recovers(self, table: str) -> None:
        """While the database is cut off messages fail (after connect_timeout); then they pass."""
        with TcpProxy(*_target()) as proxy:
            options = {"dsn": _via(proxy.port), "table": table, "connect_timeout": 1}
            collector = _collector(options)
            async with CollectorQueue([collector], min_consumers=1, max_consumers=8) as queue:
                assert await _send(queue, [_message(data={"n": 1})]) == [Ok(None)]
                proxy.cut()
                [failed] = await _send(queue, [_message(data={"n": 2})])
                assert isinstance(failed, Error)
                assert isinstance(failed.exception, ConnectionError | psycopg.OperationalError)
                proxy.restore()
                # The pool reconnects by itself: a message sent later (as a retry is) passes.
                async with asyncio.timeout(WAIT):
                    while (await _send(queue, [_message(data={"n": 3})])) != [Ok(None)]:
                        pass
            assert proxy.accepted >= 2
        assert _query(f"SELECT data->>'n' FROM \"{table}\" ORDER BY 1")[:2] == [("1",), ("3",)]

    @pytest.mark.slow
    async def test_postgres_silent_database_fails_the_batch_in_time(self, table: str) -> None:
        """A silent database fails the batch after write_timeout, then recovers by itself.

        psycopg's attempt to cancel the query on a timeout adds up to 10 s.
        """
        with TcpProxy(*_target()) as proxy:
            options = {
                "dsn": _via(proxy.port),
                "table": table,
                "connect_timeout": 1,
                "write_timeout": 1,
            }
            collector = _collector(options)
            async with CollectorQueue([collector], min_consumers=1, max_consumers=8) as queue:
                assert await _send(queue, [_message(data={"n": 1})]) == [Ok(None)]
                proxy.freeze()
                publisher = queue.get_publisher()
                payload = Payload(_message(data={"n": 2}), delivery=Delivery.TOPIC, topics=["t"])
                event = await publisher.send(payload)
                async with asyncio.timeout(15):
                    failed = (await event.wait()).first()
                assert isinstance(failed, Error)
                assert isinstance(failed.exception, TimeoutError | ConnectionError)
                proxy.thaw()
                async with asyncio.timeout(WAIT):
                    while (await _send(queue, [_message(data={"n": 3})])) != [Ok(None)]:
                        pass
        assert ("3",) in _query(f"SELECT data->>'n' FROM \"{table}\"")


# -- the daemon, as a subprocess, with a real broker ------------------------------------------

TOTAL = 6_000
RATE = 500.0  # messages per second, steady: the stream lasts 12 s
DOWN_FOR = 10.0  # seconds the database stays unreachable
HOLD = 0.5  # seconds the SIGKILL test's second collector holds each message (and so its ack)


def _daemon_config(
    broker: Mosquitto, topic: str, options: dict[str, Any], client_id: str
) -> dict[str, Any]:
    """A daemon storing ``topic``'s numbered messages, retrying for as long as the tests need."""
    return {
        "broker": {
            "host": broker.host,
            "port": broker.port,
            "client_id": client_id,
            "session": {"persistent": True, "expiry": 3600},
            "reconnect": {"initial_delay": 0.1, "max_delay": 1.0},
        },
        "subscriptions": [{"filter": topic, "qos": 1, "topics": ["n"]}],
        "queue": {"max_consumers": 64, "drain_timeout": 10},
        "collectors": [
            {
                "key": "pg",
                **_PG,
                "topics": ["n"],
                "options": options,
                # Long enough to ride out the outage: 0.2 s, doubling to 1 s, 100 times.
                "retry": {"attempts": 100, "backoff": 0.2, "max_backoff": 1},
            }
        ],
        "logging": {"level": "info", "format": "json"},
    }


def _stored(table: str) -> Counter[int]:
    """How many rows each number has in ``table``."""
    rows = _query(f'SELECT data::text, count(*) FROM "{table}" GROUP BY 1')
    return Counter({int(number): count for number, count in rows})


def _publish_in_background(port: int, topic: str) -> tuple[threading.Thread, list[BaseException]]:
    """Publish 0..TOTAL-1 at RATE from a thread; its errors land in the returned list."""
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            with connected_client(port) as publisher:
                publisher.numbered(topic, range(TOTAL), rate=RATE)
                publisher.flush()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    thread = threading.Thread(target=publish, name="publisher", daemon=True)
    thread.start()
    return thread, errors


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_postgres_daemon_outage_mid_stream_loses_nothing(
    private_mosquitto: Mosquitto, tmp_path: Path, topic_prefix: str, table: str
) -> None:
    """The database unreachable for 10 s mid-stream, then back: every message is stored."""
    topic = f"{topic_prefix}/n"
    with TcpProxy(*_target()) as proxy:
        options = {"dsn": _via(proxy.port), "table": table, "connect_timeout": 1}
        config = _daemon_config(private_mosquitto, topic, options, "pg-outage")
        with DaemonProcess(tmp_path, config):
            thread, errors = _publish_in_background(private_mosquitto.port, topic)
            wait_for(
                lambda: sum(_stored(table).values()) >= TOTAL // 4, timeout=60, what="a quarter"
            )
            proxy.cut()
            cut_at = time.monotonic()
            at_cut = sum(_stored(table).values())
            time.sleep(DOWN_FOR)  # the outage itself: nothing to wait for
            during = sum(_stored(table).values())
            proxy.restore()
            thread.join(60)
            assert not thread.is_alive(), "the publisher did not finish"
            assert not errors, errors
            wait_for(lambda: len(_stored(table)) >= TOTAL, timeout=90, what="every number")
            recovered = time.monotonic() - cut_at - DOWN_FOR
    stored = _stored(table)
    missing = sorted(set(range(TOTAL)) - set(stored))
    twice = sum(1 for count in stored.values() if count > 1)
    summary = (
        f"postgres outage: {TOTAL} published at {RATE:g}/s, {at_cut} stored at the cut,"
        f" {during} after {DOWN_FOR:g} s down, all stored {recovered:.1f} s after the database"
        f" came back, {len(missing)} missing, {twice} stored twice"
    )
    print(summary)  # noqa: T201 - figures for the report
    assert during == at_cut, f"rows were written while the database was cut off: {summary}"
    assert at_cut < TOTAL / 2, f"the stream was over before the cut: {summary}"
    assert not missing, f"{summary}; first missing: {missing[:20]}"


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_postgres_daemon_sigkill_idempotent_no_loss_no_duplicate(
    private_mosquitto: Mosquitto, tmp_path: Path, topic_prefix: str, table: str, database: str
) -> None:
    """SIGKILL mid-stream, idempotent mode on: every message stored, each exactly once.

    A second collector takes each message too and holds it for a while, so its ack waits long
    after its row is committed: at the kill, hundreds are stored and not acknowledged, and the
    broker sends them again (without idempotent mode they would be stored twice).
    """
    topic = f"{topic_prefix}/n"
    options = {"dsn": database, "table": table, "idempotent": True}
    config = _daemon_config(private_mosquitto, topic, options, "pg-crash")
    config["queue"]["max_consumers"] = 1024
    held = tmp_path / "held.jsonl"
    config["collectors"].append(
        {
            "key": "hold",
            "processor": "tests.helpers.collectors:record",
            "lifecycle": "tests.helpers.collectors:recording_lifecycle",
            "topics": ["n"],
            "options": {"path": str(held), "delay": HOLD},
        }
    )
    daemon = DaemonProcess(tmp_path, config)
    with daemon:
        thread, errors = _publish_in_background(private_mosquitto.port, topic)
        wait_for(lambda: sum(_stored(table).values()) >= TOTAL // 3, timeout=60, what="a third")
        daemon.kill()
        # Stored, but the holding collector had not finished them: not acknowledged.
        unacked = set(_stored(table)) - set(numbers(held))
        daemon.start()
        thread.join(60)
        assert not thread.is_alive(), "the publisher did not finish"
        assert not errors, errors
        wait_for(lambda: len(_stored(table)) >= TOTAL, timeout=90, what="every number")
        daemon.terminate()
    stored = _stored(table)
    missing = sorted(set(range(TOTAL)) - set(stored))
    twice = sorted(number for number, count in stored.items() if count > 1)
    summary = (
        f"postgres SIGKILL: {TOTAL} published at {RATE:g}/s, {len(unacked)} stored and not"
        f" acknowledged at the kill (so sent again), {len(missing)} missing,"
        f" {len(twice)} stored twice"
    )
    print(summary)  # noqa: T201 - figures for the report
    assert unacked, f"nothing stored was unacknowledged, so nothing was tested: {summary}"
    assert not missing, f"{summary}; first missing: {missing[:20]}"
    assert not twice, f"{summary}; first twice: {twice[:20]}"
