"""Where collector modules come from: never the working directory, last the config's directory.

The CLI runs as an operator runs it, the ``mqtt-collector`` command in a subprocess, with its
working directory full of modules named like the standard library's and installed packages'.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import WAIT, write_config
from tests.helpers.daemon_process import DaemonProcess, wait_for
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.mqtt_client import connected_client

COMMAND = str(Path(sys.executable).parent / "mqtt-collector")
# Names of modules the daemon imports after reading its config: the standard library's
# (sqlite3 for the sqlite collector, json everywhere) and an optional package (uvloop).
SHADOWS = ("sqlite3", "uvloop", "json")

_SHADOW_SOURCE = """\
with open(__file__ + ".ran", "w") as marker:
    marker.write("imported from the working directory")
"""
_COLLECTOR_SOURCE = """\
from mqtt_collector import Ok

async def write(payload, ctx):
    with open(ctx.options["path"], "a") as out:
        out.write(payload.value.topic + "\\n")
    return Ok(None)
"""


def _layout(tmp_path: Path) -> tuple[Path, Path, str]:
    """A working directory of shadowing modules, and a config directory; the collector's module."""
    cwd = tmp_path / "state"
    cwd.mkdir()
    for name in SHADOWS:
        (cwd / f"{name}.py").write_text(_SHADOW_SOURCE, encoding="utf-8")
    conf = tmp_path / "conf"
    conf.mkdir()
    module = f"beside_{uuid.uuid4().hex}"
    (conf / f"{module}.py").write_text(_COLLECTOR_SOURCE, encoding="utf-8")
    return cwd, conf, module


def _collectors(module: str, out: Path, db: Path) -> list[dict[str, Any]]:
    return [
        {
            "key": "beside",
            "processor": f"{module}:write",
            "topics": ["all"],
            "options": {"path": str(out)},
        },
        {
            "key": "store",
            "processor": "mqtt_collector.collectors.sqlite:write",
            "lifecycle": "mqtt_collector.collectors.sqlite:open_database",
            "topics": ["all"],
            "options": {"path": str(db)},
        },
    ]


def _env() -> dict[str, str]:
    """The test's environment without PYTHONPATH: only what an installed daemon would see."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def _ran(cwd: Path) -> list[str]:
    """The shadowing modules that were imported (each leaves a marker file)."""
    return sorted(name for name in SHADOWS if (cwd / f"{name}.py.ran").exists())


def test_check_never_runs_modules_from_the_working_directory(tmp_path: Path) -> None:
    """``check`` imports the config's collectors, not the sqlite3/uvloop/json.py beside it."""
    cwd, conf, module = _layout(tmp_path)
    config = write_config(
        conf,
        port=1,
        prefix="t",
        collectors=_collectors(module, tmp_path / "out.txt", tmp_path / "db.sqlite"),
    )
    done = subprocess.run(
        [COMMAND, "check", "--config", str(config)],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert _ran(cwd) == []
    assert (done.returncode, done.stderr) == (0, ""), done.stdout
    rows = [line.split() for line in done.stdout.splitlines()]
    assert any(row[:1] == ["beside"] and f"{module}:write" in row for row in rows), done.stdout


@pytest.mark.broker
def test_run_never_runs_modules_from_the_working_directory(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """``run`` finds the collector beside its config and never imports the cwd's modules."""
    cwd, conf, module = _layout(tmp_path)
    out = tmp_path / "out.txt"
    config = write_config(
        conf,
        port=mosquitto.port,
        prefix=topic_prefix,
        collectors=_collectors(module, out, tmp_path / "db.sqlite"),
        logging={"format": "json"},
    )
    daemon = DaemonProcess(tmp_path, config, command=[COMMAND], cwd=cwd, env=_env())
    daemon.start(wait_subscribed=False)
    try:
        wait_for(
            lambda: daemon.logs("subscribed") or daemon.returncode is not None, what="subscribed"
        )
        assert _ran(cwd) == []
        assert daemon.returncode is None, daemon.text()
        with connected_client(mosquitto.port) as publisher:
            publisher.publish_json(f"{topic_prefix}/x", {"t": 1})
        wait_for(out.exists, what="the collector beside the config to write")
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
    assert out.read_text(encoding="utf-8") == f"{topic_prefix}/x\n"
    assert _ran(cwd) == []
