"""The daemon losing its broker: reconnect, resubscribe, and get what the broker kept meanwhile."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mqtt_collector._config.load import Config
from mqtt_collector._daemon import daemon as _daemon
from mqtt_collector._daemon.daemon import Daemon
from tests.helpers.daemon import (
    LogCapture,
    capture_logging,
    collector_ctx,
    make_config,
    records,
    run_daemon,
    wait_until,
)
from tests.helpers.mosquitto import Mosquitto, MosquittoFactory
from tests.helpers.mqtt_client import connected_client
from tests.helpers.scripted_broker import ScriptedBroker, ScriptedConnection

_FAST = {"initial_delay": 0.1, "max_delay": 0.3}


@pytest.fixture(params=["aiomqtt", "gmqtt"])
def client(request: pytest.FixtureRequest) -> str:
    """The MQTT client library: the real-broker tests run on both transports (MQTT 5)."""
    return str(request.param)


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Every log line of the test, as the CLI would write it."""
    with capture_logging("info") as captured:
        yield captured


def _received(daemon: Daemon) -> float:
    value = daemon.metrics.registry.get_sample_value("mqtt_collector_messages_received_total")
    return 0.0 if value is None else value


def _data(daemon: Daemon) -> set[int]:
    return {int(r.data) for r in records(daemon)}


def _persistent(broker: Mosquitto, prefix: str, directory: Path, **keys: Any) -> Config:
    """A config with a persistent session (stable client id), QoS 1, fast reconnects."""
    return make_config(
        directory,
        port=broker.port,
        prefix=prefix,
        broker={
            "client_id": f"reconnect-{uuid.uuid4().hex[:8]}",
            "session": {"persistent": True, "expiry": 300},
            "reconnect": _FAST,
            **keys,
        },
        queue={"drain_timeout": 2},
    )


@pytest.mark.broker
async def test_daemon_reconnects_and_gets_what_the_broker_kept(
    private_mosquitto: Mosquitto,
    topic_prefix: str,
    tmp_path: Path,
    logs: LogCapture,
    monkeypatch: pytest.MonkeyPatch,
    *,
    client: str,
) -> None:
    """Broker restarted mid-stream: unacked messages and those queued meanwhile arrive after."""
    broker = private_mosquitto
    config = _persistent(broker, topic_prefix, tmp_path, client=client)
    topic = f"{topic_prefix}/stream"
    async with run_daemon(config) as daemon:
        ctx = collector_ctx(daemon)
        try:
            with connected_client(broker.port) as publisher:
                for index in range(10):
                    publisher.publish_json(topic, index)
                await wait_until(lambda: _data(daemon) == set(range(10)), what="the first 10")
                # Hold the collector: the next 10 are received but unacked when the broker goes.
                ctx.gate.clear()
                for index in range(10, 20):
                    publisher.publish_json(topic, index)
            await wait_until(lambda: _received(daemon) == 20, what="10 held unacked")
            # Keep the daemon away after the restart until the test has published more.
            back = asyncio.Event()
            connect = daemon.transport.connect

            async def held_connect() -> None:
                await back.wait()
                await connect()

            monkeypatch.setattr(daemon.transport, "connect", held_connect)
            await asyncio.to_thread(broker.stop)
            await wait_until(lambda: logs.events("connection lost"), what="the loss to be seen")
            assert not daemon.ready
            await asyncio.to_thread(broker.start)
            with connected_client(broker.port) as publisher:
                for index in range(20, 30):
                    publisher.publish_json(topic, index)  # queued in the session
            back.set()
            await wait_until(lambda: daemon.ready, what="the daemon to reconnect")
            ctx.gate.set()
            with connected_client(broker.port) as publisher:
                for index in range(30, 40):
                    publisher.publish_json(topic, index)
            await wait_until(lambda: _data(daemon) == set(range(40)), what="all 40 messages")
        finally:
            ctx.gate.set()
    assert len(logs.events("connection lost")) == 1
    assert len(logs.events("reconnected")) == 1
    assert len(logs.events("subscribed")) == 2


