"""A dead letter that did not get through leaves its message unacknowledged, to come again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mqtt_collector._config.load import Config
from mqtt_collector._daemon.daemon import Daemon
from mqtt_collector._exceptions import TransportError
from mqtt_collector._mqtt.transport import Inbound
from mqtt_collector.testing import MemoryTransport
from tests.helpers.daemon import (
    WAIT,
    capture_logging,
    make_config,
    recorder_entry,
    records,
    wait_until,
)

REFUSED = TransportError("the broker refused the publish to 'dlq/bad': Not authorized (0x87)")


def _config(tmp_path: Path, **failing: Any) -> Config:
    """Messages on t/bad go to a collector that fails them, t/good ones to a recorder."""
    return make_config(
        tmp_path,
        port=1883,  # never used: the transport is in memory
        prefix="t",
        broker={"client_id": "dead-letter-test", "reconnect": {"initial_delay": 0.05}},
        subscriptions=[{"filter": "t/+", "decode": "bytes", "topics": ["{1}"]}],
        collectors=[
            {
                "key": "failing",
                "processor": "tests.helpers.collectors:fails",
                "topics": ["bad"],
                "dead_letter": {"topic": "dlq/bad", "qos": 1},
                **failing,
            },
            recorder_entry(topics=["good"]),
        ],
        queue={"drain_timeout": 2},
    )


def _count(daemon: Daemon, name: str, **labels: str) -> float:
    value = daemon.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _bodies(messages: Iterable[Inbound]) -> list[bytes]:
    return [message.body for message in messages]


def _transport() -> MemoryTransport:
    """An in-memory broker that refuses every dead letter (until ``refuse`` is reset)."""
    transport = MemoryTransport()
    transport.refuse = REFUSED
    return transport


def _failed(daemon: Daemon) -> float:
    return _count(
        daemon,
        "mqtt_collector_deliveries_total",
        collector="failing",
        outcome="dead_letter_failed",
    )


async def test_daemon_refused_dead_letter_leaves_message_unacked(tmp_path: Path) -> None:
    """Refused dead letter: it and all after it stay unacked, and come again on a new connection."""
    transport = _transport()
    daemon = Daemon(_config(tmp_path), transport=transport)
    with capture_logging("info") as logs:
        task = asyncio.create_task(daemon.run())
        try:
            await wait_until(lambda: daemon.ready, what="the daemon to be ready")
            transport.deliver("t/good", b"1")
            transport.deliver("t/bad", b"2")
            transport.deliver("t/good", b"3")
            await wait_until(lambda: len(records(daemon)) >= 2, what="1 and 3 processed")
            await wait_until(lambda: transport.connection >= 2, what="a reconnect")
            # On the first connection: 1 acked; 2 held, and 3 (processed) held behind it.
            assert _bodies(transport.acked) == [b"1"]
            assert [r.raw for r in records(daemon)][:2] == [b"1", b"3"]
            assert (1, b"3") in [(m.connection, m.body) for m in transport.delivered]
            assert _failed(daemon) >= 1
            assert transport.published == []
            # The dead-letter topic accepts again: 2 is dead-lettered and acked, then 3.
            transport.refuse = None
            await wait_until(lambda: not transport.session(), what="every message acked")
        finally:
            daemon.stop()
            async with asyncio.timeout(WAIT):
                await task
    assert transport.acked[0].body == b"1"
    assert sorted(_bodies(transport.acked)) == [b"1", b"2", b"3"]
    assert [letter.topic for letter in transport.published] == ["dlq/bad"]
    assert _count(daemon, "mqtt_collector_messages_acked_total") == 3
    [line, *_] = logs.events(
        "dead letter not published, message left unacknowledged: the broker sends it again"
    )
    assert line["level"] == "error"
    assert (line["collector"], line["topic"], line["dead_letter_topic"]) == (
        "failing",
        "t/bad",
        "dlq/bad",
    )
    assert line["reason"] == f"TransportError: {REFUSED}"
    assert logs.events("reconnecting to have the unacknowledged messages sent again")


async def test_daemon_refused_dead_letter_at_shutdown_stays_unacked(tmp_path: Path) -> None:
    """A dead letter refused while the queue drains at shutdown leaves its message unacked."""
    transport = _transport()
    config = _config(tmp_path, retry={"attempts": 2, "backoff": 0.3})
    daemon = Daemon(config, transport=transport)
    with capture_logging("info") as logs:
        task = asyncio.create_task(daemon.run())
        try:
            await wait_until(lambda: daemon.ready, what="the daemon to be ready")
            transport.deliver("t/good", b"1")
            await wait_until(lambda: _bodies(transport.acked) == [b"1"], what="the first ack")
            transport.deliver("t/bad", b"2")
            # Stop while the failing collector waits to retry: it fails for good in the drain.
            await wait_until(lambda: logs.events("retrying"), what="the retry")
            daemon.stop()
        finally:
            daemon.stop()
            async with asyncio.timeout(WAIT):
                await task
    assert _failed(daemon) == 1
    assert _bodies(transport.acked) == [b"1"]
    assert _bodies(transport.session()) == [b"2"]
