"""The public test kit, ``mqtt_collector.testing``: TestDaemon over the in-memory transport."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mqtt_collector import Context, Error, LifecycleError, Message, Ok, Payload, Result
from mqtt_collector._config.load import Config, load_config
from mqtt_collector._exceptions import TransportError
from mqtt_collector.testing import MemoryTransport, Published, TestDaemon

HERE = "tests.test_testing"


# --- collectors the configs below name -------------------------------------------------------


@contextlib.asynccontextmanager
async def keeper(ctx: Context) -> AsyncIterator[None]:
    """Keep what the processor gets in ``ctx.kept``; say on the Context when it ran."""
    ctx.kept = []
    ctx.events = ["entered"]
    lifecycle_log.append(f"{ctx.key}:entered")
    try:
        yield
    finally:
        ctx.events.append("exited")
        lifecycle_log.append(f"{ctx.key}:exited")


lifecycle_log: list[str] = []


async def keep(payload: Payload[Message], ctx: Context) -> Result:
    """Keep the message's data; return it."""
    ctx.kept.append(payload.value.data)
    return Ok(payload.value.data)


async def fail(payload: Payload[Message], ctx: Context) -> Result:
    """Always fail."""
    return Error(RuntimeError(f"cannot store {payload.value.topic}"))


@contextlib.asynccontextmanager
async def broken(ctx: Context) -> AsyncIterator[None]:
    """A lifecycle that cannot start."""
    raise ConnectionRefusedError("database refused")
    yield  # pragma: no cover - makes this an async generator


# --- configs ---------------------------------------------------------------------------------


def _write(tmp_path: Path, **tree: Any) -> Path:
    base: dict[str, Any] = {
        "subscriptions": [
            {"filter": "sensors/+/temperature", "topics": ["temperature"]},
            {"filter": "limited/+", "decode": "bytes", "max_body_bytes": 8, "topics": ["raw"]},
            {"filter": "text/+", "decode": "text", "topics": ["raw"]},
        ],
        "collectors": [
            {
                "key": "store",
                "processor": f"{HERE}:keep",
                "lifecycle": f"{HERE}:keeper",
                "topics": ["temperature", "raw"],
            }
        ],
    }
    base.update(tree)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False), encoding="utf-8")
    return path


def _failing(tmp_path: Path, *, protocol: str = "5") -> Path:
    return _write(
        tmp_path,
        broker={"protocol": protocol, "reconnect": {"initial_delay": 0.01, "max_delay": 0.05}},
        collectors=[
            {
                "key": "failing",
                "processor": f"{HERE}:fail",
                "topics": ["temperature"],
                "retry": {"attempts": 3, "backoff": 0.001},
                "dead_letter": {"topic": "dlq/temperature", "qos": 1},
            }
        ],
    )


# --- tests -----------------------------------------------------------------------------------


async def test_acked_message_gives_its_results(tmp_path: Path) -> None:
    """A routed message is processed, acked, and its ResultList and Message are returned."""
    async with TestDaemon(_write(tmp_path)) as daemon:
        delivery = await daemon.publish("sensors/kitchen/temperature", {"celsius": 21.5})
        assert daemon.context("store").kept == [{"celsius": 21.5}]
        assert daemon.sample("mqtt_collector_messages_acked_total") == 1
    assert delivery.acked
    assert delivery.refused is None
    assert list(delivery.results) == [Ok({"celsius": 21.5})]
    assert delivery.message is not None
    assert delivery.message.captures == ("kitchen",)
    assert delivery.qos == 1


async def test_body_may_be_bytes_str_or_json(tmp_path: Path) -> None:
    """A bytes body goes as it is, a str as UTF-8, anything else as JSON."""
    async with TestDaemon(_write(tmp_path)) as daemon:
        raw = await daemon.publish("limited/a", b"\x00\xff")
        text = await daemon.publish("text/a", "grüße")
        data = await daemon.publish("sensors/a/temperature", [1, None, True])
    assert [d.message.raw for d in (raw, text, data) if d.message is not None] == [
        b"\x00\xff",
        "grüße".encode(),
        b"[1, null, true]",
    ]


