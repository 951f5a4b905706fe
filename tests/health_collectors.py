"""A collector for the health tests, named in configs as ``tests.health_collectors:block``."""

from __future__ import annotations

import time
from typing import Any

from mqtt_collector import Context, Ok, Payload, Result

__all__ = ["block"]


async def block(payload: Payload[Any], ctx: Context) -> Result:
    """Block the event loop for ``data["block"]`` seconds: a processor calling blocking code."""
    time.sleep(float(payload.value.data["block"]))  # noqa: ASYNC251 - the point of it
    return Ok(None)
