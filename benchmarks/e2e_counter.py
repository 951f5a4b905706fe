"""The counting collector ``e2e_bench.py`` runs the daemon with (``e2e_counter:count``).

The daemon decodes each JSON body (the subscription says ``decode: json``) and acks it after this
returns. Options: ``target`` (how many messages), ``result`` (the file written once ``target``
have been counted, as the bare subscribers in ``e2e_clients.py`` write theirs) and ``latency``
(record receipt - the body's send time ``t``).

``sink`` (with ``sink_lifecycle``) writes each message with a built-in collector first (option
``sink``: ``sqlite`` or ``postgres``, its options under ``sink_options``) and counts it once the
batch holding it is committed: the daemon's rate with that sink.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from e2e_clients import write_result

from mqtt_collector import Context, Message, Ok, Payload, Result

_count = 0
_lat: list[float] = []


async def count(payload: Payload[Message], ctx: Context) -> Result:
    """Count one message; write the result file at the target."""
    global _count  # noqa: PLW0603 - one collector per benchmark process
    _count += 1
    options: Any = ctx.options
    if options["latency"]:
        _lat.append(time.time() - payload.value.data["t"])
    if _count == options["target"]:
        write_result(Path(options["result"]), time.time(), _count, _lat)
    return Ok(None)


@contextlib.asynccontextmanager
async def sink_lifecycle(ctx: Context) -> AsyncIterator[None]:
    """Open the built-in sink named by the ``sink`` option, with its ``sink_options``."""
    options: Any = ctx.options
    module = importlib.import_module(f"mqtt_collector.collectors.{options['sink']}")
    inner = Context(key=ctx.key, options=dict(options["sink_options"]))
    async with module.open_database(inner):
        ctx.sink = (module.write, inner)
        yield


async def sink(payload: Payload[Message], ctx: Context) -> Result:
    """Write the message with the sink; count it once its batch is committed."""
    write, inner = ctx.sink
    result: Result = await write(payload, inner)
    if not result.is_ok():
        return result
    return await count(payload, ctx)
