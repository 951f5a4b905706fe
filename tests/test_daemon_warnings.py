"""Warnings about a setup that works but not as meant: overlaps, lower QoS, stale subscriptions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import pytest

from mqtt_collector._config.load import Config
from mqtt_collector._daemon.daemon import Daemon
from mqtt_collector._daemon.wiring import overlapping_filters
from mqtt_collector._exceptions import TransportError
from mqtt_collector._mqtt.transport import ConnectionInfo, Inbound
from tests.helpers.daemon import (
    WAIT,
    LogCapture,
    capture_logging,
    make_config,
    records,
    run_daemon,
    wait_until,
)
from tests.helpers.mosquitto import MosquittoFactory
from tests.helpers.mqtt_client import connected_client

_STALE = "message matches no subscription: acked and dropped"
_CLEAR = "credentials go in clear text: broker.tls is off and the broker is not on this host"
_SHARE_OVERLAP = (
    "overlapping subscriptions: a message matching both may arrive twice"
    " (once through the share group)"
)


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Every log line of the test, as the CLI would write it."""
    with capture_logging("info") as captured:
        yield captured


class _Unreachable:
    """A Transport whose broker is never there: the daemon starts, and keeps trying."""

    connection = 0
    connected = False
    on_ack: Callable[[], object] | None = None

    async def connect(self) -> ConnectionInfo | None:
        raise TransportError("nobody there")

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> Sequence[int] | None:
        raise AssertionError("never connected")

    async def unsubscribe(self, filters: Sequence[str]) -> None:
        raise AssertionError("never connected")

    def backlog(self) -> int:
        return 0

    def messages(self) -> AsyncIterator[Inbound]:
        raise AssertionError("never connected")

    def ack(self, message: Inbound) -> None:
        raise AssertionError("never connected")

    def hold(self, message: Inbound) -> None:
        raise AssertionError("never connected")

    def unacked(self) -> int:
        return 0

    def blocked(self) -> bool:
        return False

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        qos: int,
        retain: bool = False,
        user_properties: Sequence[tuple[str, str]] = (),
    ) -> None:
        raise TransportError("nobody there")

    async def disconnect(self) -> None:
        pass


@contextlib.asynccontextmanager
async def _started(config: Config) -> AsyncIterator[Daemon]:
    """Run a Daemon that never gets a connection, until it has tried once."""
    daemon = Daemon(config, transport=_Unreachable())
    task = asyncio.create_task(daemon.run())
    try:
        await wait_until(lambda: daemon.queue.running or task.done(), what="the start")
        yield daemon
    finally:
        daemon.stop()
        async with asyncio.timeout(WAIT):
            await task


class TestOverlaps:
    """Subscriptions some message matches more than one of: it arrives once per subscription."""

    def test_overlapping_filters_include_a_share_group_and_a_plain_filter(self) -> None:
        """`$share/g/a/#` and `a/+` overlap; so do two groups; `$SYS` stays apart from `#`."""
        found = overlapping_filters(
            [("$share/g/a/#", 1), ("a/+", 1), ("$share/h/a/b", 1), ("$share/g/#", 1), ("$SYS/x", 1)]
        )
        assert ("$share/g/a/#", "a/+") in found
        assert ("$share/g/a/#", "$share/h/a/b") in found
        assert ("a/+", "$share/h/a/b") in found
        assert ("$share/g/#", "$SYS/x") not in found

    async def test_daemon_warns_at_start_about_a_share_group_overlapping_a_filter(
        self, tmp_path: Path, logs: LogCapture
    ) -> None:
        """One warning naming both filters, saying the message may come twice."""
        config = make_config(
            tmp_path,
            port=1,
            prefix="p",
            subscriptions=[
                {"filter": "a/+", "topics": ["all"]},
                {"filter": "a/#", "share_group": "g", "topics": ["all"]},
            ],
        )
        async with _started(config):
            pass
        [warning] = logs.events(_SHARE_OVERLAP)
        assert warning["level"] == "warning"
        assert warning["filters"] == ["a/+", "$share/g/a/#"]


class TestCredentialsInClear:
    """A user name or password sent without TLS to another host."""

    @pytest.mark.parametrize("host", ["192.0.2.10", "2001:db8::1"])
    async def test_daemon_warns_at_start_about_credentials_without_tls(
        self, tmp_path: Path, logs: LogCapture, host: str
    ) -> None:
        """No TLS, a remote host, a password: a warning at start names the host."""
        config = make_config(
            tmp_path,
            port=1,
            prefix="p",
            broker={"host": host, "username": "collector", "password": "s3cret"},
        )
        async with _started(config):
            pass
        [warning] = logs.events(_CLEAR)
        assert warning["level"] == "warning"
        assert warning["host"] == host
        assert "s3cret" not in logs.text

    @pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
    async def test_daemon_says_nothing_about_credentials_to_this_host(
        self, tmp_path: Path, logs: LogCapture, host: str
    ) -> None:
        """Over loopback the credentials never leave the machine: no warning."""
        config = make_config(
            tmp_path,
            port=1,
            prefix="p",
            broker={"host": host, "username": "collector", "password": "s3cret"},
        )
        async with _started(config):
            pass
        assert logs.events("started")
        assert logs.events(_CLEAR) == []


@pytest.mark.broker
async def test_daemon_warns_once_when_the_broker_grants_a_lower_qos(
    make_mosquitto: MosquittoFactory, topic_prefix: str, tmp_path: Path, logs: LogCapture
) -> None:
    """A SUBACK granting QoS 0 to a QoS 1 filter: one warning naming filter, asked, granted."""
    broker = make_mosquitto(extra_conf="max_qos 0")
    config = make_config(tmp_path, port=broker.port, prefix=topic_prefix)
    async with run_daemon(config):
        pass
    [warning] = logs.events("subscription granted at a lower QoS than asked")
    assert warning["level"] == "warning"
    assert (warning["filter"], warning["asked"], warning["granted"]) == (f"{topic_prefix}/#", 1, 0)


@pytest.mark.broker
async def test_daemon_warns_about_messages_of_a_subscription_the_config_dropped(
    make_mosquitto: MosquittoFactory, topic_prefix: str, tmp_path: Path, logs: LogCapture
) -> None:
    """A persistent session keeps a filter the config no longer has: one sampled warning."""
    broker = make_mosquitto()
    session = {"client_id": f"stale-{tmp_path.name}", "session": {"persistent": True}}

    def config(*filters: str) -> Config:
        subscriptions = [{"filter": f"{topic_prefix}/{f}/#", "topics": ["all"]} for f in filters]
        return make_config(
            tmp_path,
            port=broker.port,
            prefix=topic_prefix,
            broker=session,
            subscriptions=subscriptions,
        )

    async with run_daemon(config("old", "new")):
        pass
    async with run_daemon(config("new")) as daemon:
        with connected_client(broker.port) as publisher:
            for topic in ("old/x", "old/x", "old/x", "old/y", "new/z"):
                publisher.publish_json(f"{topic_prefix}/{topic}", 1)
        await wait_until(lambda: len(records(daemon)) == 1, what="the routed message")
        await wait_until(
            lambda: (
                daemon.metrics.registry.get_sample_value(
                    "mqtt_collector_messages_rejected_total", {"reason": "unrouted"}
                )
                == 4
            ),
            what="four unrouted messages",
        )
    [warning] = logs.events(_STALE)
    assert warning["level"] == "warning"
    assert warning["topic"] == f"{topic_prefix}/old/x"
    assert session["client_id"] in warning["hint"]
    assert "clean start" in warning["hint"]
