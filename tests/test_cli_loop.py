"""The CLI's event loop: uvloop unless ``MQTT_COLLECTOR_UVLOOP=0``; start-up objects frozen."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest

from mqtt_collector._cli import _loop_factory, _serve


def _fake_uvloop() -> types.ModuleType:
    module = types.ModuleType("uvloop")
    module.new_event_loop = lambda: None  # type: ignore[attr-defined]
    return module


def test_uvloop_is_used_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """With uvloop importable and no switch, the CLI runs on uvloop."""
    fake = _fake_uvloop()
    monkeypatch.setitem(sys.modules, "uvloop", fake)
    monkeypatch.delenv("MQTT_COLLECTOR_UVLOOP", raising=False)
    assert _loop_factory() is fake.new_event_loop


@pytest.mark.parametrize("value", ["0", " 0 "])
def test_uvloop_0_keeps_asyncio_loop(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """MQTT_COLLECTOR_UVLOOP=0 keeps asyncio's own loop although uvloop is importable."""
    monkeypatch.setitem(sys.modules, "uvloop", _fake_uvloop())
    monkeypatch.setenv("MQTT_COLLECTOR_UVLOOP", value)
    assert _loop_factory() is None


def test_no_uvloop_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without uvloop, asyncio's own loop."""
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` raise ImportError
    monkeypatch.delenv("MQTT_COLLECTOR_UVLOOP", raising=False)
    assert _loop_factory() is None


async def test_start_up_objects_are_frozen_before_the_daemon_runs() -> None:
    """The CLI moves what start-up made out of the collector's sight before serving."""
    seen: list[int] = []

    class Daemon:
        async def run(self) -> None:
            seen.append(gc.get_freeze_count())

        def stop(self) -> None: ...

        def reload(self) -> None: ...

    gc.unfreeze()
    try:
        await _serve(Daemon())  # type: ignore[arg-type]
    finally:
        gc.unfreeze()
    assert seen
    assert seen[0] > 0


async def test_a_stop_signal_before_the_loop_stops_the_daemon_once_it_runs() -> None:
    """A SIGTERM that came during start-up (kept by the CLI) stops the daemon as it starts."""
    calls: list[str] = []

    class Daemon:
        async def run(self) -> None:
            calls.append("run")

        def stop(self) -> None:
            calls.append("stop")

        def reload(self) -> None: ...

    gc.unfreeze()
    try:
        await _serve(Daemon(), [signal.SIGTERM])  # type: ignore[arg-type]
        await _serve(Daemon())  # type: ignore[arg-type]
    finally:
        gc.unfreeze()
    assert calls == ["stop", "run", "run"]


def test_a_sigterm_during_start_up_exits_0(tmp_path: Path) -> None:
    """SIGTERM sent before the event loop has taken the signals over: a clean stop, exit 0."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "broker: {host: 127.0.0.1, port: 1, client_id: early}\n"
        "subscriptions: [{filter: a, topics: [a]}]\n"
        "collectors: [{key: log, processor: 'mqtt_collector.collectors.log:log', topics: [a]}]\n"
        "logging: {format: json}\n"
    )
    # The process signals itself once the CLI has logged its first line, before the loop runs.
    script = (
        "import os, signal, sys, structlog\n"
        "from mqtt_collector import _cli\n"
        "real = _cli.Daemon\n"
        "def early(config):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(config)\n"
        "_cli.Daemon = early\n"
        f"sys.exit(_cli.main(['run', '--config', {str(config)!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