async def test_unrouted_message_is_refused_with_no_results(tmp_path: Path) -> None:
    """A topic no subscription matches: acked, empty ResultList, refused as unrouted."""
    async with TestDaemon(_write(tmp_path)) as daemon:
        delivery = await daemon.publish("elsewhere/x", {"a": 1})
        assert daemon.sample("mqtt_collector_messages_rejected_total", reason="unrouted") == 1
        assert daemon.context("store").kept == []
    assert delivery.acked
    assert delivery.refused == "unrouted"
    assert len(delivery.results) == 0
    assert delivery.message is None


async def test_undecodable_body_is_refused_as_decode(tmp_path: Path) -> None:
    """A body that is not JSON is refused (acked, counted) with the decoder's reason."""
    async with TestDaemon(_write(tmp_path)) as daemon:
        delivery = await daemon.publish("sensors/x/temperature", b"{not json")
        assert daemon.sample("mqtt_collector_messages_rejected_total", reason="decode") == 1
    assert (delivery.acked, delivery.refused, len(delivery.results)) == (True, "decode", 0)
    assert delivery.detail is not None
    assert delivery.detail.startswith("invalid JSON")


async def test_too_large_body_is_refused_as_too_large(tmp_path: Path) -> None:
    """A body over max_body_bytes is refused as too_large; one at the limit goes through."""
    async with TestDaemon(_write(tmp_path)) as daemon:
        large = await daemon.publish("limited/a", b"x" * 9)
        fits = await daemon.publish("limited/a", b"x" * 8)
    assert (large.acked, large.refused) == (True, "too_large")
    assert large.detail == "body of 9 bytes exceeds max_body_bytes (8)"
    assert (fits.acked, fits.refused, fits.results.is_ok()) == (True, None, True)


async def test_failing_collector_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    """Every try fails: retried, dead-lettered (visible in ``published``), then acked."""
    async with TestDaemon(_failing(tmp_path)) as daemon:
        delivery = await daemon.publish("sensors/a/temperature", {"celsius": 99})
        outcomes = {
            outcome: daemon.sample(
                "mqtt_collector_deliveries_total", collector="failing", outcome=outcome
            )
            for outcome in ("retry", "error", "dead_letter")
        }
    assert delivery.acked
    [result] = delivery.results
    assert isinstance(result, Error)
    assert str(result.exception) == "cannot store sensors/a/temperature"
    assert outcomes == {"retry": 2, "error": 1, "dead_letter": 1}
    [letter] = daemon.published
    assert letter == Published(
        "dlq/temperature",
        b'{"celsius": 99}',
        1,
        (
            ("error", "RuntimeError: cannot store sensors/a/temperature"),
            ("collector", "failing"),
            ("topic", "sensors/a/temperature"),
        ),
    )


async def test_refused_dead_letter_leaves_the_message_unacked(tmp_path: Path) -> None:
    """A dead letter the broker refuses: not acked, and the Error says why."""
    transport = MemoryTransport()
    transport.refuse = TransportError("Not authorized (0x87)")
    async with TestDaemon(_failing(tmp_path), transport=transport) as daemon:
        delivery = await daemon.publish("sensors/a/temperature", 1)
        transport.refuse = None  # let the redelivered copy through before the stop
    assert not delivery.acked
    [result] = delivery.results
    assert isinstance(result, Error)
    assert "dead letter not published" in str(result.exception)


async def test_qos0_is_processed_and_never_acked(tmp_path: Path) -> None:
    """QoS 0 has no ack: processed, results given, acked False."""
    async with TestDaemon(_write(tmp_path)) as daemon:
        delivery = await daemon.publish("sensors/a/temperature", 1, qos=0)
    assert (delivery.qos, delivery.acked, delivery.results.is_ok()) == (0, False, True)


async def test_qos_is_capped_by_the_subscription(tmp_path: Path) -> None:
    """QoS 2 on a QoS 1 subscription arrives as QoS 1, as a broker sends it."""
    async with TestDaemon(_write(tmp_path)) as daemon:
        delivery = await daemon.publish("sensors/a/temperature", 1, qos=2, retain=True)
    assert delivery.message is not None
    assert (delivery.qos, delivery.message.qos, delivery.message.retain) == (1, 1, True)


