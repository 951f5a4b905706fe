"""The metrics HTTP server on its own: idle and slow clients never block /healthz or /metrics."""

from __future__ import annotations

import gc
import socket
import threading
import time
import urllib.request
from typing import TYPE_CHECKING

import pytest

from mqtt_collector._daemon import metrics as _metrics
from mqtt_collector._daemon.metrics import Metrics, MetricsServer

if TYPE_CHECKING:
    from collections.abc import Iterator

# Well under the server's per-connection timeout: an answer this late means something blocked it.
PROMPT = 2.0


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    """A started server on a free loopback port, stopped at the end."""
    served = MetricsServer(Metrics(), "127.0.0.1", 0, ready=lambda: True)
    served.start()
    try:
        yield served
    finally:
        served.stop()


def _get(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=PROMPT) as response:
        return response.status, response.read()


def _idle_clients(port: int) -> list[socket.socket]:
    """One connection that sends nothing, and one that stops in the middle of its headers."""
    idle = socket.create_connection(("127.0.0.1", port), timeout=PROMPT)
    half = socket.create_connection(("127.0.0.1", port), timeout=PROMPT)
    half.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    return [idle, half]


def test_metrics_server_answers_while_clients_sit_idle(server: MetricsServer) -> None:
    """An idle and a half-sent request do not delay /healthz or /metrics."""
    clients = _idle_clients(server.port)
    try:
        started = time.monotonic()
        assert _get(server.port, "/healthz") == (200, b"ok\n")
        status, body = _get(server.port, "/metrics")
        assert (status, b"mqtt_collector_messages_received_total" in body) == (200, True)
        assert time.monotonic() - started < PROMPT
    finally:
        for client in clients:
            client.close()


def test_metrics_server_drops_an_idle_connection_after_its_timeout(
    server: MetricsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that never sends a whole request is closed by the server, freeing its thread."""
    handler = _metrics._QuietHandler  # the timeout is set on the handler class
    assert handler.timeout is not None
    assert 0 < handler.timeout <= 10  # a few seconds by default, never "wait forever"
    monkeypatch.setattr(handler, "timeout", 0.2)  # shorten the wait for the test
    clients = _idle_clients(server.port)
    try:
        for client in clients:
            assert client.recv(1024) == b""  # the server closed it (recv is bounded by PROMPT)
    finally:
        for client in clients:
            client.close()


def test_metrics_server_stops_promptly_with_connections_open() -> None:
    """stop() ends open idle connections instead of waiting for them, and leaks no socket."""
    served = MetricsServer(Metrics(), "127.0.0.1", 0, ready=lambda: True)
    served.start()
    clients = _idle_clients(served.port)
    try:
        # Wait until the server has taken both connections, so stop() has them to end.
        assert _get(served.port, "/healthz") == (200, b"ok\n")
        stopper = threading.Thread(target=served.stop, name="stop-metrics")
        started = time.monotonic()
        stopper.start()
        stopper.join(PROMPT)
        assert not stopper.is_alive(), "stop() is still waiting"
        assert time.monotonic() - started < PROMPT
        for client in clients:
            assert client.recv(1024) == b""
    finally:
        for client in clients:
            client.close()
    gc.collect()  # an unclosed server-side socket would warn here, failing this test
