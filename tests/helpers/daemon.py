"""Shared helpers of the daemon tests: configs for a test broker, a daemon running in the test.

Every wait here polls a condition with a deadline (``WAIT`` seconds unless told otherwise) and
fails with a message naming what it waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
import yaml

from mqtt_collector._config.load import Config, load_config
from mqtt_collector._core.collector import Context
from mqtt_collector._daemon.daemon import Daemon
from mqtt_collector._logging import configure_logging
from tests.helpers.collectors import Record

__all__ = [
    "HOST",
    "WAIT",
    "LogCapture",
    "capture_logging",
    "collector_ctx",
    "free_port",
    "logging_restored",
    "make_config",
    "recorder_entry",
    "records",
    "run_daemon",
    "wait_until",
    "write_config",
]

HOST = "127.0.0.1"
WAIT = 10.0  # seconds: a bound on every wait, far above what any of them takes
_POLL = 0.01


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def recorder_entry(
    key: str = "rec", topics: Sequence[str] = ("all",), **options: Any
) -> dict[str, Any]:
    """A ``collectors:`` entry for the recording collector of ``tests.helpers.collectors``."""
    entry: dict[str, Any] = {
        "key": key,
        "processor": "tests.helpers.collectors:record",
        "lifecycle": "tests.helpers.collectors:recording_lifecycle",
        "topics": list(topics),
    }
    if options:
        entry["options"] = options
    return entry


def write_config(
    directory: Path,
    *,
    port: int,
    prefix: str,
    subscriptions: Sequence[Mapping[str, Any]] | None = None,
    collectors: Sequence[Mapping[str, Any]] | None = None,
    broker: Mapping[str, Any] | None = None,
    **sections: Any,
) -> Path:
    """Write a config for a test broker on ``port`` to ``directory/config.yaml``; return its path.

    By default it subscribes to ``<prefix>/#`` (Payload topic ``all``) and feeds one recording
    collector ``rec``. ``broker`` keys are added to the defaults (fast reconnects, a
    ``127.0.0.1`` host); other ``sections`` (``queue``, ``metrics``, ``logging``) are written
    as given.
    """
    tree: dict[str, Any] = {
        "broker": {
            "host": HOST,
            "port": port,
            "reconnect": {"initial_delay": 0.1, "max_delay": 0.5},
            **(broker or {}),
        },
        "subscriptions": [
            dict(s) for s in (subscriptions or [{"filter": f"{prefix}/#", "topics": ["all"]}])
        ],
        "collectors": [dict(c) for c in (collectors or [recorder_entry()])],
        **sections,
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def make_config(directory: Path, *, port: int, prefix: str, **keys: Any) -> Config:
    """Write a config as :func:`write_config` does and load it."""
    return load_config(write_config(directory, port=port, prefix=prefix, **keys))


async def wait_until(condition: Callable[[], object], *, what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(_POLL)


@contextlib.asynccontextmanager
async def run_daemon(config: Config, *, ready: bool = True) -> AsyncIterator[Daemon]:
    """Run a Daemon for ``config`` as a task; wait until it is ready; stop it and wait at exit.

    With ``ready`` false it only waits for the start (metrics served, lifecycles entered),
    not for the connection (a broker that is down or that refuses us). A run that fails
    (LifecycleError, ...) is raised here.
    """
    daemon = Daemon(config)
    task = asyncio.create_task(daemon.run(), name="daemon-under-test")
    try:
        if ready:
            await wait_until(lambda: daemon.ready or task.done(), what="the daemon to be ready")
        else:
            # Started: metrics served, lifecycles entered, consumers up; maybe not connected.
            await wait_until(lambda: daemon.queue.running or task.done(), what="the start")
        if task.done():
            task.result()  # raises what ended it
            raise AssertionError("the daemon stopped before it was ready")
        yield daemon
    finally:
        daemon.stop()
        async with asyncio.timeout(WAIT + config.queue.drain_timeout):
            await task


def collector_ctx(daemon: Daemon, key: str = "rec") -> Context:
    """Return the Context of the daemon's collector ``key``."""
    for collector in daemon.queue.collectors:
        if collector.key == key:
            return collector.ctx
    raise AssertionError(f"no collector {key!r} in {daemon.queue.collectors}")


def records(daemon: Daemon, key: str = "rec") -> list[Record]:
    """Return what the recording collector ``key`` has received so far, in order."""
    found: list[Record] = collector_ctx(daemon, key).records
    return found


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    """Put structlog's and the stdlib's logging configuration back as they were at exit."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    mqtt_level = logging.getLogger("mqtt").level
    try:
        yield
    finally:
        structlog.configure(**saved)
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
        logging.getLogger("mqtt").setLevel(mqtt_level)


class LogCapture:
    """Log lines written by :func:`configure_logging` into memory."""

    def __init__(self, stream: io.StringIO) -> None:
        """Read lines from ``stream``."""
        self.stream = stream

    @property
    def text(self) -> str:
        """Everything logged so far."""
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        """Every line logged so far, parsed as JSON."""
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def events(self, event: str) -> list[dict[str, Any]]:
        """The lines whose ``event`` is ``event``."""
        return [line for line in self.lines() if line.get("event") == event]


@contextlib.contextmanager
def capture_logging(level: str = "debug") -> Iterator[LogCapture]:
    """Configure logging as the CLI does, as JSON lines into memory; restore it at exit."""
    stream = io.StringIO()
    with logging_restored():
        configure_logging(level=level, fmt="json", stream=stream)
        yield LogCapture(stream)
