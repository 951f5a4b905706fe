"""A publish the broker refuses (its ACL denies the topic) raises PublishRefusedError on MQTT 5."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest

from mqtt_collector._exceptions import PublishRefusedError, TransportError
from mqtt_collector._mqtt.aiomqtt.transport import AiomqttTransport
from tests.helpers.daemon import WAIT

if TYPE_CHECKING:
    from pathlib import Path

    from tests.helpers.mosquitto import Mosquitto, MosquittoFactory

pytestmark = pytest.mark.broker

NOT_AUTHORIZED = 0x87


@pytest.fixture
def acl_broker(make_mosquitto: MosquittoFactory, tmp_path: Path) -> Mosquitto:
    """A broker whose ACL lets anonymous clients write `ok/#` and nothing else."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite ok/#\n")
    # The conf's last listener is the plain one: the ACL applies to it.
    return make_mosquitto(extra_conf=f"acl_file {acl}")


def _transport(broker: Mosquitto, protocol: str) -> AiomqttTransport:
    return AiomqttTransport(
        host=broker.host,
        port=broker.port,
        client_id=f"refused-{uuid.uuid4().hex[:8]}",
        protocol=protocol,
    )


async def test_mqtt5_refused_publish_raises_with_the_reason_code(acl_broker: Mosquitto) -> None:
    """PUBACK 0x87 Not authorized: PublishRefusedError (a TransportError) naming it."""
    transport = _transport(acl_broker, "5")
    try:
        async with asyncio.timeout(WAIT):
            await transport.publish("ok/allowed", b"x", qos=1)
            with pytest.raises(PublishRefusedError) as caught:
                await transport.publish("dlq/denied", b"x", qos=1)
    finally:
        await transport.disconnect()
    assert caught.value.reason_code == NOT_AUTHORIZED
    assert isinstance(caught.value, TransportError)
    assert "0x87 Not authorized" in str(caught.value)
    assert "'dlq/denied'" in str(caught.value)


async def test_mqtt311_refusal_cannot_be_seen(acl_broker: Mosquitto) -> None:
    """On 3.1.1 Mosquitto drops the denied publish and still sends a plain PUBACK (README)."""
    transport = _transport(acl_broker, "3.1.1")
    try:
        async with asyncio.timeout(WAIT):
            await transport.publish("dlq/denied", b"x", qos=1)
    finally:
        await transport.disconnect()
