"""Bad input never crashes the daemon nor blocks the messages behind it."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tests.faults.helpers import (
    COLLECTORS,
    DaemonProcess,
    Publisher,
    daemon_config,
    read_records,
    wait_for,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.mosquitto import Mosquitto

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
        with Publisher(self.broker) as publisher:
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


def _config(broker: Mosquitto, prefix: str, out: Path, client_id: str) -> dict[str, Any]:
    def sub(kind: str, decode: str, **extra: Any) -> dict[str, Any]:
        return {"filter": f"{prefix}/{kind}/#", "decode": decode, "topics": ["good"], **extra}

    record = {"path": str(out)}
    return daemon_config(
        broker,
        client_id=client_id,
        subscriptions=[
            sub("json", "json"),
            sub("text", "text"),
            sub("bytes", "bytes"),
            sub("limited", "bytes", max_body_bytes=1000),
            {"filter": f"{prefix}/proc/+", "decode": "json", "topics": ["{1}"]},
        ],
        collectors=[
            {"key": "record", "processor": f"{COLLECTORS}:record", "topics": ["good"]}
            | {"options": record},
            {"key": "raises", "processor": f"{COLLECTORS}:raises", "topics": ["raises"]},
            {"key": "returns_42", "processor": f"{COLLECTORS}:returns_42", "topics": ["r42"]},
            {
                "key": "hangs",
                "processor": f"{COLLECTORS}:hangs",
                "topics": ["hangs"],
                "timeout": HANG_TIMEOUT,
            },
            {"key": "proc_good", "processor": f"{COLLECTORS}:record", "topics": ["good"]}
            | {"options": {"path": str(out.with_suffix(".proc"))}},
        ],
    )


@pytest.fixture(scope="module")
def rig(mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """A daemon subprocess shared by this module's tests (each uses its own topics)."""
    directory = tmp_path_factory.mktemp("bad-input")
    prefix = f"test/bad_input/{uuid.uuid4().hex[:8]}"
    out = directory / "records.jsonl"
    config = _config(mosquitto, prefix, out, f"bad-input-{uuid.uuid4().hex[:8]}")
    with DaemonProcess(directory, config) as daemon:
        yield Rig(daemon, mosquitto, prefix, out)
        assert daemon.terminate() == 0, daemon.tail()


def _bad_then_good(rig: Rig, kind: str, body: bytes, name: str) -> tuple[str, str]:
    bad, good = f"{rig.prefix}/{kind}/{name}-bad", f"{rig.prefix}/{kind}/{name}-good"
    rig.send([(bad, body), (good, b"1")])
    rig.wait_recorded(good)
    return bad, good


def test_bad_input_invalid_json_is_refused_and_logged(rig: Rig) -> None:
    """Invalid JSON is logged with its topic, and the message behind it is processed."""
    bad, _ = _bad_then_good(rig, "json", b"{not json", "invalid")
    entry = rig.wait_logged("message refused", bad)
    assert "invalid JSON" in entry["reason"]
    assert rig.records(bad) == []


def test_bad_input_invalid_utf8_text_is_refused_and_logged(rig: Rig) -> None:
    """A text body that is not UTF-8 is logged with its topic, and the next one processed."""
    bad, _ = _bad_then_good(rig, "text", b"\xff\xfe\xfa", "utf8")
    entry = rig.wait_logged("message refused", bad)
    assert "UTF-8" in entry["reason"]


def test_bad_input_empty_json_body_is_refused_and_logged(rig: Rig) -> None:
    """An empty body is not JSON: refused, logged, and the next one processed."""
    bad, _ = _bad_then_good(rig, "json", b"", "empty")
    entry = rig.wait_logged("message refused", bad)
    assert "empty" in entry["reason"]


def test_bad_input_empty_bytes_body_is_processed(rig: Rig) -> None:
    """An empty body where bytes are wanted is a valid message and reaches the collector."""
    topic = f"{rig.prefix}/bytes/empty"
    rig.send([(topic, b"")])
    [record] = rig.wait_recorded(topic)
    assert record["size"] == 0


