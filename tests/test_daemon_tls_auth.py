"""The daemon over TLS, mutual TLS and with a password, against the shared broker's listeners."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import (
    LogCapture,
    capture_logging,
    make_config,
    records,
    run_daemon,
    wait_until,
)
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.mqtt_client import connected_client

pytestmark = pytest.mark.broker

_WRONG_PASSWORD = "not-the-Pa55word-4711"  # a value to look for in the logs


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Every log line of the test, as the CLI would write it, at debug level."""
    with capture_logging("debug") as captured:
        yield captured


async def _receives_one(mosquitto: Mosquitto, prefix: str, tmp_path: Path, **broker: Any) -> None:
    """Run a daemon with ``broker`` settings and check one message goes all the way through."""
    config = make_config(tmp_path, port=broker.pop("port"), prefix=prefix, broker=broker)
    async with run_daemon(config) as daemon:
        with connected_client(mosquitto.port) as publisher:
            publisher.publish_json(f"{prefix}/x", {"ok": True})
        await wait_until(lambda: records(daemon), what="the message")
    assert records(daemon)[0].data == {"ok": True}


async def test_daemon_connects_with_tls(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """TLS with the test CA: the daemon connects and receives."""
    await _receives_one(
        mosquitto,
        topic_prefix,
        tmp_path,
        port=mosquitto.tls_port,
        tls={"ca_file": str(mosquitto.ca_file)},
    )


async def test_daemon_connects_with_mutual_tls(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """Mutual TLS with the client certificate: the daemon connects and receives."""
    await _receives_one(
        mosquitto,
        topic_prefix,
        tmp_path,
        port=mosquitto.mtls_port,
        tls={
            "ca_file": str(mosquitto.ca_file),
            "cert_file": str(mosquitto.cert_file),
            "key_file": str(mosquitto.key_file),
        },
    )


async def test_daemon_connects_with_password(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
) -> None:
    """User name and password on the auth listener: the daemon connects and receives."""
    await _receives_one(
        mosquitto,
        topic_prefix,
        tmp_path,
        port=mosquitto.auth_port,
        username=mosquitto.username,
        password=mosquitto.password,
    )


async def test_daemon_connects_with_password_from_env(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``password: ${MQTT_PASSWORD}`` takes the password from the environment."""
    monkeypatch.setenv("MQTT_PASSWORD", mosquitto.password)
    await _receives_one(
        mosquitto,
        topic_prefix,
        tmp_path,
        port=mosquitto.auth_port,
        username=mosquitto.username,
        password="${MQTT_PASSWORD}",
    )


async def test_daemon_keeps_retrying_a_wrong_password_without_logging_it(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path, logs: LogCapture
) -> None:
    """A refused password: not ready, retrying, still running, and the password is never logged."""
    config = make_config(
        tmp_path,
        port=mosquitto.auth_port,
        prefix=topic_prefix,
        broker={
            "username": mosquitto.username,
            "password": _WRONG_PASSWORD,
            "reconnect": {"initial_delay": 0.05, "max_delay": 0.1},
        },
    )
    async with run_daemon(config, ready=False) as daemon:
        await wait_until(
            lambda: any(line["attempts"] >= 4 for line in logs.events("cannot connect")),
            what="a fourth refused attempt",
        )
        assert not daemon.ready
    assert logs.events("connected") == []
    first = logs.events("cannot connect")[0]
    assert first["level"] == "warning"
    assert "127.0.0.1" in first["error"]
    assert logs.events("stopped")  # it stopped cleanly when asked
    assert _WRONG_PASSWORD not in logs.text


async def _untrusted_tls(
    mosquitto: Mosquitto, prefix: str, tmp_path: Path, logs: LogCapture
) -> list[warnings.WarningMessage]:
    """Run a daemon that cannot verify the broker's certificate; return the warnings raised."""
    config = make_config(
        tmp_path,
        port=mosquitto.tls_port,
        prefix=prefix,
        broker={"tls": {}, "reconnect": {"initial_delay": 0.05, "max_delay": 0.1}},
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with run_daemon(config, ready=False) as daemon:
            await wait_until(
                lambda: any(line["attempts"] >= 2 for line in logs.events("cannot connect")),
                what="a second refused attempt",
            )
            assert not daemon.ready
        gc.collect()  # whatever was left unclosed warns now, inside this block
    return caught


async def test_daemon_keeps_retrying_an_untrusted_certificate(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path, logs: LogCapture
) -> None:
    """A broker certificate the system CAs do not trust: not ready, retrying, saying why."""
    await _untrusted_tls(mosquitto, topic_prefix, tmp_path, logs)
    assert logs.events("connected") == []
    assert "certificate verify failed" in logs.events("cannot connect")[0]["error"]


async def test_daemon_closes_the_socket_of_a_failed_tls_handshake(
    mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path, logs: LogCapture
) -> None:
    """Each refused TLS handshake closes its socket: no unclosed-socket ResourceWarning."""
    caught = await _untrusted_tls(mosquitto, topic_prefix, tmp_path, logs)
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []
