"""Connecting to a broker that does not speak the configured protocol: say what to do."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mqtt_collector._config.load import Config
from mqtt_collector._daemon.daemon import Daemon
from mqtt_collector._mqtt.aiomqtt.transport import AiomqttTransport
from mqtt_collector._mqtt.transport import ConnectError
from tests.helpers.daemon import WAIT, LogCapture, capture_logging, make_config, wait_until
from tests.helpers.scripted_broker import ScriptedBroker, ScriptedConnection

_FAST = {"initial_delay": 0.05, "max_delay": 0.1}
_ADVICE = "set broker.protocol: 3.1.1"


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Every log line of the test, as the CLI would write it."""
    with capture_logging("info") as captured:
        yield captured


@contextlib.asynccontextmanager
async def _running(config: Config, *, connect_timeout: float = 10.0) -> AsyncIterator[Daemon]:
    """Run a Daemon whose transport gives up on a CONNACK after ``connect_timeout`` seconds."""
    broker = config.broker
    transport = AiomqttTransport(
        host=broker.host,
        port=broker.port,
        client_id=broker.client_id,
        protocol=broker.protocol.value,
        connect_timeout=connect_timeout,
    )
    daemon = Daemon(config, transport=transport)
    task = asyncio.create_task(daemon.run())
    try:
        yield daemon
    finally:
        daemon.stop()
        async with asyncio.timeout(WAIT):
            await task


def _config(tmp_path: Path, port: int, prefix: str) -> Config:
    return make_config(tmp_path, port=port, prefix=prefix, broker={"reconnect": _FAST})


@pytest.mark.parametrize("v311_format", [True, False], ids=["connack-3.1.1-rc1", "connack-0x84"])
async def test_daemon_says_the_broker_does_not_speak_mqtt5(
    topic_prefix: str, tmp_path: Path, logs: LogCapture, v311_format: bool
) -> None:
    """A CONNACK "unsupported protocol version" to MQTT 5: an error saying to use 3.1.1."""

    async def mqtt311_only(conn: ScriptedConnection) -> None:
        await conn.read_connect()
        await conn.connack(1 if v311_format else 0x84, v311_format=v311_format)
        await conn.wait_closed()

    async with (
        ScriptedBroker(mqtt311_only) as broker,
        _running(_config(tmp_path, broker.port, topic_prefix)) as daemon,
    ):
        await wait_until(lambda: len(broker.connections) >= 2, what="a second try")
        assert not daemon.ready
    [first, *_] = logs.events(f"cannot connect: the broker does not speak MQTT 5; {_ADVICE}")
    assert first["level"] == "error"
    assert "Unsupported protocol version" in first["error"]


async def test_daemon_suggests_mqtt311_when_a_connect_is_not_answered(
    topic_prefix: str, tmp_path: Path, logs: LogCapture
) -> None:
    """No CONNACK to an MQTT 5 CONNECT (amqtt, RabbitMQ 3.10): the log line suggests 3.1.1."""

    async def silent(conn: ScriptedConnection) -> None:
        await conn.read_connect()
        await conn.wait_closed()

    async with ScriptedBroker(silent) as broker:
        config = _config(tmp_path, broker.port, topic_prefix)
        async with _running(config, connect_timeout=0.2) as daemon:
            await wait_until(lambda: logs.events("cannot connect"), what="the failed connect")
            assert not daemon.ready
    [first, *_] = logs.events("cannot connect")
    assert first["level"] == "warning"
    assert "timed out" in first["error"]
    assert _ADVICE in first["hint"]
    assert "does not speak MQTT 5" in first["hint"]


async def test_daemon_on_mqtt311_gives_no_protocol_advice_on_a_timeout(
    topic_prefix: str, tmp_path: Path, logs: LogCapture
) -> None:
    """Configured for 3.1.1 already: a silent broker is just a failed connect."""

    async def silent(conn: ScriptedConnection) -> None:
        await conn.read_connect()
        await conn.wait_closed()

    async with ScriptedBroker(silent) as broker:
        config = make_config(
            tmp_path,
            port=broker.port,
            prefix=topic_prefix,
            broker={"protocol": "3.1.1", "reconnect": _FAST},
        )
        async with _running(config, connect_timeout=0.2):
            await wait_until(lambda: logs.events("cannot connect"), what="the failed connect")
    assert "hint" not in logs.events("cannot connect")[0]


async def test_transport_closes_the_socket_of_an_unanswered_connect() -> None:
    """A CONNECT timeout raises ConnectError(timed_out) and closes the socket (no leak)."""
    ended = asyncio.Event()

    async def silent(conn: ScriptedConnection) -> None:
        await conn.read_connect()
        await conn.wait_closed()
        ended.set()

    async with ScriptedBroker(silent) as broker:
        transport = AiomqttTransport(
            host="127.0.0.1", port=broker.port, client_id="t", protocol="5", connect_timeout=0.2
        )
        with pytest.raises(ConnectError) as raised:
            await transport.connect()
        assert raised.value.timed_out
        assert not raised.value.unsupported_protocol
        async with asyncio.timeout(WAIT):
            await ended.wait()