@pytest.mark.broker
async def test_daemon_sees_the_loss_while_holding_receive_maximum(
    private_mosquitto: Mosquitto,
    topic_prefix: str,
    tmp_path: Path,
    logs: LogCapture,
    client: str,
) -> None:
    """A broker lost while receive_maximum messages are unacked is noticed at once."""
    broker = private_mosquitto
    config = _persistent(broker, topic_prefix, tmp_path, receive_maximum=5, client=client)
    async with run_daemon(config) as daemon:
        ctx = collector_ctx(daemon)
        topic = f"{topic_prefix}/stream"
        try:
            with connected_client(broker.port) as publisher:
                for index in range(10):
                    publisher.publish_json(topic, index)
                await wait_until(lambda: _data(daemon) == set(range(10)), what="the first 10")
                ctx.gate.clear()
                for index in range(10, 25):
                    publisher.publish_json(topic, index)
            await wait_until(lambda: _received(daemon) >= 15, what="5 held unacked")
            await asyncio.to_thread(broker.stop)
            await wait_until(lambda: not daemon.ready, what="the loss to be seen", timeout=3)
        finally:
            ctx.gate.set()


@pytest.mark.broker
async def test_daemon_resubscribes_to_a_broker_that_forgot_it(
    make_mosquitto: MosquittoFactory,
    topic_prefix: str,
    tmp_path: Path,
    logs: LogCapture,
    client: str,
) -> None:
    """A broker restarted without persistence has no session: the daemon subscribes again."""
    broker = make_mosquitto(persistence=False)
    config = make_config(
        tmp_path,
        port=broker.port,
        prefix=topic_prefix,
        broker={"reconnect": _FAST, "client": client},
    )
    async with run_daemon(config) as daemon:
        with connected_client(broker.port) as publisher:
            publisher.publish_json(f"{topic_prefix}/a", 1)
        await wait_until(lambda: _data(daemon) == {1}, what="the first message")
        await asyncio.to_thread(broker.restart)
        await wait_until(lambda: logs.events("reconnected") and daemon.ready, what="reconnect")
        with connected_client(broker.port) as publisher:
            publisher.publish_json(f"{topic_prefix}/a", 2)
        await wait_until(lambda: _data(daemon) == {1, 2}, what="the message after the restart")
    assert len(logs.events("connection lost")) == 1


@pytest.mark.broker
async def test_daemon_waits_for_a_broker_that_is_down(
    make_mosquitto: MosquittoFactory,
    topic_prefix: str,
    tmp_path: Path,
    logs: LogCapture,
    client: str,
) -> None:
    """Started while the broker is down: it retries, not ready, and connects once it is up."""
    broker = make_mosquitto(start=False)
    config = make_config(
        tmp_path,
        port=broker.port,
        prefix=topic_prefix,
        broker={"reconnect": _FAST, "client": client},
    )
    async with run_daemon(config, ready=False) as daemon:
        await wait_until(
            lambda: any(line["attempts"] >= 2 for line in logs.events("cannot connect")),
            what="two failed attempts",
        )
        assert not daemon.ready
        await asyncio.to_thread(broker.start)
        await wait_until(lambda: daemon.ready, what="the daemon to connect")
        with connected_client(broker.port) as publisher:
            publisher.publish_json(f"{topic_prefix}/a", 7)
        await wait_until(lambda: _data(daemon) == {7}, what="the message")
    [connected] = logs.events("connected")
    assert connected["attempts"] > 1
    assert logs.events("reconnected") == []
    assert logs.events("cannot connect")[0]["level"] == "warning"


async def _accept_then_close(conn: ScriptedConnection) -> None:
    """Accept the connection and the subscription, then close it at once (no DISCONNECT)."""
    await conn.read_connect()
    await conn.connack()
    request = await conn.read_subscribe()
    await conn.suback(request.mid, [1])
    conn.close()


def _lost(logs: LogCapture) -> list[dict[str, Any]]:
    return logs.events("connection lost")


