"""Which broker the shared `mosquitto` fixture runs: a subprocess, a container, or an external one.

`MQTT_COLLECTOR_TEST_BROKER` chooses:

- `subprocess` (the default): a private `mosquitto` started by the tests (`Mosquitto`), with its
  plain, TLS, mutual-TLS and password listeners.
- `container`: Mosquitto in a Docker container through testcontainers (`ContainerMosquitto`),
  image `IMAGE`, the conf written here mounted with `start(configfile=...)`. Needs a Docker
  engine (`DOCKER_HOST`, else `/var/run/docker.sock`) and the `testcontainers` package (dev extra).
- `external`: a broker someone else runs, at `MQTT_COLLECTOR_TEST_BROKER_HOST` (default
  127.0.0.1) and `MQTT_COLLECTOR_TEST_BROKER_PORT` (required; plain MQTT, anonymous allowed).

The container and the external broker offer one plain, anonymous listener: a test that asks the
shared broker for its TLS or password listener skips, saying so. Tests that stop, kill, restart or
configure a broker of their own (`private_mosquitto`, `make_mosquitto`) use a subprocess in every
mode: a container cannot be killed and restarted on the same port as simply, and an external
broker not at all.
"""

from __future__ import annotations

import enum
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn
from urllib.parse import urlsplit

import pytest

from tests.helpers.mosquitto import BrokerStartError, BrokerUnavailableError, Mosquitto

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ENV_HOST",
    "ENV_MODE",
    "ENV_PORT",
    "IMAGE",
    "BrokerChoice",
    "BrokerMode",
    "ContainerMosquitto",
    "ExternalMosquitto",
    "broker_choice",
    "docker_unavailable_reason",
]

ENV_MODE: Final = "MQTT_COLLECTOR_TEST_BROKER"
ENV_HOST: Final = "MQTT_COLLECTOR_TEST_BROKER_HOST"
ENV_PORT: Final = "MQTT_COLLECTOR_TEST_BROKER_PORT"
# Pinned: a new Mosquitto release must not change what the tests run against unnoticed.
IMAGE: Final = "eclipse-mosquitto:2.0.18"
_CONTAINER_PORT: Final = 1883
_DEFAULT_DOCKER_HOST: Final = "unix:///var/run/docker.sock"
_PROBE_TIMEOUT: Final = 2.0


class BrokerMode(enum.StrEnum):
    """Where the shared test broker runs."""

    SUBPROCESS = "subprocess"
    CONTAINER = "container"
    EXTERNAL = "external"


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerChoice:
    """The mode, and for `external` the broker's address."""

    mode: BrokerMode
    host: str = "127.0.0.1"
    port: int | None = None


def broker_choice(environ: Mapping[str, str]) -> BrokerChoice:
    """Read the broker mode from `environ`.

    Raises:
        ValueError: an unknown mode, or `external` without a valid port; the message names the
            variable and what it accepts.
    """
    raw = environ.get(ENV_MODE, "").strip().lower()
    if not raw:
        return BrokerChoice(mode=BrokerMode.SUBPROCESS)
    try:
        mode = BrokerMode(raw)
    except ValueError:
        choices = ", ".join(m.value for m in BrokerMode)
        raise ValueError(f"{ENV_MODE}={raw!r}: expected one of {choices}") from None
    if mode is not BrokerMode.EXTERNAL:
        return BrokerChoice(mode=mode)
    host = environ.get(ENV_HOST, "").strip() or "127.0.0.1"
    raw_port = environ.get(ENV_PORT, "").strip()
    if not raw_port:
        raise ValueError(f"{ENV_MODE}=external needs {ENV_PORT} (the broker's plain MQTT port)")
    try:
        port = int(raw_port)
    except ValueError:
        raise ValueError(f"{ENV_PORT}={raw_port!r}: not a port number") from None
    if not 0 < port < 65536:
        raise ValueError(f"{ENV_PORT}={raw_port!r}: not a port number")
    return BrokerChoice(mode=mode, host=host, port=port)


def docker_unavailable_reason(environ: Mapping[str, str]) -> str | None:
    """Say why no Docker engine answers at `DOCKER_HOST` (or the default socket); None if one does.

    A connection probe of our own: the Docker SDK leaves a socket open when the engine is missing,
    which `filterwarnings = error` would turn into a failure of some unrelated test.
    """
    docker_host = environ.get("DOCKER_HOST", "").strip() or _DEFAULT_DOCKER_HOST
    url = urlsplit(docker_host)
    try:
        if url.scheme == "unix":
            path = url.path
            if not Path(path).exists():
                return f"no Docker engine: {path} does not exist (DOCKER_HOST={docker_host})"
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(_PROBE_TIMEOUT)
                sock.connect(path)
        elif url.scheme == "tcp":
            with socket.create_connection(
                (url.hostname or "127.0.0.1", url.port or 2375), timeout=_PROBE_TIMEOUT
            ):
                pass
    except OSError as error:
        return f"no Docker engine answers at {docker_host}: {error}"
    return None  # reachable, or a scheme (ssh://, npipe://) left to the Docker SDK


def _plain_only(broker: Mosquitto, listener: str) -> NoReturn:
    pytest.skip(
        f"needs the shared broker's {listener}, which only {ENV_MODE}=subprocess (the default)"
        f" provides; this run uses {broker!r}"
    )


