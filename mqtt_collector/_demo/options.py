"""The demo's command-line options, checked."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DemoOptions", "parse_broker", "parse_duration"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    """``mqtt-collector demo [--broker HOST:PORT] [--protocol V] [--duration S] [--out DIR]``."""

    broker: tuple[str, int] | None  # None: the embedded broker
    protocol: str | None  # None: 3.1.1 on the embedded broker, 5 on another
    duration: float
    out: Path

    def __post_init__(self) -> None:
        """Refuse MQTT 5 on the embedded broker, which speaks 3.1.1 only."""
        if self.broker is None and self.protocol == "5":
            raise ValueError(
                "--protocol 5: the embedded broker (amqtt) speaks MQTT 3.1.1 only;"
                " give --broker HOST:PORT for a broker that speaks 5"
            )


def parse_broker(text: str) -> tuple[str, int]:
    """Return ``(host, port)`` from ``HOST:PORT`` (``[::1]:1883`` for IPv6); ValueError if bad."""
    host, colon, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:  # noqa: PLR2004
        raise ValueError(f"--broker: expected HOST:PORT, e.g. 127.0.0.1:1883, got {text!r}")
    return host, int(port_text)


def parse_duration(text: str) -> float:
    """Return the seconds in ``text``, a positive number; ValueError if it is not one."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"--duration: expected a positive number of seconds, got {text!r}")
    return seconds
