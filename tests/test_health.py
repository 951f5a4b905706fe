"""Health that means something: /healthz, the systemd watchdog, ``mqtt-collector health``.

/healthz follows the event loop, the watchdog pings from the loop, and the health command
reads the daemon's status file.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt_collector._cli import main
from mqtt_collector._config.load import load_config
from mqtt_collector._daemon import health
from mqtt_collector._daemon.health import check_health, health_file, watchdog_interval
from tests.helpers.config import base, error, load
from tests.helpers.daemon import WAIT, free_port, make_config, run_daemon, wait_until, write_config
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.mqtt_client import connected_client


@pytest.fixture
def fast_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beat every 50 ms, stale after 0.3 s: the tests see a stuck loop without waiting long."""
    monkeypatch.setattr(health, "HEARTBEAT", 0.05)
    monkeypatch.setattr(health, "STALE_AFTER", 0.3)


@pytest.fixture(autouse=True)
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run outside systemd, whatever the environment that runs them says."""
    for name in ("RUNTIME_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=WAIT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def _poll(port: int, status: int, deadline: float) -> str:
    """GET /healthz until it answers ``status`` (in a thread: the loop may be blocked)."""
    while time.monotonic() < deadline:
        got, body = _get(port, "/healthz")
        if got == status:
            return body
        time.sleep(0.02)
    raise AssertionError(f"/healthz never answered {status}")


@pytest.mark.broker
@pytest.mark.usefixtures("fast_heartbeat")
async def test_healthz_is_503_while_the_loop_is_blocked(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """A processor blocking the loop turns /healthz 503 (saying since when), then 200 again."""
    port = free_port()
    config = make_config(
        tmp_path,
        port=mosquitto.port,
        prefix=topic_prefix,
        collectors=[
            {"key": "block", "processor": "tests.health_collectors:block", "topics": ["all"]}
        ],
        metrics={"listen": f"127.0.0.1:{port}"},
    )
    async with run_daemon(config):
        assert await asyncio.to_thread(_get, port, "/healthz") == (200, "ok\n")

        def blocked_then_not() -> tuple[str, str]:
            deadline = time.monotonic() + WAIT
            return _poll(port, 503, deadline), _poll(port, 200, deadline)

        watcher = asyncio.create_task(asyncio.to_thread(blocked_then_not))
        with connected_client(mosquitto.port) as publisher:
            publisher.publish_json(f"{topic_prefix}/m", {"block": 1.5})
        stuck, recovered = await asyncio.wait_for(watcher, WAIT + 1)
    assert stuck.startswith("event loop stuck: no heartbeat since "), stuck
    assert recovered == "ok\n"


def _receive(sock: socket.socket, until: str, into: list[tuple[float, str]]) -> None:
    """Read datagrams into ``into`` (time, text) until one is ``until``; bounded by WAIT."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        into.append((time.monotonic(), data.decode()))
        if data.decode() == until:
            return
    raise AssertionError(f"no {until!r} within {WAIT}s; got {[m for _, m in into]}")


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A bound AF_UNIX datagram socket, named in NOTIFY_SOCKET, as systemd gives one."""
    with (
        tempfile.TemporaryDirectory(prefix="notify-") as directory,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
    ):
        path = Path(directory) / "notify"
        sock.bind(str(path))
        sock.settimeout(0.1)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


@pytest.mark.broker
async def test_watchdog_pings_at_half_the_interval(
    mosquitto: Mosquitto,
    topic_prefix: str,
    tmp_path: Path,
    notify_socket: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With WATCHDOG_USEC=400000: READY=1, WATCHDOG=1 every ~0.2 s from the loop, STOPPING=1."""
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    config = make_config(tmp_path, port=mosquitto.port, prefix=topic_prefix)
    messages: list[tuple[float, str]] = []
    async with run_daemon(config):
        await asyncio.to_thread(_receive, notify_socket, "READY=1", messages)
        for _ in range(5):
            await asyncio.to_thread(_receive, notify_socket, "WATCHDOG=1", messages)
    await asyncio.to_thread(_receive, notify_socket, "STOPPING=1", messages)
    texts = [text for _, text in messages]
    assert set(texts) == {"READY=1", "WATCHDOG=1", "STOPPING=1"}
    assert texts.index("READY=1") < texts.index("STOPPING=1")
    after_ready = texts.index("READY=1")
    pings = [at for at, text in messages[after_ready:] if text == "WATCHDOG=1"]
    assert len(pings) >= 5
    gaps = [later - earlier for earlier, later in itertools.pairwise(pings)]
    assert 0.15 <= statistics.median(gaps) <= 0.3, gaps
    assert max(gaps) < 0.4, gaps  # never as late as the whole interval


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process() -> None:
    """Half of WATCHDOG_USEC; none when unset, invalid, or meant for another process."""
    pid = os.getpid()
    assert watchdog_interval({}, pid) == 0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, pid) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(pid)}, pid) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid) == 0
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, pid) == 0
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid) == 0


