"""The ``queue:``, ``logging:``, ``metrics:`` and ``health:`` sections of the configuration."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

from pydantic import BeforeValidator, Field, PlainSerializer, PlainValidator, model_validator

from mqtt_collector._config.base import ConfigModel, show

__all__ = ["HealthConfig", "ListenAddress", "LoggingConfig", "MetricsConfig", "QueueConfig"]

_MAX_PORT = 65535


class QueueConfig(ConfigModel):
    """``queue:``: the collector queue between the MQTT client and the collectors.

    Attributes:
        type: the order payloads are taken in: ``fifo``, ``lifo`` or ``priority``.
        min_consumers: consumers kept even when idle.
        max_consumers: the most consumers run at once.
        maxsize: the most payloads queued; beyond it the MQTT client waits (back-pressure).
        default_priority: the priority of payloads whose subscription sets none.
        drain_timeout: seconds to finish queued work on shutdown.
    """

    type: Literal["fifo", "lifo", "priority"] = "fifo"
    min_consumers: int = Field(default=1, ge=1)
    max_consumers: int = Field(default=64, ge=1)
    maxsize: int = Field(default=10000, ge=1)
    default_priority: int = 1000
    drain_timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _min_not_above_max(self) -> QueueConfig:
        if self.min_consumers > self.max_consumers:
            raise ValueError(
                f"min_consumers ({self.min_consumers}) is greater than"
                f" max_consumers ({self.max_consumers})"
            )
        return self


def _lower(value: object) -> object:
    """Let ``INFO`` mean ``info``: environment variables are often upper case."""
    return value.strip().lower() if isinstance(value, str) else value


class LoggingConfig(ConfigModel):
    """``logging:``: how the daemon logs.

    Attributes:
        level: the least severe level written.
        format: ``json`` or ``console``; None chooses console on a TTY, json otherwise.
    """

    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = "info"
    format: Annotated[Literal["json", "console"] | None, BeforeValidator(_lower)] = None


class ListenAddress(NamedTuple):
    """A host and port to listen on, parsed from ``"host:port"``."""

    host: str
    port: int

    def __str__(self) -> str:
        """Write it back as ``host:port`` (``[::1]:port`` for IPv6)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _listen(value: object) -> ListenAddress:
    """Parse ``host:port``, ``[ipv6]:port`` or ``:port`` (every interface)."""
    if isinstance(value, ListenAddress):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a string 'host:port', got {show(value)}")  # noqa: TRY004
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not port_text.isdigit() or not 1 <= int(port_text) <= _MAX_PORT:
        raise ValueError(f"must be 'host:port' with a port from 1 to {_MAX_PORT}, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in {value!r} is not an IPv6 address") from None
    elif ":" in host or any(char.isspace() for char in host):
        raise ValueError(f"bad host in {value!r}: write an IPv6 address as '[::1]:port'")
    return ListenAddress(host or "0.0.0.0", int(port_text))  # noqa: S104 - ":port" asks for it


class MetricsConfig(ConfigModel):
    """``metrics:``: the Prometheus ``/metrics``, ``/healthz`` and ``/readyz`` endpoint.

    Attributes:
        listen: the address to serve on, or None for no endpoint.
    """

    listen: Annotated[ListenAddress, PlainValidator(_listen), PlainSerializer(str)] | None = None


def _empty_is_none(value: object) -> object:
    """``${HEALTH_FILE:-}`` gives "", which means the default, not the working directory."""
    return None if value == "" else value


class HealthConfig(ConfigModel):
    """``health:``: the status file the daemon keeps and ``mqtt-collector health`` reads.

    Attributes:
        file: the file's path, or None for the default: ``$RUNTIME_DIRECTORY/health.json``
            under systemd, else a file in a directory of this user's under the system's
            temporary directory, named after the configuration file's absolute path.
    """

    file: Annotated[Path | None, BeforeValidator(_empty_is_none)] = None
