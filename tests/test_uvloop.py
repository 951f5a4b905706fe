"""The daemon on uvloop (the `uvloop` extra), which the CLI picks by itself when it is installed."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import pytest

from tests.helpers.daemon import recorder_entry, write_config
from tests.helpers.daemon_process import REPO, DaemonProcess, wait_for
from tests.helpers.mqtt_client import connected_client

if TYPE_CHECKING:
    from pathlib import Path

    from tests.helpers.mosquitto import Mosquitto

pytest.importorskip("uvloop", reason="the uvloop extra is not installed (it is in dev)")
pytestmark = pytest.mark.broker


def test_cli_on_uvloop_processes_and_acks_then_stops_cleanly(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """`mqtt-collector run` on uvloop: connected, subscribed, every message recorded, exit 0."""
    out = tmp_path / "records.jsonl"
    path = write_config(
        tmp_path,
        port=mosquitto.port,
        prefix=topic_prefix,
        broker={"client_id": f"uvloop-{topic_prefix.rsplit('/', 1)[-1]}"},
        collectors=[recorder_entry(path=str(out))],
        logging={"format": "json"},
    )
    env = {k: v for k, v in os.environ.items() if k != "MQTT_COLLECTOR_UVLOOP"}
    daemon = DaemonProcess(tmp_path, path, env={**env, "PYTHONPATH": str(REPO)})
    with daemon:
        with connected_client(mosquitto.port) as client:
            for number in range(20):
                client.publish(f"{topic_prefix}/n", json.dumps(number))

        def recorded() -> list[object]:
            text = out.read_text(encoding="utf-8") if out.exists() else ""
            return [json.loads(line) for line in text.splitlines()]

        wait_for(lambda: len(recorded()) >= 20, what="20 messages recorded")
        assert daemon.terminate() == 0, daemon.tail()
    [started] = daemon.logs("started")
    assert started["loop"] == "uvloop"
    assert daemon.logs("fatal") == []
