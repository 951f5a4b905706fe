"""The metrics endpoint of a running daemon: /metrics, /healthz and /readyz over real HTTP."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mqtt_collector._config.load import Config
from tests.helpers.daemon import (
    WAIT,
    free_port,
    make_config,
    records,
    run_daemon,
    wait_until,
)
from tests.helpers.mosquitto import Mosquitto, MosquittoFactory
from tests.helpers.mqtt_client import connected_client

pytestmark = pytest.mark.broker


def _get(port: int, path: str) -> tuple[int, str]:
    """GET ``path`` from the daemon's endpoint; return the status and the body."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=WAIT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


async def _fetch(port: int, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(_get, port, path)


def _config(broker_port: int, prefix: str, directory: Path) -> tuple[Config, int]:
    port = free_port()
    config = make_config(
        directory,
        port=broker_port,
        prefix=prefix,
        broker={"reconnect": {"initial_delay": 0.1, "max_delay": 0.2}},
        metrics={"listen": f"127.0.0.1:{port}"},
    )
    return config, port


def _sample(text: str, name: str) -> float:
    """The value of the sample line ``name`` (with its labels) in a /metrics body."""
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} in:\n{text}")


async def test_metrics_count_received_acked_and_deliveries(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """After three messages /metrics shows them received, acked and delivered ok."""
    config, port = _config(mosquitto.port, topic_prefix, tmp_path)
    async with run_daemon(config) as daemon:
        with connected_client(mosquitto.port) as publisher:
            for index in range(3):
                publisher.publish_json(f"{topic_prefix}/m", index)
        await wait_until(lambda: len(records(daemon)) == 3, what="3 messages")
        await wait_until(lambda: daemon.transport.unacked() == 0, what="the acks")
        status, text = await _fetch(port, "/metrics")
    assert status == 200
    assert _sample(text, "mqtt_collector_messages_received_total") == 3
    assert _sample(text, "mqtt_collector_messages_acked_total") == 3
    assert _sample(text, 'mqtt_collector_deliveries_total{collector="rec",outcome="ok"}') == 3
    assert _sample(text, "mqtt_collector_connected") == 1
    assert _sample(text, "mqtt_collector_connections_total") == 1


async def test_metrics_ready_only_when_connected(
    make_mosquitto: MosquittoFactory, topic_prefix: str, tmp_path: Path
) -> None:
    """/healthz is 200 throughout; /readyz is 503 until connected, then 200."""
    broker = make_mosquitto(start=False)
    config, port = _config(broker.port, topic_prefix, tmp_path)
    async with run_daemon(config, ready=False) as daemon:
        assert await _fetch(port, "/healthz") == (200, "ok\n")
        assert await _fetch(port, "/readyz") == (503, "not connected\n")
        status, text = await _fetch(port, "/metrics")
        assert (status, _sample(text, "mqtt_collector_connected")) == (200, 0)
        await asyncio.to_thread(broker.start)
        await wait_until(lambda: daemon.ready, what="the daemon to connect")
        assert await _fetch(port, "/readyz") == (200, "ready\n")
        assert await _fetch(port, "/healthz") == (200, "ok\n")


async def test_metrics_endpoint_closes_when_the_daemon_stops(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """Once the daemon has stopped, its port is closed (free to bind again)."""
    config, port = _config(mosquitto.port, topic_prefix, tmp_path)
    async with run_daemon(config):
        assert (await _fetch(port, "/healthz"))[0] == 200
    with pytest.raises(urllib.error.URLError):
        await _fetch(port, "/healthz")
