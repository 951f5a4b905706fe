"""The test-broker mode: env parsing, the Docker probe, the external broker, the skip-or-fail rule.

No Docker engine runs here, so no container is started: these check the selection and the
"no Docker" path only.
"""

from __future__ import annotations

import socket
import uuid
from typing import TYPE_CHECKING

import pytest
from paho.mqtt.client import MQTTv311

from tests.conftest import broker_unavailable
from tests.helpers.broker_mode import (
    ENV_HOST,
    ENV_MODE,
    ENV_PORT,
    IMAGE,
    BrokerChoice,
    BrokerMode,
    ContainerMosquitto,
    ExternalMosquitto,
    broker_choice,
    docker_unavailable_reason,
)
from tests.helpers.mosquitto import BrokerStartError, BrokerUnavailableError
from tests.helpers.mqtt_client import MqttClient

if TYPE_CHECKING:
    from pathlib import Path

    from tests.helpers.mosquitto import Mosquitto


class TestBrokerChoice:
    """`broker_choice` reads MQTT_COLLECTOR_TEST_BROKER and its host/port."""

    def test_broker_choice_defaults_to_subprocess(self) -> None:
        """Unset or empty, the mode is the subprocess."""
        assert broker_choice({}) == BrokerChoice(mode=BrokerMode.SUBPROCESS)
        assert broker_choice({ENV_MODE: "  "}).mode is BrokerMode.SUBPROCESS

    @pytest.mark.parametrize("raw", ["container", "Container", " CONTAINER "])
    def test_broker_choice_reads_container_any_case(self, raw: str) -> None:
        """The mode name is trimmed and case-insensitive."""
        assert broker_choice({ENV_MODE: raw}).mode is BrokerMode.CONTAINER

    def test_broker_choice_reads_external_address(self) -> None:
        """`external` takes the host and port variables."""
        choice = broker_choice({ENV_MODE: "external", ENV_HOST: "mqtt.test", ENV_PORT: "1884"})
        assert choice == BrokerChoice(mode=BrokerMode.EXTERNAL, host="mqtt.test", port=1884)

    def test_broker_choice_external_host_defaults_to_loopback(self) -> None:
        """Without a host, the external broker is on 127.0.0.1."""
        choice = broker_choice({ENV_MODE: "external", ENV_PORT: "1884"})
        assert (choice.host, choice.port) == ("127.0.0.1", 1884)

    def test_broker_choice_external_requires_port(self) -> None:
        """`external` without a port is refused, naming the variable."""
        with pytest.raises(ValueError, match=ENV_PORT):
            broker_choice({ENV_MODE: "external"})

    @pytest.mark.parametrize("raw", ["abc", "0", "65536", "-1"])
    def test_broker_choice_rejects_bad_port(self, raw: str) -> None:
        """A port that is not 1-65535 is refused."""
        with pytest.raises(ValueError, match=f"{ENV_PORT}='{raw}': not a port number"):
            broker_choice({ENV_MODE: "external", ENV_PORT: raw})

    def test_broker_choice_rejects_unknown_mode(self) -> None:
        """An unknown mode is refused, listing the three."""
        with pytest.raises(ValueError, match="expected one of subprocess, container, external"):
            broker_choice({ENV_MODE: "docker"})


