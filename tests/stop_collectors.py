"""Collector parts for the shutdown tests, named in configs as ``tests.stop_collectors:<name>``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from mqtt_collector import Context, Ok, Payload, Result

__all__ = ["ignore", "slow_teardown"]


async def ignore(payload: Payload[Any], ctx: Context) -> Result:
    """Take the payload and do nothing."""
    return Ok(None)


@contextlib.asynccontextmanager
async def slow_teardown(ctx: Context) -> AsyncIterator[None]:
    """A lifecycle whose exit takes ``options.teardown`` seconds (a stuck database close)."""
    yield
    await asyncio.sleep(float(ctx.options["teardown"]))
