"""configure_logging: JSON lines or console text, level filtering, the stdlib's lines too."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from mqtt_collector._logging import configure_logging
from tests.daemon_helpers import logging_restored


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put the logging configuration back after each test, for the tests that follow."""
    with logging_restored():
        yield


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_logging_json_lines_carry_level_event_timestamp() -> None:
    """Each JSON line parses, with level, event, timestamp, logger and the given keys."""
    stream = io.StringIO()
    configure_logging(level="info", fmt="json", stream=stream)
    structlog.get_logger("mqtt_collector.daemon").info("connected", host="h", port=1)
    [line] = [json.loads(text) for text in _lines(stream)]
    assert line["event"] == "connected"
    assert line["level"] == "info"
    assert line["logger"] == "mqtt_collector.daemon"
    assert (line["host"], line["port"]) == ("h", 1)
    assert line["timestamp"].endswith("Z")


def test_logging_console_is_readable_text() -> None:
    """Console format writes the event and its keys as plain text, not JSON."""
    stream = io.StringIO()
    configure_logging(level="info", fmt="console", stream=stream)
    structlog.get_logger("mqtt_collector.daemon").warning("connection lost", error="EOF")
    [line] = _lines(stream)
    assert "connection lost" in line
    assert "error=EOF" in line
    assert "warning" in line
    assert "\x1b[" not in line  # no colours when the stream is not a terminal
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_logging_defaults_to_json_when_not_a_tty() -> None:
    """Without a format, a stream that is not a terminal gets JSON lines."""
    stream = io.StringIO()
    configure_logging(level="info", stream=stream)
    structlog.get_logger("x").info("hello")
    assert json.loads(stream.getvalue())["event"] == "hello"


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("debug", ["d", "i", "w", "e"]),
        ("info", ["i", "w", "e"]),
        ("warning", ["w", "e"]),
        ("error", ["e"]),
    ],
)
def test_logging_filters_by_level(level: str, expected: list[str]) -> None:
    """Only lines at or above the configured level are written."""
    stream = io.StringIO()
    configure_logging(level=level, fmt="json", stream=stream)
    log = structlog.get_logger("mqtt_collector.daemon")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [json.loads(text)["event"] for text in _lines(stream)] == expected


def test_logging_renders_stdlib_loggers() -> None:
    """The library's stdlib logger (mqtt_collector.queue) comes out as JSON, args formatted."""
    stream = io.StringIO()
    configure_logging(level="info", fmt="json", stream=stream)
    logging.getLogger("mqtt_collector.queue").warning("drain timed out after %ss", 30)
    [line] = [json.loads(text) for text in _lines(stream)]
    assert line["event"] == "drain timed out after 30s"
    assert line["level"] == "warning"
    assert line["logger"] == "mqtt_collector.queue"
    assert "timestamp" in line


def test_logging_keeps_paho_packet_lines_out_at_debug() -> None:
    """At debug, paho's per-packet debug lines (logger "mqtt") are still left out."""
    stream = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=stream)
    logging.getLogger("mqtt").debug("Received PUBLISH")
    logging.getLogger("mqtt").info("kept")
    assert [json.loads(text)["event"] for text in _lines(stream)] == ["kept"]


def test_logging_configured_twice_writes_once() -> None:
    """Configuring again replaces our handler: each line is written once."""
    first, second = io.StringIO(), io.StringIO()
    configure_logging(level="info", fmt="json", stream=first)
    configure_logging(level="info", fmt="json", stream=second)
    structlog.get_logger("x").info("once")
    assert first.getvalue() == ""
    assert len(_lines(second)) == 1


def test_logging_renders_exceptions_in_json() -> None:
    """An exception logged with exc_info becomes a structured field, still one JSON line."""
    stream = io.StringIO()
    configure_logging(level="info", fmt="json", stream=stream)
    try:
        int("boom")
    except ValueError:
        structlog.get_logger("x").exception("failed")
    [line] = [json.loads(text) for text in _lines(stream)]
    assert line["event"] == "failed"
    assert "boom" in json.dumps(line["exception"])
