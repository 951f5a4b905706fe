"""The counting collector ``e2e_bench.py`` runs the daemon with (``e2e_counter:count``).

The daemon decodes each JSON body (the subscription says ``decode: json``) and acks it after this
returns. Options: ``target`` (how many messages), ``result`` (the file written once ``target``
have been counted, as the bare subscribers in ``e2e_clients.py`` write theirs) and ``latency``
(record receipt - the body's send time ``t``).
"""

from __future__ import annotations

import time
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