def test_bad_input_one_megabyte_body_is_processed(rig: Rig) -> None:
    """A 1 MiB body arrives whole, and the message behind it too."""
    big, good = f"{rig.prefix}/bytes/big", f"{rig.prefix}/bytes/big-good"
    rig.send([(big, bytes(range(256)) * 4096), (good, b"1")])
    rig.wait_recorded(good)
    [record] = rig.wait_recorded(big)
    assert record["size"] == 1024 * 1024


def test_bad_input_body_over_max_body_bytes_is_refused_and_logged(rig: Rig) -> None:
    """A body over max_body_bytes is refused with its size logged; the next one is processed."""
    bad, _ = _bad_then_good(rig, "limited", b"x" * 1001, "large")
    entry = rig.wait_logged("message refused", bad)
    assert entry["size"] == 1001
    assert "max_body_bytes" in entry["reason"]
    assert rig.records(bad) == []


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


@pytest.mark.parametrize(
    ("collector", "error"),
    [("raises", "RuntimeError"), ("r42", "TypeError"), ("hangs", "TimeoutError")],
    ids=["raises", "returns-non-result", "hangs"],
)
def test_bad_input_faulty_processor_is_logged_and_does_not_block(
    rig: Rig, collector: str, error: str
) -> None:
    """A processor that raises, returns 42 or hangs gives a logged Error; the next message runs."""
    bad, good = f"{rig.prefix}/proc/{collector}", f"{rig.prefix}/proc/good"
    before = len([r for r in read_records(rig.out.with_suffix(".proc")) if r["topic"] == good])
    rig.send([(bad, b'{"n": 1}'), (good, b"2")])
    wait_for(
        lambda: (
            len([r for r in read_records(rig.out.with_suffix(".proc")) if r["topic"] == good])
            > before
        ),
        timeout=WAIT,
        what="the good message behind the faulty one",
    )
    entry = rig.wait_logged("collector failed", bad)
    assert entry["error"].startswith(error), entry


def test_bad_input_refused_body_is_acked_not_redelivered(
    mosquitto: Mosquitto, tmp_path: Path, topic_prefix: str
) -> None:
    """A body over max_body_bytes is acked: a restarted daemon does not get it again."""
    out = tmp_path / "records.jsonl"
    config = daemon_config(
        mosquitto,
        client_id=f"refused-{uuid.uuid4().hex[:8]}",
        subscriptions=[
            {"filter": f"{topic_prefix}/#", "decode": "bytes", "max_body_bytes": 10}
            | {"topics": ["good"]}
        ],
        collectors=[
            {"key": "record", "processor": f"{COLLECTORS}:record", "topics": ["good"]}
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


def test_bad_input_failing_teardown_does_not_stop_other_teardowns(
    mosquitto: Mosquitto, tmp_path: Path, topic_prefix: str
) -> None:
    """A lifecycle whose teardown raises is logged; the lifecycles around it still tear down."""
    first, last = tmp_path / "first.marker", tmp_path / "last.marker"

    def marked(key: str, marker: Path) -> dict[str, Any]:
        return {
            "key": key,
            "processor": f"{COLLECTORS}:record",
            "lifecycle": f"{COLLECTORS}:marker",
            "topics": ["t"],
            "options": {"path": str(tmp_path / f"{key}.jsonl"), "marker": str(marker)},
        }

    config = daemon_config(
        mosquitto,
        client_id=f"teardown-{uuid.uuid4().hex[:8]}",
        subscriptions=[{"filter": f"{topic_prefix}/#", "topics": ["t"]}],
        collectors=[
            marked("first", first),
            {
                "key": "broken",
                "processor": f"{COLLECTORS}:record",
                "lifecycle": f"{COLLECTORS}:teardown_raises",
                "topics": ["t"],
                "options": {"path": str(tmp_path / "broken.jsonl")},
            },
            marked("last", last),
        ],
    )
    with DaemonProcess(tmp_path, config) as daemon:
        status = daemon.terminate()
    logged = [e for e in daemon.logs() if "teardown" in str(e.get("event"))]
    assert logged, daemon.tail()
    assert "broken" in str(logged[0]), logged
    assert first.read_text() == "first"
    assert last.read_text() == "last"
    assert status == 0, daemon.tail()