async def test_properties_reach_the_message(tmp_path: Path) -> None:
    """MQTT 5 properties are handed over as given."""
    properties = {"user_properties": [("site", "north")], "content_type": "application/json"}
    async with TestDaemon(_write(tmp_path)) as daemon:
        delivery = await daemon.publish("sensors/a/temperature", 1, properties=properties)
        with pytest.raises(ValueError, match="wildcard"):
            await daemon.publish("sensors/+/temperature", 1)
    assert delivery.message is not None
    assert dict(delivery.message.properties) == properties


async def test_properties_are_refused_on_mqtt_311(tmp_path: Path) -> None:
    """MQTT 3.1.1 has no properties: asking for some is a mistake of the test."""
    async with TestDaemon(_failing(tmp_path, protocol="3.1.1")) as daemon:
        with pytest.raises(ValueError, match=r"3\.1\.1"):
            await daemon.publish("sensors/a/temperature", 1, properties={"content_type": "x"})


async def test_lifecycles_run_on_enter_and_exit(tmp_path: Path) -> None:
    """The lifecycle is entered before the first publish and exited when the block ends."""
    lifecycle_log.clear()
    kit = TestDaemon(_write(tmp_path))
    assert lifecycle_log == []
    async with kit as daemon:
        assert lifecycle_log == ["store:entered"]
        await daemon.publish("sensors/a/temperature", 1)
    assert lifecycle_log == ["store:entered", "store:exited"]
    assert kit.context("store").events == ["entered", "exited"]


async def test_failing_lifecycle_is_raised_on_enter(tmp_path: Path) -> None:
    """A lifecycle that cannot start makes entering raise LifecycleError."""
    path = _write(
        tmp_path,
        collectors=[
            {"key": "db", "processor": f"{HERE}:keep", "lifecycle": f"{HERE}:broken"}
            | {"topics": ["temperature"]}
        ],
    )
    with pytest.raises(LifecycleError, match="database refused"):
        async with TestDaemon(path):
            pytest.fail("entered")  # pragma: no cover


@pytest.mark.parametrize("given", ["path", "str", "config"])
async def test_config_is_a_path_or_a_loaded_config(tmp_path: Path, given: str) -> None:
    """TestDaemon takes a Path, a str path, or a Config from load_config."""
    path = _write(tmp_path)
    config: Config | str | Path = path
    if given == "str":
        config = str(path)
    elif given == "config":
        config = load_config(path)
    async with TestDaemon(config) as daemon:
        delivery = await daemon.publish("sensors/a/temperature", 5)
    assert delivery.results.first() == Ok(5)


async def test_metrics_listen_is_ignored(tmp_path: Path) -> None:
    """A config's metrics.listen opens no socket in the kit."""
    path = _write(tmp_path, metrics={"listen": "127.0.0.1:1"})  # port 1: cannot be bound
    async with TestDaemon(path) as daemon:
        assert (await daemon.publish("sensors/a/temperature", 1)).acked


async def test_publish_outside_the_block_is_an_error(tmp_path: Path) -> None:
    """publish() before entering (or after leaving) says how to use the kit."""
    kit = TestDaemon(_write(tmp_path))
    with pytest.raises(RuntimeError, match="async with"):
        await kit.publish("sensors/a/temperature", 1)


