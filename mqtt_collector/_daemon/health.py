"""Health that means something: a heartbeat the event loop refreshes, and what reads it.

:class:`Health`, started and stopped by the daemon's ``run()``, keeps a timer on the event
loop that every :data:`HEARTBEAT` seconds

- refreshes a heartbeat that ``/healthz`` (served from the metrics server's threads) reads:
  200 while it is fresh, 503 once it is older than :data:`STALE_AFTER` seconds, i.e. while
  the loop is stuck (a collector blocking it, a busy loop), the body saying since when;
- rewrites the **status file** (``health.file``; :func:`health_file` gives the default): the
  daemon's pid, whether it is connected and ready, and the time, for ``mqtt-collector health``
  (:func:`check_health`) to read: exit 0 while the daemon is up (the file fresh) and
  connected, 1 otherwise. It reads only the file, never ``/readyz``, so it works the same
  whether or not ``metrics.listen`` is set, and needs no port, curl or Python one-liner.

Under systemd with ``WatchdogSec=`` (``$WATCHDOG_USEC`` set, and ``$WATCHDOG_PID`` unset or
ours), a second timer sends ``WATCHDOG=1`` to ``$NOTIFY_SOCKET`` at half that interval, from
the loop: a loop stuck for longer than ``WatchdogSec`` is killed (SIGABRT) and restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from mqtt_collector._daemon.notify import notify

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from mqtt_collector._config.load import Config

__all__ = [
    "HEARTBEAT",
    "STALE_AFTER",
    "Health",
    "check_health",
    "health_file",
    "watchdog_interval",
]

logger = structlog.get_logger("mqtt_collector.health")

# Seconds between two heartbeats (and rewrites of the status file).
HEARTBEAT = 1.0
# A heartbeat older than this many seconds means the event loop is stuck, or the daemon gone.
STALE_AFTER = 5.0


def health_file(config: Config, environ: Mapping[str, str] | None = None) -> Path:
    """Return the status file of the daemon running ``config``.

    ``health.file`` if set; else ``$RUNTIME_DIRECTORY/health.json`` when systemd gives a
    runtime directory (``RuntimeDirectory=``); else
    ``<temp dir>/mqtt-collector-<uid>/<hash of the config file's absolute path>.json``: the
    same ``--config FILE`` finds the same file (the client id cannot key it: without
    ``broker.client_id`` a new one is made on every start).
    """
    environ = os.environ if environ is None else environ
    if config.health.file is not None:
        return config.health.file
    runtime = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime) / "health.json"
    key = hashlib.sha256(str(Path(config.path).resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mqtt-collector-{os.getuid()}" / f"{key}.json"


def watchdog_interval(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float:
    """Seconds between two ``WATCHDOG=1``: half of ``$WATCHDOG_USEC``; 0 for no watchdog.

    No watchdog when ``$WATCHDOG_USEC`` is unset or not a positive number, or when
    ``$WATCHDOG_PID`` is set to another process's pid (as ``sd_watchdog_enabled()``).
    """
    environ = os.environ if environ is None else environ
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return 0.0
    owner = environ.get("WATCHDOG_PID", "")
    if usec <= 0 or (owner and owner != str(os.getpid() if pid is None else pid)):
        return 0.0
    return usec / 2e6


class Health:
    """The daemon's heartbeat, status file and systemd watchdog, driven by the event loop."""

    def __init__(self, path: Path, status: Callable[[], Mapping[str, object]]) -> None:
        """Keep ``status()`` (``connected``, ``ready``, ...) in ``path``; nothing runs yet."""
        self.path = path
        self._status = status
        self._beat: float | None = None  # time.monotonic() of the last heartbeat
        self._beat_wall = 0.0  # time.time() of it
        self._timers: list[asyncio.Handle] = []
        self._write_failed = False
        self._watchdog = 0.0

    def start(self) -> None:
        """Beat now and every HEARTBEAT seconds; start the watchdog if systemd asks for one."""
        loop = asyncio.get_running_loop()
        self._beat, self._beat_wall = time.monotonic(), time.time()  # /healthz: 200 from now
        self._watchdog = watchdog_interval()
        self._timers = [loop.call_soon(self._tick)]
        if self._watchdog:
            self._timers.append(loop.call_soon(self._ping))
            logger.info("systemd watchdog on", interval=round(self._watchdog, 3))

    def stop(self) -> None:
        """Stop beating and remove the status file: ``health`` fails at once from now on."""
        for timer in self._timers:
            timer.cancel()
        self._timers = []
        with contextlib.suppress(OSError):
            self.path.unlink()

    def why_not_live(self) -> str:
        """Return "" while the loop turns, else why not (safe from any thread)."""
        beat = self._beat
        if beat is None:
            return "not started"
        age = time.monotonic() - beat
        if age <= STALE_AFTER:
            return ""
        since = dt.datetime.fromtimestamp(self._beat_wall, dt.UTC).isoformat(timespec="seconds")
        return f"event loop stuck: no heartbeat since {since} ({age:.1f}s ago)"

    def _tick(self) -> None:
        self._beat = time.monotonic()
        self._beat_wall = time.time()
        self._write()
        self._timers[0] = asyncio.get_running_loop().call_later(HEARTBEAT, self._tick)

    def _ping(self) -> None:
        notify("WATCHDOG=1")
        self._timers[1] = asyncio.get_running_loop().call_later(self._watchdog, self._ping)

    def _write(self) -> None:
        """Replace the status file (atomically: a reader never sees half of it)."""
        status = {**self._status(), "pid": os.getpid(), "time": self._beat_wall}
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            temporary.write_text(json.dumps(status), encoding="utf-8")
            temporary.replace(self.path)
        except OSError as exc:
            if not self._write_failed:  # once, and again after it worked
                logger.warning(
                    "cannot write the health status file: `mqtt-collector health` will fail",
                    path=str(self.path),
                    error=str(exc),
                    hint="set health.file to a writable path",
                )
            self._write_failed = True
            return
        self._write_failed = False


def check_health(config: Config, environ: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """Read the status file of the daemon running ``config``: (healthy, one line saying why).

    Healthy: the file is fresh (written less than STALE_AFTER seconds ago), its process is
    alive, and the daemon is connected to the broker.
    """
    path = health_file(config, environ)
    try:
        status: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        written, pid = float(status["time"]), int(status["pid"])
    except FileNotFoundError:
        return False, f"not running: no status file {path}"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"cannot read the status file {path}: {exc}"
    age = time.time() - written
    if age > STALE_AFTER:
        return False, f"not responding: status file {path} last written {age:.1f}s ago"
    if not _alive(pid):
        return False, f"not running: process {pid} is gone"
    if not status.get("connected"):
        return False, f"not connected (pid {pid}): {status.get('why_not_ready', '')}".rstrip(": ")
    why = status.get("why_not_ready") or "ready"
    return True, f"connected (pid {pid}): {why}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:  # another user's (systemd's DynamicUser): it exists
        return True
    except OSError:
        return False
    return True
