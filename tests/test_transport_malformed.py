"""A malformed incoming message is skipped, and a failed read never leaves a socket behind."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, NoReturn

import pytest

from mqtt_collector._exceptions import TransportError
from mqtt_collector._mqtt.aiomqtt.transport import AiomqttTransport
from tests.helpers.daemon import WAIT, capture_logging, make_config, records, run_daemon, wait_until
from tests.helpers.scripted_broker import ScriptedBroker, publish_packet

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from mqtt_collector._mqtt.transport import Inbound

BAD_TOPICS = [
    pytest.param(b"bad/\xff\xfe", "not valid UTF-8", id="not-utf8"),
    pytest.param(b"bad/+/x", "wildcard", id="plus"),
    pytest.param(b"bad/#", "wildcard", id="hash"),
]


class _Counter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def _transport(broker: ScriptedBroker, protocol: str, counter: _Counter) -> AiomqttTransport:
    return AiomqttTransport(
        host="127.0.0.1",
        port=broker.port,
        client_id=f"malformed-{uuid.uuid4().hex[:8]}",
        protocol=protocol,
        on_malformed=counter,
    )


async def _next(messages: AsyncIterator[Inbound]) -> Inbound:
    async with asyncio.timeout(WAIT):
        return await anext(messages)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
@pytest.mark.parametrize(("topic", "reason"), BAD_TOPICS)
async def test_malformed_topic_is_skipped_acked_and_logged_once(
    protocol: str, topic: bytes, reason: str
) -> None:
    """A bad QoS 1 PUBLISH, then a good one: the good one arrives, both are acked, one log line."""
    counter = _Counter()
    async with ScriptedBroker() as broker:
        transport = _transport(broker, protocol, counter)
        with capture_logging("info") as logs:
            await transport.connect()
            try:
                await transport.subscribe([("#", 1)])
                await broker.publish(topic, b"bad", mid=1)
                await broker.publish(b"good/x", b"good", mid=2)
                message = await _next(transport.messages())
                assert (message.topic, message.body, message.mid) == ("good/x", b"good", 2)
                transport.ack(message)
                assert await broker.wait_pubacks(2) == [1, 2]
            finally:
                await transport.disconnect()
        lines = logs.events("malformed message skipped")
        assert len(lines) == 1, logs.text
        assert reason in lines[0]["reason"]
        assert counter.count == 1
        assert len(broker.connections) == 1
        assert [line for line in logs.lines() if line["level"] == "error"] == []


async def test_malformed_message_is_acked_in_its_turn() -> None:
    """Its PUBACK waits for the messages that arrived before it: acks stay in order."""
    async with ScriptedBroker() as broker:
        transport = _transport(broker, "5", _Counter())
        await transport.connect()
        try:
            await transport.subscribe([("#", 1)])
            await broker.publish(b"good/1", b"1", mid=1)
            await broker.publish(b"bad/+", b"2", mid=2)
            await broker.publish(b"good/3", b"3", mid=3)
            messages = transport.messages()
            first, third = await _next(messages), await _next(messages)
            assert (first.mid, third.mid) == (1, 3)
            transport.ack(first)
            transport.ack(third)
            assert await broker.wait_pubacks(3) == [1, 2, 3]
        finally:
            await transport.disconnect()


async def test_a_failed_read_closes_the_socket() -> None:
    """Whatever makes paho's read raise ends the connection: reader removed, socket closed."""
    async with ScriptedBroker() as broker:
        transport = _transport(broker, "5", _Counter())
        await transport.connect()
        try:
            await transport.subscribe([("#", 1)])
            client = transport._client
            assert client is not None
            inner = client._client
            reads = 0

            def failing_read(max_packets: int = 1) -> NoReturn:
                nonlocal reads
                reads += 1
                raise RuntimeError("decode failed")

            inner.loop_read = failing_read  # type: ignore[method-assign]
            await broker.publish(b"good/x", b"x", mid=1)
            with pytest.raises(TransportError):
                await _next(transport.messages())
            await broker.wait_closed()
            assert inner.socket() is None
            assert reads == 1
        finally:
            await transport.disconnect()


async def test_daemon_counts_a_malformed_message_and_goes_on(tmp_path: Path) -> None:
    """The daemon's rejected{reason="malformed"} counts it; the message behind it is processed."""
    async with ScriptedBroker() as broker:
        config = make_config(tmp_path, port=broker.port, prefix="p")
        async with run_daemon(config) as daemon:
            await broker.publish(b"p/+", b"1", mid=1)
            await broker.publish(b"p/good", b"2", mid=2)
            await wait_until(lambda: len(records(daemon)) == 1, what="the good message")
            assert await broker.wait_pubacks(2) == [1, 2]
            rejected = daemon.metrics.registry.get_sample_value(
                "mqtt_collector_messages_rejected_total", {"reason": "malformed"}
            )
            assert rejected == 1
        assert len(broker.connections) == 1


# A v5 PUBLISH paho cannot decode: topic "bad/p", packet id 7, then properties whose
# identifier 0x7F names no MQTT 5 property.
_UNDECODABLE = b"\x00\x05bad/p" + (7).to_bytes(2, "big") + b"\x02\x7f\x00" + b"body"


async def test_undecodable_publish_is_skipped_and_acked() -> None:
    """A PUBLISH paho cannot decode (bad properties) is acked and skipped; no reconnect."""
    counter = _Counter()
    async with ScriptedBroker() as broker:
        transport = _transport(broker, "5", counter)
        with capture_logging("info") as logs:
            await transport.connect()
            try:
                await transport.subscribe([("#", 1)])
                await broker.send(publish_packet(b"", b"", qos=1, raw=_UNDECODABLE))
                await broker.publish(b"good/x", b"good", mid=8)
                message = await _next(transport.messages())
                assert (message.topic, message.mid) == ("good/x", 8)
                transport.ack(message)
                assert await broker.wait_pubacks(2) == [7, 8]
            finally:
                await transport.disconnect()
        lines = logs.events("malformed message skipped")
        assert len(lines) == 1, logs.text
        assert lines[0]["topic"] == "bad/p"
        assert "cannot be decoded" in lines[0]["reason"]
        assert counter.count == 1
        assert len(broker.connections) == 1
