"""The transport holds at most ``receive_maximum`` unacked messages, whatever the broker does."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import aiomqtt
import pytest

from mqtt_collector._exceptions import TransportError
from mqtt_collector._mqtt.aiomqtt.private import message_queue
from mqtt_collector._mqtt.aiomqtt.transport import AiomqttTransport
from mqtt_collector._mqtt.gmqtt.transport import GmqttTransport

if TYPE_CHECKING:
    from tests.helpers.mosquitto import Mosquitto

pytestmark = pytest.mark.broker

RECEIVE_MAXIMUM = 10
TOTAL = 300


def _make(client: str, **keys: Any) -> AiomqttTransport | GmqttTransport:
    """A transport of the ``client`` library (the tests past the first run on both)."""
    if client == "gmqtt":
        return GmqttTransport(**keys)
    return AiomqttTransport(**keys)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_flow_control_unacked_never_exceed_receive_maximum(
    mosquitto: Mosquitto, topic_prefix: str, protocol: str
) -> None:
    """Acking as it goes (which makes Mosquitto 2.0.11 forget the quota), the bound still holds."""
    transport = AiomqttTransport(
        host=mosquitto.host,
        port=mosquitto.port,
        client_id=f"flow-{uuid.uuid4().hex[:8]}",
        protocol=protocol,
        receive_maximum=RECEIVE_MAXIMUM,
    )
    topic = f"{topic_prefix}/n"
    await transport.connect()
    try:
        await transport.subscribe([(topic, 1)])
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as publisher:
            for number in range(TOTAL):
                await publisher.publish(topic, str(number).encode(), qos=1)
        assert transport._client is not None
        # What the client has read from the broker and not yet handed out.
        backlog = message_queue(transport._client)
        held = []
        peak = 0
        received = 0
        async with asyncio.timeout(20):
            messages = transport.messages()
            while received < TOTAL:
                held.append(await anext(messages))
                received += 1
                peak = max(peak, len(held) + backlog.qsize())
                if len(held) >= RECEIVE_MAXIMUM // 2:
                    # Ack the older half, then let the event loop read what the gate allows.
                    for message in held[: RECEIVE_MAXIMUM // 4]:
                        transport.ack(message)
                    del held[: RECEIVE_MAXIMUM // 4]
                    await asyncio.sleep(0.001)
        # Unacked = held here + read but not yet handed out; one socket read may bring
        # a few past the bound before the gate closes.
        assert peak <= RECEIVE_MAXIMUM + 2, peak
    finally:
        await transport.disconnect()


async def test_flow_control_reading_resumes_after_acks(
    mosquitto: Mosquitto, topic_prefix: str, client: str
) -> None:
    """Paused at the bound, the transport reads on once messages are acked."""
    transport = _make(
        client,
        host=mosquitto.host,
        port=mosquitto.port,
        client_id=f"flow-{uuid.uuid4().hex[:8]}",
        protocol="5",
        receive_maximum=RECEIVE_MAXIMUM,
    )
    topic = f"{topic_prefix}/n"
    await transport.connect()
    try:
        await transport.subscribe([(topic, 1)])
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as publisher:
            for number in range(RECEIVE_MAXIMUM * 3):
                await publisher.publish(topic, str(number).encode(), qos=1)
        messages = transport.messages()
        bodies = []
        async with asyncio.timeout(20):
            for _ in range(RECEIVE_MAXIMUM * 3):
                message = await anext(messages)
                bodies.append(message.body)
                transport.ack(message)
        assert bodies == [str(n).encode() for n in range(RECEIVE_MAXIMUM * 3)]
    finally:
        await transport.disconnect()


async def test_flow_control_subscribe_completes_while_flooded(
    mosquitto: Mosquitto, topic_prefix: str, client: str
) -> None:
    """A session with more queued than receive_maximum still gets its SUBACK on reconnect."""
    client_id = f"flow-{uuid.uuid4().hex[:8]}"
    topic = f"{topic_prefix}/n"

    def make() -> AiomqttTransport | GmqttTransport:
        return _make(
            client,
            host=mosquitto.host,
            port=mosquitto.port,
            client_id=client_id,
            protocol="5",
            persistent=True,
            session_expiry=600,
            receive_maximum=RECEIVE_MAXIMUM,
        )

    first = make()
    await first.connect()
    await first.subscribe([(topic, 1)])
    await first.disconnect()
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as publisher:
        for number in range(RECEIVE_MAXIMUM * 5):
            await publisher.publish(topic, str(number).encode(), qos=1)
    second = make()
    await second.connect()
    try:
        async with asyncio.timeout(10):
            # The broker floods the session's backlog before the SUBACK comes.
            await second.subscribe([(topic, 1)])
        messages = second.messages()
        async with asyncio.timeout(10):
            for _ in range(RECEIVE_MAXIMUM * 5):
                second.ack(await anext(messages))
    finally:
        await second.disconnect()


async def test_flow_control_loss_is_seen_while_paused(
    private_mosquitto: Mosquitto, topic_prefix: str, client: str
) -> None:
    """A broker going away while reading is paused ends the message stream within seconds."""
    broker = private_mosquitto
    transport = _make(
        client,
        host=broker.host,
        port=broker.port,
        client_id=f"flow-{uuid.uuid4().hex[:8]}",
        protocol="5",
        keepalive=60,  # far beyond the wait below: keepalive must not be what sees it
        receive_maximum=RECEIVE_MAXIMUM,
    )
    topic = f"{topic_prefix}/n"
    await transport.connect()
    try:
        await transport.subscribe([(topic, 1)])
        async with aiomqtt.Client(broker.host, broker.port) as publisher:
            for number in range(RECEIVE_MAXIMUM * 2):
                await publisher.publish(topic, str(number).encode(), qos=1)
        messages = transport.messages()
        async with asyncio.timeout(10):
            for _ in range(RECEIVE_MAXIMUM):
                await anext(messages)  # held, never acked: reading pauses
        await asyncio.to_thread(broker.stop)

        async def read_to_the_end() -> None:
            async with asyncio.timeout(5):
                while True:
                    await anext(messages)

        with pytest.raises(TransportError):
            await read_to_the_end()
    finally:
        await transport.disconnect()
