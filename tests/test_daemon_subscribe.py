"""Subscribing: reading goes on meanwhile; refused filters; granted QoS; stale subscriptions."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt_collector._daemon import daemon as _daemon
from mqtt_collector._daemon.daemon import Daemon
from tests.conftest import in_ci
from tests.helpers.daemon import (
    WAIT,
    LogCapture,
    capture_logging,
    free_port,
    make_config,
    records,
    run_daemon,
    wait_until,
)
from tests.helpers.mosquitto import MosquittoFactory
from tests.helpers.mqtt_client import connected_client
from tests.helpers.scripted_broker import SUBSCRIBE, ScriptedBroker, ScriptedConnection

BACKLOG = 300
_FAST = {"initial_delay": 0.1, "max_delay": 0.3}
# Mosquitto's dynamic security plugin is what can refuse a SUBSCRIBE (its acl_file cannot).
_DYNSEC = "/usr/lib/*/mosquitto_dynamic_security.so"


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Every log line of the test, as the CLI would write it."""
    with capture_logging("info") as captured:
        yield captured


def _data(daemon: Daemon) -> list[int]:
    return sorted(int(r.data) for r in records(daemon))


def _metric(daemon: Daemon, name: str, **labels: str) -> float:
    value = daemon.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=WAIT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def _refusing_conf(directory: Path, denied: str) -> str:
    """Mosquitto conf lines that make its plain listener refuse subscribing to ``denied``."""
    found = sorted(Path("/").glob(_DYNSEC.lstrip("/")))
    if not found:
        message = f"Mosquitto's dynamic security plugin is not installed ({_DYNSEC})"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    directory.mkdir(parents=True, exist_ok=True)
    roles = [{"acltype": "subscribeLiteral", "topic": denied, "allow": False, "priority": 1}]
    dynsec = {
        "clients": [],
        "groups": [{"groupname": "anonymous", "roles": [{"rolename": "limited"}]}],
        "anonymousGroup": "anonymous",
        "roles": [{"rolename": "limited", "acls": roles}],
        "defaultACLAccess": {
            "publishClientSend": True,
            "publishClientReceive": True,
            "subscribe": True,
            "unsubscribe": True,
        },
    }
    path = directory / "dynsec.json"
    path.write_text(json.dumps(dynsec), encoding="utf-8")
    path.chmod(0o600)
    return f"plugin {found[0]}\nplugin_opt_config_file {path}"


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
        monkeypatch.setattr(_daemon, "_SUBACK_TIMEOUT", 0.2)

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


class TestSubscriptionRefused:
    """A broker that refuses one filter of several (an ACL; NATS refuses filters with '.')."""

    @pytest.mark.broker
    @pytest.mark.parametrize(
        "answer",
        [("5", "0x87 Not authorized"), ("3.1.1", "0x80 Unspecified error")],
        ids=["mqtt5", "mqtt311"],
    )
    async def test_daemon_keeps_the_granted_filters_and_asks_again_for_the_refused_one(
        self,
        make_mosquitto: MosquittoFactory,
        topic_prefix: str,
        tmp_path: Path,
        logs: LogCapture,
        answer: tuple[str, str],
    ) -> None:
        """The good filter delivers; the refused one is logged, counted, in /readyz, retried."""
        protocol, reason = answer
        denied = f"{topic_prefix}/denied/#"
        broker = make_mosquitto(extra_conf=_refusing_conf(tmp_path / "dynsec", denied))
        metrics_port = free_port()
        config = make_config(
            tmp_path,
            port=broker.port,
            prefix=topic_prefix,
            subscriptions=[
                {"filter": f"{topic_prefix}/ok/#", "topics": ["all"]},
                {"filter": denied, "topics": ["all"]},
            ],
            broker={"protocol": protocol, "reconnect": _FAST},
            metrics={"listen": f"127.0.0.1:{metrics_port}"},
        )
        refusals = "mqtt_collector_subscription_refusals_total"
        async with run_daemon(config, ready=False) as daemon:
            await wait_until(
                lambda: _metric(daemon, refusals, filter=denied) >= 3,
                what="the refused filter asked for three times",
            )
            with connected_client(broker.port) as publisher:
                publisher.publish_json(f"{topic_prefix}/ok/a", 1)
            await wait_until(lambda: _data(daemon) == [1], what="the good filter's message")
            assert not daemon.ready
            status, body = await asyncio.to_thread(_readyz, metrics_port)
            assert _metric(daemon, "mqtt_collector_subscriptions_refused") == 1
            assert _metric(daemon, "mqtt_collector_connections_total") == 1
        assert (status, body) == (503, f"subscription refused: {denied} ({reason})\n")
        assert logs.events("connection lost") == []
        refused = logs.events("subscription refused (the other filters deliver; asked for again)")
        assert refused[0]["level"] == "error"
        assert refused[0]["filter"] == denied
        assert refused[0]["reason"] == reason
        [subscribed] = logs.events("subscribed")
        assert subscribed["filters"] == [f"{topic_prefix}/ok/#"]
