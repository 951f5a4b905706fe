"""The sqlite collector's group commit: one transaction per batch, each message its own answer.

The lifecycle and processor are driven directly, by concurrent calls as the consumers make
them, against a real SQLite file. Commits are counted on the collector's own connection
(``CountingConnection``), so "fewer transactions" is what SQLite did, not what the code meant.
The collector's basic rows, WAL mode and start-up errors are tested through a queue in
tests/test_builtin_collectors.py (``TestSqlite``).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from mqtt_collector import ConfigError, Context, Error, Message, Ok, Payload, Result
from mqtt_collector._cli import main
from mqtt_collector.collectors import sqlite
from tests.helpers.config import base, collector, write

WAIT = 10.0  # seconds: a bound on every wait, far above what any of these takes


class CountingConnection(sqlite3.Connection):
    """A connection that records how many rows each of its commits wrote.

    Rows are counted by ``total_changes`` since the previous commit or ``rollback()`` call.
    """

    variable_limit: int | None = None  # set: SQLite's limit on parameters per statement

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Open the connection, with no commit recorded."""
        super().__init__(*args, **kwargs)
        self.commits: list[int] = []
        self.inserts: list[int] = []  # the rows each INSERT statement carried
        self._changes = 0
        if self.variable_limit is not None:
            self.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, self.variable_limit)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        """Execute, recording how many rows an INSERT carries."""
        if sql.startswith("INSERT"):
            self.inserts.append(sql.count("(?"))
        return super().execute(sql, parameters)

    def commit(self) -> None:
        """Commit, and record the rows changed since the previous commit."""
        super().commit()
        self.commits.append(self.total_changes - self._changes)
        self._changes = self.total_changes

    def rollback(self) -> None:
        """Roll back; rows changed so far are not the next commit's."""
        super().rollback()
        self._changes = self.total_changes

    def rows_per_commit(self) -> list[int]:
        """The rows of each commit that wrote any (the table's creation writes none)."""
        return [rows for rows in self.commits if rows]


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[CountingConnection]:
    """Make the connections the collector opens (in its own thread) CountingConnections."""
    opened: list[CountingConnection] = []
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        if not threading.current_thread().name.startswith("sqlite-c1"):
            plain: sqlite3.Connection = real(*args, **kwargs)  # the test's own connections
            return plain
        connection: CountingConnection = real(*args, **kwargs, factory=CountingConnection)
        opened.append(connection)
        return connection

    monkeypatch.setattr(sqlite3, "connect", connect)
    return opened


def _message(topic: str) -> Message:
    """A message on ``topic`` with a small JSON body."""
    return Message(
        topic=topic,
        data={"t": 21.5},
        raw=json.dumps({"t": 21.5}).encode(),
        qos=1,
        retain=False,
        captures=(),
        subscription="#",
        received_at=1_700_000_000.25,
    )


def _ctx(path: Path, **options: Any) -> Context:
    """A context as the daemon sets it up for collector "c1", with the database at ``path``."""
    return Context(key="c1", options=MappingProxyType({"path": str(path), **options}))


async def _write(ctx: Context, topics: Iterable[str]) -> list[Result]:
    """Call the processor once per topic, all at once, as concurrent consumers do."""
    async with asyncio.timeout(WAIT):
        return list(
            await asyncio.gather(*(sqlite.write(Payload(_message(t)), ctx) for t in topics))
        )


def _topics(path: Path) -> dict[int, str]:
    """Every row's topic by id, read with a fresh connection."""
    connection = sqlite3.connect(path)
    try:
        return dict(connection.execute("SELECT id, topic FROM messages ORDER BY id").fetchall())
    finally:
        connection.close()


def _create(path: Path, *extra: str, topic: str = "topic TEXT NOT NULL") -> None:
    """Create the messages table with its ``topic`` column as given, then run ``extra``."""
    connection = sqlite3.connect(path)
    try:
        connection.execute(
            f"CREATE TABLE messages (id INTEGER PRIMARY KEY, {topic}, payload BLOB, data TEXT,"
            " qos INTEGER, retain INTEGER, received_at REAL)"
        )
        for statement in extra:
            connection.execute(statement)
        connection.commit()
    finally:
        connection.close()


