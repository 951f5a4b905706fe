"""Leaving share groups at stop does not depend on the daemon being fully ready."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mqtt_collector._daemon.daemon import Daemon
from mqtt_collector.testing import MemoryTransport
from tests.helpers.daemon import make_config, recorder_entry, wait_until


async def test_daemon_leaves_share_group_while_another_filter_is_refused(tmp_path: Path) -> None:
    """A refused filter makes the daemon not ready, yet stopping still leaves its share group."""
    config = make_config(
        tmp_path,
        port=1883,  # never used: the transport is in memory
        prefix="t",
        broker={"client_id": "share-leave-test"},
        subscriptions=[
            {"filter": "t/shared/+", "share_group": "g", "decode": "bytes"},
            {"filter": "t/denied/+", "decode": "bytes"},
        ],
        collectors=[recorder_entry(topics=["{topic}"])],
        queue={"drain_timeout": 2},
    )
    transport = MemoryTransport()
    transport.refuse_filters = {"t/denied/+"}
    daemon = Daemon(config, transport=transport)
    task = asyncio.create_task(daemon.run())
    try:
        await wait_until(
            lambda: daemon.why_not_ready.startswith("subscription refused"),
            what="the refused filter to be seen",
        )
        assert not daemon.ready
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 10)
    assert transport.unsubscribed == ["$share/g/t/shared/+"]