class TestDockerProbe:
    """`docker_unavailable_reason` tells whether a Docker engine answers."""

    def test_docker_probe_reports_missing_socket(self, tmp_path: Path) -> None:
        """A DOCKER_HOST socket that does not exist is named in the reason."""
        path = tmp_path / "docker.sock"
        reason = docker_unavailable_reason({"DOCKER_HOST": f"unix://{path}"})
        assert reason is not None
        assert str(path) in reason
        assert reason.startswith("no Docker engine")

    def test_docker_probe_reports_refused_tcp(self) -> None:
        """A tcp:// DOCKER_HOST nobody listens on is unavailable."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]  # bound, not listening: connections are refused
            reason = docker_unavailable_reason({"DOCKER_HOST": f"tcp://127.0.0.1:{port}"})
        assert reason is not None
        assert f"tcp://127.0.0.1:{port}" in reason

    def test_docker_probe_accepts_listening_socket(self, tmp_path: Path) -> None:
        """A unix socket that accepts connections counts as an engine (the SDK checks the rest)."""
        path = tmp_path / "d.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(str(path))
            server.listen(1)
            assert docker_unavailable_reason({"DOCKER_HOST": f"unix://{path}"}) is None


class TestContainerWithoutDocker:
    """Container mode with no Docker engine: skipped locally, failed in CI."""

    def _error(self, tmp_path: Path) -> BrokerUnavailableError:
        environ = {"DOCKER_HOST": f"unix://{tmp_path / 'missing.sock'}"}
        with pytest.raises(BrokerUnavailableError) as caught:
            ContainerMosquitto(directory=tmp_path / "broker", environ=environ)
        return caught.value

    def test_container_without_docker_is_unavailable(self, tmp_path: Path) -> None:
        """The error names the mode and the missing engine."""
        message = str(self._error(tmp_path))
        assert message.startswith(f"{ENV_MODE}=container: no Docker engine")

    def test_container_without_docker_skips_locally(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without CI, the shared fixture's handler skips with the reason."""
        error = self._error(tmp_path)
        monkeypatch.delenv("CI", raising=False)
        with pytest.raises(pytest.skip.Exception, match="no Docker engine"):
            broker_unavailable(error)

    def test_container_without_docker_fails_in_ci(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With CI set, the same handler fails the test."""
        error = self._error(tmp_path)
        monkeypatch.setenv("CI", "true")
        with pytest.raises(pytest.fail.Exception, match=r"no Docker engine.*CI is set"):
            broker_unavailable(error)

    def test_container_image_is_pinned(self) -> None:
        """The image names a fixed Mosquitto release, never `latest`."""
        name, _, tag = IMAGE.partition(":")
        assert name == "eclipse-mosquitto"
        assert tag[:1].isdigit()


@pytest.mark.broker
class TestExternalMosquitto:
    """The external mode against a real broker (a private subprocess standing in for it)."""

    def test_external_broker_round_trip(
        self, private_mosquitto: Mosquitto, topic_prefix: str
    ) -> None:
        """A message published through the external broker's address reaches a subscriber."""
        broker = ExternalMosquitto(host=private_mosquitto.host, port=private_mosquitto.port)
        topic, payload = f"{topic_prefix}/external", uuid.uuid4().bytes
        with broker, MqttClient(protocol=MQTTv311) as subscriber:
            assert subscriber.connect(broker.port, host=broker.host)
            subscriber.subscribe(topic)
            with MqttClient(protocol=MQTTv311) as publisher:
                assert publisher.connect(broker.port, host=broker.host)
                publisher.publish(topic, payload)
                message = subscriber.receive()
        assert (message.topic, message.payload) == (topic, payload)

    def test_external_broker_unreachable_is_an_error(self, private_mosquitto: Mosquitto) -> None:
        """An external broker that is not there fails the start: it was asked for by name."""
        broker = ExternalMosquitto(host=private_mosquitto.host, port=private_mosquitto.port)
        private_mosquitto.stop()
        with pytest.raises(BrokerStartError, match="nothing accepts connections"):
            broker.start()

    def test_external_broker_tls_listener_skips(self) -> None:
        """Asking the external broker for its TLS listener skips, naming the default mode."""
        broker = ExternalMosquitto(host="127.0.0.1", port=1)
        with pytest.raises(pytest.skip.Exception, match="subprocess"):
            _ = broker.tls_port
        with pytest.raises(pytest.skip.Exception, match="password listener"):
            _ = broker.auth_port

    def test_external_broker_is_never_stopped(self, private_mosquitto: Mosquitto) -> None:
        """Leaving the fixture does not touch the broker; killing it is refused."""
        broker = ExternalMosquitto(host=private_mosquitto.host, port=private_mosquitto.port)
        with broker, pytest.raises(BrokerStartError, match="cannot be killed"):
            broker.kill()
        assert private_mosquitto.running
