"""User properties on MQTT 3.1.1: the transport wraps the body in a JSON envelope."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import TYPE_CHECKING

import aiomqtt
import pytest

from mqtt_collector._mqtt.aiomqtt.transport import AiomqttTransport
from mqtt_collector._mqtt.envelope import envelope
from tests.helpers.daemon import WAIT

if TYPE_CHECKING:
    from tests.helpers.mosquitto import Mosquitto

PROPERTIES = [("error", "RuntimeError: no"), ("collector", "store"), ("topic", "a/b")]


class TestEnvelope:
    """The envelope: each property a key, the body as text or base64."""

    def test_envelope_utf8_body_as_text(self) -> None:
        """A UTF-8 body goes in as text, beside every property."""
        assert json.loads(envelope(b'{"t": 21}', PROPERTIES)) == {
            "error": "RuntimeError: no",
            "collector": "store",
            "topic": "a/b",
            "body": '{"t": 21}',
        }

    def test_envelope_other_body_as_base64(self) -> None:
        """Any other body goes in as base64, marked so: nothing is lost."""
        raw = bytes(range(256))
        wrapped = json.loads(envelope(raw, PROPERTIES))
        assert wrapped["body_encoding"] == "base64"
        assert base64.b64decode(wrapped["body"]) == raw

    def test_envelope_properties_never_override_the_body(self) -> None:
        """A property named body or body_encoding cannot replace the body or mislabel it."""
        wrapped = json.loads(envelope(b"x", [("body", "y"), ("body_encoding", "base64")]))
        assert wrapped == {"body": "x"}

    def test_envelope_first_of_a_repeated_property_wins(self) -> None:
        """User properties may repeat a name; the envelope keeps the first."""
        assert json.loads(envelope(b"", [("k", "1"), ("k", "2")]))["k"] == "1"


async def _receive_one(
    broker: Mosquitto, topic: str, protocol: str, body: bytes
) -> aiomqtt.Message:
    transport = AiomqttTransport(
        host=broker.host,
        port=broker.port,
        client_id=f"envelope-{uuid.uuid4().hex[:8]}",
        protocol=protocol,
    )
    async with aiomqtt.Client(
        broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as subscriber:
        await subscriber.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(WAIT):
                await transport.publish(topic, body, qos=1, user_properties=PROPERTIES)
                return await anext(subscriber.messages)
        finally:
            await transport.disconnect()


@pytest.mark.broker
async def test_transport_mqtt311_sends_user_properties_in_an_envelope(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """On 3.1.1 the broker gets the JSON envelope, properties and body inside."""
    message = await _receive_one(mosquitto, f"{topic_prefix}/dlq", "3.1.1", b"\xff raw")
    assert isinstance(message.payload, bytes)
    wrapped = json.loads(message.payload)
    assert wrapped["error"] == "RuntimeError: no"
    assert base64.b64decode(wrapped["body"]) == b"\xff raw"


@pytest.mark.broker
async def test_transport_mqtt5_sends_user_properties_as_properties(
    mosquitto: Mosquitto, topic_prefix: str
) -> None:
    """On MQTT 5 the body is untouched and the properties travel as user properties."""
    message = await _receive_one(mosquitto, f"{topic_prefix}/dlq", "5", b"\xff raw")
    assert message.payload == b"\xff raw"
    assert message.properties is not None
    assert list(message.properties.UserProperty) == PROPERTIES  # type: ignore[attr-defined]
