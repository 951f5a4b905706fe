"""At shutdown the queue says which messages it gave up on: only those stay unacked."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mqtt_collector import Context, Payload, Result
from mqtt_collector._daemon.daemon import Daemon
from mqtt_collector.testing import MemoryTransport
from tests.helpers.daemon import WAIT, make_config, wait_until

# The events the processors below wait on, made afresh by each test (in its own loop).
_STEP: dict[str, asyncio.Event] = {}


async def cancels(payload: Payload[Any], ctx: Context) -> Result:
    """Wait until told, then raise a CancelledError of its own (nobody cancelled it)."""
    _STEP["cancels started"].set()
    await _STEP["raise"].wait()
    raise asyncio.CancelledError


async def hangs(payload: Payload[Any], ctx: Context) -> Result:
    """Never finish."""
    _STEP["hangs started"].set()
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_daemon_own_cancellederror_in_drain_is_acked_cut_off_work_is_not(
    tmp_path: Path,
) -> None:
    """A processor's own CancelledError in the drain is a failure (acked); a cut-off one is held."""
    _STEP.update({name: asyncio.Event() for name in ("cancels started", "hangs started", "raise")})
    config = make_config(
        tmp_path,
        port=1883,  # never used: the transport is in memory
        prefix="t",
        subscriptions=[{"filter": "t/+", "decode": "bytes", "topics": ["{1}"]}],
        collectors=[
            {"key": "cancels", "processor": f"{__name__}:cancels", "topics": ["cancels"]},
            {"key": "hangs", "processor": f"{__name__}:hangs", "topics": ["hangs"]},
        ],
        queue={"drain_timeout": 0.5},
    )
    transport = MemoryTransport()
    daemon = Daemon(config, transport=transport)
    task = asyncio.create_task(daemon.run())
    try:
        await wait_until(lambda: daemon.ready, what="the daemon to be ready")
        transport.deliver("t/cancels", b"1")
        transport.deliver("t/hangs", b"2")
        await wait_until(
            lambda: _STEP["cancels started"].is_set() and _STEP["hangs started"].is_set(),
            what="both processors to start",
        )
        daemon.stop()
        await wait_until(lambda: not daemon.queue.running, what="the drain to start")
        _STEP["raise"].set()  # during the drain, well within its timeout
    finally:
        daemon.stop()
        async with asyncio.timeout(WAIT):
            await task
    assert [m.body for m in transport.acked] == [b"1"]
    assert [m.body for m in transport.session()] == [b"2"]
