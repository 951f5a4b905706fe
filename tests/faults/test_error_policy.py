"""The error policy end to end: retry, dead letter, ack, log line and counter."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from tests.faults.helpers import (
    COLLECTORS,
    daemon_config,
    free_port,
    metric,
    read_records,
)
from tests.helpers.daemon_process import DaemonProcess, wait_for
from tests.helpers.mqtt_client import connected_client

if TYPE_CHECKING:
    from pathlib import Path

    from tests.helpers.mosquitto import Mosquitto, MosquittoFactory

pytestmark = pytest.mark.broker

WAIT = 20.0


def test_error_policy_retry_then_dead_letter_then_ack(
    mosquitto: Mosquitto, tmp_path: Path, topic_prefix: str, client: str
) -> None:
    """A flaky collector passes on retry; a failing one is dead-lettered, logged, counted, acked."""
    out = tmp_path / "records.jsonl"
    dead_topic = f"{topic_prefix}/dead"
    port = free_port()
    config = daemon_config(
        mosquitto,
        client_id=f"policy-{uuid.uuid4().hex[:8]}",
        client=client,
        subscriptions=[{"filter": f"{topic_prefix}/in/+", "topics": ["{1}"]}],
        collectors=[
            {
                "key": "flaky",
                "processor": f"{COLLECTORS}:flaky",
                "topics": ["flaky"],
                "retry": {"attempts": 3, "backoff": 0.01},
                "options": {"path": str(out), "failures": 2},
            },
            {
                "key": "failing",
                "processor": f"{COLLECTORS}:fails",
                "topics": ["fail"],
                "retry": {"attempts": 2, "backoff": 0.01},
                "dead_letter": {"topic": dead_topic, "qos": 1},
            },
        ],
        metrics_port=port,
    )
    flaky, fail = f"{topic_prefix}/in/flaky", f"{topic_prefix}/in/fail"
    daemon = DaemonProcess(tmp_path, config)
    with connected_client(mosquitto.port, subscribe=dead_topic) as dead, daemon:
        with connected_client(mosquitto.port) as publisher:
            publisher.publish(flaky, b"1")
            publisher.publish(fail, b"2")
            publisher.flush()
        wait_for(lambda: len(read_records(out)) == 1, timeout=WAIT, what="the flaky record")
        wait_for(lambda: len(dead.received()) == 1, timeout=WAIT, what="the dead letter")
        [letter] = dead.received()
        assert letter.payload == b"2"
        properties = dict(letter.properties.UserProperty)  # type: ignore[union-attr]
        assert properties["collector"] == "failing"
        assert properties["topic"] == fail
        assert properties["error"].startswith("RuntimeError: fails on purpose")
        [failed] = daemon.wait_log("collector failed", where=lambda e: e.get("topic") == fail)
        assert failed["attempts"] == 2
        assert len(daemon.logs("retrying")) == 3  # two for flaky, one for failing
        wait_for(
            lambda: metric(port, "mqtt_collector_messages_acked_total") >= 2,
            timeout=WAIT,
            what="both messages acked",
        )
        assert metric(port, "mqtt_collector_deliveries_total", collector="failing", outcome="error")
        assert (
            metric(
                port, "mqtt_collector_deliveries_total", collector="failing", outcome="dead_letter"
            )
            == 1
        )
        assert metric(port, "mqtt_collector_deliveries_total", collector="flaky", outcome="ok") == 1
        assert daemon.terminate() == 0, daemon.tail()
        # Restarted, the daemon gets neither message again: both were acked.
        daemon.start()
        with connected_client(mosquitto.port) as publisher:
            publisher.publish(flaky, b"3")
            publisher.flush()
        wait_for(lambda: len(read_records(out)) == 2, timeout=WAIT, what="the later record")
        assert daemon.terminate() == 0, daemon.tail()
    assert [r["body"] for r in read_records(out)] == ["1", "3"]
    assert len(dead.received()) == 1
    assert len([e for e in daemon.logs("collector failed") if e["topic"] == fail]) == 1


def test_error_policy_refused_dead_letter_leaves_the_message_unacked(
    make_mosquitto: MosquittoFactory, tmp_path: Path, topic_prefix: str, client: str
) -> None:
    """The broker's ACL refuses the dead letter (MQTT 5): the original is never acked.

    The daemon logs and counts the failure, reconnects, and the broker sends the message
    again; a later run whose collector succeeds still gets it.
    """
    acl = tmp_path / "acl"
    acl.write_text("user collector\ntopic read test/#\n", encoding="utf-8")
    broker = make_mosquitto(auth=True, extra_conf=f"acl_file {acl}")
    dead_topic = f"dlq/{topic_prefix}"
    fail = f"{topic_prefix}/in/fail"
    client_id = f"refused-{uuid.uuid4().hex[:8]}"
    port = free_port()
    login = {"port": broker.auth_port, "username": broker.username, "password": broker.password}
    subscriptions = [{"filter": f"{topic_prefix}/in/+", "topics": ["{1}"]}]
    config = daemon_config(
        broker,
        client_id=client_id,
        client=client,
        subscriptions=subscriptions,
        collectors=[
            {
                "key": "failing",
                "processor": f"{COLLECTORS}:fails",
                "topics": ["fail"],
                "dead_letter": {"topic": dead_topic, "qos": 1},
            }
        ],
        broker_extra=login,
        metrics_port=port,
    )
    daemon = DaemonProcess(tmp_path, config)
    with connected_client(broker.port, subscribe="dlq/#") as dead, daemon:
        with connected_client(broker.port) as publisher:
            publisher.publish(fail, b"2")
            publisher.flush()
        [line, *_] = daemon.wait_log(
            "dead letter not published, message left unacknowledged: the broker sends it again",
            timeout=WAIT,
        )
        assert (line["collector"], line["topic"], line["dead_letter_topic"]) == (
            "failing",
            fail,
            dead_topic,
        )
        assert "Not authorized" in line["reason"], line
        # Not acked, so the broker sends it again once the daemon has reconnected.
        daemon.wait_log("collector failed", count=2, where=lambda e: e["topic"] == fail)
        assert metric(port, "mqtt_collector_messages_acked_total") == 0
        assert (
            metric(
                port,
                "mqtt_collector_deliveries_total",
                collector="failing",
                outcome="dead_letter_failed",
            )
            >= 1
        )
        assert not daemon.logs("dead-lettered")
        assert daemon.terminate() == 0, daemon.tail()
    assert dead.received() == []
    # A later run with a collector that succeeds gets the message: it was never acked.
    out = tmp_path / "records.jsonl"
    config["collectors"] = [
        {
            "key": "record",
            "processor": f"{COLLECTORS}:record",
            "lifecycle": f"{COLLECTORS}:recording_lifecycle",
            "topics": ["fail"],
            "options": {"path": str(out)},
        }
    ]
    with DaemonProcess(tmp_path, config, name="second") as second:
        wait_for(lambda: len(read_records(out)) >= 1, timeout=WAIT, what="the message again")
        assert second.terminate() == 0, second.tail()
    assert [r["body"] for r in read_records(out)] == ["2"]
