"""Logging set-up for the daemon: structlog for our lines, the stdlib's routed through it.

Only the CLI calls ``configure_logging``; the library itself never configures logging.

Repeated lines are sampled (:class:`LogSampler`), so that a flood of bad messages does not
become a flood of log lines: of the warnings (and errors) of one kind, the first ``burst`` in
each ``interval`` are written, and the rest are counted and summed up in one line when the
interval ends, written by a timer even if nothing else is logged, and by ``flush_sampled()``
at exit. Counters (the metrics) are never sampled.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, TextIO

import structlog

__all__ = ["LogSampler", "configure_logging", "flush_sampled"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR


# Sampling: of the lines of one kind at these levels, the first BURST per INTERVAL seconds.
BURST = 10
INTERVAL = 10.0
_SAMPLED_LEVELS = frozenset({"warning", "error", "critical"})
# Besides the logger and the event, what tells two kinds of line apart (when present).
_KIND_FIELDS = ("kind", "collector")
_LEVEL_NUMBERS = {"warning": logging.WARNING, "error": logging.ERROR}
_LEVEL_NUMBERS["critical"] = logging.CRITICAL

_Key = tuple[str, str, str, str]


@dataclass(slots=True)
class _Window:
    """One kind's current interval: when it ends, lines written and lines suppressed."""

    ends: float
    level: str
    fields: dict[str, str]
    written: int = 0
    suppressed: int = 0


class LogSampler:
    """A structlog processor writing the first ``burst`` lines of a kind per ``interval``.

    A kind is the logger, the event and the ``kind`` and ``collector`` fields, for lines at
    warning level and above (debug and info lines are never sampled). Each kind's interval
    starts at its first line; the lines past ``burst`` are dropped and counted, and when the
    interval ends one summary line says how many (``message refused: 9,990 more like this in
    the last 10 s, suppressed``, with ``suppressed=9990``), at the level of the lines it sums
    up. The summary is written by ``emit`` from a timer thread at the interval's end, so it
    comes even when the flood has stopped and nothing else is logged; ``flush()`` writes the
    pending ones at once (the CLI calls it at exit).
    """

    def __init__(
        self,
        emit: Callable[[str, str, dict[str, Any]], None],
        *,
        burst: int = BURST,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Sample lines; ``emit(logger, level, fields)`` writes a summary line."""
        self._emit = emit
        self.burst = burst
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[_Key, _Window] = {}
        self._timer: threading.Timer | None = None
        self._closed = False

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Pass the line on, or drop it (``structlog.DropEvent``) when over the burst."""
        del logger, method_name
        level = str(event_dict.get("level", ""))
        if level not in _SAMPLED_LEVELS:
            return event_dict
        name, event = str(event_dict.get("logger", "")), str(event_dict.get("event", ""))
        fields = {f: str(event_dict[f]) for f in _KIND_FIELDS if f in event_dict}
        key = (name, event, fields.get("kind", ""), fields.get("collector", ""))
        now = self._clock()
        with self._lock:
            due = self._take_due(now)
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(now + self.interval, level, fields)
            keep = window.written < self.burst
            if keep:
                window.written += 1
            else:
                window.suppressed += 1
                self._arm(window.ends - now)
        self._write(due)
        if not keep:
            raise structlog.DropEvent
        return event_dict

    def flush(self) -> None:
        """Write the summary of every interval with lines suppressed, ended or not."""
        with self._lock:
            due = self._take_due(None)
        self._write(due)

    def close(self) -> None:
        """Stop the timer; write nothing more (the pending counts are dropped)."""
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._windows.clear()

    def _take_due(self, now: float | None) -> list[tuple[_Key, _Window]]:
        """Remove and return the windows ended by ``now`` (all of them when None)."""
        ended = [(k, w) for k, w in self._windows.items() if now is None or w.ends <= now]
        for key, _ in ended:
            del self._windows[key]
        return [(k, w) for k, w in ended if w.suppressed]

    def _arm(self, delay: float) -> None:
        """Start the timer for the earliest summary, unless it runs already (lock held)."""
        if self._timer is not None or self._closed:
            return
        self._timer = threading.Timer(max(0.0, delay), self._tick)
        self._timer.daemon = True
        self._timer.start()

    def _tick(self) -> None:
        with self._lock:
            self._timer = None
            if self._closed:
                return
            now = self._clock()
            due = self._take_due(now)
            pending = [w.ends for w in self._windows.values() if w.suppressed]
            if pending:
                self._arm(min(pending) - now)
        self._write(due)

    def _write(self, due: list[tuple[_Key, _Window]]) -> None:
        for (name, event, _, _), window in due:
            fields: dict[str, Any] = {
                "event": f"{event}: {window.suppressed:,} more like this in the last"
                f" {self.interval:g} s, suppressed",
                "suppressed": window.suppressed,
                "sampled_event": event,
                **window.fields,
            }
            self._emit(name, window.level, fields)


_sampler: LogSampler | None = None


def flush_sampled() -> None:
    """Write the summaries of the lines sampled away so far (at exit: nothing is left unsaid)."""
    if _sampler is not None:
        _sampler.flush()


def configure_logging(
    *,
    level: str = "info",
    fmt: str | None = None,
    stream: TextIO | None = None,
    burst: int = BURST,
    interval: float = INTERVAL,
) -> None:
    """Send every log line to ``stream`` (stderr) as JSON or console text, at ``level``.

    ``fmt`` None picks console output on a TTY and JSON lines otherwise. Tracebacks are logged
    without local variables, which may hold secrets. Warnings and errors of one kind are
    sampled: ``burst`` lines per ``interval`` seconds, then a summary (:class:`LogSampler`).
    """
    global _sampler  # noqa: PLW0603 - one logging set-up per process, as the stdlib's
    stream = sys.stderr if stream is None else stream
    if fmt is None:
        fmt = "console" if stream.isatty() else "json"
    numeric = _LEVELS[level]
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    # Tracebacks never show local variables: a frame's locals hold DSNs, passwords and tokens
    # (structlog's dict_tracebacks, and its console default when rich is installed, show them).
    if fmt == "json":
        transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        shared.append(structlog.processors.ExceptionRenderer(transformer))
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    handler = logging.StreamHandler(stream)
    if _sampler is not None:
        _sampler.close()
    _sampler = LogSampler(_summary_writer(handler), burst=burst, interval=interval)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            _sampler,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_mqtt_collector", False):
            root.removeHandler(old)
    handler._mqtt_collector = True  # type: ignore[attr-defined]  # noqa: SLF001 - our marker
    root.addHandler(handler)
    root.setLevel(numeric)
    # paho logs every packet at debug through aiomqtt's "mqtt" logger: keep it one notch up.
    logging.getLogger("mqtt").setLevel(max(numeric, logging.INFO))
    # httpx (the http collector) logs every request at info with its full URL, whose query may
    # hold a key, and httpcore every step at debug: warnings and up only.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


def _summary_writer(handler: logging.Handler) -> Callable[[str, str, dict[str, Any]], None]:
    """Write a sampler's summary straight to ``handler``, as a stdlib record with extras."""

    def write(name: str, level: str, fields: dict[str, Any]) -> None:
        extra = {k: v for k, v in fields.items() if k != "event"}
        record = logging.getLogger(name).makeRecord(
            name, _LEVEL_NUMBERS[level], "", 0, fields["event"], (), None, extra=extra
        )
        handler.handle(record)

    return write
