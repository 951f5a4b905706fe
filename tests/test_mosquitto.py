"""The Mosquitto fixtures run a real broker that paho-mqtt can use on every listener."""

from __future__ import annotations

import ssl
import uuid
from typing import TYPE_CHECKING

import pytest
from paho.mqtt.client import MQTTv311

from tests.helpers.mosquitto import BrokerStartError
from tests.helpers.mqtt_client import MqttClient

if TYPE_CHECKING:
    from tests.helpers.mosquitto import Mosquitto, MosquittoFactory

pytestmark = pytest.mark.broker


def _assert_round_trip(broker: Mosquitto, publisher: MqttClient, topic: str) -> None:
    """Assert that a payload published through `publisher` reaches a plain-port subscriber."""
    payload = uuid.uuid4().bytes
    with MqttClient(protocol=MQTTv311) as subscriber:
        assert subscriber.connect(broker.port, host=broker.host)
        subscriber.subscribe(topic)
        publisher.publish(topic, payload)
        message = subscriber.receive()
    assert (message.topic, message.payload) == (topic, payload)


class TestMosquitto:
    """The shared broker's listeners."""

    def test_plain_port_round_trip(self, mosquitto: Mosquitto, topic_prefix: str) -> None:
        """A message published on the plain port reaches a subscriber."""
        with MqttClient(protocol=MQTTv311) as publisher:
            assert publisher.connect(mosquitto.port, host=mosquitto.host)
            payload = uuid.uuid4().bytes
            with MqttClient(protocol=MQTTv311) as subscriber:
                assert subscriber.connect(mosquitto.port, host=mosquitto.host)
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
        with MqttClient(protocol=MQTTv311) as publisher:
            publisher.paho.tls_set(ca_certs=str(mosquitto.ca_file))
            assert publisher.connect(mosquitto.tls_port, host=mosquitto.host)
            _assert_round_trip(mosquitto, publisher, f"{topic_prefix}/tls")

    def test_mtls_port_accepts_client_certificate(
        self, mosquitto: Mosquitto, topic_prefix: str
    ) -> None:
        """The mutual-TLS port accepts a client presenting `cert_file` and `key_file`."""
        with MqttClient(protocol=MQTTv311) as publisher:
            publisher.paho.tls_set(
                ca_certs=str(mosquitto.ca_file),
                certfile=str(mosquitto.cert_file),
                keyfile=str(mosquitto.key_file),
            )
            assert publisher.connect(mosquitto.mtls_port, host=mosquitto.host)
            _assert_round_trip(mosquitto, publisher, f"{topic_prefix}/mtls")

    def test_mtls_port_refuses_client_without_certificate(self, mosquitto: Mosquitto) -> None:
        """The mutual-TLS port drops a client that presents no certificate."""
        client = MqttClient(protocol=MQTTv311)
        client.paho.tls_set(ca_certs=str(mosquitto.ca_file))
        try:
            # With TLS 1.3 the server's refusal arrives after the client's handshake completes,
            # so it shows either as a handshake error or as a connection lost before CONNACK.
            accepted = client.connect(mosquitto.mtls_port, host=mosquitto.host)
        except (ssl.SSLError, ConnectionError):
            accepted = False
        finally:
            client.close()
        assert not accepted

    def test_auth_port_accepts_password(self, mosquitto: Mosquitto) -> None:
        """The password port accepts `username`/`password`."""
        with MqttClient(protocol=MQTTv311) as client:
            client.paho.username_pw_set(mosquitto.username, mosquitto.password)
            assert client.connect(mosquitto.auth_port, host=mosquitto.host)

    def test_auth_port_refuses_wrong_password(self, mosquitto: Mosquitto) -> None:
        """The password port answers a wrong password with a refusing CONNACK."""
        with MqttClient(protocol=MQTTv311) as client:
            client.paho.username_pw_set(mosquitto.username, "wrong")
            assert not client.connect(mosquitto.auth_port, host=mosquitto.host)
        assert client.connack is not None
        assert client.connack.getName() == "Not authorized"

    def test_auth_port_refuses_anonymous(self, mosquitto: Mosquitto) -> None:
        """The password port refuses a client without credentials."""
        with MqttClient(protocol=MQTTv311) as client:
            assert not client.connect(mosquitto.auth_port, host=mosquitto.host)
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
        with MqttClient(client_id=client_id, clean_session=False, protocol=MQTTv311) as subscriber:
            assert subscriber.connect(private_mosquitto.port, host=private_mosquitto.host)
            subscriber.subscribe(topic)
        with MqttClient(protocol=MQTTv311) as publisher:
            assert publisher.connect(private_mosquitto.port, host=private_mosquitto.host)
            publisher.publish(topic, b"while away")
        port = private_mosquitto.port

        private_mosquitto.restart()

        assert private_mosquitto.port == port
        # No subscribe this time: the subscription itself must have survived too.
        with MqttClient(client_id=client_id, clean_session=False, protocol=MQTTv311) as subscriber:
            assert subscriber.connect(private_mosquitto.port, host=private_mosquitto.host)
            assert subscriber.session_present
            message = subscriber.receive()
        assert (message.topic, message.payload) == (topic, b"while away")

    def test_start_failure_reports_log(self, make_mosquitto: MosquittoFactory) -> None:
        """A conf mosquitto rejects makes start() raise with mosquitto's complaint."""
        with pytest.raises(BrokerStartError, match="no_such_option"):
            make_mosquitto(extra_conf="no_such_option true")