def test_readme_example_runs(tmp_path: Path) -> None:
    """The README's "Testing a collector" example passes under pytest, as written there."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Testing a collector", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(# (\S+).*?\n.*?)```", section, re.DOTALL)
    assert [name for _, name in blocks] == ["myapp/readings.py", "tests/test_readings.py"]
    for code, name in blocks:
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code, encoding="utf-8")
    (tmp_path / "myapp" / "__init__.py").write_text("", encoding="utf-8")
    pytest_args = ["-q", "-p", "no:cacheprovider", "-W", "error", "--rootdir", str(tmp_path)]
    pytest_args += ["-o", "asyncio_default_fixture_loop_scope=function"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args, "tests/test_readings.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


# --- MemoryTransport on its own --------------------------------------------------------------


async def test_transport_records_deliveries_and_acks_in_order() -> None:
    """``delivered`` is what was handed out, ``acked`` what was acked (in arrival order)."""
    transport = MemoryTransport()
    await transport.connect()
    first = transport.deliver("t/a", b"1")
    second = transport.deliver("t/b", b"2")
    zero = transport.deliver("t/c", b"0", qos=0)
    stream = transport.messages()
    async with asyncio.timeout(5):
        handed = [await anext(stream) for _ in range(3)]
    await stream.aclose()
    assert handed == transport.delivered == [first, second, zero]
    assert transport.session() == [first, second]  # QoS 0 is never in the session
    transport.ack(second)
    assert transport.acked == []  # waits for the first one's ack
    transport.ack(first)
    transport.ack(zero)
    assert transport.acked == [first, second]
    assert transport.session() == []


async def test_transport_session_keeps_what_was_not_acked_for_the_next_connection() -> None:
    """A held message stays in ``session()`` and is delivered again, numbered by connection."""
    transport = MemoryTransport()
    await transport.connect()
    held = transport.deliver("t/a", b"1")
    behind = transport.deliver("t/b", b"2")
    stream = transport.messages()
    async with asyncio.timeout(5):
        await anext(stream)
        await anext(stream)
        transport.hold(held)
        transport.ack(behind)  # processed, but held back behind the held one
        assert transport.acked == []
        await transport.disconnect()
        with pytest.raises(TransportError):
            await anext(stream)
        await transport.connect()
        stream = transport.messages()
        again = [await anext(stream), await anext(stream)]
    await stream.aclose()
    delivered = [(m.connection, m.body) for m in transport.delivered]
    assert delivered == [(1, b"1"), (1, b"2"), (2, b"1"), (2, b"2")]
    assert transport.session() == again
    transport.ack(again[0])
    transport.ack(again[1])
    assert [(m.connection, m.body) for m in transport.acked] == [(2, b"1"), (2, b"2")]
    assert transport.session() == []


async def test_transport_sends_no_ack_after_a_disconnect() -> None:
    """An ack due once the connection is closed is lost: the message stays in the session."""
    transport = MemoryTransport()
    await transport.connect()
    message = transport.deliver("t/a", b"1")
    await transport.disconnect()
    transport.ack(message)
    assert transport.acked == []
    assert transport.session() == [message]


async def test_transport_refuses_filters_and_records_unsubscribes() -> None:
    """``refuse_filters`` get SUBACK 0x87 and are not subscribed; ``unsubscribed`` records."""
    transport = MemoryTransport()
    assert await transport.subscribe([("t/ok/+", 1)]) is None  # all granted as asked
    transport.refuse_filters = {"t/denied/+"}
    codes = await transport.subscribe([("t/denied/+", 1), ("t/two/+", 2)])
    assert list(codes or ()) == [0x87, 2]
    assert transport.filters == {"t/ok/+": 1, "t/two/+": 2}
    await transport.unsubscribe(["t/ok/+"])
    await transport.unsubscribe(["t/never/+"])
    assert transport.unsubscribed == ["t/ok/+", "t/never/+"]
    assert transport.filters == {"t/two/+": 2}


async def test_refused_filter_makes_the_daemon_not_ready_and_it_leaves_its_share_group(
    tmp_path: Path,
) -> None:
    """Through TestDaemon: a refused filter is reported, and the stop leaves the share group."""
    path = _write(
        tmp_path,
        subscriptions=[
            {"filter": "sensors/+/temperature", "share_group": "g", "topics": ["temperature"]},
            {"filter": "denied/+", "decode": "bytes", "topics": ["raw"]},
        ],
    )
    transport = MemoryTransport()
    transport.refuse_filters = {"denied/+"}
    async with TestDaemon(path, transport=transport) as daemon:
        assert (await daemon.publish("sensors/a/temperature", 1)).acked
        assert not daemon.daemon.ready
        assert daemon.daemon.why_not_ready.startswith("subscription refused")
        assert transport.unsubscribed == []
    assert transport.unsubscribed == ["$share/g/sensors/+/temperature"]
