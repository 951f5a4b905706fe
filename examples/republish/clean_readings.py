"""Clean sensor readings and publish them again: unit conversion, range checks, one shape.

Named in ``config.yaml`` as::

    processor: clean_readings:clean
    lifecycle: clean_readings:cleaner

It reads ``sensors/<site>/<device>/reading`` bodies as devices send them, for example
``{"temperature": 71.6, "unit": "F", "humidity": 45, "ts": 1714557600}``, and publishes to the
``output`` topic (default ``clean/<site>/<device>``) one shape whatever the device::

    {"site": "north", "device": "t1", "ts": "2024-05-01T10:00:00+00:00",
     "temperature_c": 22.0, "humidity_pct": 45.0}

- ``temperature`` (required, a number) in ``unit`` ``C`` (default), ``F`` or ``K``, converted
  to degrees Celsius, rounded to 0.01, and checked against ``min_celsius``..``max_celsius``.
- ``humidity`` (optional, a number) must lie within 0..100 (percent).
- ``ts`` (optional): Unix seconds or an ISO 8601 time with a zone; given in UTC. Without one,
  the time the daemon received the reading.

A reading that fails any check is ``Error(InvalidReadingError)``: the collector's
``dead_letter`` in the config then publishes the original body to the dead-letter topic, with
the reason as the ``error`` user property (MQTT 5). Nothing is published to ``output`` for it.

The clean reading goes out through ``ctx.publish``, the daemon's own connection, before the
processor returns: with QoS 1 the original is acknowledged only once the broker has the clean
one. If that publish fails (the connection dropped), the exception makes an Error too, retried
per the config's ``retry``, then dead-lettered. So every reading ends up in one of the two
topics, at least once: the ``ts`` field lets a consumer recognise a copy.

The lifecycle checks the options, keeps counts on the Context while the daemon runs, and logs
them when it stops.

Options:
    output: the output topic, with ``{site}`` and ``{device}`` (the topic's two wildcard
        captures) replaced. Default ``clean/{site}/{device}``. Must not match the input filter,
        or the daemon would read its own output.
    qos: the output's QoS, 0 or 1. Default 1.
    min_celsius, max_celsius: the plausible range. Default -40 and 85 (a common sensor's range).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Self

import structlog
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from mqtt_collector import Context, Error, Message, Ok, Payload, Result

__all__ = ["InvalidReadingError", "Options", "clean", "cleaner", "normalise"]

logger = structlog.get_logger("clean_readings")

_ZERO_CELSIUS_IN_KELVIN = 273.15
_TO_CELSIUS = {
    "C": lambda value: value,
    "F": lambda value: (value - 32) * 5 / 9,
    "K": lambda value: value - _ZERO_CELSIUS_IN_KELVIN,
}
_MAX_HUMIDITY = 100.0


class Options(BaseModel):
    """The collector's options, as the module docstring describes them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    output: str = "clean/{site}/{device}"
    qos: Literal[0, 1] = 1
    min_celsius: float = -40.0
    max_celsius: float = 85.0

    @field_validator("output")
    @classmethod
    def _topic_template(cls, value: str) -> str:
        if "+" in value or "#" in value:
            raise ValueError("must be a topic, without + or #")
        try:
            topic = value.format(site="s", device="d")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"may use only {{site}} and {{device}}: {exc}") from None
        if not topic:
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _range(self) -> Self:
        if not self.min_celsius < self.max_celsius:
            raise ValueError("min_celsius must be below max_celsius")
        return self


class InvalidReadingError(ValueError):
    """A reading that fails a check: it goes to the dead letter, not to the output."""


def _number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidReadingError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _timestamp(value: Any, received_at: float) -> str:
    if value is None:
        return datetime.fromtimestamp(received_at, UTC).isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return datetime.fromtimestamp(value, UTC).isoformat()
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is not None:
                return moment.astimezone(UTC).isoformat()
    raise InvalidReadingError(f"ts must be Unix seconds or ISO 8601 with a zone, got {value!r}")


def normalise(message: Message, options: Options) -> dict[str, Any]:
    """Return the clean reading of ``message``; raise InvalidReadingError if it fails a check."""
    body = message.data
    if not isinstance(body, Mapping):
        raise InvalidReadingError(f"expected a JSON object, got {type(body).__name__}")
    site, device = message.captures
    temperature = _number(body, "temperature")
    if temperature is None:
        raise InvalidReadingError("temperature is missing")
    unit = str(body.get("unit", "C")).upper().removeprefix("°")
    convert = _TO_CELSIUS.get(unit)
    if convert is None:
        raise InvalidReadingError(f"unit must be C, F or K, got {body.get('unit')!r}")
    celsius = round(convert(temperature), 2)
    if not options.min_celsius <= celsius <= options.max_celsius:
        raise InvalidReadingError(
            f"temperature {celsius} °C outside {options.min_celsius}..{options.max_celsius}"
        )
    clean: dict[str, Any] = {
        "site": site,
        "device": device,
        "ts": _timestamp(body.get("ts"), message.received_at),
        "temperature_c": celsius,
    }
    humidity = _number(body, "humidity")
    if humidity is not None:
        if not 0.0 <= humidity <= _MAX_HUMIDITY:
            raise InvalidReadingError(f"humidity {humidity} % outside 0..100")
        clean["humidity_pct"] = humidity
    return clean


@contextlib.asynccontextmanager
async def cleaner(ctx: Context) -> AsyncIterator[None]:
    """Keep counts of what the collector did on ``ctx.counts``; log them when the daemon stops."""
    ctx.counts = Counter[str]()
    try:
        yield
    finally:
        logger.info("readings cleaned", collector=ctx.key, **ctx.counts)


async def clean(payload: Payload[Message], ctx: Context) -> Result:
    """Publish the clean reading to the output topic; ``Error`` for an invalid reading."""
    options: Options = ctx.options
    message = payload.value
    try:
        reading = normalise(message, options)
    except InvalidReadingError as exc:
        ctx.counts["invalid"] += 1
        return Error(exc)
    topic = options.output.format(site=reading["site"], device=reading["device"])
    body = json.dumps(reading, separators=(",", ":")).encode()
    await ctx.publish(topic, body, qos=options.qos)  # raises if it did not get through
    ctx.counts["published"] += 1
    return Ok(topic)
