"""The built-in collectors (log, jsonl, sqlite), run through a real CollectorQueue."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import json
import os
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import structlog

from mqtt_collector import (
    Collector,
    CollectorQueue,
    Context,
    Delivery,
    Error,
    LifecycleError,
    LifecycleManager,
    Message,
    Ok,
    Payload,
    Processor,
    Result,
)
from mqtt_collector.collectors import jsonl, log, sqlite

WAIT = 10.0  # seconds: a bound on every wait, far above what any of these takes


def _message(
    topic: str = "sensors/kitchen/temperature",
    data: Any = None,
    *,
    raw: bytes | None = None,
    qos: int = 1,
    retain: bool = False,
) -> Message:
    """Build a message as the mapper would: data {"t": 21.5} with its JSON raw body by default."""
    if data is None:
        data = {"t": 21.5}
    if raw is None:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return Message(
        topic=topic,
        data=data,
        raw=raw,
        qos=qos,
        retain=retain,
        captures=("kitchen",),
        subscription="sensors/+/temperature",
        received_at=1_700_000_000.25,
    )


def _collector(
    processor: Processor,
    lifecycle: LifecycleManager | None = None,
    options: Mapping[str, Any] | None = None,
) -> Collector:
    """Build a collector listening to topic "t" with a context set up as the daemon sets it."""
    ctx = Context(key="c1", options=MappingProxyType(dict(options or {})))
    return Collector("c1", processor, lifecycle=lifecycle, topics=["t"], ctx=ctx)


async def _deliver(collector: Collector, messages: Iterable[Message]) -> list[Result]:
    """Send every message (all queued before any is awaited) and return their results in order."""
    async with CollectorQueue([collector], min_consumers=1, max_consumers=4) as queue:
        publisher = queue.get_publisher()
        events = [
            await publisher.send(Payload(m, delivery=Delivery.TOPIC, topics=["t"]))
            for m in messages
        ]
        async with asyncio.timeout(WAIT):
            return [(await event.wait()).first() for event in events]


async def _lifecycle_error(collector: Collector) -> str:
    """Start a queue whose lifecycle must fail; return the message of the original error."""
    with pytest.raises(LifecycleError) as info:
        async with asyncio.timeout(WAIT), CollectorQueue([collector], min_consumers=1):
            pass
    return str(info.value.__cause__)


def _lines(path: Path) -> list[dict[str, Any]]:
    """Parse every line of a JSON Lines file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _rows(path: Path, table: str = "messages") -> list[sqlite3.Row]:
    """Read every row of ``table`` with a fresh connection."""
    connection = sqlite3.connect(path)
    try:
        connection.row_factory = sqlite3.Row
        return connection.execute(f'SELECT * FROM "{table}" ORDER BY id').fetchall()
    finally:
        connection.close()