def _health(config_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["health", "--config", str(config_path)])
    return status, capsys.readouterr().out


@pytest.mark.broker
@pytest.mark.usefixtures("fast_heartbeat")
async def test_health_command_follows_the_daemon_and_its_connection(
    private_mosquitto: Mosquitto,
    topic_prefix: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Exit 1 with no daemon, 0 while it is connected, 1 without broker, 1 once it stopped.

    Without metrics.listen, through the default status file.
    """
    path = write_config(tmp_path, port=private_mosquitto.port, prefix=topic_prefix)
    config = load_config(path)
    status, out = _health(path, capsys)
    assert status == 1, out
    assert out.startswith("unhealthy: not running: no status file "), out
    async with run_daemon(config) as daemon:
        await wait_until(lambda: check_health(config)[0], what="the status file to say connected")
        status, out = await asyncio.to_thread(_health, path, capsys)
        assert status == 0, out
        assert out.startswith(f"healthy: connected (pid {os.getpid()})"), out
        private_mosquitto.stop()
        await wait_until(lambda: not daemon.ready, what="the daemon to lose the broker")
        await wait_until(lambda: not check_health(config)[0], what="the status file to say so")
        status, out = await asyncio.to_thread(_health, path, capsys)
        assert status == 1, out
        assert out.startswith("unhealthy: not connected"), out
    status, out = _health(path, capsys)
    assert status == 1, out
    assert "no status file" in out


@pytest.mark.broker
async def test_health_file_is_written_where_the_config_says(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """health.file names the status file: pid, connected, ready and time, removed at stop."""
    where = tmp_path / "run" / "status.json"
    config = make_config(
        tmp_path, port=mosquitto.port, prefix=topic_prefix, health={"file": str(where)}
    )
    assert health_file(config) == where
    async with run_daemon(config):
        await wait_until(lambda: check_health(config)[0], what="a healthy status file")
        status = json.loads(where.read_text(encoding="utf-8"))
        assert status["pid"] == os.getpid()
        assert status["connected"] is True
        assert abs(status["time"] - time.time()) < WAIT
    assert not where.exists()


def test_a_stale_status_file_is_unhealthy(tmp_path: Path) -> None:
    """A daemon whose loop stopped writing (stuck, or killed) fails the check."""
    where = tmp_path / "status.json"
    config = load(tmp_path, base(health={"file": str(where)}))
    now = time.time()
    fresh = {"pid": os.getpid(), "connected": True, "ready": True, "why_not_ready": ""}
    where.write_text(json.dumps({**fresh, "time": now}), encoding="utf-8")
    assert check_health(config) == (True, f"connected (pid {os.getpid()}): ready")
    where.write_text(json.dumps({**fresh, "time": now - 60}), encoding="utf-8")
    healthy, why = check_health(config)
    assert not healthy
    assert why.startswith(f"not responding: status file {where} last written 6"), why


def test_default_health_file(tmp_path: Path) -> None:
    """$RUNTIME_DIRECTORY/health.json under systemd; else per user, keyed by the config path."""
    config = load(tmp_path, base())
    assert health_file(config, {"RUNTIME_DIRECTORY": "/run/mqtt-collector"}) == Path(
        "/run/mqtt-collector/health.json"
    )
    default = health_file(config, {})
    assert default.parent == Path(tempfile.gettempdir()) / f"mqtt-collector-{os.getuid()}"
    assert health_file(load(tmp_path / ".." / tmp_path.name, base()), {}) == default
    other = tmp_path / "other"
    other.mkdir()
    assert health_file(load(other, base()), {}) != default
    assert load(tmp_path, base(health={"file": ""})).health.file is None


def test_health_file_is_validated(tmp_path: Path) -> None:
    """A misspelt key or a value that is not a path is a config error naming the key."""
    assert error(tmp_path, base(health={"fiel": "x"})).startswith("health.fiel: ")
    assert error(tmp_path, base(health={"file": 5})).startswith("health.file: ")


def test_health_command_with_a_bad_config_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Never 2 (Docker's HEALTHCHECK reserves it): a bad config is unhealthy, exit 1."""
    path = tmp_path / "config.yaml"
    path.write_text("subscriptions: []\n", encoding="utf-8")
    status, out = _health(path, capsys)
    assert status == 1
    assert out.startswith(f"unhealthy: {path}: "), out
