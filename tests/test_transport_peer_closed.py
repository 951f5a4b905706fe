"""A broker that closes the connection while reading is paused is seen at once.

With the daemon holding receive_maximum messages, reading stops; the broker's DISCONNECT and
the end of its stream then wait behind PUBLISHes the daemon must not read. The probe sees the
closed end (POLLRDHUP) within a probe interval, not only when keepalive gives up.
"""

from __future__ import annotations

import asyncio
import select
import uuid
from typing import TYPE_CHECKING

import pytest

from mqtt_collector._exceptions import TransportError
from mqtt_collector._mqtt.aiomqtt.transport import AiomqttTransport
from tests.helpers.daemon import WAIT
from tests.helpers.scripted_broker import ScriptedBroker, ScriptedConnection

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from mqtt_collector._mqtt.transport import Inbound

pytestmark = pytest.mark.skipif(
    not hasattr(select, "POLLRDHUP"), reason="POLLRDHUP is Linux's; keepalive finds it elsewhere"
)


async def _drain(messages: AsyncIterator[Inbound]) -> None:
    """Take messages until the iterator raises (the connection's end)."""
    async for _ in messages:
        pass


async def test_paused_connection_sees_the_broker_close_behind_unread_publishes() -> None:
    """Paused, three PUBLISHes then a DISCONNECT and close: messages() ends within ~a probe."""
    closed = asyncio.Event()

    async def script(conn: ScriptedConnection) -> None:
        await conn.read_connect()
        await conn.connack()
        request = await conn.read_subscribe()
        await conn.suback(request.mid, [1])
        for mid in range(1, 5):  # one is held, three wait unread behind the bound
            await conn.publish("t/x", b"x" * 100, mid=mid)
        await asyncio.sleep(0.3)  # the daemon reads one, pauses
        await conn.disconnect(0x8B)  # server shutting down, then the end of the stream
        closed.set()

    async with ScriptedBroker(script) as broker:
        transport = AiomqttTransport(
            host="127.0.0.1",
            port=broker.port,
            client_id=f"closed-{uuid.uuid4().hex[:8]}",
            protocol="5",
            receive_maximum=1,
            keepalive=60,  # so keepalive cannot be what finds the loss within the test
        )
        await transport.connect()
        try:
            await transport.subscribe([("t/#", 1)])
            messages = transport.messages()
            async with asyncio.timeout(WAIT):
                held = await anext(messages)
                await closed.wait()
            assert held.mid == 1
            with pytest.raises(TransportError):
                await asyncio.wait_for(_drain(messages), 2.0)  # probes run every 0.5 s
        finally:
            await transport.disconnect()
