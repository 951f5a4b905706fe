"""A SIGKILL mid-stream loses nothing: QoS 1, persistent session, ack after processing."""

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

    from tests.helpers.mosquitto import Mosquitto

pytestmark = [pytest.mark.broker, pytest.mark.slow]

TOTAL = 20_000
RATE = 2_000.0  # messages per second, steady


@pytest.mark.timeout(180)
def test_crash_sigkill_loses_no_message(
    private_mosquitto: Mosquitto, tmp_path: Path, topic_prefix: str, client: str
) -> None:
    """Every message published around a SIGKILL of the daemon is processed at least once."""
    out = tmp_path / "records.jsonl"
    config = daemon_config(
        private_mosquitto,
        client_id="crash-test",
        client=client,
        subscriptions=[{"filter": f"{topic_prefix}/n", "qos": 1, "topics": ["n"]}],
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
    daemon = DaemonProcess(tmp_path, config)
    with daemon, connected_client(private_mosquitto.port) as publisher:
        done = threading.Event()
        errors: list[BaseException] = []

        def publish() -> None:
            try:
                publisher.numbered(f"{topic_prefix}/n", range(TOTAL), rate=RATE)
                publisher.flush()
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                errors.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=publish, name="publisher", daemon=True)
        thread.start()
        # Kill once a third has been processed, while the publisher goes on.
        wait_for(lambda: sum(numbers(out).values()) >= TOTAL // 3, timeout=60, what="a third")
        daemon.kill()
        at_kill = numbers(out)
        daemon.start()
        assert done.wait(60), "the publisher did not finish"
        thread.join(10)
        assert not errors, errors
        wait_for(lambda: len(numbers(out)) >= TOTAL, timeout=60, what="every number")
        daemon.terminate()
    counts = numbers(out)
    missing = sorted(set(range(TOTAL)) - set(counts))
    twice = sum(1 for c in counts.values() if c > 1)
    summary = (
        f"crash test: {TOTAL} published at {RATE:g}/s, {sum(at_kill.values())} recorded before "
        f"SIGKILL, {len(missing)} missing, {twice} arrived more than once"
    )
    print(summary)  # noqa: T201 - figures for the closing note
    assert not missing, f"{summary}; first missing: {missing[:20]}"
