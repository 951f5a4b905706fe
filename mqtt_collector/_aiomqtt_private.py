"""The one place that reaches into aiomqtt's private parts, each checked loudly.

aiomqtt 2.x has no public switch for acknowledging messages after processing;
paho-mqtt, which it wraps, has (``manual_ack_set`` and ``ack``). aiomqtt's public
message iterator also starts a task per message, so the daemon takes messages straight
from its queue when one is waiting. If a new aiomqtt release moves any of this, these
functions raise TransportError (and the tests fail) instead of silently acking on receipt.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho

from mqtt_collector._exceptions import TransportError

if TYPE_CHECKING:
    import aiomqtt

__all__ = ["enable_manual_ack", "message_queue", "send_ack"]


def _paho_client(client: aiomqtt.Client) -> paho.Client:
    inner = getattr(client, "_client", None)
    if not isinstance(inner, paho.Client):
        raise TransportError(
            "this aiomqtt version does not expose its paho-mqtt client as '_client'; "
            "manual acknowledgement (ack after processing) cannot be enabled"
        )
    return inner


def enable_manual_ack(client: aiomqtt.Client) -> None:
    """Make ``client`` leave PUBACK/PUBCOMP to ``send_ack``; call before connecting."""
    inner = _paho_client(client)
    inner.manual_ack_set(on=True)
    if getattr(inner, "_manual_ack", None) is not True:
        raise TransportError("paho-mqtt did not switch to manual acknowledgement")


def send_ack(client: aiomqtt.Client, mid: int, qos: int) -> None:
    """Send the PUBACK (QoS 1) or PUBCOMP (QoS 2) for message ``mid``."""
    rc = _paho_client(client).ack(mid, qos)
    if rc != paho.MQTT_ERR_SUCCESS:
        raise TransportError(f"could not acknowledge message {mid}: {paho.error_string(rc)}")


def message_queue(client: aiomqtt.Client) -> asyncio.Queue[Any]:
    """Return the queue aiomqtt puts received messages in."""
    queue = getattr(client, "_queue", None)
    if not isinstance(queue, asyncio.Queue):
        raise TransportError("this aiomqtt version keeps no message queue as '_queue'")
    return queue
