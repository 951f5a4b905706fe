"""configure_logging: JSON lines or console text, level filtering, the stdlib's lines too."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from mqtt_collector._logging import configure_logging
from tests.helpers.daemon import logging_restored


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


_SECRET = "hunter2-in-a-local"


def _fail_with_a_secret_local() -> None:
    """Raise while a local variable holds a secret, as a teardown holding a DSN would."""
    dsn = f"postgresql://app:{_SECRET}@db/readings"
    raise RuntimeError("cannot close the connection " + str(len(dsn)))


def _log_failures() -> None:
    """Log one exception through structlog and one through a stdlib logger."""
    for logger in (structlog.get_logger("x"), logging.getLogger("stdlib")):
        try:
            _fail_with_a_secret_local()
        except RuntimeError:
            logger.exception("failed")


def test_logging_json_tracebacks_carry_no_locals() -> None:
    """A JSON traceback names the frames but never prints their local variables."""
    stream = io.StringIO()
    configure_logging(level="info", fmt="json", stream=stream)
    _log_failures()
    lines = [json.loads(text) for text in _lines(stream)]
    assert len(lines) == 2
    for line in lines:
        frames = line["exception"][0]["frames"]
        assert frames[-1]["name"] == "_fail_with_a_secret_local"
        assert all(not frame.get("locals") for frame in frames)
    assert _SECRET not in stream.getvalue()


def test_logging_console_tracebacks_carry_no_locals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Console tracebacks never print locals, even where structlog's default would (rich)."""

    def show_locals(sio: io.StringIO, exc_info: Any) -> None:
        # What rich's and better-exceptions' formatters do by default when they are installed.
        tb = exc_info[2]
        while tb is not None:
            sio.write(f"\n{tb.tb_frame.f_code.co_name}: {tb.tb_frame.f_locals!r}")
            tb = tb.tb_next

    init = structlog.dev.ConsoleRenderer.__init__
    default = structlog.dev.default_exception_formatter
    assert init.__defaults__ is not None
    defaults = tuple(show_locals if d is default else d for d in init.__defaults__)
    monkeypatch.setattr(init, "__defaults__", defaults)
    monkeypatch.setattr(structlog.dev, "default_exception_formatter", show_locals)
    monkeypatch.setattr(structlog.dev, "default_monochrome_exception_formatter", show_locals)
    assert structlog.dev.ConsoleRenderer(colors=False).exception_formatter is show_locals
    stream = io.StringIO()
    configure_logging(level="info", fmt="console", stream=stream)
    _log_failures()
    text = stream.getvalue()
    assert _SECRET not in text
    assert text.count(", in _fail_with_a_secret_local") == 2
