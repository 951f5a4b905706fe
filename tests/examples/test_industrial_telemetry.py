"""examples/industrial-telemetry: two daemons in one share group into PostgreSQL, idempotently.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth, database ``test``; ``PG_DSN`` names another):
locally the test is skipped without it, with ``CI`` set it fails, as the broker tests do.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import in_ci
from tests.examples.helpers import acked, load_example
from tests.helpers.daemon import run_daemon, wait_until
from tests.helpers.mosquitto import MosquittoFactory
from tests.helpers.mqtt_client import connected_client

pytestmark = pytest.mark.broker

DSN = os.environ.get("PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
MACHINES = [("line1", "press1"), ("line1", "press2"), ("line2", "mill1"), ("line2", "mill2")]
PER_MACHINE = 10
BASE_MS = 1_714_557_600_000  # 2024-05-01T10:00:00Z


def _unavailable(message: str) -> None:
    if in_ci():
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)")
    pytest.skip(message)


@pytest.fixture
def table() -> Iterator[str]:
    """A table name of this test run's own, dropped at the end; skip/fail without PostgreSQL."""
    try:
        import psycopg  # noqa: PLC0415 - an optional extra: its absence is reported, not raised
    except ImportError:
        _unavailable("psycopg is not installed (pip install -e '.[dev]')")
    name = f"telemetry_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(DSN, connect_timeout=5, autocommit=True) as db:
            db.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        _unavailable(f"cannot reach PostgreSQL at {DSN}: {exc}")
    yield name
    with psycopg.connect(DSN, connect_timeout=5, autocommit=True) as db:
        db.execute(f'DROP TABLE IF EXISTS "{name}"')


def _query(sql: str) -> list[tuple[Any, ...]]:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(DSN, connect_timeout=5) as db:
        return db.execute(sql).fetchall()


def _reading(index: int) -> dict[str, Any]:
    return {
        "ts": BASE_MS + index * 250,
        "seq": index,
        "spindle_rpm": 12000 + index,
        "temperature_c": 40.0 + index / 10,
        "vibration_mm_s": 2.5,
        "state": "running",
    }


async def test_two_daemons_share_the_readings_and_store_each_once(
    make_mosquitto: MosquittoFactory, table: str
) -> None:
    """N readings over two daemons of one share group: N rows, each once, both daemons wrote."""
    broker = make_mosquitto()
    configs = [
        load_example(
            "industrial-telemetry",
            MQTT_PORT=str(broker.port),
            MQTT_CLIENT_ID=client_id,
            PG_DSN=DSN,
            TELEMETRY_TABLE=table,
        )
        for client_id in ("telemetry-a", "telemetry-b")
    ]
    sent = [
        (f"factory/{line}/{machine}/telemetry", _reading(index))
        for index in range(PER_MACHINE)
        for line, machine in MACHINES
    ]
    # The same reading again, as the broker sends it after a daemon died before acking it.
    sent.append(sent[5])
    async with run_daemon(configs[0]) as first, run_daemon(configs[1]) as second:
        with connected_client(broker.port) as publisher:
            for topic, body in sent:
                publisher.publish_json(topic, body)
        await wait_until(
            lambda: acked(first) + acked(second) == len(sent), what="every reading acknowledged"
        )
        taken = [acked(first), acked(second)]

    assert all(count > 0 for count in taken), f"one daemon took everything: {taken}"
    rows = _query(
        f'SELECT machine, seq, spindle_rpm, received_by FROM "{table}" ORDER BY machine, seq'
    )
    expected = sorted(
        (machine, index, 12000.0 + index) for index in range(PER_MACHINE) for _, machine in MACHINES
    )
    assert [(machine, seq, rpm) for machine, seq, rpm, _ in rows] == expected
    assert {by for *_, by in rows} == {"telemetry-a", "telemetry-b"}
