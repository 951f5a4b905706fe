"""Bad input never crashes the daemon nor blocks the messages behind it: what the wire carries.

Refused bodies, faulty processors and failing teardowns are tested on the in-memory test kit,
in tests/test_daemon_logic.py.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tests.faults.helpers import (
    COLLECTORS,
    daemon_config,
    read_records,
)
from tests.helpers.daemon_process import DaemonProcess, wait_for
from tests.helpers.mqtt_client import connected_client

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.helpers.mosquitto import Mosquitto

pytestmark = pytest.mark.broker

WAIT = 20.0
HANG_TIMEOUT = 1.0  # the hanging collector's `timeout`, in seconds


class Rig:
    """One daemon on the shared broker, with a subscription per kind of input."""

    def __init__(self, daemon: DaemonProcess, broker: Mosquitto, prefix: str, out: Path) -> None:
        """Drive ``daemon`` on ``broker`` under ``prefix``; the recorder writes to ``out``."""
        self.daemon = daemon
        self.broker = broker
        self.prefix = prefix
        self.out = out

    def records(self, topic: str) -> list[dict[str, Any]]:
        """Return what the recorder wrote for ``topic``."""
        return [r for r in read_records(self.out) if r["topic"] == topic]

    def send(self, pairs: list[tuple[str, bytes]]) -> None:
        """Publish each ``(topic, body)`` at QoS 1, in order, and wait for the broker's acks."""
        with connected_client(self.broker.port) as publisher:
            for topic, body in pairs:
                publisher.publish(topic, body)
            publisher.flush()

    def wait_recorded(self, topic: str, count: int = 1) -> list[dict[str, Any]]:
        """Wait until the recorder has ``count`` records of ``topic``."""
        wait_for(
            lambda: len(self.records(topic)) >= count,
            timeout=WAIT,
            what=f"{count} record(s) of {topic!r}",
        )
        return self.records(topic)

    def wait_logged(self, event: str, topic: str) -> dict[str, Any]:
        """Wait for a log line ``event`` about ``topic`` and return it."""
        return self.daemon.wait_log(event, timeout=WAIT, where=lambda e: e.get("topic") == topic)[0]


def _config(
    broker: Mosquitto, prefix: str, out: Path, client_id: str, client: str
) -> dict[str, Any]:
    def sub(kind: str, decode: str, **extra: Any) -> dict[str, Any]:
        return {"filter": f"{prefix}/{kind}/#", "decode": decode, "topics": ["good"], **extra}

    record = {"path": str(out)}
    return daemon_config(
        broker,
        client_id=client_id,
        client=client,
        subscriptions=[
            sub("json", "json"),
            sub("text", "text"),
            sub("bytes", "bytes"),
            sub("limited", "bytes", max_body_bytes=1000),
            {"filter": f"{prefix}/proc/+", "decode": "json", "topics": ["{1}"]},
        ],
        collectors=[
            {
                "key": "record",
                "processor": f"{COLLECTORS}:record",
                "lifecycle": f"{COLLECTORS}:recording_lifecycle",
                "topics": ["good"],
            }
            | {"options": record},
            {"key": "raises", "processor": f"{COLLECTORS}:raises", "topics": ["raises"]},
            {"key": "returns_42", "processor": f"{COLLECTORS}:returns_42", "topics": ["r42"]},
            {
                "key": "hangs",
                "processor": f"{COLLECTORS}:hangs",
                "topics": ["hangs"],
                "timeout": HANG_TIMEOUT,
            },
            {
                "key": "proc_good",
                "processor": f"{COLLECTORS}:record",
                "lifecycle": f"{COLLECTORS}:recording_lifecycle",
                "topics": ["good"],
            }
            | {"options": {"path": str(out.with_suffix(".proc"))}},
        ],
    )


@pytest.fixture(scope="module")
def rig(
    mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory, client: str
) -> Iterator[Rig]:
    """A daemon subprocess shared by this module's tests (each uses its own topics)."""
    directory = tmp_path_factory.mktemp("bad-input")
    prefix = f"test/bad_input/{uuid.uuid4().hex[:8]}"
    out = directory / "records.jsonl"
    config = _config(mosquitto, prefix, out, f"bad-input-{uuid.uuid4().hex[:8]}", client)
    with DaemonProcess(directory, config) as daemon:
        yield Rig(daemon, mosquitto, prefix, out)
        assert daemon.terminate() == 0, daemon.tail()


def test_bad_input_one_megabyte_body_is_processed(rig: Rig) -> None:
    """A 1 MiB body arrives whole, and the message behind it too."""
    big, good = f"{rig.prefix}/bytes/big", f"{rig.prefix}/bytes/big-good"
    rig.send([(big, bytes(range(256)) * 4096), (good, b"1")])
    rig.wait_recorded(good)
    [record] = rig.wait_recorded(big)
    assert record["size"] == 1024 * 1024


@pytest.mark.parametrize(
    "level",
    [
        "with spaces in it",
        "ünïcödé-温度-🌡",
        "a$b",
        "x" * 5000,
        "",
    ],
    ids=["spaces", "unicode", "dollar", "long", "empty-level"],
)
def test_bad_input_unusual_topic_is_processed(rig: Rig, level: str) -> None:
    """A topic with unusual but legal characters reaches the collector exactly as published."""
    topic = f"{rig.prefix}/json/{level}/end"
    rig.send([(topic, b"1")])
    [record] = rig.wait_recorded(topic)
    assert record["body"] == "1"


def test_bad_input_refused_body_is_acked_not_redelivered(
    mosquitto: Mosquitto, tmp_path: Path, topic_prefix: str, client: str
) -> None:
    """A body over max_body_bytes is acked: a restarted daemon does not get it again."""
    out = tmp_path / "records.jsonl"
    config = daemon_config(
        mosquitto,
        client_id=f"refused-{uuid.uuid4().hex[:8]}",
        client=client,
        subscriptions=[
            {"filter": f"{topic_prefix}/#", "decode": "bytes", "max_body_bytes": 10}
            | {"topics": ["good"]}
        ],
        collectors=[
            {
                "key": "record",
                "processor": f"{COLLECTORS}:record",
                "lifecycle": f"{COLLECTORS}:recording_lifecycle",
                "topics": ["good"],
            }
            | {"options": {"path": str(out)}}
        ],
    )
    bad, good, later = (f"{topic_prefix}/{name}" for name in ("bad", "good", "later"))
    daemon = DaemonProcess(tmp_path, config)
    with daemon:
        rig = Rig(daemon, mosquitto, topic_prefix, out)
        rig.send([(bad, b"x" * 11), (good, b"1")])
        rig.wait_recorded(good)
        rig.wait_logged("message refused", bad)
        assert daemon.terminate() == 0, daemon.tail()
        daemon.start()
        rig.send([(later, b"2")])
        rig.wait_recorded(later)
        assert daemon.terminate() == 0, daemon.tail()
    refused = [e for e in daemon.logs("message refused") if e["topic"] == bad]
    assert len(refused) == 1, f"the refused message came again: {refused}"
    assert len(rig.records(good)) == 1