class TestJsonl:
    """mqtt_collector.collectors.jsonl: write with the open_file lifecycle."""

    async def test_jsonl_writes_one_object_with_every_field(self, tmp_path: Path) -> None:
        """A message becomes one line holding topic, data, qos, retain, captures, time, filter."""
        path = tmp_path / "out.jsonl"
        collector = _collector(jsonl.write, jsonl.open_file, {"path": str(path)})
        results = await _deliver(collector, [_message(retain=True)])
        assert results == [Ok(None)]
        assert _lines(path) == [
            {
                "topic": "sensors/kitchen/temperature",
                "data": {"t": 21.5},
                "qos": 1,
                "retain": True,
                "captures": ["kitchen"],
                "received_at": 1_700_000_000.25,
                "subscription": "sensors/+/temperature",
            }
        ]

    async def test_jsonl_bytes_data_is_base64(self, tmp_path: Path) -> None:
        """A bytes body is written as base64 with data_encoding "base64"."""
        path = tmp_path / "out.jsonl"
        body = bytes(range(256))
        collector = _collector(jsonl.write, jsonl.open_file, {"path": str(path)})
        await _deliver(collector, [_message(data=body)])
        [line] = _lines(path)
        assert line["data_encoding"] == "base64"
        assert base64.b64decode(line["data"]) == body

    def test_jsonl_encode_nan_falls_back_to_base64_raw(self) -> None:
        """A decoded value strict JSON cannot hold (NaN) is written as the base64 raw body."""
        line = json.loads(jsonl.encode(_message(data=float("nan"), raw=b"NaN")))
        assert (line["data"], line["data_encoding"]) == ("TmFO", "base64")

    async def test_jsonl_concurrent_messages_never_interleave(self, tmp_path: Path) -> None:
        """Hundreds of large messages written by several consumers give exactly one line each."""
        path = tmp_path / "out.jsonl"
        messages = [_message(f"bulk/{i}", {"i": i, "pad": "x" * 20_000}) for i in range(300)]
        collector = _collector(jsonl.write, jsonl.open_file, {"path": str(path)})
        results = await _deliver(collector, messages)
        assert all(isinstance(result, Ok) for result in results)
        lines = _lines(path)
        assert sorted(line["data"]["i"] for line in lines) == list(range(300))
        assert all(line["topic"] == f"bulk/{line['data']['i']}" for line in lines)

    async def test_jsonl_fsync_true_syncs_the_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With fsync true every message is covered by an fsync, shared between concurrent ones."""
        path = tmp_path / "out.jsonl"
        synced: list[int] = []
        real_fsync = os.fsync

        def counting_fsync(fd: int) -> None:
            real_fsync(fd)
            synced.append(fd)

        monkeypatch.setattr(os, "fsync", counting_fsync)
        collector = _collector(jsonl.write, jsonl.open_file, {"path": str(path), "fsync": True})
        results = await _deliver(collector, [_message(f"s/{i}") for i in range(50)])
        assert all(isinstance(result, Ok) for result in results)
        assert len(_lines(path)) == 50
        assert 1 <= len(synced) <= 50

    async def test_jsonl_appends_after_a_torn_last_line(self, tmp_path: Path) -> None:
        """An existing file is appended to, and a torn last line is ended before the new line."""
        path = tmp_path / "out.jsonl"
        path.write_bytes(b'{"old":1}\n{"torn":')
        collector = _collector(jsonl.write, jsonl.open_file, {"path": str(path)})
        await _deliver(collector, [_message()])
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[:2] == ['{"old":1}', '{"torn":']
        assert json.loads(lines[2])["topic"] == "sensors/kitchen/temperature"

    async def test_jsonl_file_closed_after_queue_exits(self, tmp_path: Path) -> None:
        """Leaving the queue closes the file the lifecycle opened."""
        collector = _collector(jsonl.write, jsonl.open_file, {"path": str(tmp_path / "o.jsonl")})
        await _deliver(collector, [_message()])
        assert collector.ctx.jsonl.file.closed

    async def test_jsonl_without_lifecycle_says_which_to_add(self) -> None:
        """A write with no open_file lifecycle configured is an Error naming the lifecycle."""
        [result] = await _deliver(_collector(jsonl.write), [_message()])
        assert isinstance(result, Error)
        assert "lifecycle: mqtt_collector.collectors.jsonl:open_file" in str(result.exception)

    async def test_jsonl_missing_path_names_the_option(self) -> None:
        """Without a path the lifecycle fails naming the collector and the option."""
        error = await _lifecycle_error(_collector(jsonl.write, jsonl.open_file, {}))
        assert error == "collector 'c1': option 'path': is required"

    async def test_jsonl_missing_directory_names_the_option(self, tmp_path: Path) -> None:
        """A path in a directory that does not exist fails naming the option and the directory."""
        path = tmp_path / "absent" / "out.jsonl"
        error = await _lifecycle_error(
            _collector(jsonl.write, jsonl.open_file, {"path": str(path)})
        )
        assert error == f"collector 'c1': option 'path': directory '{path.parent}' does not exist"

    async def test_jsonl_fsync_must_be_a_boolean(self, tmp_path: Path) -> None:
        """A non-boolean fsync is refused naming the option and the value."""
        options = {"path": str(tmp_path / "o.jsonl"), "fsync": "yes"}
        error = await _lifecycle_error(_collector(jsonl.write, jsonl.open_file, options))
        assert error == "collector 'c1': option 'fsync': must be true or false, got 'yes'"

    async def test_jsonl_unknown_option_is_refused(self, tmp_path: Path) -> None:
        """A misspelt option is an error, not silently ignored."""
        options = {"path": str(tmp_path / "o.jsonl"), "fsycn": True}
        error = await _lifecycle_error(_collector(jsonl.write, jsonl.open_file, options))
        assert error.startswith("collector 'c1': option 'fsycn': unknown option")


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    """Run with the process umask set to ``mask``."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@contextlib.asynccontextmanager
async def _open_jsonl(options: Mapping[str, Any]) -> AsyncIterator[Context]:
    """The jsonl lifecycle entered on a context as the daemon sets it up; the context."""
    ctx = Context(key="c1", options=MappingProxyType(dict(options)))
    async with asyncio.timeout(WAIT), jsonl.open_file(ctx):
        yield ctx


