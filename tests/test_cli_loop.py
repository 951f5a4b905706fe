"""The CLI's event loop: uvloop unless ``MQTT_COLLECTOR_UVLOOP=0``; start-up objects frozen."""

from __future__ import annotations

import gc
import sys
import types

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
