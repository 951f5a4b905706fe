"""Objects the configuration tests name by dotted path, e.g. ``tests.sample_collectors:store``."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from mqtt_collector._core.result import Ok

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from mqtt_collector._core.collector import Context
    from mqtt_collector._core.payload import Payload
    from mqtt_collector._core.result import Result


async def store(payload: Payload[Any], ctx: Context) -> Result:
    """An async processor that accepts everything."""
    return Ok(payload.value)


class AsyncCallable:
    """A class whose instances are async processors (an async ``__call__``)."""

    async def __call__(self, payload: Payload[Any], ctx: Context) -> Result:
        """Accept everything."""
        return Ok(None)


async_instance = AsyncCallable()


class Holder:
    """Holds a processor one attribute deeper, for ``module:Holder.store`` paths."""

    store = staticmethod(store)


def sync_processor(payload: Payload[Any], ctx: Context) -> Result:
    """A plain function: not usable as a processor."""
    return Ok(None)


not_callable = 42


@asynccontextmanager
async def lifecycle(ctx: Context) -> AsyncIterator[None]:
    """A lifecycle that does nothing."""
    yield
