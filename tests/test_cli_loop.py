"""The CLI's event loop: uvloop when installed, unless ``MQTT_COLLECTOR_UVLOOP=0``."""

from __future__ import annotations

import sys
import types

import pytest

from mqtt_collector._cli import _loop_factory


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
