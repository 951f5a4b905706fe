"""A collector that writes one structured log line per message: for tracing and debugging.

Use it as ``processor: mqtt_collector.collectors.log:log``. It needs no lifecycle: its options
(:class:`Options`) are checked when the configuration is loaded. Naming
``lifecycle: mqtt_collector.collectors.log:check_options`` as well is optional; it checks the
options at start-up where the collector is built by hand (the queue used as a library) rather
than from a configuration file, instead of failing every message.

Each line is logged through ``structlog.get_logger("mqtt_collector.collectors.log")`` with the event
``"mqtt message"`` and the fields ``collector``, ``topic``, ``qos``, ``retain``, ``captures``,
``size`` (bytes of the raw body) and, unless turned off, ``data``.

Options:
    level: the log level of the line: debug, info, warning or error. Default ``info``.
    include_data: whether to log the decoded body as ``data``. Default ``true``.
    max_data_chars: the longest ``data`` logged, an integer >= 1 or null for no limit. A longer
        body is cut to this many characters (bytes for a ``bytes`` body; for a JSON body, the
        first characters of the raw text) and the line gets ``truncated=true``. Default ``1000``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import structlog

from mqtt_collector import Context, Message, Ok, Payload, Result
from mqtt_collector.collectors import (
    _Boolean,
    _choice,
    _integer_or_null,
    _Options,
    _read_options,
)

__all__ = ["Options", "check_options", "log"]

_LOGGER = structlog.get_logger("mqtt_collector.collectors.log")


class Options(_Options):
    """The log collector's options, as described in the module docstring."""

    level: Annotated[str, _choice("debug", "info", "warning", "error")] = "info"
    include_data: _Boolean = True
    max_data_chars: Annotated[int | None, _integer_or_null(1)] = 1000


def _shown_data(message: Message, limit: int | None) -> tuple[Any, bool]:
    """Return the data to log and whether it was cut, without serialising a body that fits."""
    data = message.data
    if isinstance(data, str | bytes):
        if limit is None or len(data) <= limit:
            return data, False
        return data[:limit], True
    # A decoded JSON value is logged as is (structured) when its raw text fits; measuring the raw
    # body avoids re-serialising every message just to learn its length.
    if limit is None or len(message.raw) <= limit:
        return data, False
    return message.raw[:limit].decode("utf-8", errors="replace"), True


async def log(payload: Payload[Message], ctx: Context) -> Result:
    """Log one line describing the message in ``payload.value``; always ``Ok(None)``."""
    settings = _read_options(ctx, Options)
    message = payload.value
    fields: dict[str, Any] = {
        "collector": str(getattr(ctx, "key", "<unnamed>")),
        "topic": message.topic,
        "qos": message.qos,
        "retain": message.retain,
        "captures": list(message.captures),
        "size": len(message.raw),
    }
    if settings.include_data:
        fields["data"], truncated = _shown_data(message, settings.max_data_chars)
        if truncated:
            fields["truncated"] = True
    getattr(_LOGGER, settings.level)("mqtt message", **fields)
    return Ok(None)


@contextlib.asynccontextmanager
async def check_options(ctx: Context) -> AsyncIterator[None]:
    """Check the options at start-up (optional lifecycle), so a typo stops the queue early."""
    _read_options(ctx, Options)
    yield
