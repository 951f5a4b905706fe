"""The demo's simulated sensors: one MQTT client publishing readings as field devices would.

Several sites, each with a few devices, each reporting its temperature and humidity as a JSON
body at QoS 1, and its status (``online`` / ``offline``) as text. Every ``MALFORMED_EVERY``-th
reading is a broken body instead, so the daemon's refusal path shows as well.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiomqtt

from mqtt_collector._demo.config import TOPIC_ROOT

__all__ = ["MALFORMED_EVERY", "Published", "simulate"]

SITES = {
    "north": ("boiler-room", "office-1", "office-2"),
    "south": ("cold-store", "loading-bay"),
    "harbour": ("quay-3", "warehouse", "pump-house"),
}
# Where each kind of device starts (celsius, percent relative humidity).
_START = {"boiler": (38.0, 30.0), "cold": (4.0, 85.0), "quay": (12.0, 80.0)}
_DEFAULT_START = (21.0, 45.0)
INTERVAL = 0.25  # seconds between two readings of one device
MALFORMED_EVERY = 40
_MALFORMED = (b'{"celsius": 21.', b"21.5 C", b"\xff\xfe\x00garbage", b"")


@dataclass(slots=True)
class Published:
    """What the simulator has published (and the broker acknowledged) so far."""

    readings: int = 0
    malformed: int = 0
    status: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def total(self) -> int:
        """Every message published."""
        return self.readings + self.malformed + self.status


@dataclass(slots=True)
class _Device:
    site: str
    name: str
    celsius: float
    percent: float
    battery: int

    def topic(self, quantity: str) -> str:
        return f"{TOPIC_ROOT}/{self.site}/{self.name}/{quantity}"

    def step(self, rng: random.Random) -> None:
        """Drift like a real reading: a small random walk."""
        self.celsius = round(self.celsius + rng.uniform(-0.3, 0.3), 2)
        self.percent = round(min(100.0, max(0.0, self.percent + rng.uniform(-0.8, 0.8))), 1)
        if rng.random() < 0.01:  # noqa: PLR2004 - now and then the battery drops a point
            self.battery = max(0, self.battery - 1)


def _devices(rng: random.Random) -> list[_Device]:
    devices = []
    for site, names in SITES.items():
        for name in names:
            start = next((v for k, v in _START.items() if name.startswith(k)), _DEFAULT_START)
            devices.append(_Device(site, name, start[0], start[1], rng.randint(60, 100)))
    return devices


def _body(device: _Device, quantity: str) -> bytes:
    if quantity == "temperature":
        value: dict[str, float] = {"celsius": device.celsius}
    else:
        value = {"percent": device.percent}
    reading = {
        "site": device.site,
        "device": device.name,
        **value,
        "battery": device.battery,
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    return json.dumps(reading).encode()


async def simulate(
    *,
    host: str,
    port: int,
    protocol: aiomqtt.ProtocolVersion,
    username: str | None,
    stop: asyncio.Event,
    published: Published,
) -> None:
    """Publish readings until ``stop`` is set, then each device's ``offline`` status.

    Counts into ``published`` as the broker acknowledges; raises aiomqtt.MqttError if the
    broker cannot be reached or the connection is lost.
    """
    rng = random.Random()  # noqa: S311 - simulated readings, not secrets
    devices = _devices(rng)
    async with aiomqtt.Client(
        host,
        port,
        identifier=f"mqtt-collector-demo-sensors-{secrets.token_hex(3)}",
        protocol=protocol,
        username=username,
    ) as client:
        for device in devices:
            await client.publish(device.topic("status"), b"online", qos=1)
            published.status += 1
        pause = INTERVAL / len(devices)
        count = 0
        while not stop.is_set():
            for device in devices:
                device.step(rng)
                for quantity in ("temperature", "humidity"):
                    count += 1
                    if count % MALFORMED_EVERY == 0:
                        body = _MALFORMED[(count // MALFORMED_EVERY) % len(_MALFORMED)]
                        await client.publish(device.topic(quantity), body, qos=1)
                        published.malformed += 1
                    else:
                        await client.publish(device.topic(quantity), _body(device, quantity), qos=1)
                        published.readings += 1
                if stop.is_set():
                    break
                # Wait out the pause, or less if asked to stop.
                try:
                    async with asyncio.timeout(pause):
                        await stop.wait()
                except TimeoutError:
                    pass
        for device in devices:
            await client.publish(device.topic("status"), b"offline", qos=1)
            published.status += 1
