"""The fault tests' configs for a daemon run as a subprocess, and reading what it recorded."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.helpers.daemon import free_port

if TYPE_CHECKING:
    from tests.helpers.mosquitto import Mosquitto

__all__ = [
    "daemon_config",
    "free_port",
    "metric",
    "numbers",
    "read_records",
]

COLLECTORS = "tests.helpers.collectors"


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
    client: str = "aiomqtt",
) -> dict[str, Any]:
    """Return a daemon config (as a dict for YAML) talking to ``broker``, JSON logs at info.

    ``client`` is the MQTT client library (``broker.client``).
    """
    config: dict[str, Any] = {
        "broker": {
            "client": client,
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
