"""The test helpers' paho clients close their sockets themselves, not through the collector."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion

from tests import daemon_helpers
from tests.faults import helpers as fault_helpers
from tests.paho_helpers import close_client

if TYPE_CHECKING:
    from tests.mosquitto import Mosquitto

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
@pytest.mark.parametrize("helper", ["daemon-publisher", "fault-publisher", "fault-subscriber"])
def test_helper_clients_leave_no_socket_open(mosquitto: Mosquitto, helper: str) -> None:
    """The tests' publisher and subscriber helpers close every socket when closed."""
    before = _open_fds()
    if helper == "daemon-publisher":
        with daemon_helpers.Publisher(mosquitto.port) as publisher:
            publisher.publish("test/paho_helpers/daemon")
        kept: object = publisher
    elif helper == "fault-publisher":
        with fault_helpers.Publisher(mosquitto) as fault_publisher:
            fault_publisher.publish("test/paho_helpers/fault", b"1")
            fault_publisher.flush(TIMEOUT)
        kept = fault_publisher
    else:
        with fault_helpers.Subscriber(mosquitto, "test/paho_helpers/#") as subscriber:
            pass
        kept = subscriber
    # The helper is alive here, so only its own close can have closed the sockets.
    assert _open_fds() - before == set()
    assert kept is not None
