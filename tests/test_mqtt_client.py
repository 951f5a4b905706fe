"""The tests' MQTT client closes its sockets itself, not through the garbage collector."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers.mqtt_client import MqttClient, close_client, connected_client

if TYPE_CHECKING:
    from tests.helpers.mosquitto import Mosquitto

pytestmark = pytest.mark.broker

TIMEOUT = 10.0
FDS = Path("/proc/self/fd")


def _open_fds() -> set[str]:
    return {path.name for path in FDS.iterdir()}


@pytest.mark.skipif(not FDS.is_dir(), reason="needs /proc/self/fd (Linux)")
def test_close_client_leaves_no_socket_open(mosquitto: Mosquitto) -> None:
    """After close_client(), a client still referenced holds no open file descriptor."""
    before = _open_fds()
    client = Client(CallbackAPIVersion.VERSION2)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    assert connected.wait(TIMEOUT), f"no CONNACK from {mosquitto!r}"
    close_client(client)
    # ``client`` is alive here, so only close_client() can have closed its sockets.
    assert _open_fds() - before == set()


@pytest.mark.skipif(not FDS.is_dir(), reason="needs /proc/self/fd (Linux)")
@pytest.mark.parametrize("use", ["publish", "numbered", "subscribe"])
def test_mqtt_client_leaves_no_socket_open(mosquitto: Mosquitto, use: str) -> None:
    """The tests' client, used to publish or to subscribe, closes every socket when closed."""
    before = _open_fds()
    if use == "subscribe":
        with connected_client(mosquitto.port, subscribe="test/mqtt_client/#") as client:
            pass
    else:
        with connected_client(mosquitto.port) as client:
            if use == "publish":
                client.publish("test/mqtt_client/wait")
            else:
                assert client.numbered("test/mqtt_client/numbered", range(3)) == 3
                client.flush(TIMEOUT)
    # The client is alive here, so only its own close can have closed the sockets.
    assert _open_fds() - before == set()
    assert client is not None


def test_mqtt_client_publishes_subscribes_and_receives_in_order(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """What one client publishes (waited for, or flushed) another receives, in order."""
    with (
        connected_client(mosquitto.port, subscribe=f"{topic_prefix}/#") as subscriber,
        connected_client(mosquitto.port) as publisher,
    ):
        publisher.publish_json(f"{topic_prefix}/json", {"n": 0})
        publisher.numbered(f"{topic_prefix}/n", range(1, 3))
        publisher.flush(TIMEOUT)
        bodies = [subscriber.receive().payload for _ in range(3)]
        assert bodies == [b'{"n": 0}', b"1", b"2"]
        assert [m.payload for m in subscriber.received()] == bodies


def test_mqtt_client_reports_a_refused_connection(mosquitto: Mosquitto) -> None:
    """connect() answers False on a refusing CONNACK; connected_client() fails the test."""
    with MqttClient() as client:
        assert not client.connect(mosquitto.auth_port, host=mosquitto.host)
    with pytest.raises(AssertionError, match="refused the test client"):
        connected_client(mosquitto.auth_port, host=mosquitto.host)
