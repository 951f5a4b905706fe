"""A collector that fails with secrets in its local variables, for the no-secret-in-output test.

Its options carry a ``dsn`` with a password; the processor, the lifecycle's teardown (and the
lifecycle ``unreachable``, at start) each raise while a local variable holds that DSN, as a
real database collector's would.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from mqtt_collector._core.collector import Context
    from mqtt_collector._core.payload import Payload
    from mqtt_collector._core.result import Result


async def store(payload: Payload[Any], ctx: Context) -> Result:
    """Fail to write, with the DSN in a local variable."""
    dsn: str = ctx.options["dsn"]
    raise ConnectionError(f"database unreachable ({len(dsn)}-character DSN)")


@asynccontextmanager
async def database(ctx: Context) -> AsyncIterator[None]:
    """Open nothing; at exit, fail to close with the DSN in a local variable."""
    dsn: str = ctx.options["dsn"]
    yield
    raise RuntimeError(f"cannot close the connection ({len(dsn)}-character DSN)")


@asynccontextmanager
async def unreachable(ctx: Context) -> AsyncIterator[None]:
    """Fail to open, with the DSN in a local variable: the daemon cannot start."""
    dsn: str = ctx.options["dsn"]
    raise ConnectionRefusedError(f"cannot open the database ({len(dsn)}-character DSN)")
    yield  # pragma: no cover - makes this an async generator
