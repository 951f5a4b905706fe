"""Broker restarts mid-stream lose nothing; the daemon reconnects and resubscribes by itself."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from tests.faults.helpers import (
    COLLECTORS,
    daemon_config,
    numbers,
)
from tests.helpers.daemon_process import DaemonProcess, wait_for
from tests.helpers.mqtt_client import connected_client

if TYPE_CHECKING:
    from pathlib import Path

    from tests.helpers.mosquitto import Mosquitto

pytestmark = [pytest.mark.broker, pytest.mark.slow]

CHUNK = 5_000
CHUNKS = 3
DOWN_FOR = 3.0  # seconds the broker stays down at each restart
INITIAL_DELAY = 0.1  # broker.reconnect.initial_delay in daemon_config
# While the broker is down nothing is received, so RSS should not move; a reconnect loop that
# leaked a client (socket, thread, buffers) per attempt would. 4 MB is allocator noise, no more.
MAX_DOWN_GROWTH_KB = 4 * 1024
SAMPLE_EVERY = 0.1


@pytest.mark.timeout(180)
def test_broker_restart_twice_loses_nothing(
    private_mosquitto: Mosquitto, tmp_path: Path, topic_prefix: str, client: str
) -> None:
    """Every number published across two broker restarts is processed; memory stays flat."""
    broker = private_mosquitto
    out = tmp_path / "records.jsonl"
    config = daemon_config(
        broker,
        client_id="restart-test",
        client=client,
        subscriptions=[{"filter": f"{topic_prefix}/n", "topics": ["n"]}],
        collectors=[
            {
                "key": "record",
                "processor": f"{COLLECTORS}:record",
                "lifecycle": f"{COLLECTORS}:recording_lifecycle",
                "topics": ["n"],
                "options": {"path": str(out)},
            }
        ],
    )
    topic = f"{topic_prefix}/n"
    report = []
    with DaemonProcess(tmp_path, config) as daemon:
        for chunk in range(CHUNKS):
            with connected_client(broker.port) as publisher:
                publisher.numbered(topic, range(chunk * CHUNK, (chunk + 1) * CHUNK))
                publisher.flush()
            if chunk == CHUNKS - 1:
                break
            processed = sum(numbers(out).values())
            subscribed = len(daemon.logs("subscribed"))
            broker.stop()  # SIGTERM: mosquitto saves the sessions and queued messages
            samples = []
            deadline = time.monotonic() + DOWN_FOR
            while time.monotonic() < deadline:
                samples.append(daemon.rss_kb())
                time.sleep(SAMPLE_EVERY)  # sampling pace: there is no event to wait for
            broker.start()
            daemon.wait_log("subscribed", count=subscribed + 1, timeout=30)
            [reconnected] = daemon.logs("reconnected")[-1:]
            growth = max(samples) - samples[0]
            report.append(
                f"restart {chunk + 1}: {processed} of {(chunk + 1) * CHUNK} processed at stop, "
                f"RSS while down {samples[0] / 1024:.1f}-{max(samples) / 1024:.1f} MB "
                f"({len(samples)} samples), reconnected after {reconnected['attempts']} attempts"
            )
            assert growth < MAX_DOWN_GROWTH_KB, report[-1]
            # Full-jitter backoff from 0.1 s: never more tries than one per initial delay. The
            # first try after the loss may already find the broker back: the backoff keeps
            # growing until a connection has stayed healthy, and the last restart was recent.
            assert 1 <= reconnected["attempts"] <= DOWN_FOR / INITIAL_DELAY + 2, report[-1]
        total = CHUNK * CHUNKS
        wait_for(lambda: len(numbers(out)) >= total, timeout=60, what="every number")
        assert daemon.terminate() == 0, daemon.tail()
    counts = numbers(out)
    missing = sorted(set(range(CHUNK * CHUNKS)) - set(counts))
    twice = sum(1 for c in counts.values() if c > 1)
    summary = "; ".join(report) + f"; {len(missing)} missing, {twice} more than once"
    print(f"broker restart: {summary}")  # noqa: T201 - figures for the closing note
    assert not missing, f"{summary}; first missing: {missing[:20]}"
    assert len(daemon.logs("subscribed")) == CHUNKS, "the daemon did not resubscribe each time"
