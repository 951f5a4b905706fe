"""The demo's embedded broker: amqtt, started in this process on a free loopback port.

amqtt speaks MQTT 3.1.1 only, and drops an anonymous client's session when it disconnects, so
its anonymous-auth plugin runs with ``allow_anonymous: false``, which lets in any client that
gives a user name (the demo's clients give one) and keeps its session.
"""

from __future__ import annotations

import logging
import socket
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["DemoUnavailableError", "embedded_broker"]

HOST = "127.0.0.1"
_TRIES = 3  # a free port may be taken between finding it and binding it: try again


class DemoUnavailableError(Exception):
    """The ``demo`` extra (amqtt, rich) is not installed."""


def require_extra() -> None:
    """Raise DemoUnavailableError naming the install command unless amqtt and rich import."""
    try:
        import amqtt.broker  # noqa: F401, PLC0415 - optional: the demo extra
        import rich  # noqa: F401, PLC0415
    except ImportError as exc:
        raise DemoUnavailableError(
            f"the demo needs the `demo` extra ({exc.name} is missing):"
            " pip install 'mqtt-collector[demo]'"
        ) from exc


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _config(port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{port}"}},
        # Only authentication: no $SYS topics, no per-packet logging.
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}},
    }


@asynccontextmanager
async def embedded_broker() -> AsyncIterator[int]:
    """Run an amqtt broker on a free port of 127.0.0.1; yield the port; stop it at exit."""
    from amqtt.broker import Broker  # noqa: PLC0415 - optional: the demo extra
    from amqtt.errors import BrokerError  # noqa: PLC0415

    # amqtt logs each listener and session at info: the demo's own lines say what matters.
    # Its state machine library (transitions) logs every state change at info.
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for attempt in range(1, _TRIES + 1):
        port = _free_port()
        broker = Broker(_config(port))
        try:
            await broker.start()
        except BrokerError:
            if attempt == _TRIES:
                raise
            continue
        break
    try:
        yield port
    finally:
        await broker.shutdown()
