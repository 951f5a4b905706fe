"""``mqtt-collector demo`` end to end, as a real process: embedded broker, --broker, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from mqtt_collector._cli import main

if TYPE_CHECKING:
    from pathlib import Path

    from tests.helpers.mosquitto import Mosquitto

pytest.importorskip("amqtt", reason="the demo extra is not installed")
pytest.importorskip("rich", reason="the demo extra is not installed")

WAIT = 60.0  # seconds a whole demo run may take (a few seconds normally)
_PUBLISHED = re.compile(
    r"Published (?P<total>[\d,]+) messages in [\d.]+ s \((?P<readings>[\d,]+) readings,"
    r" (?P<malformed>[\d,]+) malformed, (?P<status>[\d,]+) status\); the daemon received"
    r" (?P<received>[\d,]+), processed (?P<processed>[\d,]+), refused (?P<refused>[\d,]+)"
)


def _demo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mqtt_collector", "demo", *args]


@dataclass(frozen=True)
class Summary:
    """The counts the demo's summary printed."""

    total: int
    readings: int
    malformed: int
    status: int
    received: int
    processed: int
    refused: int

    @classmethod
    def parse(cls, stdout: str) -> Summary:
        """Read the counts from the demo's standard output."""
        found = _PUBLISHED.search(stdout)
        assert found is not None, stdout
        return cls(**{k: int(v.replace(",", "")) for k, v in found.groupdict().items()})


def _rows(database: Path) -> list[tuple[str, str | None]]:
    with sqlite3.connect(database) as db:
        rows: list[tuple[str, str | None]] = db.execute(
            "SELECT topic, data FROM readings"
        ).fetchall()
    db.close()
    return rows


def _check_files(out: Path, summary: Summary) -> None:
    """Every reading is in the database and the JSON Lines file; no malformed one is."""
    rows = _rows(out / "readings.db")
    assert len(rows) == summary.readings
    for topic, data in rows:
        assert topic.startswith("demo/sensors/")
        assert data is not None
        reading = json.loads(data)
        assert "celsius" in reading or "percent" in reading
    lines = (out / "readings.jsonl").read_text().splitlines()
    assert len(lines) == summary.readings


def _check_summary(stdout: str) -> Summary:
    assert "Collectors" in stdout
    assert re.search(r"│ total\s+│", stdout), stdout
    assert "sqlite3 " in stdout
    summary = Summary.parse(stdout)
    assert summary.received == summary.total
    assert summary.refused == summary.malformed
    assert summary.processed == summary.readings + summary.status
    return summary


def test_demo_on_the_embedded_broker_stores_the_readings_and_refuses_the_malformed(
    tmp_path: Path,
) -> None:
    """`demo --duration 3` exits 0 with a summary; the files hold every well-formed reading."""
    out = tmp_path / "out"
    done = subprocess.run(
        _demo_command("--duration", "3", "--out", str(out)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert "embedded amqtt broker on 127.0.0.1:" in first
    assert "MQTT 3.1.1" in first
    summary = _check_summary(done.stdout)
    assert summary.readings > 0
    assert summary.malformed > 0
    assert "message refused" in done.stderr
    assert "progress" in done.stderr  # off a terminal: plain log lines
    _check_files(out, summary)
    assert main(["check", "--config", str(out / "demo.yaml")]) == 0


@pytest.mark.broker
def test_demo_runs_against_the_broker_given(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """`demo --broker HOST:PORT` uses that broker, with MQTT 5, and says so first."""
    out = tmp_path / "out"
    done = subprocess.run(
        _demo_command(
            "--broker", f"{mosquitto.host}:{mosquitto.port}", "--duration", "2", "--out", str(out)
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert f"the broker at {mosquitto.host}:{mosquitto.port} (MQTT 5, from --broker)" in first
    summary = _check_summary(done.stdout)
    assert summary.readings > 0
    _check_files(out, summary)


def _wait_for_text(process: subprocess.Popen[bytes], text: bytes, within: float) -> bytes:
    """Read the process's stderr until ``text`` appears; return what was read."""
    assert process.stderr is not None
    seen = b""
    deadline = time.monotonic() + within
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        while text not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} within {within}s: {seen.decode(errors='replace')}"
            if selector.select(timeout=left):
                chunk = os.read(process.stderr.fileno(), 65536)
                assert chunk, f"stderr closed before {text!r}: {seen.decode(errors='replace')}"
                seen += chunk
    return seen


def test_demo_stops_cleanly_on_ctrl_c_with_the_summary_so_far(tmp_path: Path) -> None:
    """SIGINT mid-run: the daemon drains and acks, the demo prints its summary, exit 0."""
    out = tmp_path / "out"
    with subprocess.Popen(
        _demo_command("--duration", "120", "--out", str(out)),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        try:
            # The first malformed body comes after a few dozen readings: well under way.
            before = _wait_for_text(process, b"message refused", WAIT)
            started = time.monotonic()
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=WAIT)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, (before + stderr).decode()
    assert time.monotonic() - started < 15.0  # stopped at once, not after --duration
    assert b"stopped" in stderr  # the daemon's own clean stop: drained, acked, disconnected
    summary = _check_summary(stdout.decode())
    assert summary.readings > 0
    _check_files(out, summary)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--protocol", "5"], "speaks MQTT 3.1.1 only"),
        (["--duration", "0"], "--duration: expected a positive number"),
        (["--broker", "localhost"], "--broker: expected HOST:PORT"),
    ],
)
def test_demo_refuses_bad_options(
    args: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad option is refused with exit 2 and one line, before anything starts."""
    assert main(["demo", *args, "--out", str(tmp_path / "out")]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
