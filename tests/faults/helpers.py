"""Running the daemon as a subprocess, publishing numbered messages, and reading what arrived."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import yaml

from tests.daemon_helpers import free_port, wait_until_sync

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from tests.mosquitto import Mosquitto

__all__ = [
    "DaemonProcess",
    "daemon_config",
    "free_port",
    "metric",
    "numbers",
    "read_records",
    "wait_for",
]

REPO = Path(__file__).resolve().parents[2]
COLLECTORS = "tests.fault_collectors"
STOP_TIMEOUT = 30.0


def wait_for(
    condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``condition`` until true; fail saying ``what`` after ``timeout`` seconds.

    Polling, because what is awaited happens in another process (a file grows, a log line is
    written): there is no event to wait on. Every 50 ms: the conditions read whole files.
    """
    wait_until_sync(condition, what=what, timeout=timeout, interval=interval)


def daemon_config(
    broker: Mosquitto,
    *,
    client_id: str,
    subscriptions: list[dict[str, Any]],
    collectors: list[dict[str, Any]],
    protocol: str = "5",
    persistent: bool = True,
    queue: dict[str, Any] | None = None,
    broker_extra: dict[str, Any] | None = None,
    metrics_port: int | None = None,
) -> dict[str, Any]:
    """Return a daemon config (as a dict for YAML) talking to ``broker``, JSON logs at info."""
    config: dict[str, Any] = {
        "broker": {
            "host": broker.host,
            "port": broker.port,
            "client_id": client_id,
            "protocol": protocol,
            "keepalive": 10,
            "session": {"persistent": persistent, "expiry": 3600},
            "reconnect": {"initial_delay": 0.1, "max_delay": 1.0},
            **(broker_extra or {}),
        },
        "subscriptions": subscriptions,
        "queue": {"max_consumers": 16, "drain_timeout": 10, **(queue or {})},
        "collectors": collectors,
        "logging": {"level": "info", "format": "json"},
    }
    if metrics_port is not None:
        config["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    return config


def read_records(path: Path) -> list[dict[str, Any]]:
    """Return every whole JSON line a recording collector wrote (a torn last line is skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


def numbers(path: Path) -> Counter[int]:
    """Count how often each numbered body (``"<n>"`` or ``"<n> <padding>"``) was recorded."""
    found: Counter[int] = Counter()
    for record in read_records(path):
        number = record["head"].partition(" ")[0]
        if number.isdigit():
            found[int(number)] += 1
    return found


class DaemonProcess:
    """``python -m mqtt_collector run --config FILE`` as a subprocess, its JSON log in a file."""

    def __init__(self, directory: Path, config: dict[str, Any], *, name: str = "daemon") -> None:
        """Write the config into ``directory``; nothing starts until ``start()``."""
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path = directory / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log_path = directory / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        """The running daemon's process id."""
        assert self.process is not None, "the daemon was never started"
        return self.process.pid

    def start(self, *, wait_subscribed: bool = True, timeout: float = 20.0) -> None:
        """Start the daemon; by default return once it has subscribed."""
        before = len(self.logs("subscribed"))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mqtt_collector", "run", "--config", str(self.config_path)],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.starts += 1
        if wait_subscribed:
            self.wait_log("subscribed", count=before + 1, timeout=timeout)

    def logs(self, event: str | None = None) -> list[dict[str, Any]]:
        """Return the JSON log lines so far (of every run), those with ``event`` if given."""
        lines = []
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and (event is None or entry.get("event") == event):
                lines.append(entry)
        return lines

    def wait_log(
        self,
        event: str,
        *,
        count: int = 1,
        timeout: float = 20.0,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` log lines with ``event`` (matching ``where``) were written."""

        def found() -> list[dict[str, Any]]:
            return [e for e in self.logs(event) if where is None or where(e)]

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"the daemon exited with {self.process.returncode} while waiting for "
                    f"{event!r}:\n{self.tail()}"
                )
            return len(found()) >= count

        try:
            wait_for(ready, timeout=timeout, what=f"{count} log line(s) {event!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tail()}") from None
        return found()

    def tail(self, lines: int = 30) -> str:
        """Return the end of the daemon's log, for failure messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def rss_kb(self) -> int:
        """Return the daemon's resident memory (VmRSS) in kB."""
        status = Path(f"/proc/{self.pid}/status").read_text(encoding="utf-8")
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmRSS in /proc/{self.pid}/status")

    def kill(self) -> None:
        """SIGKILL the daemon and reap it."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)

    def terminate(self, *, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM the daemon, wait for it and return its exit status."""
        process = self.process
        assert process is not None, "the daemon was never started"
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(
                f"the daemon ignored SIGTERM for {timeout}s:\n{self.tail()}"
            ) from None

    def __enter__(self) -> Self:
        """Start the daemon."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Kill the daemon if it still runs."""
        self.kill()


def metric(port: int, name: str, **labels: str) -> float:
    """Scrape the daemon's /metrics and return one sample's value (0 if absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    sample = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == sample or _same_labels(key, name, labels):
            return float(value)
    return 0.0


def _same_labels(key: str, name: str, labels: dict[str, str]) -> bool:
    if not key.startswith(name + "{"):
        return False
    found = dict(part.split("=", 1) for part in key[len(name) + 1 : -1].split(",") if part)
    return found == {k: f'"{v}"' for k, v in labels.items()}
