"""A slow collector leaves the backlog in the broker: the daemon's memory stays flat."""

from __future__ import annotations

import threading
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

    from tests.helpers.mosquitto import MosquittoFactory

pytestmark = [pytest.mark.broker, pytest.mark.slow]

TOTAL = 10_000
BODY_BYTES = 10_000
RECEIVE_MAXIMUM = 1_000
# The bound on RSS growth, on both transports. All 10,000 bodies held at once would be 100 MB of
# bodies alone (each also as a Message, a Payload, an event and a task). Receive Maximum lets the
# broker have at most 1,000 unacked messages out to the daemon: 10 MB of bodies, a few MB more of
# objects per message and allocator slack (about 11 MB measured on either transport). 30 MB is
# well above that and well below what buffering the backlog in the daemon would take.
MAX_GROWTH_KB = 30 * 1024


@pytest.mark.timeout(120)
def test_slow_collector_keeps_memory_bounded(
    make_mosquitto: MosquittoFactory, tmp_path: Path, topic_prefix: str, client: str
) -> None:
    """10,000 messages sent at once to a 50 ms collector: RSS growth stays under the bound."""
    broker = make_mosquitto()
    out = tmp_path / "records.jsonl"
    config = daemon_config(
        broker,
        client_id="slow-test",
        client=client,
        subscriptions=[{"filter": f"{topic_prefix}/n", "decode": "bytes", "topics": ["n"]}],
        collectors=[
            {
                "key": "slow",
                "processor": f"{COLLECTORS}:record",
                "lifecycle": f"{COLLECTORS}:recording_lifecycle",
                "topics": ["n"],
                "options": {"path": str(out), "delay": 0.05},
            }
        ],
        queue={"max_consumers": 64, "min_consumers": 1},
        broker_extra={"receive_maximum": RECEIVE_MAXIMUM},
    )
    samples: list[int] = []
    with DaemonProcess(tmp_path, config) as daemon, connected_client(broker.port) as publisher:
        baseline = daemon.rss_kb()
        finished = threading.Event()

        def sample() -> None:
            # Sample until every message is processed, at a fixed pace (no event to await).
            while not finished.wait(0.1):
                samples.append(daemon.rss_kb())

        sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
        sampler.start()
        publisher.numbered(f"{topic_prefix}/n", range(TOTAL), padding="x" * BODY_BYTES)
        publisher.flush()
        try:
            wait_for(lambda: len(numbers(out)) >= TOTAL, timeout=90, what="every message")
        finally:
            finished.set()
            sampler.join(5)
        assert daemon.terminate() == 0, daemon.tail()
    peak = max(samples)
    growth = peak - baseline
    summary = (
        f"slow collector ({client}): {TOTAL} x {BODY_BYTES} B at QoS 1, 64 consumers x 50 ms:"
        f" RSS baseline {baseline / 1024:.1f} MB, peak {peak / 1024:.1f} MB,"
        f" growth {growth / 1024:.1f} MB "
        f"(bound {MAX_GROWTH_KB / 1024:.0f} MB), {len(samples)} samples"
    )
    print(summary)  # noqa: T201 - figures for the closing note
    assert growth < MAX_GROWTH_KB, summary
    missing = set(range(TOTAL)) - set(numbers(out))
    assert not missing, f"{len(missing)} never processed; {summary}"
