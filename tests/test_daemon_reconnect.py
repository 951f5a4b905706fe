"""The daemon losing its broker: reconnect, resubscribe, and get what the broker kept meanwhile."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mqtt_collector._config import Config
from mqtt_collector._daemon import Daemon
from tests.daemon_helpers import (
    LogCapture,
    Publisher,
    capture_logging,
    collector_ctx,
    make_config,
    records,
    run_daemon,
    wait_until,
)
from tests.mosquitto import Mosquitto, MosquittoFactory

pytestmark = pytest.mark.broker

_FAST = {"initial_delay": 0.1, "max_delay": 0.3}


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


async def test_daemon_reconnects_and_gets_what_the_broker_kept(
    private_mosquitto: Mosquitto,
    topic_prefix: str,
    tmp_path: Path,
    logs: LogCapture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Broker restarted mid-stream: unacked messages and those queued meanwhile arrive after."""
    broker = private_mosquitto
    config = _persistent(broker, topic_prefix, tmp_path)
    topic = f"{topic_prefix}/stream"
    async with run_daemon(config) as daemon:
        ctx = collector_ctx(daemon)
        try:
            with Publisher(broker.port) as publisher:
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
            with Publisher(broker.port) as publisher:
                for index in range(20, 30):
                    publisher.publish_json(topic, index)  # queued in the session
            back.set()
            await wait_until(lambda: daemon.ready, what="the daemon to reconnect")
            ctx.gate.set()
            with Publisher(broker.port) as publisher:
                for index in range(30, 40):
                    publisher.publish_json(topic, index)
            await wait_until(lambda: _data(daemon) == set(range(40)), what="all 40 messages")
        finally:
            ctx.gate.set()
    assert len(logs.events("connection lost")) == 1
    assert len(logs.events("reconnected")) == 1
    assert len(logs.events("subscribed")) == 2


async def test_daemon_sees_the_loss_while_holding_receive_maximum(
    private_mosquitto: Mosquitto, topic_prefix: str, tmp_path: Path, logs: LogCapture
) -> None:
    """A broker lost while receive_maximum messages are unacked is noticed at once."""
    broker = private_mosquitto
    config = _persistent(broker, topic_prefix, tmp_path, receive_maximum=5)
    async with run_daemon(config) as daemon:
        ctx = collector_ctx(daemon)
        topic = f"{topic_prefix}/stream"
        try:
            with Publisher(broker.port) as publisher:
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


async def test_daemon_resubscribes_to_a_broker_that_forgot_it(
    make_mosquitto: MosquittoFactory, topic_prefix: str, tmp_path: Path, logs: LogCapture
) -> None:
    """A broker restarted without persistence has no session: the daemon subscribes again."""
    broker = make_mosquitto(persistence=False)
    config = make_config(
        tmp_path, port=broker.port, prefix=topic_prefix, broker={"reconnect": _FAST}
    )
    async with run_daemon(config) as daemon:
        with Publisher(broker.port) as publisher:
            publisher.publish_json(f"{topic_prefix}/a", 1)
        await wait_until(lambda: _data(daemon) == {1}, what="the first message")
        await asyncio.to_thread(broker.restart)
        await wait_until(lambda: logs.events("reconnected") and daemon.ready, what="reconnect")
        with Publisher(broker.port) as publisher:
            publisher.publish_json(f"{topic_prefix}/a", 2)
        await wait_until(lambda: _data(daemon) == {1, 2}, what="the message after the restart")
    assert len(logs.events("connection lost")) == 1


async def test_daemon_waits_for_a_broker_that_is_down(
    make_mosquitto: MosquittoFactory, topic_prefix: str, tmp_path: Path, logs: LogCapture
) -> None:
    """Started while the broker is down: it retries, not ready, and connects once it is up."""
    broker = make_mosquitto(start=False)
    config = make_config(
        tmp_path, port=broker.port, prefix=topic_prefix, broker={"reconnect": _FAST}
    )
    async with run_daemon(config, ready=False) as daemon:
        await wait_until(
            lambda: any(line["attempts"] >= 2 for line in logs.events("cannot connect")),
            what="two failed attempts",
        )
        assert not daemon.ready
        await asyncio.to_thread(broker.start)
        await wait_until(lambda: daemon.ready, what="the daemon to connect")
        with Publisher(broker.port) as publisher:
            publisher.publish_json(f"{topic_prefix}/a", 7)
        await wait_until(lambda: _data(daemon) == {7}, what="the message")
    [connected] = logs.events("connected")
    assert connected["attempts"] > 1
    assert logs.events("reconnected") == []
    assert logs.events("cannot connect")[0]["level"] == "warning"
