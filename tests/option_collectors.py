"""A user collector declaring its options, as README "Writing a collector" shows.

Named by dotted path in tests/test_collector_options.py: ``tests.option_collectors:store``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mqtt_collector import Context, Ok, Payload, Result

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class Options(BaseModel):
    """The options of ``store``: checked by ``mqtt-collector check`` and at load by ``run``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dsn: str
    batch: int = Field(default=100, ge=1)

    @field_validator("dsn")
    @classmethod
    def _postgres(cls, value: str) -> str:
        if not value.startswith("postgresql://"):
            raise ValueError(f"must be a postgresql:// URL, got {value!r}")
        return value


async def store(payload: Payload[Any], ctx: Context) -> Result:
    """Accept everything, answering with the options the collector was given."""
    options: Options = ctx.options
    return Ok((options.dsn, options.batch, payload.value))


@asynccontextmanager
async def connect(ctx: Context) -> AsyncIterator[None]:
    """Record the options the lifecycle was given, as ``ctx.connected_to``."""
    ctx.connected_to = ctx.options.dsn
    yield
