"""examples/home-sensors: Zigbee2MQTT and Tasmota readings into SQLite, against a real Mosquitto."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from tests.examples.helpers import acked, load_example
from tests.helpers.daemon import run_daemon, wait_until
from tests.helpers.mosquitto import MosquittoFactory
from tests.helpers.mqtt_client import connected_client

pytestmark = pytest.mark.broker

LIVING_ROOM = {
    "temperature": 21.5,
    "humidity": 48.2,
    "battery": 97,
    "linkquality": 120,
    "last_seen": "2024-05-01T12:00:00+02:00",
}
BEDROOM = {"temperature": 19, "humidity": 55, "last_seen": 1714557600000}  # epoch ms
KITCHEN = {
    "Time": "2024-05-01T12:00:05",
    "AM2301": {"Temperature": 22.1, "Humidity": 40.0},
    "BMP280": {"Temperature": 22.4, "Pressure": 1013.2},
    "TempUnit": "C",
}


async def test_readings_of_both_styles_become_rows_once(
    make_mosquitto: MosquittoFactory, tmp_path: Path
) -> None:
    """Each reading is a row with its device and fields as columns; a copy adds nothing."""
    broker = make_mosquitto()
    database = tmp_path / "home.db"
    config = load_example("home-sensors", MQTT_PORT=str(broker.port), HOME_SENSORS_DB=str(database))
    sent = [
        ("zigbee2mqtt/living_room", LIVING_ROOM),
        ("zigbee2mqtt/bedroom", BEDROOM),
        ("zigbee2mqtt/living_room", LIVING_ROOM),  # the same message again: a redelivery
        ("zigbee2mqtt/button", {"action": "single"}),  # no measurement: no row
        ("tele/kitchen_plug/SENSOR", KITCHEN),
        ("tele/kitchen_plug/SENSOR", KITCHEN),
        ("zigbee2mqtt/broken", 21.5),  # not an object: an Error, acknowledged all the same
    ]
    async with run_daemon(config) as daemon:
        with connected_client(broker.port) as publisher:
            for topic, body in sent:
                publisher.publish_json(topic, body)
        await wait_until(lambda: acked(daemon) == len(sent), what="every message acknowledged")

    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute(
            "SELECT source, device, sensor, measured_at, temperature, humidity, pressure,"
            " battery, linkquality FROM readings ORDER BY source, device, sensor"
        ).fetchall()
    assert rows == [
        ("tasmota", "kitchen_plug", "AM2301", "2024-05-01T12:00:05", 22.1, 40.0, None, None, None),
        (
            "tasmota",
            "kitchen_plug",
            "BMP280",
            "2024-05-01T12:00:05",
            22.4,
            None,
            1013.2,
            None,
            None,
        ),
        ("zigbee2mqtt", "bedroom", "", "2024-05-01T10:00:00+00:00", 19.0, 55.0, None, None, None),
        (
            "zigbee2mqtt",
            "living_room",
            "",
            "2024-05-01T10:00:00+00:00",
            21.5,
            48.2,
            None,
            97.0,
            120.0,
        ),
    ]