class TestFlapping:
    """Connections the broker accepts and then drops at once: back off, say so, not ready."""

    async def test_daemon_backs_off_after_connections_that_fail_once_accepted(
        self, topic_prefix: str, tmp_path: Path, logs: LogCapture
    ) -> None:
        """The failure count is not reset at CONNACK: it grows with each quick loss."""
        async with ScriptedBroker(_accept_then_close) as broker:
            config = make_config(
                tmp_path,
                port=broker.port,
                prefix=topic_prefix,
                broker={"reconnect": {"initial_delay": 0.05, "max_delay": 0.4}},
            )
            async with run_daemon(config, ready=False) as daemon:
                await wait_until(lambda: len(_lost(logs)) >= 6, what="six quick losses")
                await wait_until(
                    lambda: daemon.why_not_ready.startswith("connection unstable"),
                    what="the daemon to say it is unstable",
                )
                assert not daemon.ready
        lost = _lost(logs)[:6]
        assert [line["lost_in_a_row"] for line in lost] == [1, 2, 3, 4, 5, 6]
        for count, line in enumerate(lost, start=1):
            assert 0.05 <= line["retry_in"] <= min(0.4, 0.05 * 2 ** (count - 1))
        [unstable, *_] = logs.events("connection unstable: backing off until one stays up")
        assert unstable["level"] == "warning"
        assert unstable["lost_in_a_row"] == 2
        assert config.broker.client_id in unstable["hint"]
        assert "each running daemon needs its own client_id" in unstable["hint"]

    async def test_daemon_trusts_a_connection_again_once_it_stayed_up(
        self,
        topic_prefix: str,
        tmp_path: Path,
        logs: LogCapture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """After a connection stayed up for the healthy time: ready, and the count starts over."""
        monkeypatch.setattr(_daemon, "_HEALTHY_AFTER", 0.5)
        release = asyncio.Event()

        async def flaky_then_steady(conn: ScriptedConnection) -> None:
            if len(broker.connections) <= 3:
                await _accept_then_close(conn)
                return
            await conn.read_connect()
            await conn.connack()
            request = await conn.read_subscribe()
            await conn.suback(request.mid, [1])
            await release.wait()
            conn.close()

        async with ScriptedBroker(flaky_then_steady) as broker:
            config = make_config(
                tmp_path,
                port=broker.port,
                prefix=topic_prefix,
                broker={"keepalive": 1, "reconnect": {"initial_delay": 0.05, "max_delay": 0.4}},
            )
            async with run_daemon(config, ready=False) as daemon:
                await wait_until(lambda: len(broker.connections) == 4, what="the fourth connection")
                await wait_until(lambda: logs.events("subscribed")[3:], what="it subscribed")
                assert not daemon.ready  # still unstable: three lost in a row
                assert daemon.why_not_ready.startswith("connection unstable")
                await wait_until(lambda: daemon.ready, what="the connection to be trusted again")
                release.set()
                await wait_until(lambda: len(_lost(logs)) == 4, what="the steady one's loss")
        assert logs.events("connection stable again")
        last = _lost(logs)[3]
        assert last["level"] == "warning"
        assert "lost_in_a_row" not in last
        assert last["retry_in"] == 0.05  # the initial delay: the count started over

    async def test_daemon_warns_about_a_session_taken_over(
        self, topic_prefix: str, tmp_path: Path, logs: LogCapture
    ) -> None:
        """MQTT 5 DISCONNECT 0x8E: a warning that another client uses the same client_id."""

        async def taken_over_once(conn: ScriptedConnection) -> None:
            await conn.read_connect()
            await conn.connack()
            request = await conn.read_subscribe()
            await conn.suback(request.mid, [1])
            if len(broker.connections) == 1:
                await conn.disconnect(0x8E)
            else:
                await conn.wait_closed()

        async with ScriptedBroker(taken_over_once) as broker:
            config = make_config(
                tmp_path,
                port=broker.port,
                prefix=topic_prefix,
                broker={"client_id": "twin", "reconnect": _FAST},
            )
            async with run_daemon(config) as daemon:
                await wait_until(lambda: len(broker.connections) == 2, what="the reconnect")
                await wait_until(lambda: daemon.ready, what="ready again")
        [taken] = logs.events("session taken over by another client with the same client_id")
        assert taken["level"] == "warning"
        assert taken["client_id"] == "twin"
        assert "each running daemon needs its own client_id" in taken["hint"]

    @pytest.mark.broker
    async def test_daemon_sharing_its_client_id_is_told_so(
        self,
        private_mosquitto: Mosquitto,
        topic_prefix: str,
        tmp_path: Path,
        logs: LogCapture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Another client with the daemon's client_id (a second daemon): the warning names it."""
        # Longer than the twin's reconnect delay (1 s): each of the daemon's connections is
        # taken over before it counts as healthy.
        monkeypatch.setattr(_daemon, "_HEALTHY_AFTER", 3.0)
        broker = private_mosquitto
        config = _persistent(broker, topic_prefix, tmp_path, keepalive=1)
        client_id = config.broker.client_id
        async with run_daemon(config) as daemon:
            twin = paho.Client(
                CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
            )
            twin.reconnect_delay_set(1, 1)
            twin.connect(broker.host, broker.port)
            twin.loop_start()
            try:
                await wait_until(
                    lambda: logs.events("connection unstable: backing off until one stays up"),
                    what="the daemon to see it is flapping",
                )
                assert not daemon.ready
            finally:
                twin.disconnect()
                twin.loop_stop()
            await wait_until(lambda: daemon.ready, what="the daemon to stay connected again")
        [unstable, *_] = logs.events("connection unstable: backing off until one stays up")
        assert f"client_id '{client_id}'" in unstable["hint"]
