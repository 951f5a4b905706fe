"""The aiomqtt transport's second connection, only for publishing (dead letters, republishing)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiomqtt
import paho.mqtt.client as paho

from mqtt_collector._exceptions import TransportError
from mqtt_collector._mqtt.aiomqtt.private import close_socket, disconnected_future, paho_client

if TYPE_CHECKING:
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["PublishConnection"]

_CLOSE_TIMEOUT = 2.0


class _Link:
    """One connected client of the publishing connection, and its publishes awaiting an ack."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.paho = paho_client(client)
        self.waiting: dict[int, asyncio.Future[ReasonCode]] = {}
        self.lost: asyncio.Future[Any] | None = None
        original = self.paho.on_publish

        def on_publish(*args: Any) -> None:
            # paho's callback API 2: (client, userdata, mid, reason_code, properties).
            future = self.waiting.pop(args[2], None)
            if future is not None and not future.done():
                future.set_result(args[3])
            if original is not None:
                original(*args)

        self.paho.on_publish = on_publish

    def watch(self) -> None:
        """Fail every publish still waiting once the connection is lost (call once connected)."""
        self.lost = disconnected_future(self.client)
        self.lost.add_done_callback(self._lost)

    def _lost(self, lost: asyncio.Future[Any]) -> None:
        cause = None if lost.cancelled() else lost.exception()
        self.fail(TransportError(f"the publishing connection was lost: {cause or 'closed'}"))

    def fail(self, error: TransportError) -> None:
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(error)

    @property
    def up(self) -> bool:
        return self.lost is not None and not self.lost.done()


class PublishConnection:
    """A connection that only publishes, so it is never paused and its acks always get in.

    The receiving connection stops reading at ``receive_maximum`` unacked messages; a
    PUBACK there would wait behind PUBLISHes that cannot be read without breaking that
    bound. This one subscribes to nothing (a clean session): all it reads is acks. It
    connects on the first publish, and again on the next publish after a loss.
    """

    def __init__(self, make_client: Callable[[], aiomqtt.Client], *, timeout: float) -> None:
        """Publish through clients ``make_client()`` builds; wait ``timeout`` s for each ack."""
        self._make_client = make_client
        self._timeout = timeout
        self._link: _Link | None = None
        self._lock = asyncio.Lock()

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        qos: int,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> ReasonCode | None:
        """Publish (retained if ``retain``); return the PUBACK/PUBCOMP reason code (None: QoS 0).

        Raises TransportError if it cannot be sent or no ack comes within the timeout.
        """
        link = await self._connected()
        info = link.paho.publish(topic, body, qos, retain, properties=properties)
        if info.rc == paho.MQTT_ERR_NO_CONN:
            # Lost before anything went out: once more, on a new connection.
            link = await self._connected(stale=link)
            info = link.paho.publish(topic, body, qos, retain, properties=properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise TransportError(f"publish to {topic!r} failed: {paho.error_string(info.rc)}")
        if qos == 0:
            return None
        future = link.waiting.setdefault(info.mid, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            raise TransportError(
                f"publish to {topic!r}: no acknowledgement within {self._timeout}s"
            ) from None
        finally:
            link.waiting.pop(info.mid, None)

    async def close(self) -> None:
        """Disconnect (bounded in time); publishes still waiting fail. Never raises."""
        async with self._lock:
            link, self._link = self._link, None
            if link is not None:
                await _close(link)

    async def _connected(self, *, stale: _Link | None = None) -> _Link:
        async with self._lock:
            link = self._link
            if link is not None and link.up and link is not stale:
                return link
            self._link = None
            if link is not None:
                await _close(link)
            link = _Link(self._make_client())
            try:
                await link.client.__aenter__()
            except aiomqtt.MqttError as exc:
                close_socket(link.client)
                raise TransportError(f"cannot connect to publish: {exc}") from exc
            link.watch()
            self._link = link
            return link


async def _close(link: _Link) -> None:
    link.fail(TransportError("the publishing connection was closed"))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(link.client.__aexit__(None, None, None), _CLOSE_TIMEOUT)
    with contextlib.suppress(Exception):
        close_socket(link.client)
