"""What the transport relies on in aiomqtt and paho-mqtt, and what happens when it breaks."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import subprocess
import sys
import textwrap
import uuid
from typing import TYPE_CHECKING, Any

import aiomqtt
import pytest

from mqtt_collector._daemon.daemon import Daemon
from mqtt_collector._exceptions import IncompatibleClientError
from mqtt_collector._mqtt.aiomqtt.private import ReadGate, check_client, message_queue
from mqtt_collector._mqtt.aiomqtt.transport import AiomqttTransport
from tests.helpers.daemon import WAIT, make_config, wait_until, write_config
from tests.helpers.scripted_broker import ScriptedBroker

if TYPE_CHECKING:
    from pathlib import Path

    from tests.helpers.mosquitto import Mosquitto

VERSIONS = (
    f"aiomqtt {importlib.metadata.version('aiomqtt')}",
    f"paho-mqtt {importlib.metadata.version('paho-mqtt')}",
)


def _reader(fd: int) -> Any:
    """The callback the running loop calls when ``fd`` is readable (asyncio's selector loop)."""
    loop = asyncio.get_running_loop()
    key = loop._selector.get_key(fd)  # type: ignore[attr-defined]
    return key.data[0]._callback


def _fd(client: aiomqtt.Client) -> int:
    sock = client._client.socket()
    assert sock is not None
    return int(sock.fileno())


class _NoQueue(aiomqtt.Client):
    """An aiomqtt.Client as a release that moved its message queue would make it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self._queue


class TestAssumptions:
    """What aiomqtt and paho-mqtt do that the transport's private reach depends on."""

    @pytest.mark.broker
    async def test_aiomqtt_installs_its_reader_once_before_connecting_returns(
        self, mosquitto: Mosquitto, topic_prefix: str
    ) -> None:
        """The reader is aiomqtt's once __aenter__ returns, and the gate's for good after."""
        client = aiomqtt.Client(mosquitto.host, mosquitto.port)
        async with client:
            fd = _fd(client)
            assert "_on_socket_open" in _reader(fd).__qualname__
            gate = ReadGate(client, full=lambda: False)
            assert _reader(fd) == gate._read
            topic = f"{topic_prefix}/t"
            await client.subscribe(topic, qos=1)
            await client.publish(topic, b"x", qos=1)
            async with asyncio.timeout(WAIT):
                await anext(client.messages)
            # A subscribe, a publish and a message later, aiomqtt has not put its own back.
            assert _reader(fd) == gate._read

    @pytest.mark.broker
    async def test_aiomqtt_puts_every_message_in_its_queue(
        self, mosquitto: Mosquitto, topic_prefix: str
    ) -> None:
        """Each message received lands in `_queue`, in order, where the transport takes it."""
        topic = f"{topic_prefix}/t"
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            queue = message_queue(client)
            await client.subscribe(topic, qos=1)
            for body in (b"1", b"2", b"3"):
                await client.publish(topic, body, qos=1)
            await wait_until(lambda: queue.qsize() >= 3, what="three messages in the queue")
            assert [queue.get_nowait().payload for _ in range(3)] == [b"1", b"2", b"3"]

    async def test_paho_lets_a_message_callback_exception_out_of_loop_read(self) -> None:
        """An exception of on_message comes out of paho's loop_read, for the reader to see."""
        async with ScriptedBroker() as broker:
            client = aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5)
            raised = RuntimeError("from the callback")

            def on_message(*args: object) -> None:
                raise raised

            client._client.on_message = on_message
            async with client:
                await client.subscribe("t", qos=1)
                await broker.publish(b"t", b"x", mid=1)
                # aiomqtt's reader turns an exception out of loop_read into the lost connection.
                async with asyncio.timeout(WAIT):
                    with pytest.raises(RuntimeError) as caught:
                        await asyncio.shield(client._disconnected)
                assert caught.value is raised
                client._client._sock_close()

    async def test_check_client_accepts_a_real_client(self) -> None:
        """The installed aiomqtt passes every check made before connecting."""
        check_client(aiomqtt.Client("127.0.0.1", 1))


class TestBrokenAssumption:
    """A private part that is not there any more is fatal, with the versions named."""

    async def test_check_client_names_the_versions(self) -> None:
        """The error says what is missing and which aiomqtt and paho-mqtt are installed."""
        with pytest.raises(IncompatibleClientError) as caught:
            check_client(_NoQueue("127.0.0.1", 1))
        assert "'_queue'" in str(caught.value)
        for version in VERSIONS:
            assert version in str(caught.value)

    @pytest.mark.broker
    async def test_daemon_stops_with_the_error_instead_of_reconnecting(
        self,
        mosquitto: Mosquitto,
        topic_prefix: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Daemon.run raises IncompatibleClientError; it never becomes ready."""
        monkeypatch.setattr(aiomqtt, "Client", _NoQueue)
        config = make_config(tmp_path, port=mosquitto.port, prefix=topic_prefix)
        daemon = Daemon(config)
        async with asyncio.timeout(WAIT):
            with pytest.raises(IncompatibleClientError, match="_queue"):
                await daemon.run()
        assert not daemon.ready
        assert daemon.metrics.registry.get_sample_value("mqtt_collector_connections_total") == 0

    @pytest.mark.broker
    def test_cli_exits_1_naming_the_versions(
        self, mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path
    ) -> None:
        """`mqtt-collector run` exits 1 at once, its log naming the installed versions."""
        path = write_config(
            tmp_path, port=mosquitto.port, prefix=topic_prefix, logging={"format": "json"}
        )
        script = textwrap.dedent(
            f"""
            import sys, aiomqtt
            from tests.test_transport_private import _NoQueue
            aiomqtt.Client = _NoQueue
            from mqtt_collector._cli import main
            sys.exit(main(["run", "--config", {str(path)!r}]))
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=WAIT * 3,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
        fatal = [line for line in lines if line["event"] == "fatal"]
        assert len(fatal) == 1, done.stderr
        for version in VERSIONS:
            assert version in fatal[0]["error"]
        assert "Traceback" not in done.stderr
        assert "exception" not in fatal[0]
        assert "cannot connect" not in done.stderr


@pytest.mark.broker
async def test_transport_connect_refuses_an_incompatible_client(
    mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """connect() raises IncompatibleClientError (not TransportError) before connecting."""
    monkeypatch.setattr(aiomqtt, "Client", _NoQueue)
    transport = AiomqttTransport(
        host=mosquitto.host,
        port=mosquitto.port,
        client_id=f"private-{uuid.uuid4().hex[:8]}",
        protocol="5",
    )
    with pytest.raises(IncompatibleClientError):
        await transport.connect()
    assert not transport.connected
