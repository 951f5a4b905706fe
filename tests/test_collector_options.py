"""Collector options are checked against the model the collector declares, before connecting."""

from __future__ import annotations

import asyncio
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pytest

from mqtt_collector import CollectorQueue, Delivery, Ok, Payload
from mqtt_collector._cli import main
from mqtt_collector._daemon.wiring import build_collectors
from mqtt_collector.collectors import jsonl, log, sqlite
from tests import option_collectors
from tests.helpers.config import base, collector, load, write

if TYPE_CHECKING:
    from pathlib import Path

WAIT = 10.0  # seconds: a bound on every wait

_JSONL = {
    "processor": "mqtt_collector.collectors.jsonl:write",
    "lifecycle": "mqtt_collector.collectors.jsonl:open_file",
}
_SQLITE = {
    "processor": "mqtt_collector.collectors.sqlite:write",
    "lifecycle": "mqtt_collector.collectors.sqlite:open_database",
}
_LOG = {"processor": "mqtt_collector.collectors.log:log"}
_USER = {
    "processor": "tests.option_collectors:store",
    "lifecycle": "tests.option_collectors:connect",
}


def _refused(
    command: str, directory: Path, entry: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> str:
    """Run ``command`` on a config with the collector ``entry``; its one error line after the path.

    Fails unless the command exits 2 with exactly one line on stderr and nothing on stdout.
    """
    path = write(directory, base(collectors=[collector(**entry)]))
    assert main([command, "--config", str(path)]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    [line] = out.err.splitlines()
    assert line.startswith(f"{path}: ")
    return line.removeprefix(f"{path}: ")


class TestBuiltinOptions:
    """The built-in collectors' options, refused by ``check`` and ``run`` in one line."""

    @pytest.mark.parametrize(
        ("entry", "expected"),
        [
            pytest.param(
                {**_JSONL, "options": {}},
                "collectors[0].options.path: required key is missing",
                id="jsonl-path-missing",
            ),
            pytest.param(
                {**_JSONL, "options": {"path": "out.jsonl", "mode": 640}},
                'collectors[0].options.mode: must be octal permissions in quotes, like "0640",'
                " got 640",
                id="jsonl-mode",
            ),
            pytest.param(
                {**_JSONL, "options": {"path": "out.jsonl", "fsync": "yes"}},
                "collectors[0].options.fsync: must be true or false, got 'yes'",
                id="jsonl-fsync",
            ),
            pytest.param(
                {**_JSONL, "options": {"path": "out.jsonl", "fsycn": True}},
                "collectors[0].options.fsycn: unknown key",
                id="jsonl-unknown",
            ),
            pytest.param(
                {**_SQLITE, "options": {"table": "readings"}},
                "collectors[0].options.path: required key is missing",
                id="sqlite-path-missing",
            ),
            pytest.param(
                {**_SQLITE, "options": {"path": "m.db", "table": 'x"; DROP TABLE y; --'}},
                "collectors[0].options.table: must be an SQL identifier"
                " (letters, digits, _; not sqlite_*), got 'x\"; DROP TABLE y; --'",
                id="sqlite-table",
            ),
            pytest.param(
                {**_SQLITE, "options": {"path": "", "table": "readings"}},
                "collectors[0].options.path: must be a non-empty string, got ''",
                id="sqlite-path-empty",
            ),
            pytest.param(
                {**_LOG, "options": {"level": "loud"}},
                "collectors[0].options.level: must be one of debug, info, warning, error,"
                " got 'loud'",
                id="log-level",
            ),
            pytest.param(
                {**_LOG, "options": {"max_data_chars": 0}},
                "collectors[0].options.max_data_chars: must be an integer >= 1 or null, got 0",
                id="log-max-data-chars",
            ),
            pytest.param(
                {**_LOG, "options": {"include_data": "no"}},
                "collectors[0].options.include_data: must be true or false, got 'no'",
                id="log-include-data",
            ),
        ],
    )
    def test_check_refuses_a_bad_builtin_option(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        entry: dict[str, Any],
        expected: str,
    ) -> None:
        """``check`` exits 2 with one line naming the option's key path and what is wrong."""
        assert _refused("check", tmp_path, entry, capsys) == expected

    def test_run_refuses_a_bad_builtin_option_before_connecting(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``run`` refuses the same line at load, exit 2, before any lifecycle or connection."""
        entry = {**_JSONL, "options": {"path": str(tmp_path / "out.jsonl"), "mode": "rw"}}
        assert _refused("run", tmp_path, entry, capsys) == (
            'collectors[0].options.mode: must be octal permissions in quotes, like "0640",'
            " got 'rw'"
        )
        assert not (tmp_path / "out.jsonl").exists()

    def test_check_reports_every_bad_option_in_the_one_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Two bad options of one collector are both named, in the one line."""
        entry = {**_JSONL, "options": {"mode": "0999"}}
        assert _refused("check", tmp_path, entry, capsys) == (
            "collectors[0].options.path: required key is missing;"
            ' collectors[0].options.mode: must be octal permissions in quotes, like "0640",'
            " got '0999'"
        )

    def test_builtin_collector_gets_its_checked_options(self, tmp_path: Path) -> None:
        """The daemon gives each built-in collector its Options instance as ``ctx.options``."""
        config = load(
            tmp_path,
            base(
                collectors=[
                    collector(key="trace", **_LOG, options={"level": "WARNING"}),
                    collector(key="archive", **_JSONL, options={"path": "a.jsonl"}),
                    collector(key="store", **_SQLITE, options={"path": "m.db"}),
                ]
            ),
        )
        contexts = [c.ctx for c in build_collectors(config, publish=None, on_outcome=None)]
        assert [ctx.options for ctx in contexts] == [
            log.Options(level="warning", include_data=True, max_data_chars=1000),
            jsonl.Options(path="a.jsonl", fsync=False, mode="0600"),
            sqlite.Options(path="m.db", table="messages"),
        ]


class TestDeclaredOptions:
    """A user's collector declares ``Options`` in its module, as the built-in ones do."""

    @pytest.mark.parametrize(
        ("options", "expected"),
        [
            pytest.param({}, "collectors[0].options.dsn: required key is missing", id="missing"),
            pytest.param(
                {"dsn": "mysql://db"},
                "collectors[0].options.dsn: must be a postgresql:// URL, got 'mysql://db'",
                id="validator",
            ),
            pytest.param(
                {"dsn": "postgresql://db", "batch": 0},
                "collectors[0].options.batch: must be at least 1, got 0",
                id="constraint",
            ),
            pytest.param(
                {"dsn": "postgresql://db", "dns": "x"},
                "collectors[0].options.dns: unknown key",
                id="unknown",
            ),
        ],
    )
    def test_check_refuses_a_bad_user_option(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        options: dict[str, Any],
        expected: str,
    ) -> None:
        """A user collector's bad option: exit 2, one line, worded as the rest of the config."""
        entry = {**_USER, "options": options}
        assert _refused("check", tmp_path, entry, capsys) == expected

    def test_check_accepts_good_user_options(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Options the model accepts pass ``check``, exit 0."""
        entry = {**_USER, "options": {"dsn": "postgresql://db"}}
        path = write(tmp_path, base(collectors=[collector(**entry)]))
        assert main(["check", "--config", str(path)]) == 0
        assert capsys.readouterr().err == ""

    async def test_user_collector_runs_with_its_options_instance(self, tmp_path: Path) -> None:
        """Lifecycle and processor find the validated model, defaults filled, as ``ctx.options``."""
        entry = {**_USER, "topics": ["t"], "options": {"dsn": "postgresql://db"}}
        config = load(tmp_path, base(collectors=[collector(**entry)]))
        [built] = build_collectors(config, publish=None, on_outcome=None)
        async with CollectorQueue([built], min_consumers=1) as queue:
            assert built.ctx.connected_to == "postgresql://db"
            event = await queue.get_publisher().send(
                Payload("body", delivery=Delivery.TOPIC, topics=["t"])
            )
            async with asyncio.timeout(WAIT):
                results = await event.wait()
        assert isinstance(built.ctx.options, option_collectors.Options)
        assert results.first() == Ok(("postgresql://db", 100, "body"))

    def test_collector_without_a_model_keeps_the_mapping(self, tmp_path: Path) -> None:
        """A collector whose modules declare no Options gets the read-only mapping, unchecked."""
        config = load(tmp_path, base(collectors=[collector(options={"anything": [1, 2]})]))
        [built] = build_collectors(config, publish=None, on_outcome=None)
        assert built.ctx.options == MappingProxyType({"anything": (1, 2)})

    def test_options_that_are_not_a_model_are_refused(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A module whose ``Options`` is no pydantic model is an error naming the processor."""
        (tmp_path / "plain_options_sink.py").write_text(
            "from mqtt_collector import Ok\n\n"
            "Options = {'dsn': str}\n\n\n"
            "async def store(payload, ctx):\n"
            "    return Ok(None)\n",
            encoding="utf-8",
        )
        entry = {"processor": "plain_options_sink:store"}
        assert _refused("check", tmp_path, entry, capsys) == (
            "collectors[0].processor: 'plain_options_sink.Options' is not a pydantic model class"
        )

    def test_processor_and_lifecycle_declaring_different_models_are_refused(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A collector has one options model: two different ones are refused at the lifecycle."""
        entry = {
            "processor": "tests.option_collectors:store",
            "lifecycle": "mqtt_collector.collectors.jsonl:open_file",
            "options": {"path": "out.jsonl"},
        }
        assert _refused("check", tmp_path, entry, capsys) == (
            "collectors[0].lifecycle: its module and the processor's declare different Options"
            " models; a collector has one"
        )
