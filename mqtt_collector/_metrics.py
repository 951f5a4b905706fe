"""Prometheus metrics, and the small HTTP server for /metrics, /healthz and /readyz."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, make_wsgi_app

__all__ = ["Metrics", "MetricsServer"]


class Metrics:
    """The daemon's counters and gauges, in a registry of its own."""

    def __init__(self) -> None:
        """Create every metric in a fresh registry."""
        self._outcome_children: dict[tuple[str, str], Any] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "mqtt_collector_messages_received", "Messages received from the broker.", registry=r
        )
        self.rejected = Counter(
            "mqtt_collector_messages_rejected",
            "Messages not sent to collectors, by reason (decode, too_large, unrouted).",
            ["reason"],
            registry=r,
        )
        self.outcomes = Counter(
            "mqtt_collector_deliveries",
            "Deliveries to collectors by outcome (ok, error, retry, dead_letter).",
            ["collector", "outcome"],
            registry=r,
        )
        self.acked = Counter(
            "mqtt_collector_messages_acked", "QoS 1/2 messages acknowledged.", registry=r
        )
        self.connections = Counter(
            "mqtt_collector_connections", "Successful connections to the broker.", registry=r
        )
        self.connected = Gauge(
            "mqtt_collector_connected", "1 while connected to the broker.", registry=r
        )
        self.queued = Gauge(
            "mqtt_collector_queue_size", "Payloads waiting in the collector queue.", registry=r
        )
        self.consumers = Gauge("mqtt_collector_consumers", "Consumer tasks running.", registry=r)
        self.unacked = Gauge(
            "mqtt_collector_unacked", "QoS 1/2 messages received and not yet acked.", registry=r
        )

    def outcome(self, collector: str, outcome: str) -> None:
        """Count one delivery outcome (called for every delivery: the child is cached)."""
        child = self._outcome_children.get((collector, outcome))
        if child is None:
            child = self._outcome_children[collector, outcome] = self.outcomes.labels(
                collector, outcome
            )
        child.inc()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Do not print a line per scrape."""


class MetricsServer:
    """Serves /metrics (Prometheus), /healthz (process up) and /readyz (connected) in a thread."""

    def __init__(
        self, metrics: Metrics, host: str, port: int, *, ready: Callable[[], bool]
    ) -> None:
        """Bind ``host:port`` now (so a taken port fails at start); serve after ``start()``."""
        prometheus = make_wsgi_app(metrics.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/healthz":
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ok\n"]
            if path == "/readyz":
                if ready():
                    start_response("200 OK", [("Content-Type", "text/plain")])
                    return [b"ready\n"]
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [b"not connected\n"]
            return prometheus(environ, start_response)  # type: ignore[no-any-return]

        self._server: WSGIServer = make_server(host, port, app, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
