"""The Mosquitto fixtures run a real broker that paho-mqtt can use on every listener."""

from __future__ import annotations

import queue
import ssl
import threading
import uuid
from typing import TYPE_CHECKING, Self

import pytest
from paho.mqtt.client import Client, ConnectFlags, MQTTMessage, MQTTv311
from paho.mqtt.enums import CallbackAPIVersion

from tests.mosquitto import BrokerStartError
from tests.paho_helpers import close_client

if TYPE_CHECKING:
    from types import TracebackType

    from paho.mqtt.client import DisconnectFlags
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    from tests.mosquitto import Mosquitto, MosquittoFactory

pytestmark = pytest.mark.broker

TIMEOUT = 10.0


class _Client:
    """A paho client on its own network thread, whose callbacks feed events and a queue."""

    def __init__(self, *, client_id: str = "", clean_session: bool = True) -> None:
        self.paho = Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=MQTTv311,
        )
        # Set by a CONNACK or by losing the connection, whichever comes first.
        self.answered = threading.Event()
        self.connack: ReasonCode | None = None
        self.session_present = False
        self.subscribed = threading.Event()
        self.messages: queue.Queue[MQTTMessage] = queue.Queue()
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_message = self._on_message

    def _on_connect(
        self,
        client: Client,
        userdata: object,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connack = reason_code
        self.session_present = flags.session_present
        self.answered.set()

    def _on_disconnect(
        self,
        client: Client,
        userdata: object,
        flags: DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.answered.set()

    def _on_subscribe(
        self,
        client: Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self.subscribed.set()

    def _on_message(self, client: Client, userdata: object, message: MQTTMessage) -> None:
        self.messages.put(message)

    def connect(self, broker: Mosquitto, port: int) -> bool:
        """Connect and wait for the broker's answer; True if it accepted the connection."""
        self.paho.connect(broker.host, port, keepalive=30)
        self.paho.loop_start()
        assert self.answered.wait(TIMEOUT), f"no answer from {broker!r} on port {port}"
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, topic: str) -> None:
        """Subscribe with QoS 1 and wait for the SUBACK."""
        self.subscribed.clear()
        self.paho.subscribe(topic, qos=1)
        assert self.subscribed.wait(TIMEOUT), f"no SUBACK for {topic!r}"

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish with QoS 1 and wait for the PUBACK."""
        self.paho.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT)

    def receive(self) -> MQTTMessage:
        """Return the next message received, waiting at most TIMEOUT."""
        return self.messages.get(timeout=TIMEOUT)

    def close(self) -> None:
        """Disconnect, stop the network thread and close the client's sockets."""
        close_client(self.paho)

    def __enter__(self) -> Self:
        """Return the client; `close()` runs on exit."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the client."""
        self.close()


def _assert_round_trip(broker: Mosquitto, publisher: _Client, topic: str) -> None:
    """Assert that a payload published through `publisher` reaches a plain-port subscriber."""
    payload = uuid.uuid4().bytes
    with _Client() as subscriber:
        assert subscriber.connect(broker, broker.port)
        subscriber.subscribe(topic)
        publisher.publish(topic, payload)
        message = subscriber.receive()
    assert (message.topic, message.payload) == (topic, payload)


class TestMosquitto:
    """The shared broker's listeners."""

    def test_plain_port_round_trip(self, mosquitto: Mosquitto, topic_prefix: str) -> None:
        """A message published on the plain port reaches a subscriber."""
        with _Client() as publisher:
            assert publisher.connect(mosquitto, mosquitto.port)
            payload = uuid.uuid4().bytes
            with _Client() as subscriber:
                assert subscriber.connect(mosquitto, mosquitto.port)
                subscriber.subscribe(f"{topic_prefix}/#")
                publisher.publish(f"{topic_prefix}/plain", payload)
                message = subscriber.receive()
        assert (message.topic, message.payload, message.qos) == (
            f"{topic_prefix}/plain",
            payload,
            1,
        )

    def test_tls_port_accepts_client_trusting_ca(
        self, mosquitto: Mosquitto, topic_prefix: str
    ) -> None:
        """The TLS port's certificate verifies, hostname included, against `ca_file`."""
        with _Client() as publisher:
            publisher.paho.tls_set(ca_certs=str(mosquitto.ca_file))
            assert publisher.connect(mosquitto, mosquitto.tls_port)
            _assert_round_trip(mosquitto, publisher, f"{topic_prefix}/tls")

    def test_mtls_port_accepts_client_certificate(
        self, mosquitto: Mosquitto, topic_prefix: str
    ) -> None:
        """The mutual-TLS port accepts a client presenting `cert_file` and `key_file`."""
        with _Client() as publisher:
            publisher.paho.tls_set(
                ca_certs=str(mosquitto.ca_file),
                certfile=str(mosquitto.cert_file),
                keyfile=str(mosquitto.key_file),
            )
            assert publisher.connect(mosquitto, mosquitto.mtls_port)
            _assert_round_trip(mosquitto, publisher, f"{topic_prefix}/mtls")

    def test_mtls_port_refuses_client_without_certificate(self, mosquitto: Mosquitto) -> None:
        """The mutual-TLS port drops a client that presents no certificate."""
        client = _Client()
        client.paho.tls_set(ca_certs=str(mosquitto.ca_file))
        try:
            # With TLS 1.3 the server's refusal arrives after the client's handshake completes,
            # so it shows either as a handshake error or as a connection lost before CONNACK.
            accepted = client.connect(mosquitto, mosquitto.mtls_port)
        except (ssl.SSLError, ConnectionError):
            accepted = False
        finally:
            client.close()
        assert not accepted

    def test_auth_port_accepts_password(self, mosquitto: Mosquitto) -> None:
        """The password port accepts `username`/`password`."""
        with _Client() as client:
            client.paho.username_pw_set(mosquitto.username, mosquitto.password)
            assert client.connect(mosquitto, mosquitto.auth_port)

    def test_auth_port_refuses_wrong_password(self, mosquitto: Mosquitto) -> None:
        """The password port answers a wrong password with a refusing CONNACK."""
        with _Client() as client:
            client.paho.username_pw_set(mosquitto.username, "wrong")
            assert not client.connect(mosquitto, mosquitto.auth_port)
        assert client.connack is not None
        assert client.connack.getName() == "Not authorized"

    def test_auth_port_refuses_anonymous(self, mosquitto: Mosquitto) -> None:
        """The password port refuses a client without credentials."""
        with _Client() as client:
            assert not client.connect(mosquitto, mosquitto.auth_port)
        assert client.connack is not None
        assert client.connack.getName() == "Not authorized"


class TestPrivateMosquitto:
    """A test's own broker, restarted and reconfigured."""

    def test_restart_keeps_persistent_session_message(
        self, private_mosquitto: Mosquitto, topic_prefix: str
    ) -> None:
        """A QoS 1 message queued for an absent persistent session survives a restart."""
        client_id = f"persistent-{uuid.uuid4().hex[:8]}"
        topic = f"{topic_prefix}/kept"
        with _Client(client_id=client_id, clean_session=False) as subscriber:
            assert subscriber.connect(private_mosquitto, private_mosquitto.port)
            subscriber.subscribe(topic)
        with _Client() as publisher:
            assert publisher.connect(private_mosquitto, private_mosquitto.port)
            publisher.publish(topic, b"while away")
        port = private_mosquitto.port

        private_mosquitto.restart()

        assert private_mosquitto.port == port
        # No subscribe this time: the subscription itself must have survived too.
        with _Client(client_id=client_id, clean_session=False) as subscriber:
            assert subscriber.connect(private_mosquitto, private_mosquitto.port)
            assert subscriber.session_present
            message = subscriber.receive()
        assert (message.topic, message.payload) == (topic, b"while away")

    def test_start_failure_reports_log(self, make_mosquitto: MosquittoFactory) -> None:
        """A conf mosquitto rejects makes start() raise with mosquitto's complaint."""
        with pytest.raises(BrokerStartError, match="no_such_option"):
            make_mosquitto(extra_conf="no_such_option true")