def _write(ctx: Context, message: Message) -> asyncio.Task[Result]:
    """Call the jsonl processor for ``message`` in a task of its own."""
    payload = Payload(message, delivery=Delivery.TOPIC, topics=["t"])
    return asyncio.create_task(jsonl.write(payload, ctx))


class TestJsonlFile:
    """The jsonl collector's file: permissions, I/O off the event loop, batches, failures."""

    async def test_jsonl_creates_a_file_only_its_owner_can_read(self, tmp_path: Path) -> None:
        """A new file is 0600 by default, even under the usual 022 umask."""
        path = tmp_path / "out.jsonl"
        with _umask(0o022):
            await _deliver(_collector(jsonl.write, jsonl.open_file, {"path": str(path)}), [])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    async def test_jsonl_mode_option_is_applied_exactly(self, tmp_path: Path) -> None:
        """``mode: "0640"`` gives a new file exactly 0640, whatever the umask."""
        path = tmp_path / "out.jsonl"
        options = {"path": str(path), "mode": "0640"}
        with _umask(0o077):
            await _deliver(_collector(jsonl.write, jsonl.open_file, options), [_message()])
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        assert len(_lines(path)) == 1

    async def test_jsonl_existing_file_keeps_its_permissions(self, tmp_path: Path) -> None:
        """A file that exists already is appended to with its permissions unchanged."""
        path = tmp_path / "out.jsonl"
        path.write_bytes(b"")
        path.chmod(0o644)
        await _deliver(_collector(jsonl.write, jsonl.open_file, {"path": str(path)}), [_message()])
        assert stat.S_IMODE(path.stat().st_mode) == 0o644

    @pytest.mark.parametrize("mode", [640, "0999", "rw-r-----", "01777", ""])
    async def test_jsonl_mode_must_be_quoted_octal(self, tmp_path: Path, mode: object) -> None:
        """A mode that is not quoted octal permissions is refused naming the option."""
        options = {"path": str(tmp_path / "o.jsonl"), "mode": mode}
        error = await _lifecycle_error(_collector(jsonl.write, jsonl.open_file, options))
        assert error == (
            "collector 'c1': option 'mode': must be octal permissions in quotes,"
            f' like "0640", got {mode!r}'
        )

    async def test_jsonl_writes_off_the_event_loop(self, tmp_path: Path) -> None:
        """While a write blocks (a full pipe nobody reads yet), the event loop keeps running."""
        path = tmp_path / "pipe"
        os.mkfifo(path)
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        message = _message(data={"pad": "x" * 1_000_000})  # far more than a pipe holds
        size = len(jsonl.encode(message))
        loop_ran = threading.Event()
        loop_ran_first: list[bool] = []

        def drain() -> None:
            # Read only once the loop has shown it runs, or after a bound if it never does.
            loop_ran_first.append(loop_ran.wait(WAIT / 2))
            os.set_blocking(reader, True)
            received = 0
            while received < size:
                received += len(os.read(reader, 1 << 16))

        drainer = threading.Thread(target=drain, name="drain-pipe")
        drainer.start()
        try:
            async with _open_jsonl({"path": str(path)}) as ctx:
                writing = _write(ctx, message)
                # Time for the write to start and block (on the loop, before the fix). Nothing
                # can be awaited for that, and the outcome does not depend on its length.
                await asyncio.sleep(0.05)
                loop_ran.set()
                async with asyncio.timeout(WAIT):
                    assert await writing == Ok(None)
        finally:
            loop_ran.set()
            drainer.join(WAIT)
            os.close(reader)
        assert loop_ran_first == [True]

    async def test_jsonl_concurrent_lines_share_one_write_and_fsync(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Lines sent together are written as one batch with one fsync; every line whole."""
        path = tmp_path / "out.jsonl"
        synced: list[int] = []
        real_fsync = os.fsync

        def counting_fsync(fd: int) -> None:
            real_fsync(fd)
            synced.append(fd)

        monkeypatch.setattr(os, "fsync", counting_fsync)
        messages = [_message(f"c/{i}", {"i": i, "pad": "y" * 5_000}) for i in range(200)]
        async with _open_jsonl({"path": str(path), "fsync": True}) as ctx:
            results = await asyncio.gather(*(_write(ctx, m) for m in messages))
        assert results == [Ok(None)] * 200
        assert len(synced) == 1
        lines = _lines(path)
        assert [line["data"]["i"] for line in lines] == list(range(200))
        assert all(line["topic"] == f"c/{line['data']['i']}" for line in lines)

    async def test_jsonl_failed_fsync_fails_exactly_its_batch(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every line of a batch whose fsync failed gets an Error; the next batch's are Ok."""
        path = tmp_path / "out.jsonl"
        real_fsync = os.fsync
        calls: list[int] = []
        first_started, second_queued = threading.Event(), threading.Event()

        def fail_once(fd: int) -> None:
            calls.append(fd)
            if len(calls) == 1:
                first_started.set()
                second_queued.wait(WAIT)
                raise OSError(errno.EIO, "simulated fsync failure")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fail_once)
        async with _open_jsonl({"path": str(path), "fsync": True}) as ctx:
            first = [_write(ctx, _message(f"a/{i}")) for i in range(5)]
            assert await asyncio.to_thread(first_started.wait, WAIT)
            second = [_write(ctx, _message(f"b/{i}")) for i in range(5)]
            await asyncio.sleep(0)  # the second group's lines are queued behind the fsync
            second_queued.set()
            async with asyncio.timeout(WAIT):
                failed = await asyncio.gather(*first)
                written = await asyncio.gather(*second)
        assert [type(result) for result in failed] == [Error] * 5
        assert all(
            isinstance(r, Error) and getattr(r.exception, "errno", None) == errno.EIO
            for r in failed
        )
        assert written == [Ok(None)] * 5
        assert len(calls) == 2

    async def test_jsonl_line_after_a_write_that_failed_halfway_is_whole(
        self, tmp_path: Path
    ) -> None:
        """After a write that failed partway, the next line starts on a line of its own."""
        path = tmp_path / "out.jsonl"

        class HalfThenFull:
            """The real file, but a disk filling up: a short write, then ENOSPC, then room."""

            def __init__(self, real: Any) -> None:
                self.real, self.calls = real, 0

            def write(self, data: Any) -> int:
                self.calls += 1
                if self.calls == 1:
                    return int(self.real.write(bytes(data[: len(data) // 2])))
                if self.calls == 2:
                    raise OSError(errno.ENOSPC, "simulated full disk")
                return int(self.real.write(data))

            def __getattr__(self, name: str) -> Any:
                return getattr(self.real, name)

        async with _open_jsonl({"path": str(path)}) as ctx:
            ctx.jsonl.file = HalfThenFull(ctx.jsonl.file)
            [torn] = await asyncio.gather(_write(ctx, _message("first")))
            [whole] = await asyncio.gather(_write(ctx, _message("second")))
            ctx.jsonl.file = ctx.jsonl.file.real
        assert isinstance(torn, Error)
        assert whole == Ok(None)
        text = path.read_text(encoding="utf-8").splitlines()
        assert len(text) == 2
        assert json.loads(text[1])["topic"] == "second"


class TestSqlite:
    """mqtt_collector.collectors.sqlite: write with the open_database lifecycle."""

    async def test_sqlite_inserts_a_row_with_every_field(self, tmp_path: Path) -> None:
        """A message becomes one committed row; the processor returns its id."""
        path = tmp_path / "m.db"
        collector = _collector(sqlite.write, sqlite.open_database, {"path": str(path)})
        results = await _deliver(collector, [_message(retain=True)])
        assert results == [Ok(1)]
        [row] = _rows(path)
        assert dict(row) == {
            "id": 1,
            "topic": "sensors/kitchen/temperature",
            "payload": b'{"t": 21.5}',
            "data": '{"t":21.5}',
            "qos": 1,
            "retain": 1,
            "received_at": 1_700_000_000.25,
        }

    async def test_sqlite_bytes_data_is_stored_raw_with_null_data(self, tmp_path: Path) -> None:
        """A bytes body is kept in payload, and data is NULL."""
        path = tmp_path / "m.db"
        collector = _collector(sqlite.write, sqlite.open_database, {"path": str(path)})
        await _deliver(collector, [_message(data=b"\x00\xff")])
        [row] = _rows(path)
        assert (row["payload"], row["data"]) == (b"\x00\xff", None)

    async def test_sqlite_concurrent_messages_all_stored(self, tmp_path: Path) -> None:
        """Many messages in flight at once each get their own row and id."""
        path = tmp_path / "m.db"
        collector = _collector(
            sqlite.write, sqlite.open_database, {"path": str(path), "table": "readings"}
        )
        results = await _deliver(collector, [_message(f"s/{i}") for i in range(100)])
        assert sorted(r.value for r in results if isinstance(r, Ok)) == list(range(1, 101))
        assert sorted(row["topic"] for row in _rows(path, "readings")) == sorted(
            f"s/{i}" for i in range(100)
        )

    async def test_sqlite_database_uses_wal_and_is_closed_after_queue_exits(
        self, tmp_path: Path
    ) -> None:
        """The database is in WAL mode, and closing it at exit checkpoints and removes the WAL."""
        path = tmp_path / "m.db"
        collector = _collector(sqlite.write, sqlite.open_database, {"path": str(path)})
        await _deliver(collector, [_message()])
        # SQLite deletes the -wal file only when the last connection to the database closes.
        assert not (tmp_path / "m.db-wal").exists()
        connection = sqlite3.connect(path)
        try:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            connection.close()

    async def test_sqlite_write_error_is_an_error_result(self, tmp_path: Path) -> None:
        """A failing INSERT gives Error(sqlite3.Error) instead of raising."""
        path = tmp_path / "m.db"
        connection = sqlite3.connect(path)
        connection.execute(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY, topic TEXT CHECK (topic != 'bad'),"
            " payload BLOB, data TEXT, qos INTEGER, retain INTEGER, received_at REAL)"
        )
        connection.close()
        collector = _collector(sqlite.write, sqlite.open_database, {"path": str(path)})
        [bad, good] = await _deliver(collector, [_message("bad"), _message("good")])
        assert isinstance(bad, Error)
        assert isinstance(bad.exception, sqlite3.IntegrityError)
        assert good == Ok(1)

    async def test_sqlite_without_lifecycle_says_which_to_add(self) -> None:
        """A write with no open_database lifecycle configured is an Error naming the lifecycle."""
        [result] = await _deliver(_collector(sqlite.write), [_message()])
        assert isinstance(result, Error)
        assert "lifecycle: mqtt_collector.collectors.sqlite:open_database" in str(result.exception)

    async def test_sqlite_missing_path_names_the_option(self) -> None:
        """Without a path the lifecycle fails naming the collector and the option."""
        error = await _lifecycle_error(_collector(sqlite.write, sqlite.open_database, {}))
        assert error == "collector 'c1': option 'path': is required"

    async def test_sqlite_missing_directory_names_the_option(self, tmp_path: Path) -> None:
        """A path in a directory that does not exist fails naming the option and the directory."""
        path = tmp_path / "absent" / "m.db"
        options = {"path": str(path)}
        error = await _lifecycle_error(_collector(sqlite.write, sqlite.open_database, options))
        assert error == f"collector 'c1': option 'path': directory '{path.parent}' does not exist"

    async def test_sqlite_table_must_be_an_identifier(self, tmp_path: Path) -> None:
        """A table name that is not an SQL identifier is refused naming the option."""
        options = {"path": str(tmp_path / "m.db"), "table": 'x"; DROP TABLE y; --'}
        error = await _lifecycle_error(_collector(sqlite.write, sqlite.open_database, options))
        assert error.startswith("collector 'c1': option 'table': must be an SQL identifier")

    async def test_sqlite_existing_table_lacking_columns_is_refused(self, tmp_path: Path) -> None:
        """An existing table without the needed columns is refused at start, naming them."""
        path = tmp_path / "m.db"
        connection = sqlite3.connect(path)
        connection.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, topic TEXT)")
        connection.close()
        options = {"path": str(path)}
        error = await _lifecycle_error(_collector(sqlite.write, sqlite.open_database, options))
        assert error == (
            "collector 'c1': option 'table': existing table 'messages' lacks columns"
            " payload, data, qos, retain, received_at"
        )


class TestLog:
    """mqtt_collector.collectors.log: log (no lifecycle needed)."""

    async def test_log_emits_a_line_with_the_topic(self) -> None:
        """One info line per message carries topic, qos, retain, captures, size and data."""
        with structlog.testing.capture_logs() as logs:
            results = await _deliver(_collector(log.log), [_message()])
        assert results == [Ok(None)]
        assert logs == [
            {
                "event": "mqtt message",
                "log_level": "info",
                "collector": "c1",
                "topic": "sensors/kitchen/temperature",
                "qos": 1,
                "retain": False,
                "captures": ["kitchen"],
                "size": 11,
                "data": {"t": 21.5},
            }
        ]

    async def test_log_truncates_long_data(self) -> None:
        """A body longer than max_data_chars is cut and marked truncated."""
        collector = _collector(log.log, options={"max_data_chars": 4})
        with structlog.testing.capture_logs() as logs:
            await _deliver(collector, [_message(data="abcdefgh")])
        assert (logs[0]["data"], logs[0]["truncated"]) == ("abcd", True)

    async def test_log_include_data_false_omits_data(self) -> None:
        """include_data false logs the metadata only."""
        collector = _collector(log.log, options={"include_data": False})
        with structlog.testing.capture_logs() as logs:
            await _deliver(collector, [_message()])
        assert "data" not in logs[0]

    async def test_log_level_option_sets_the_level(self) -> None:
        """The level option picks the level of the line."""
        collector = _collector(log.log, options={"level": "WARNING"})
        with structlog.testing.capture_logs() as logs:
            await _deliver(collector, [_message()])
        assert logs[0]["log_level"] == "warning"

    async def test_log_bad_level_fails_check_options_at_start(self) -> None:
        """With the optional check_options lifecycle a bad level stops the queue from starting."""
        collector = _collector(log.log, log.check_options, {"level": "loud"})
        error = await _lifecycle_error(collector)
        assert error == (
            "collector 'c1': option 'level': must be one of debug, info, warning, error, got 'loud'"
        )
