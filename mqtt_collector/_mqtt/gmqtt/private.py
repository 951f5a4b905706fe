"""The one place that reaches into gmqtt's private parts, each checked loudly.

gmqtt 0.8 acknowledges after processing through public API (``optimistic_acknowledgement
=False``: the PUBACK goes when the async ``on_message`` returns), but only by running a task
per message and writing each PUBACK on its own, which costs a third of the time a message
takes. So the transport takes QoS 1 PUBLISHes from gmqtt's parser itself (``take_qos1``),
with their packet ids, and writes the PUBACKs that fall due together in one write. What gmqtt
has no public word for either: the asyncio transport of its connection, whose reading the
transport pauses
while the daemon holds as many unacked messages as it may (flow control that does not
trust the broker to honour Receive Maximum); the time of the last data in, which its
keepalive check would otherwise take for a dead broker while reading is paused; and the
protocol version it fell back to after a broker refused MQTT 5. If a new gmqtt release
moves any of this, these functions raise IncompatibleClientError naming the installed
version (and the tests fail): that is fatal, never a reason to reconnect.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import time
from collections.abc import Callable
from typing import Any, cast

import gmqtt

from mqtt_collector._exceptions import IncompatibleClientError

__all__ = [
    "VERIFIED",
    "check_client",
    "downgraded",
    "mark_alive",
    "reading_transport",
    "take_qos1",
]

# What the reach into private parts was verified with (pyproject.toml pins the extra).
VERIFIED = "gmqtt 0.7 and 0.8"
_MQTT_V5 = 5
# What gmqtt's parser calls for each QoS 1 PUBLISH, and its parameters, as verified.
_QOS1_HANDLER = "_handle_qos_1_publish_packet"
_QOS1_PARAMETERS = ["mid", "packet", "print_topic", "properties"]


def incompatible(what: str) -> IncompatibleClientError:
    """Return the fatal error for a broken assumption ``what``, naming the installed version."""
    try:
        version = importlib.metadata.version("gmqtt")
    except importlib.metadata.PackageNotFoundError:
        version = "(not installed)"
    return IncompatibleClientError(
        f"{what}: installed gmqtt {version}; mqtt-collector works with {VERIFIED}"
    )


def check_client(client: gmqtt.Client) -> None:
    """Check, before it connects, every private part of ``client`` the transport uses."""
    state = getattr(client, "_connection_state", None)
    if not isinstance(getattr(state, "protocol_version", None), int):
        raise incompatible("gmqtt keeps no '_connection_state.protocol_version'")
    if not hasattr(client, "_connection"):
        raise incompatible("gmqtt keeps no '_connection'")
    method = getattr(getattr(client, "_package_handler", None), _QOS1_HANDLER, None)
    if not callable(method) or list(inspect.signature(method).parameters) != _QOS1_PARAMETERS:
        raise incompatible(
            f"gmqtt's '_package_handler.{_QOS1_HANDLER}' is not ({', '.join(_QOS1_PARAMETERS)})"
        )


def take_qos1(
    client: gmqtt.Client, handle: Callable[[int, bytes, str, dict[str, Any]], object]
) -> None:
    """Have gmqtt's parser call ``handle(mid, body, topic, properties)`` for QoS 1 PUBLISHes.

    In place of gmqtt's own handling (an ``on_message`` task, and a PUBACK when it returns):
    the caller sends the PUBACK. ``topic`` is a str, or the raw bytes when not UTF-8;
    ``properties`` gmqtt's dict (each value a list), with ``dup`` and ``retain`` added.
    """
    check_client(client)
    setattr(client._package_handler, _QOS1_HANDLER, handle)  # noqa: SLF001 - checked above


def _connection(client: gmqtt.Client) -> Any:
    connection = getattr(client, "_connection", None)
    if connection is None or not isinstance(getattr(connection, "_last_data_in", None), float):
        raise incompatible("gmqtt keeps no '_connection' with a '_last_data_in' time")
    return connection


def reading_transport(client: gmqtt.Client) -> asyncio.Transport:
    """Return the asyncio transport of ``client``'s connection (connected), to pause reading."""
    transport = getattr(_connection(client), "_transport", None)
    # Checked by what it can do, not by class: uvloop's transports are not asyncio.Transport.
    if not all(
        callable(getattr(transport, name, None))
        for name in ("pause_reading", "resume_reading", "is_reading", "get_extra_info")
    ):
        raise incompatible("gmqtt's connection keeps no asyncio transport as '_transport'")
    return cast("asyncio.Transport", transport)


def mark_alive(client: gmqtt.Client) -> None:
    """Tell gmqtt's keepalive check that the broker is alive (reading is paused, not dead)."""
    _connection(client)._last_data_in = time.monotonic()  # noqa: SLF001 - checked above


def downgraded(client: gmqtt.Client) -> bool:
    """Whether gmqtt fell back to MQTT 3.1.1 because the broker refused MQTT 5."""
    return bool(client._connection_state.protocol_version < _MQTT_V5)  # noqa: SLF001 - checked
