"""Tests for the ``queue:``, ``logging:`` and ``metrics:`` sections of the configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from mqtt_collector._config.load import ListenAddress
from tests.helpers.config import base, error, load

if TYPE_CHECKING:
    from pathlib import Path


class TestQueue:
    """queue."""

    def test_queue_defaults(self, tmp_path: Path) -> None:
        """fifo, 1..64 consumers, 10000 payloads, priority 1000, 30 s drain."""
        queue = load(tmp_path, base()).queue
        assert (queue.type, queue.min_consumers, queue.max_consumers) == ("fifo", 1, 64)
        assert (queue.maxsize, queue.default_priority, queue.drain_timeout) == (10000, 1000, 30.0)

    def test_queue_type_lists_choices(self, tmp_path: Path) -> None:
        """An unknown type lists fifo, lifo and priority."""
        assert error(tmp_path, base(queue={"type": "random"})) == (
            "queue.type: must be 'fifo', 'lifo' or 'priority', got 'random'"
        )

    def test_queue_min_above_max(self, tmp_path: Path) -> None:
        """min_consumers above max_consumers is an error at queue."""
        assert error(tmp_path, base(queue={"min_consumers": 8, "max_consumers": 4})) == (
            "queue: min_consumers (8) is greater than max_consumers (4)"
        )

    def test_queue_min_equal_max_accepted(self, tmp_path: Path) -> None:
        """min_consumers equal to max_consumers is a fixed pool, not an error."""
        queue = load(tmp_path, base(queue={"min_consumers": 4, "max_consumers": 4})).queue
        assert (queue.min_consumers, queue.max_consumers) == (4, 4)

    @pytest.mark.parametrize("key", ["min_consumers", "max_consumers", "maxsize"])
    def test_queue_counts_at_least_one(self, tmp_path: Path, key: str) -> None:
        """Consumer counts and maxsize must be >= 1."""
        assert error(tmp_path, base(queue={key: 0})) == f"queue.{key}: must be at least 1, got 0"

    def test_queue_drain_timeout_positive(self, tmp_path: Path) -> None:
        """drain_timeout must be greater than 0."""
        assert error(tmp_path, base(queue={"drain_timeout": -1})) == (
            "queue.drain_timeout: must be greater than 0, got -1"
        )

    def test_queue_maxsize_not_fractional(self, tmp_path: Path) -> None:
        """A fractional maxsize is not an integer."""
        assert error(tmp_path, base(queue={"maxsize": 1.5})) == (
            "queue.maxsize: must be an integer, got 1.5"
        )


class TestLogging:
    """logging."""

    def test_logging_defaults(self, tmp_path: Path) -> None:
        """info, format chosen at run time."""
        logging = load(tmp_path, base()).logging
        assert (logging.level, logging.format) == ("info", None)

    def test_logging_level_case_insensitive(self, tmp_path: Path) -> None:
        """WARNING means warning (environment variables are often upper case)."""
        data = base(logging={"level": "WARNING", "format": "Console"})
        logging = load(tmp_path, data).logging
        assert (logging.level, logging.format) == ("warning", "console")

    def test_logging_level_lists_choices(self, tmp_path: Path) -> None:
        """An unknown level lists the allowed ones."""
        assert error(tmp_path, base(logging={"level": "verbose"})) == (
            "logging.level: must be 'debug', 'info', 'warning' or 'error', got 'verbose'"
        )

    def test_logging_format_lists_choices(self, tmp_path: Path) -> None:
        """An unknown format lists json and console."""
        assert error(tmp_path, base(logging={"format": "xml"})) == (
            "logging.format: must be 'json' or 'console', got 'xml'"
        )


class TestMetrics:
    """metrics."""

    def test_metrics_off_by_default(self, tmp_path: Path) -> None:
        """No listen address, no endpoint."""
        assert load(tmp_path, base()).metrics.listen is None

    @pytest.mark.parametrize(
        ("listen", "host", "port"),
        [
            ("127.0.0.1:9108", "127.0.0.1", 9108),
            ("localhost:80", "localhost", 80),
            ("[::1]:9108", "::1", 9108),
            (":9108", "0.0.0.0", 9108),
        ],
    )
    def test_metrics_listen_parsed(self, tmp_path: Path, listen: str, host: str, port: int) -> None:
        """host:port is split into host and port."""
        assert load(tmp_path, base(metrics={"listen": listen})).metrics.listen == ListenAddress(
            host, port
        )

    @pytest.mark.parametrize("listen", ["localhost", "localhost:0", "localhost:70000", "h:x"])
    def test_metrics_listen_bad_port(self, tmp_path: Path, listen: str) -> None:
        """A missing or out-of-range port is an error naming the value."""
        assert error(tmp_path, base(metrics={"listen": listen})) == (
            f"metrics.listen: must be 'host:port' with a port from 1 to 65535, got {listen!r}"
        )

    def test_metrics_listen_bare_ipv6(self, tmp_path: Path) -> None:
        """An IPv6 address must be bracketed."""
        assert error(tmp_path, base(metrics={"listen": "::1:9108"})) == (
            "metrics.listen: bad host in '::1:9108': write an IPv6 address as '[::1]:port'"
        )

    def test_metrics_listen_bad_bracketed_host(self, tmp_path: Path) -> None:
        """Brackets must hold an IPv6 address."""
        assert error(tmp_path, base(metrics={"listen": "[nope]:1"})) == (
            "metrics.listen: 'nope' in '[nope]:1' is not an IPv6 address"
        )

    def test_metrics_listen_prints_back(self, tmp_path: Path) -> None:
        """str() of the address is host:port, IPv6 bracketed."""
        listen = load(tmp_path, base(metrics={"listen": "[::1]:9108"})).metrics.listen
        assert str(listen) == "[::1]:9108"
