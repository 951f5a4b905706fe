"""Logging set-up for the daemon: structlog for our lines, the stdlib's routed through it.

Only the CLI calls ``configure_logging``; the library itself never configures logging.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

__all__ = ["configure_logging"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR


def configure_logging(
    *, level: str = "info", fmt: str | None = None, stream: TextIO | None = None
) -> None:
    """Send every log line to ``stream`` (stderr) as JSON or console text, at ``level``.

    ``fmt`` None picks console output on a TTY and JSON lines otherwise. Tracebacks are logged
    without local variables, which may hold secrets.
    """
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
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
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
