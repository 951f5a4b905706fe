"""The whole stop fits in ``queue.drain_timeout`` plus at most 10 s, whatever keeps it busy."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import TYPE_CHECKING

import pytest

from mqtt_collector._daemon.daemon import Daemon
from tests.helpers.daemon import capture_logging, make_config, recorder_entry, records, wait_until
from tests.helpers.mqtt_client import connected_client

if TYPE_CHECKING:
    from pathlib import Path

    from mqtt_collector._mqtt.transport import Inbound
    from tests.helpers.mosquitto import Mosquitto

pytestmark = pytest.mark.broker

DRAIN = 2.0
BUDGET = DRAIN + 10  # what the stop may take at most, as the unit's TimeoutStopSec assumes


async def test_daemon_stop_fits_the_budget_with_share_groups_traffic_and_slow_teardown(
    mosquitto: Mosquitto, tmp_path: Path, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$share filter, steady traffic elsewhere, slow collector, stuck teardown: stop in budget.

    Steady traffic on the other filter never gives the quiet spell leaving the share group
    waits for; the collector is too slow to drain the backlog in time; a lifecycle's exit
    hangs. What was not finished stays unacknowledged.
    """
    config = make_config(
        tmp_path,
        port=mosquitto.port,
        prefix=topic_prefix,
        broker={
            "client_id": f"stop-{uuid.uuid4().hex[:8]}",
            "session": {"persistent": True, "expiry": 60},
        },
        subscriptions=[
            {"filter": f"{topic_prefix}/shared/+", "share_group": "stop", "topics": ["work"]},
            {"filter": f"{topic_prefix}/steady/+", "topics": ["work"]},
        ],
        collectors=[
            recorder_entry(topics=["work"], delay=0.2),
            {
                "key": "stuck",
                "processor": "tests.stop_collectors:ignore",
                "lifecycle": "tests.stop_collectors:slow_teardown",
                "topics": ["never"],
                "options": {"teardown": 60},
            },
        ],
        queue={"max_consumers": 2, "drain_timeout": DRAIN},
    )
    daemon = Daemon(config)
    acked: list[bytes] = []
    ack = daemon.transport.ack

    def recording_ack(message: Inbound) -> None:
        acked.append(message.body)
        ack(message)

    monkeypatch.setattr(daemon.transport, "ack", recording_ack)
    stop_traffic = threading.Event()
    with capture_logging("info") as logs, connected_client(mosquitto.port) as publisher:
        task = asyncio.create_task(daemon.run())
        steady = threading.Thread(
            target=publisher.numbered,
            args=(f"{topic_prefix}/steady/x", range(1000, 1_000_000)),
            kwargs={"rate": 50, "stop": stop_traffic},
            daemon=True,
        )
        try:
            await wait_until(lambda: daemon.ready or task.done(), what="the daemon to be ready")
            publisher.numbered(f"{topic_prefix}/shared/x", range(30))
            steady.start()
            await wait_until(lambda: len(records(daemon)) >= 5, what="some messages processed")
            started = time.monotonic()
            daemon.stop()
            try:
                async with asyncio.timeout(BUDGET + 5):
                    await task
            except TimeoutError:
                pytest.fail(f"the stop took over {BUDGET + 5}s:\n{logs.text[-3000:]}")
            elapsed = time.monotonic() - started
        finally:
            stop_traffic.set()
            if steady.is_alive():
                steady.join(10)
            daemon.stop()
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=10)
    assert elapsed < BUDGET, f"the stop took {elapsed:.1f}s"
    finished = {r.raw for r in records(daemon)}
    received = daemon.metrics.registry.get_sample_value("mqtt_collector_messages_received_total")
    assert received is not None
    assert received > len(finished), "the test needs work left unfinished at the stop"
    assert set(acked) <= finished, "a message was acked that no collector finished"
    assert logs.events("stopped")
