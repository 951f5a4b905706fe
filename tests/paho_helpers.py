"""Closing a paho-mqtt client that ran its own network thread, leaving no socket open."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paho.mqtt.client import Client


def close_client(client: Client) -> None:
    """Disconnect ``client``, stop its network thread and close every socket it holds.

    ``loop_stop()`` leaves open the socket pair ``loop_start()`` made until the client is
    garbage collected (eclipse-paho/paho.mqtt.python#627). The test helpers' callbacks put
    their client in a reference cycle, so that happens whenever the cyclic collector runs,
    and the socket's ResourceWarning then fails whichever test is running, or the whole
    session at its end. ``reinitialise()`` is paho's public way to close them; it also
    resets the client, so nothing may use it afterwards.
    """
    client.disconnect()
    client.loop_stop()
    client.reinitialise()
