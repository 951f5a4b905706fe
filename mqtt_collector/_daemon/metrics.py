"""Prometheus metrics, and the small HTTP server for /metrics, /healthz and /readyz."""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, make_wsgi_app
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ["HotCounter", "Metrics", "MetricsServer"]


class _Count:
    """One series of a HotCounter: a plain number, added to on the event loop's thread only."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        """Add ``amount``."""
        self.value += amount


class HotCounter(Collector):
    """A Prometheus counter for the per-message path: counts in plain numbers, read on scrape.

    prometheus_client's Counter takes a lock on every ``inc()``; these counters are only ever
    added to on the event loop's thread, so a plain ``+=`` is enough, and the scrape (in the
    metrics server's thread) reads the numbers, which the GIL keeps whole.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        *,
        registry: CollectorRegistry,
    ) -> None:
        """Register the counter ``name`` (exposed as ``name_total``) in ``registry``."""
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], _Count] = {}
        self._unlabelled = _Count()
        if not self._labelnames:
            self._series[()] = self._unlabelled
        registry.register(self)

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` to the counter (one without labels)."""
        self._unlabelled.value += amount

    def labels(self, *values: str) -> _Count:
        """Return the series for ``values`` (created at 0 the first time)."""
        series = self._series.get(values)
        if series is None:
            if len(values) != len(self._labelnames):
                raise ValueError(f"{self._name}: expected labels {self._labelnames}, got {values}")
            series = self._series[values] = _Count()
        return series

    def describe(self) -> Iterable[CounterMetricFamily]:
        """The family, without reading the numbers (for the registry's name check)."""
        return [CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)]

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The family with every series' number, as a scrape reads it."""
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for values, series in list(self._series.items()):
            family.add_metric(list(values), series.value)
        yield family


class Metrics:
    """The daemon's counters and gauges, in a registry of its own."""

    def __init__(self) -> None:
        """Create every metric in a fresh registry."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = HotCounter(
            "mqtt_collector_messages_received", "Messages received from the broker.", registry=r
        )
        self.rejected = HotCounter(
            "mqtt_collector_messages_rejected",
            "Messages not sent to collectors, by reason (decode, too_large, unrouted, malformed).",
            ["reason"],
            registry=r,
        )
        self.outcomes = HotCounter(
            "mqtt_collector_deliveries",
            "Deliveries to collectors by outcome"
            " (ok, error, retry, dead_letter, dead_letter_failed).",
            ["collector", "outcome"],
            registry=r,
        )
        self.acked = HotCounter(
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
        self.subscription_refusals = Counter(
            "mqtt_collector_subscription_refusals",
            "Topic filters the broker refused in a SUBACK, by filter (each try counts).",
            ["filter"],
            registry=r,
        )
        self.subscriptions_refused = Gauge(
            "mqtt_collector_subscriptions_refused",
            "Topic filters refused on the current connection (asked for again with backoff).",
            registry=r,
        )

    def outcome(self, collector: str, outcome: str) -> None:
        """Count one delivery outcome (called for every delivery)."""
        self.outcomes.labels(collector, outcome).value += 1


# Seconds a connection may wait for each read or write: an idle or slow client (or a port
# scanner) gives up its thread after this, and never delays anyone else's request.
CONNECTION_TIMEOUT = 5.0

logger = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    timeout = CONNECTION_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Do not print a line per scrape."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """A WSGI server answering each connection in a thread of its own.

    ``stop_connections()`` ends the connections still open, so that ``server_close()`` (which
    joins their threads) returns at once instead of after a client's timeout.
    """

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Bind like WSGIServer; keep track of the connections being served."""
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve ``request`` in a new thread."""
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Close ``request``'s connection; it is no longer ours to end."""
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def stop_connections(self) -> None:
        """Shut down every open connection: a thread blocked reading one returns at once."""
        with self._open_lock:
            # Under the lock, none of these has been closed yet (shutdown_request takes it first).
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:  # noqa: ARG002 - stdlib signature
        """Log a failed connection: one that timed out or went away at debug level only."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            logger.debug("metrics: connection from %s ended: %r", client_address, error)
        else:
            logger.error("metrics: request from %s failed", client_address, exc_info=error)


class MetricsServer:
    """Serves /metrics (Prometheus), /healthz (loop turning) and /readyz (connected) in threads.

    Each connection has a thread of its own and :data:`CONNECTION_TIMEOUT` seconds per read or
    write, so an idle or slow client never holds up a scrape or a health check.
    """

    def __init__(
        self,
        metrics: Metrics,
        host: str,
        port: int,
        *,
        ready: Callable[[], bool],
        why_not_ready: Callable[[], str] = lambda: "not connected",
        why_not_live: Callable[[], str] = lambda: "",
    ) -> None:
        """Bind ``host:port`` now (so a taken port fails at start); serve after ``start()``.

        /readyz answers 200 while ``ready()``, else 503 with ``why_not_ready()`` as the body;
        /healthz 200 while ``why_not_live()`` is empty (the event loop turns), else 503 with it.
        """
        prometheus = make_wsgi_app(metrics.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/healthz":
                if not (why := why_not_live()):
                    start_response("200 OK", [("Content-Type", "text/plain")])
                    return [b"ok\n"]
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [f"{why}\n".encode()]
            if path == "/readyz":
                if ready():
                    start_response("200 OK", [("Content-Type", "text/plain")])
                    return [b"ready\n"]
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [f"{why_not_ready()}\n".encode()]
            return prometheus(environ, start_response)  # type: ignore[no-any-return]

        self._server = make_server(
            host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, end the connections still open, and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.stop_connections()
        self._server.server_close()
