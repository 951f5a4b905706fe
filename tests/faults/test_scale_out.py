"""Two daemons in one share group split the stream, and one carries on when the other stops."""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from tests.faults.helpers import (
    COLLECTORS,
    daemon_config,
    numbers,
)
from tests.helpers.daemon_process import DaemonProcess, wait_for
from tests.helpers.mqtt_client import MqttClient, connected_client

if TYPE_CHECKING:
    from pathlib import Path

    from tests.helpers.mosquitto import Mosquitto

pytestmark = [pytest.mark.broker, pytest.mark.slow]

TOTAL = 10_000
MIN_SHARE = 0.2
RATE = 2_000.0
REST_TIMEOUT = 20.0


def _daemon(broker: Mosquitto, tmp_path: Path, name: str, topic: str, client: str) -> DaemonProcess:
    config = daemon_config(
        broker,
        client_id=f"scale-{name}",
        client=client,
        subscriptions=[{"filter": topic, "share_group": "collectors", "topics": ["n"]}],
        collectors=[
            {
                "key": "record",
                "processor": f"{COLLECTORS}:record",
                "lifecycle": f"{COLLECTORS}:recording_lifecycle",
                "topics": ["n"],
                "options": {"path": str(tmp_path / f"{name}.jsonl")},
            }
        ],
    )
    return DaemonProcess(tmp_path, config, name=name)


def _both(tmp_path: Path) -> Counter[int]:
    return numbers(tmp_path / "a.jsonl") + numbers(tmp_path / "b.jsonl")


def _share(tmp_path: Path, name: str, stream: range) -> int:
    return sum(1 for n in numbers(tmp_path / f"{name}.jsonl") if n in stream)


class _Background:
    """Publishes a numbered stream at a steady rate on a thread; ``join()`` re-raises."""

    def __init__(self, publisher: MqttClient, topic: str, stream: range) -> None:
        self._errors: list[BaseException] = []
        self._done = threading.Event()

        def run() -> None:
            try:
                publisher.numbered(topic, stream, rate=RATE)
                publisher.flush()
            except BaseException as exc:  # noqa: BLE001 - re-raised by join()
                self._errors.append(exc)
            finally:
                self._done.set()

        self._thread = threading.Thread(target=run, name="publisher", daemon=True)
        self._thread.start()

    def join(self, timeout: float = 60) -> None:
        """Wait for the whole stream to be acknowledged by the broker."""
        assert self._done.wait(timeout), "the publisher did not finish"
        self._thread.join(timeout)
        assert not self._errors, self._errors


def _stop_b_mid_stream(
    broker: Mosquitto, tmp_path: Path, topic: str, second: DaemonProcess, stream: range
) -> int:
    """Publish ``stream`` and SIGTERM b a quarter of the way; return what b had of it."""
    with connected_client(broker.port) as publisher:
        background = _Background(publisher, topic, stream)
        wait_for(
            lambda: sum(1 for n in _both(tmp_path) if n in stream) >= len(stream) // 4,
            timeout=60,
            what="a quarter of the stream",
        )
        assert second.terminate() == 0, second.tail()
        background.join()
    return _share(tmp_path, "b", stream)


def _missing(tmp_path: Path, stream: range) -> list[int]:
    return sorted(set(stream) - set(_both(tmp_path)))


@pytest.mark.timeout(120)
def test_scale_out_splits_exactly_once(
    private_mosquitto: Mosquitto, tmp_path: Path, topic_prefix: str, client: str
) -> None:
    """10,000 messages are split between two daemons in one share group, each processed once."""
    topic = f"{topic_prefix}/n"
    stream = range(TOTAL)
    with (
        _daemon(private_mosquitto, tmp_path, "a", topic, client),
        _daemon(private_mosquitto, tmp_path, "b", topic, client),
        connected_client(private_mosquitto.port) as publisher,
    ):
        publisher.numbered(topic, stream)
        publisher.flush()
        wait_for(lambda: len(_both(tmp_path)) >= TOTAL, timeout=60, what="every message")
    counts = _both(tmp_path)
    twice = sum(1 for c in counts.values() if c > 1)
    shares = {name: _share(tmp_path, name, stream) / TOTAL for name in "ab"}
    split = f"shares a {shares['a']:.1%}, b {shares['b']:.1%}, {twice} processed twice"
    print(f"scale-out: {split}")  # noqa: T201 - figures for the closing note
    assert twice == 0, split
    assert min(shares.values()) >= MIN_SHARE, split


@pytest.mark.timeout(120)
def test_scale_out_stopped_member_loses_nothing(
    private_mosquitto: Mosquitto, tmp_path: Path, topic_prefix: str, client: str
) -> None:
    """SIGTERM one member mid-stream: a carries on, and every number arrives at least once.

    b leaves the share group before it stops, so a takes every later message; whatever b's
    session still held arrives when b is started again.
    """
    topic = f"{topic_prefix}/n"
    stream = range(TOTAL)
    first = _daemon(private_mosquitto, tmp_path, "a", topic, client)
    second = _daemon(private_mosquitto, tmp_path, "b", topic, client)
    with first, second:
        b_at_stop = _stop_b_mid_stream(private_mosquitto, tmp_path, topic, second, stream)
        wait_for(
            lambda: _share(tmp_path, "a", stream) >= TOTAL // 3,
            timeout=REST_TIMEOUT,
            what="a carrying on",
        )
        a_total = _share(tmp_path, "a", stream)
        second.start()
        wait_for(lambda: not _missing(tmp_path, stream), timeout=60, what="every number")
        b_total = _share(tmp_path, "b", stream)
        assert first.terminate() == 0, first.tail()
        assert second.terminate() == 0, second.tail()
    twice = sum(1 for c in _both(tmp_path).values() if c > 1)
    print(  # noqa: T201 - figures for the closing note
        f"scale-out: b had {b_at_stop} when stopped, a {a_total} in all before b came back, "
        f"b {b_total - b_at_stop} more once restarted; {twice} processed twice"
    )


@pytest.mark.timeout(120)
def test_scale_out_survivor_alone_takes_the_rest(
    private_mosquitto: Mosquitto, tmp_path: Path, topic_prefix: str, client: str
) -> None:
    """After one member stops for good, the other gets every later message by itself."""
    topic = f"{topic_prefix}/n"
    stream = range(TOTAL)
    first = _daemon(private_mosquitto, tmp_path, "a", topic, client)
    second = _daemon(private_mosquitto, tmp_path, "b", topic, client)
    with first, second:
        _stop_b_mid_stream(private_mosquitto, tmp_path, topic, second, stream)
        try:
            wait_for(lambda: not _missing(tmp_path, stream), timeout=REST_TIMEOUT, what="the rest")
        finally:
            lost = _missing(tmp_path, stream)
            print(f"scale-out: {len(lost)} left with the stopped member")  # noqa: T201
