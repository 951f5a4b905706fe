"""The command line: ``check``, ``route``, ``--version`` in process; ``run`` as a real process."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mqtt_collector import __version__, _cli
from mqtt_collector._cli import main
from tests.helpers.daemon import (
    WAIT,
    free_port,
    recorder_entry,
    write_config,
)
from tests.helpers.daemon_process import DaemonProcess, wait_for
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.mqtt_client import connected_client

ROOT = Path(__file__).resolve().parent.parent

_SUBSCRIPTIONS = [
    {"filter": "sensors/+/+/temperature", "topics": ["temperature", "site/{1}"]},
    {"filter": "sensors/#", "decode": "text", "topics": ["all"]},
]
_COLLECTORS = [
    {
        "key": "store",
        "processor": "tests.sample_collectors:store",
        "lifecycle": "tests.sample_collectors:lifecycle",
        "topics": ["temperature"],
    },
    {
        "key": "sites",
        "processor": "tests.sample_collectors:store",
        "topics": ["site/kitchen", "all"],
    },
]


def _write(directory: Path, tree: dict[str, Any]) -> Path:
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def _good(directory: Path) -> Path:
    return _write(directory, {"subscriptions": _SUBSCRIPTIONS, "collectors": _COLLECTORS})


class TestCheck:
    """``mqtt-collector check``."""

    @pytest.mark.parametrize(
        ("change", "expected"),
        [
            pytest.param(
                {"sub": {"qos": 3}}, "subscriptions[0].qos: must be 0 or 1, got 3", id="qos"
            ),
            pytest.param(
                {"sub": {"qos": 2}},
                "subscriptions[0].qos: QoS 2 is not supported: acknowledgement after processing"
                " cannot be completed across a reconnect, so a message could be lost; use 1",
                id="qos2",
            ),
            pytest.param({"sub": {"bogus": 1}}, "subscriptions[0].bogus: unknown key", id="key"),
            pytest.param(
                {"sub": {"filter": "a/#/b"}},
                "subscriptions[0].filter: invalid topic filter 'a/#/b': '#' must be the last level",
                id="filter",
            ),
            pytest.param(
                {"sub": {"topics": ["x/{2}"]}},
                "subscriptions[0].topics[0]: topic template 'x/{2}': '{2}' names capture 2"
                " but the filter has only 1 wildcard",
                id="template",
            ),
            pytest.param(
                {"col": {"options": {"path": "${MQTT_COLLECTOR_TEST_UNSET}"}}},
                "collectors[0].options.path: environment variable 'MQTT_COLLECTOR_TEST_UNSET'"
                " is not set",
                id="env",
            ),
            pytest.param(
                {"col": {"processor": "tests.sample_collectors:nope"}},
                "collectors[0].processor: cannot import 'tests.sample_collectors:nope':"
                " module 'tests.sample_collectors' has no attribute 'nope'",
                id="import",
            ),
            pytest.param(
                {"col": {"processor": "tests.sample_collectors:sync_processor"}},
                "collectors[0].processor: 'tests.sample_collectors:sync_processor'"
                " is not an async function",
                id="sync",
            ),
        ],
    )
    def test_check_refuses_bad_config_in_one_line(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        change: dict[str, dict[str, Any]],
        expected: str,
    ) -> None:
        """A bad file: one line ``file: key.path: message`` on stderr, no traceback, exit 2."""
        monkeypatch.delenv("MQTT_COLLECTOR_TEST_UNSET", raising=False)
        sub = {"filter": "sensors/+", "topics": ["all"], **change.get("sub", {})}
        col = {
            "key": "store",
            "processor": "tests.sample_collectors:store",
            "topics": ["all"],
            **change.get("col", {}),
        }
        path = _write(tmp_path, {"subscriptions": [sub], "collectors": [col]})
        assert main(["check", "--config", str(path)]) == 2
        out = capsys.readouterr()
        assert out.out == ""
        [line] = out.err.splitlines()
        assert line.startswith(f"{path}: {expected}")
        assert "Traceback" not in out.err

    def test_check_refuses_missing_file(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A file that does not exist: one line naming it, exit 2."""
        path = tmp_path / "absent.yaml"
        assert main(["check", "--config", str(path)]) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith(f"{path}: cannot read:")

    def test_run_refuses_bad_config_before_connecting(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``run`` with a bad file exits 2 with the one line, configuring nothing."""
        path = _write(tmp_path, {"subscriptions": [{"filter": "a/#/b"}], "collectors": []})
        assert main(["run", "--config", str(path)]) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith(f"{path}: ")


_REPORT_SUBSCRIPTIONS = [
    *_SUBSCRIPTIONS,
    {
        "filter": "doors/+",
        "share_group": "door-workers",
        "qos": 0,
        "decode": "bytes",
        "topics": ["door/{1}", "{topic}"],
    },
]
_REPORT_COLLECTORS = [
    _COLLECTORS[0],
    {**_COLLECTORS[1], "topics": ["site/kitchen", "site/hall", "all"]},
    {"key": "wild", "processor": "tests.sample_collectors:store", "topics": ["site/+"]},
]


class TestCheckReport:
    """``mqtt-collector check`` prints a routes table, its warnings and one summary line."""

    @staticmethod
    def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
        """Run ``check`` on ``path``: assert exit 0 and an empty stderr; the stdout lines."""
        assert main(["check", "--config", str(path)]) == 0
        out = capsys.readouterr()
        assert out.err == ""
        return out.out.splitlines()

    def _report(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
        tree = {"subscriptions": _REPORT_SUBSCRIPTIONS, "collectors": _REPORT_COLLECTORS}
        return self._check(_write(tmp_path, tree), capsys)

    def test_check_report_routes_table(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """One aligned row per template: filter, QoS, decode, template as written, collectors."""
        lines = self._report(tmp_path, capsys)
        assert lines[2:9] == [
            "SUBSCRIPTION                 QOS  DECODE  PAYLOAD TOPIC  COLLECTORS",
            "sensors/+/+/temperature      1    json    temperature    store",
            f"{'':42}site/{{1}}       sites (site/kitchen, site/hall)",
            "sensors/#                    1    text    all            sites",
            "$share/door-workers/doors/+  0    bytes   door/{1}       (none)",
            "                                          {topic}        (none)",
            "",
        ]

    def test_check_report_collectors_table(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """One aligned row per collector: key, topics, processor, lifecycle."""
        lines = self._report(tmp_path, capsys)
        store, lifecycle = "tests.sample_collectors:store", "tests.sample_collectors:lifecycle"
        assert lines[9:14] == [
            "COLLECTOR  TOPICS                        PROCESSOR                      LIFECYCLE",
            f"store      temperature                   {store}  {lifecycle}",
            f"sites      site/kitchen, site/hall, all  {store}  -",
            f"wild       site/+                        {store}  -",
            "",
        ]

    def test_check_report_warns_of_a_topic_no_subscription_produces(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """'site/+' is a literal collector topic: the '{1}' of 'site/{1}' never yields '+'."""
        lines = self._report(tmp_path, capsys)
        assert (
            "warning: collectors[2].topics[0]: collector 'wild' listens to 'site/+', which no"
            " subscription produces; collector topics are exact names, not filters"
            " ('+' and '#' are literal)"
        ) in lines

    def test_check_report_warns_of_a_subscription_reaching_no_collector(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A subscription none of whose templates reaches a collector is a warning."""
        lines = self._report(tmp_path, capsys)
        assert (
            "warning: subscriptions[2]: messages on '$share/door-workers/doors/+' reach no"
            " collector: no collector's topics match its Payload topics 'door/{1}', '{topic}'"
        ) in lines
        assert sum(line.startswith("warning:") for line in lines) == 2

    def test_check_report_ends_with_summary(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The last line counts subscriptions, collectors and warnings; warnings keep exit 0."""
        lines = self._report(tmp_path, capsys)
        assert lines[-2:] == ["", "OK: 3 subscriptions, 3 collectors, 2 warnings"]

    def test_check_report_example_config_is_clean(self, capsys: pytest.CaptureFixture[str]) -> None:
        """config/example.yaml checks with no warning; its 'site/{1}' feeds nothing yet."""
        lines = self._check(ROOT / "config" / "example.yaml", capsys)
        assert not [line for line in lines if line.startswith("warning:")]
        assert "                                      site/{1}       (none)" in lines
        assert lines[-1] == "OK: 2 subscriptions, 2 collectors, no warnings"


class TestBadHost:
    """A host name that cannot be looked up is a config error, for ``check`` and ``run``."""

    @pytest.mark.parametrize("command", ["check", "run"])
    def test_cli_refuses_a_host_with_an_empty_label(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        command: str,
    ) -> None:
        """``mqtt..example.com``: one line naming broker.host, exit 2, no daemon built."""

        def no_daemon(config: object) -> None:
            raise AssertionError(f"a daemon was built for {config!r}")

        monkeypatch.setattr(_cli, "Daemon", no_daemon)
        tree = {
            "broker": {"host": "mqtt..example.com"},
            "subscriptions": _SUBSCRIPTIONS,
            "collectors": _COLLECTORS,
        }
        path = _write(tmp_path, tree)
        assert main([command, "--config", str(path)]) == 2
        out = capsys.readouterr()
        assert out.out == ""
        assert out.err.splitlines() == [
            (
                f"{path}: broker.host: 'mqtt..example.com' is not a valid host name or IP"
                " address: it has an empty label"
            )
        ]


class TestRoute:
    """``mqtt-collector route``."""

    def test_route_prints_subscription_captures_topics_collectors(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The deciding subscription, its captures, the union of topics and the collectors."""
        path = _good(tmp_path)
        assert main(["route", "--config", str(path), "sensors/kitchen/t1/temperature"]) == 0
        assert capsys.readouterr().out.splitlines() == [
            (
                "sensors/kitchen/t1/temperature: subscription sensors/+/+/temperature"
                " (decode json, priority 1000) captures ['kitchen', 't1']"
                " -> topics ['temperature', 'site/kitchen', 'all'] -> collectors ['store', 'sites']"
            ),
            "  also matches sensors/#",
        ]

    def test_route_says_when_nothing_matches(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A topic no subscription matches is said so, exit 0."""
        path = _good(tmp_path)
        assert main(["route", "--config", str(path), "other/x"]) == 0
        assert capsys.readouterr().out == "other/x: no subscription matches\n"


class TestVersion:
    """``--version``."""

    def test_version_prints_name_and_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        """``--version`` prints the program name and version and exits 0."""
        with pytest.raises(SystemExit) as exited:
            main(["--version"])
        assert exited.value.code == 0
        assert capsys.readouterr().out == f"mqtt-collector {__version__}\n"

    def test_version_as_module(self) -> None:
        """``python -m mqtt_collector --version`` works the same."""
        done = subprocess.run(
            [sys.executable, "-m", "mqtt_collector", "--version"],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
            cwd=ROOT,
        )
        assert (done.returncode, done.stdout) == (0, f"mqtt-collector {__version__}\n")


@pytest.fixture
def run_process() -> Iterator[Callable[[Path, Path], DaemonProcess]]:
    """Start ``run`` subprocesses (not waiting for them); kill any left at teardown."""
    started: list[DaemonProcess] = []

    def start(config: Path, directory: Path) -> DaemonProcess:
        process = DaemonProcess(directory, config)
        process.start(wait_subscribed=False)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def _metric(port: int, name: str) -> float:
    """Read one unlabelled sample from a daemon's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    return 0.0


@pytest.mark.broker
class TestRunProcess:
    """``python -m mqtt_collector run`` as the real process an operator starts."""

    def test_run_writes_jsonl_sqlite_and_log_then_stops_on_sigterm(
        self,
        mosquitto: Mosquitto,
        topic_prefix: str,
        tmp_path: Path,
        run_process: Callable[[Path, Path], DaemonProcess],
    ) -> None:
        """Messages reach the jsonl file, the sqlite table and the log; SIGTERM exits 0."""
        p = topic_prefix
        jsonl_path, db_path = tmp_path / "messages.jsonl", tmp_path / "messages.db"
        config = write_config(
            tmp_path,
            port=mosquitto.port,
            prefix=p,
            collectors=[
                {
                    "key": "archive",
                    "processor": "mqtt_collector.collectors.jsonl:write",
                    "lifecycle": "mqtt_collector.collectors.jsonl:open_file",
                    "topics": ["all"],
                    "options": {"path": str(jsonl_path)},
                },
                {
                    "key": "store",
                    "processor": "mqtt_collector.collectors.sqlite:write",
                    "lifecycle": "mqtt_collector.collectors.sqlite:open_database",
                    "topics": ["all"],
                    "options": {"path": str(db_path), "table": "readings"},
                },
                {
                    "key": "trace",
                    "processor": "mqtt_collector.collectors.log:log",
                    "lifecycle": "mqtt_collector.collectors.log:check_options",
                    "topics": ["all"],
                    "options": {"level": "warning"},
                },
            ],
        )
        daemon = run_process(config, tmp_path)
        daemon.wait_log("subscribed")
        with connected_client(mosquitto.port) as publisher:
            for index in range(3):
                publisher.publish_json(f"{p}/room/{index}", {"t": index})

        def rows() -> list[tuple[str, str]]:
            with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
                found = db.execute("SELECT topic, data FROM readings ORDER BY id").fetchall()
            db.close()
            return [(str(t), str(d)) for t, d in found]

        def lines() -> list[dict[str, Any]]:
            text = jsonl_path.read_text(encoding="utf-8")
            return [json.loads(line) for line in text.splitlines()]

        wait_for(lambda: len(lines()) == 3 and len(rows()) == 3, what="3 lines and rows")
        assert daemon.terminate(signal.SIGTERM) == 0
        expected = [(f"{p}/room/{i}", {"t": i}) for i in range(3)]
        assert [(line["topic"], line["data"]) for line in lines()] == expected
        assert [(topic, json.loads(data)) for topic, data in rows()] == expected
        events = [line["event"] for line in daemon.logs()]
        assert events[-2:] == ["draining", "stopped"]
        logged = [line for line in daemon.logs() if line["event"] == "mqtt message"]
        assert [(line["topic"], line["data"], line["level"]) for line in logged] == [
            (topic, data, "warning") for topic, data in expected
        ]
        [connected] = [line for line in daemon.logs() if line["event"] == "connected"]
        assert connected["level"] == "info"
        assert connected["port"] == mosquitto.port
        assert "timestamp" in connected

    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
    def test_run_drains_queued_messages_on_signal(
        self,
        mosquitto: Mosquitto,
        topic_prefix: str,
        tmp_path: Path,
        run_process: Callable[[Path, Path], DaemonProcess],
        signum: int,
    ) -> None:
        """Messages received but still queued when the signal comes are processed before exit 0."""
        p = topic_prefix
        records_path = tmp_path / "records.jsonl"
        metrics_port = free_port()
        config = write_config(
            tmp_path,
            port=mosquitto.port,
            prefix=p,
            collectors=[recorder_entry("rec", ["all"], path=str(records_path), delay=0.2)],
            queue={"min_consumers": 1, "max_consumers": 1},
            metrics={"listen": f"127.0.0.1:{metrics_port}"},
        )
        daemon = run_process(config, tmp_path)
        daemon.wait_log("subscribed")
        with connected_client(mosquitto.port) as publisher:
            for index in range(4):
                publisher.publish_json(f"{p}/m", index)
        wait_for(
            lambda: _metric(metrics_port, "mqtt_collector_messages_received_total") == 4,
            what="4 messages received",
        )
        queued = _metric(metrics_port, "mqtt_collector_queue_size")
        assert daemon.terminate(signum) == 0
        assert queued > 0  # the signal did come while work was queued
        recorded = [json.loads(line)["data"] for line in records_path.read_text().splitlines()]
        assert recorded == [0, 1, 2, 3]
        [draining] = [line for line in daemon.logs() if line["event"] == "draining"]
        assert draining["queued"] + draining["running"] > 0

    def test_run_exits_1_when_a_lifecycle_fails(
        self,
        mosquitto: Mosquitto,
        topic_prefix: str,
        tmp_path: Path,
        run_process: Callable[[Path, Path], DaemonProcess],
    ) -> None:
        """A lifecycle failing at start: exit 1, one error line saying why, never connected."""
        config = write_config(
            tmp_path,
            port=mosquitto.port,
            prefix=topic_prefix,
            collectors=[
                {
                    "key": "db",
                    "processor": "tests.helpers.collectors:record",
                    "lifecycle": "tests.helpers.collectors:failing_lifecycle",
                    "topics": ["all"],
                }
            ],
        )
        daemon = run_process(config, tmp_path)
        assert daemon.wait(WAIT) == 1
        assert len(daemon.text().splitlines()) == 1, daemon.text()
        [line] = daemon.logs()
        assert line["level"] == "error"
        assert line["event"] == "cannot start"
        assert "collector 'db': lifecycle setup failed" in line["error"]
        assert "database at db.invalid:5432 refused" in line["error"]