class TestGroupCommit:
    """Concurrent calls share transactions; each answered once its own is committed."""

    async def test_sqlite_concurrent_calls_share_transactions(
        self, tmp_path: Path, connections: list[CountingConnection]
    ) -> None:
        """200 concurrent calls commit in a few transactions of at most batch_size rows."""
        path = tmp_path / "m.db"
        ctx = _ctx(path, batch_size=50)
        async with sqlite.open_database(ctx):
            results = await _write(ctx, (f"s/{i}" for i in range(200)))
        assert all(isinstance(result, Ok) for result in results)
        [connection] = connections
        rows = connection.rows_per_commit()
        assert sum(rows) == 200
        assert len(rows) < 200
        assert max(rows) <= 50
        assert len(_topics(path)) == 200

    async def test_sqlite_each_call_gets_the_id_of_its_own_row(self, tmp_path: Path) -> None:
        """The id a call returns is the id of the row holding its own message."""
        path = tmp_path / "m.db"
        ctx = _ctx(path)
        topics = [f"s/{i}" for i in range(100)]
        async with sqlite.open_database(ctx):
            first = await _write(ctx, topics[:1])
            results = first + await _write(ctx, topics[1:])
        stored = _topics(path)
        ids = [result.value for result in results if isinstance(result, Ok)]
        assert len(set(ids)) == 100
        assert [stored[row_id] for row_id in ids] == topics

    @pytest.mark.parametrize(
        "table",
        [
            # a trigger writing the same table: ids no longer follow one another
            (
                "CREATE TRIGGER twin AFTER INSERT ON messages WHEN NEW.topic LIKE 's/%'"
                " BEGIN INSERT INTO messages (topic, payload, qos, retain, received_at)"
                " VALUES ('twin', x'', 0, 0, 0); END"
            ),
            # rows already there, with a gap: new ids follow the largest
            (
                "INSERT INTO messages (id, topic, payload, qos, retain, received_at)"
                " VALUES (7, 'old', x'', 0, 0, 0), (1000, 'old', x'', 0, 0, 0)"
            ),
        ],
        ids=["trigger", "gap"],
    )
    async def test_sqlite_ids_stay_right_on_tables_made_by_hand(
        self, tmp_path: Path, table: str
    ) -> None:
        """Whether a batch goes in by one executemany or row by row, each id is its row's."""
        path = tmp_path / "m.db"
        _create(path, table)
        ctx = _ctx(path)
        topics = [f"s/{i}" for i in range(50)]
        async with sqlite.open_database(ctx):
            results = await _write(ctx, topics[:1]) + await _write(ctx, topics[1:])
        stored = _topics(path)
        ids = [result.value for result in results if isinstance(result, Ok)]
        assert [stored[row_id] for row_id in ids] == topics

    async def test_sqlite_batch_goes_in_by_statements_of_many_rows(
        self,
        tmp_path: Path,
        connections: list[CountingConnection],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A batch takes as few INSERTs as the parameter limit allows, each id still its own."""
        monkeypatch.setattr(CountingConnection, "variable_limit", 18)  # 3 rows of 6 each
        path = tmp_path / "m.db"
        ctx = _ctx(path)
        topics = [f"s/{i}" for i in range(40)]
        async with sqlite.open_database(ctx):
            results = await _write(ctx, topics[:1]) + await _write(ctx, topics[1:])
        stored = _topics(path)
        ids = [result.value for result in results if isinstance(result, Ok)]
        assert [stored[row_id] for row_id in ids] == topics
        inserts = connections[0].inserts
        assert max(inserts) == 3
        assert sum(inserts) == 40

    async def test_sqlite_batch_size_1_commits_each_message_alone(
        self, tmp_path: Path, connections: list[CountingConnection]
    ) -> None:
        """With batch_size 1 every message has a transaction of its own."""
        ctx = _ctx(tmp_path / "m.db", batch_size=1)
        async with sqlite.open_database(ctx):
            results = await _write(ctx, (f"s/{i}" for i in range(20)))
        assert sorted(result.value for result in results if isinstance(result, Ok)) == list(
            range(1, 21)
        )
        assert connections[0].rows_per_commit() == [1] * 20

    async def test_sqlite_batch_delay_never_holds_an_idle_message(
        self, tmp_path: Path, connections: list[CountingConnection]
    ) -> None:
        """A message that finds no transaction under way is committed at once, delay or not."""
        ctx = _ctx(tmp_path / "m.db", batch_delay=1000)
        async with sqlite.open_database(ctx):
            async with asyncio.timeout(WAIT):
                assert await sqlite.write(Payload(_message("a")), ctx) == Ok(1)
            assert connections[0].rows_per_commit() == [1]

    async def test_sqlite_lifecycle_exit_writes_what_waits(self, tmp_path: Path) -> None:
        """Messages still waiting when the lifecycle exits are committed before it closes."""
        path = tmp_path / "m.db"
        ctx = _ctx(path, batch_size=10)
        async with sqlite.open_database(ctx):
            tasks = [
                asyncio.create_task(sqlite.write(Payload(_message(f"s/{i}")), ctx))
                for i in range(50)
            ]
            await asyncio.sleep(0)
            assert ctx.sqlite.waiting > 10
        async with asyncio.timeout(WAIT):
            results = await asyncio.gather(*tasks)
        assert all(isinstance(result, Ok) for result in results)
        assert len(_topics(path)) == 50

    async def test_sqlite_write_after_exit_is_an_error(self, tmp_path: Path) -> None:
        """A call after the lifecycle has exited is refused, not written to a closed database."""
        ctx = _ctx(tmp_path / "m.db")
        async with sqlite.open_database(ctx):
            pass
        with pytest.raises(RuntimeError, match="closed"):
            await sqlite.write(Payload(_message("late")), ctx)


class TestFailures:
    """A batch that cannot commit fails each of its messages; a refused row fails its own."""

    async def test_sqlite_failed_batch_is_an_error_for_each_message(
        self, tmp_path: Path, connections: list[CountingConnection]
    ) -> None:
        """A statement failing mid-batch fails every message of it, and nothing is committed."""
        path = tmp_path / "m.db"
        # SQLite raises "malformed JSON" (not a constraint): the transaction as a whole fails.
        _create(
            path,
            "CREATE TRIGGER boom AFTER INSERT ON messages WHEN NEW.topic = 'boom'"
            " BEGIN SELECT json('{'); END",
        )
        ctx = _ctx(path)
        async with sqlite.open_database(ctx):
            results = await _write(ctx, ["a", "boom", "c"])
            after = await _write(ctx, ["d"])
        for result in results:
            assert isinstance(result, Error)
            assert isinstance(result.exception, sqlite3.OperationalError)
            assert str(result.exception) == "malformed JSON"
        assert after == [Ok(1)]
        assert list(_topics(path).values()) == ["d"]
        assert connections[0].rows_per_commit() == [1]

    async def test_sqlite_dropped_table_fails_the_batch_until_it_is_back(
        self, tmp_path: Path
    ) -> None:
        """The table dropped under the collector: each message an Error; then rows again."""
        path = tmp_path / "m.db"
        ctx = _ctx(path)
        async with sqlite.open_database(ctx):
            assert await _write(ctx, ["a"]) == [Ok(1)]
            with sqlite3.connect(path) as other:
                other.execute("DROP TABLE messages")
            other.close()
            failed = await _write(ctx, ["b", "c", "d"])
            _create(path)
            assert await _write(ctx, ["e"]) == [Ok(1)]
        for result in failed:
            assert isinstance(result, Error)
            assert "no such table: messages" in str(result.exception)

    async def test_sqlite_refused_row_fails_only_its_message(
        self, tmp_path: Path, connections: list[CountingConnection]
    ) -> None:
        """A CHECK refusing one row fails that message; the others commit in the same batch."""
        path = tmp_path / "m.db"
        _create(path, topic="topic TEXT CHECK (topic != 'bad')")
        ctx = _ctx(path)
        async with sqlite.open_database(ctx):
            good, bad, other = await _write(ctx, ["good", "bad", "other"])
        assert isinstance(bad, Error)
        assert isinstance(bad.exception, sqlite3.IntegrityError)
        assert (good, other) == (Ok(1), Ok(2))
        assert _topics(path) == {1: "good", 2: "other"}
        assert connections[0].rows_per_commit() == [2]

    async def test_sqlite_refusal_that_rolls_back_keeps_the_other_rows(
        self, tmp_path: Path
    ) -> None:
        """A table whose refusal rolls the transaction back still commits the other rows."""
        path = tmp_path / "m.db"
        _create(path, topic="topic TEXT UNIQUE ON CONFLICT ROLLBACK")
        ctx = _ctx(path)
        async with sqlite.open_database(ctx):
            first, second, again = await _write(ctx, ["a", "b", "a"])
        assert isinstance(again, Error)
        assert isinstance(again.exception, sqlite3.IntegrityError)
        assert (first, second) == (Ok(1), Ok(2))
        assert _topics(path) == {1: "a", 2: "b"}

    async def test_sqlite_row_the_table_ignores_is_ok_none(self, tmp_path: Path) -> None:
        """A row the table's ON CONFLICT IGNORE skips is Ok(None): handled, no new row."""
        path = tmp_path / "m.db"
        _create(path, topic="topic TEXT UNIQUE ON CONFLICT IGNORE")
        ctx = _ctx(path)
        async with sqlite.open_database(ctx):
            results = await _write(ctx, ["a", "a", "b"])
        assert results == [Ok(1), Ok(None), Ok(2)]


class TestOptions:
    """batch_size and batch_delay (defaults, one-line errors), and the SQLite version."""

    def test_sqlite_batch_options_default(self) -> None:
        """batch_size defaults to 500 and batch_delay to 0.01 (under load only)."""
        options = sqlite.Options.model_validate({"path": "m.db"})
        assert (options.batch_size, options.batch_delay) == (500, 0.01)

    @pytest.mark.parametrize(
        ("options", "expected"),
        [
            pytest.param(
                {"batch_size": 0},
                "option 'batch_size': must be an integer >= 1, got 0",
                id="size-zero",
            ),
            pytest.param(
                {"batch_size": True},
                "option 'batch_size': must be an integer >= 1, got True",
                id="size-bool",
            ),
            pytest.param(
                {"batch_size": 2.5},
                "option 'batch_size': must be an integer >= 1, got 2.5",
                id="size-float",
            ),
            pytest.param(
                {"batch_delay": -0.1},
                "option 'batch_delay': must be a number of seconds >= 0, got -0.1",
                id="delay-negative",
            ),
            pytest.param(
                {"batch_delay": "1s"},
                "option 'batch_delay': must be a number of seconds >= 0, got '1s'",
                id="delay-string",
            ),
            pytest.param(
                {"batch_delay": float("inf")},
                "option 'batch_delay': must be a number of seconds >= 0, got inf",
                id="delay-infinite",
            ),
        ],
    )
    async def test_sqlite_bad_batch_option_is_refused_in_one_line(
        self, tmp_path: Path, options: dict[str, Any], expected: str
    ) -> None:
        """The lifecycle refuses a bad batch option, naming the collector and the option."""
        with pytest.raises(ConfigError) as info:
            async with sqlite.open_database(_ctx(tmp_path / "m.db", **options)):
                pass
        assert str(info.value) == f"collector 'c1': option {expected.removeprefix('option ')}"
        assert not (tmp_path / "m.db").exists()

    async def test_sqlite_refuses_an_sqlite_without_returning(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An SQLite older than 3.35 (no RETURNING) is refused at start, naming the versions."""
        monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
        monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
        with pytest.raises(ConfigError) as info:
            async with sqlite.open_database(_ctx(tmp_path / "m.db")):
                pass
        assert str(info.value) == (
            "collector 'c1': the sqlite collector needs SQLite >= 3.35 (INSERT ... RETURNING);"
            " Python's sqlite3 has 3.34.1"
        )

    def test_sqlite_check_refuses_a_bad_batch_size(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``mqtt-collector check`` refuses it with the option's key path, exit 2."""
        entry = collector(
            processor="mqtt_collector.collectors.sqlite:write",
            lifecycle="mqtt_collector.collectors.sqlite:open_database",
            options={"path": "m.db", "batch_size": 0},
        )
        path = write(tmp_path, base(collectors=[entry]))
        assert main(["check", "--config", str(path)]) == 2
        assert capsys.readouterr().err.strip() == (
            f"{path}: collectors[0].options.batch_size: must be an integer >= 1, got 0"
        )
