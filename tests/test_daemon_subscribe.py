"""Subscribing: reading goes on meanwhile; refused filters; granted QoS; stale subscriptions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt_collector import _daemon
from mqtt_collector._daemon import Daemon
from tests.daemon_helpers import (
    LogCapture,
    capture_logging,
    make_config,
    records,
    run_daemon,
    wait_until,
)
from tests.scripted_broker import SUBSCRIBE, ScriptedBroker, ScriptedConnection

BACKLOG = 300


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Every log line of the test, as the CLI would write it."""
    with capture_logging("info") as captured:
        yield captured


def _data(daemon: Daemon) -> list[int]:
    return sorted(int(r.data) for r in records(daemon))


class TestSubscribeAnsweredLate:
    """A broker that answers SUBSCRIBE only once the session's backlog is acked (amqtt)."""

    async def test_daemon_reads_and_acks_the_backlog_before_the_suback(
        self, topic_prefix: str, tmp_path: Path, logs: LogCapture
    ) -> None:
        """Every queued message is processed and acked; the late SUBACK drops nothing."""
        subacked = asyncio.Event()

        async def resumed_session(conn: ScriptedConnection) -> None:
            await conn.read_connect()
            await conn.connack(session_present=True)
            mids = list(range(1, BACKLOG + 1))
            for mid in mids:
                await conn.publish(f"{topic_prefix}/a", json.dumps(mid).encode(), mid=mid)
            # The SUBSCRIBE comes in among the PUBACKs: answer it only once all are in.
            others = await conn.read_pubacks(mids)
            subscribe = [p for p in others if p.type == SUBSCRIBE]
            request = await conn.read_subscribe() if not subscribe else None
            mid = request.mid if request else int.from_bytes(subscribe[0].body[:2], "big")
            await conn.suback(mid, [1])
            subacked.set()
            await conn.publish(f"{topic_prefix}/a", b"0", mid=BACKLOG + 1)
            await conn.read_pubacks([BACKLOG + 1])
            await conn.wait_closed()

        async with ScriptedBroker(resumed_session) as broker:
            config = make_config(
                tmp_path,
                port=broker.port,
                prefix=topic_prefix,
                broker={"client_id": "late-suback", "session": {"persistent": True}},
                queue={"drain_timeout": 2},
            )
            async with run_daemon(config, ready=False) as daemon:
                await wait_until(
                    lambda: _data(daemon) == list(range(BACKLOG + 1)), what="the whole backlog"
                )
                assert subacked.is_set()
                assert daemon.ready
            assert len(broker.connections) == 1
        assert logs.events("connection lost") == []
        [connected] = logs.events("connected")
        assert connected["session_present"] is True
        assert len(logs.events("subscribed")) == 1

    async def test_daemon_sends_an_unanswered_subscribe_again_on_the_same_connection(
        self,
        topic_prefix: str,
        tmp_path: Path,
        logs: LogCapture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """No SUBACK in time: logged, sent again with backoff; messages flow all along."""
        monkeypatch.setattr(_daemon, "_SUBACK_TIMEOUT", 0.2, raising=False)

        async def forgetful(conn: ScriptedConnection) -> None:
            await conn.read_connect()
            await conn.connack()
            await conn.read_subscribe()  # never answered
            await conn.publish(f"{topic_prefix}/a", b"1", mid=1)
            await conn.read_pubacks([1])
            again = await conn.read_subscribe()
            await conn.suback(again.mid, [1])
            await conn.publish(f"{topic_prefix}/a", b"2", mid=2)
            await conn.read_pubacks([2])
            await conn.wait_closed()

        async with ScriptedBroker(forgetful) as broker:
            config = make_config(
                tmp_path,
                port=broker.port,
                prefix=topic_prefix,
                broker={"reconnect": {"initial_delay": 0.1, "max_delay": 0.2}},
                queue={"drain_timeout": 2},
            )
            async with run_daemon(config, ready=False) as daemon:
                await wait_until(lambda: _data(daemon) == [1, 2], what="both messages")
                await wait_until(lambda: daemon.ready, what="the second SUBSCRIBE answered")
            assert len(broker.connections) == 1
        assert logs.events("connection lost") == []
        [silence] = logs.events("no answer to SUBSCRIBE yet: still reading; it will be sent again")
        assert silence["level"] == "warning"
        assert silence["filters"] == [f"{topic_prefix}/#"]