class _PlainOnlyMosquitto(Mosquitto):
    """A shared broker with one plain, anonymous listener; asking for another skips the test.

    A `Mosquitto` in type only: it never starts a local process, and its own `__init__` replaces
    the parent's (which would look for the `mosquitto` binary).
    """

    def __init__(self, *, host: str, port: int) -> None:
        """Remember the address; no `mosquitto` binary is needed."""
        self.host = host
        self._port = port

    @property
    def port(self) -> int:
        """The plain listener, anonymous clients allowed."""
        return self._port

    @property
    def ports(self) -> list[int]:
        """The one plain listener."""
        return [self._port]

    @property
    def tls_port(self) -> int:
        """Not offered: skips the test."""
        _plain_only(self, "TLS listener")

    @property
    def mtls_port(self) -> int:
        """Not offered: skips the test."""
        _plain_only(self, "mutual-TLS listener")

    @property
    def auth_port(self) -> int:
        """Not offered: skips the test."""
        _plain_only(self, "password listener")

    @property
    def ca_file(self) -> Path:
        """Not offered: skips the test."""
        _plain_only(self, "TLS certificates")

    @property
    def cert_file(self) -> Path:
        """Not offered: skips the test."""
        _plain_only(self, "TLS certificates")

    @property
    def key_file(self) -> Path:
        """Not offered: skips the test."""
        _plain_only(self, "TLS certificates")

    def kill(self) -> None:
        """Refuse: the shared broker is never killed (use `private_mosquitto`)."""
        raise BrokerStartError(f"{self!r} cannot be killed; use private_mosquitto")

    def restart(self) -> None:
        """Refuse: the shared broker is never restarted (use `private_mosquitto`)."""
        raise BrokerStartError(f"{self!r} cannot be restarted; use private_mosquitto")


class ExternalMosquitto(_PlainOnlyMosquitto):
    """A broker run by someone else at `host`:`port`; start() checks that it accepts connections."""

    def __init__(self, *, host: str, port: int) -> None:
        """Remember the address; nothing is contacted until `start()`."""
        super().__init__(host=host, port=port)
        self._started = False

    def __repr__(self) -> str:
        """Name the mode and the address, for skip and assertion messages."""
        return f"<external broker {self.host}:{self.port}>"

    @property
    def running(self) -> bool:
        """Whether `start()` found it and `stop()` has not been called since."""
        return self._started

    def start(self) -> None:
        """Check that the broker accepts TCP connections.

        Raises:
            BrokerStartError: it does not: the broker asked for is missing, which is an error
                (not a skip) wherever the tests run.
        """
        try:
            with socket.create_connection((self.host, self.port), timeout=_PROBE_TIMEOUT):
                pass
        except OSError as error:
            raise BrokerStartError(
                f"{ENV_MODE}=external: nothing accepts connections at {self.host}:{self.port}:"
                f" {error}"
            ) from error
        self._started = True

    def stop(self) -> None:
        """Leave the broker running: it is not ours."""
        self._started = False

    def log_tail(self, lines: int = 0) -> str:
        """The external broker's log is not ours to read."""
        return f"(no log: {self!r} is run by someone else)"


def _container_conf() -> str:
    """The conf mounted into the container: the subprocess broker's limits, one plain listener."""
    lines = [
        "# Written by tests/helpers/broker_mode.py for the test broker container.",
        f"listener {_CONTAINER_PORT}",
        "allow_anonymous true",
        "log_dest stdout",
        *(f"log_type {kind}" for kind in ("error", "warning", "notice", "information")),
        "max_queued_messages 100000",
        "max_inflight_messages 20",
    ]
    return "\n".join(lines) + "\n"


class ContainerMosquitto(_PlainOnlyMosquitto):
    """Mosquitto in a Docker container (testcontainers' `MosquittoContainer`, image `IMAGE`)."""

    def __init__(
        self, *, directory: Path, environ: Mapping[str, str] | None = None, image: str = IMAGE
    ) -> None:
        """Write the conf into `directory`; check for Docker and testcontainers.

        Raises:
            BrokerUnavailableError: no Docker engine answers, or testcontainers is not installed.
        """
        reason = docker_unavailable_reason(os.environ if environ is None else environ)
        if reason is not None:
            raise BrokerUnavailableError(f"{ENV_MODE}=container: {reason}")
        try:
            with warnings.catch_warnings():
                # testcontainers 4.x warns about its own deprecated decorators at import.
                warnings.simplefilter("ignore", DeprecationWarning)
                from testcontainers.community.mqtt import (  # noqa: PLC0415 - optional dev extra
                    MosquittoContainer,
                )
        except ImportError as error:
            raise BrokerUnavailableError(
                f"{ENV_MODE}=container: testcontainers is not installed"
                f" (pip install -e '.[dev]'): {error}"
            ) from error
        super().__init__(host="", port=0)
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.conf_path = directory / "mosquitto.conf"
        self.conf_path.write_text(_container_conf())
        self.image = image
        self._container: Any = MosquittoContainer(image)

    def __repr__(self) -> str:
        """Name the image and, once started, the mapped address."""
        return f"<container broker {self.image} at {self.host}:{self.port}>"

    @property
    def running(self) -> bool:
        """Whether the container was started and not stopped since."""
        return bool(self._port)

    def start(self) -> None:
        """Start the container with our conf and wait until Mosquitto logs that it runs."""
        self._container.start(configfile=str(self.conf_path))
        self.host = str(self._container.get_container_host_ip())
        self._port = int(self._container.get_exposed_port(_CONTAINER_PORT))

    def stop(self) -> None:
        """Stop and remove the container; idempotent."""
        if self._port:
            self._container.stop()
            self._port = 0

    def log_tail(self, lines: int = 40) -> str:
        """Return the last `lines` lines the container printed."""
        out, err = self._container.get_logs()
        text = (out + err).decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])
