"""examples/republish: readings cleaned and published again, bad ones dead-lettered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.examples.helpers import acked, load_example
from tests.helpers.daemon import run_daemon, wait_until
from tests.helpers.mosquitto import MosquittoFactory
from tests.helpers.mqtt_client import connected_client

pytestmark = pytest.mark.broker

GOOD: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "sensors/north/t1/reading",
        {"temperature": 71.6, "unit": "F", "humidity": 45, "ts": 1714557600},
        {
            "site": "north",
            "device": "t1",
            "ts": "2024-05-01T10:00:00+00:00",
            "temperature_c": 22.0,
            "humidity_pct": 45.0,
        },
    ),
    (
        "sensors/north/t2/reading",
        {"temperature": 21.5, "ts": "2024-05-01T12:00:00+02:00"},
        {"site": "north", "device": "t2", "ts": "2024-05-01T10:00:00+00:00", "temperature_c": 21.5},
    ),
    (
        "sensors/south/t9/reading",
        {"temperature": 300.15, "unit": "K", "ts": 1714557660},
        {"site": "south", "device": "t9", "ts": "2024-05-01T10:01:00+00:00", "temperature_c": 27.0},
    ),
]
BAD: list[tuple[str, Any, str]] = [
    ("sensors/north/t1/reading", {"temperature": 120, "ts": 1714557600}, "outside -40.0..85.0"),
    ("sensors/north/t3/reading", {"humidity": 40}, "temperature is missing"),
    ("sensors/north/t4/reading", {"temperature": 20, "unit": "R"}, "unit must be C, F or K"),
    ("sensors/south/t5/reading", {"temperature": 20, "humidity": 140}, "humidity 140.0 %"),
    ("sensors/south/t6/reading", [20, "C"], "expected a JSON object"),
]


async def test_clean_readings_are_republished_and_bad_ones_dead_lettered(
    make_mosquitto: MosquittoFactory, tmp_path: Path
) -> None:
    """Each good reading arrives cleaned on clean/<site>/<device>, each bad one as a dead letter."""
    broker = make_mosquitto()
    config = load_example("republish", MQTT_PORT=str(broker.port))
    sent = len(GOOD) + len(BAD)
    with connected_client(broker.port, subscribe="clean/#") as listener:
        listener.subscribe("dead/readings")
        async with run_daemon(config) as daemon:
            with connected_client(broker.port) as publisher:
                for topic, body, _ in GOOD:
                    publisher.publish_json(topic, body)
                for topic, body, _ in BAD:
                    publisher.publish_json(topic, body)
            await wait_until(lambda: acked(daemon) == sent, what="every reading acknowledged")
            await wait_until(lambda: len(listener.received()) == sent, what="every output")
            counts = dict(daemon.queue.collectors[0].ctx.counts)
        received = listener.received()

    clean = sorted(
        (m.topic, json.loads(m.payload)) for m in received if m.topic.startswith("clean/")
    )
    assert clean == sorted(
        (f"clean/{expected['site']}/{expected['device']}", expected) for _, _, expected in GOOD
    )
    letters = [m for m in received if m.topic == "dead/readings"]
    assert len(letters) == len(BAD)
    got = {}
    for letter in letters:
        assert letter.properties is not None
        properties = dict(letter.properties.UserProperty)  # type: ignore[attr-defined]
        got[properties["topic"], letter.payload] = properties
        assert properties["collector"] == "clean"
    for topic, body, reason in BAD:
        assert reason in got[topic, json.dumps(body).encode()]["error"]
    assert counts == {"published": len(GOOD), "invalid": len(BAD) * 2}  # two tries each
