"""The tests' MQTT client: paho-mqtt on its own network thread, with a blocking API.

One class, :class:`MqttClient`, does what a test needs from the other side of the broker:
publish (each publish waits for the broker, or many are sent and then flushed), subscribe and
collect what arrives, and close leaving no socket open. :func:`connected_client` returns one
already connected (and subscribed, if asked), failing the test if the broker does not accept it.
Every wait is bounded by ``TIMEOUT`` seconds unless told otherwise.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any, Self

from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from types import TracebackType

    from paho.mqtt.client import ConnectFlags, DisconnectFlags, MQTTMessageInfo
    from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["HOST", "TIMEOUT", "MqttClient", "close_client", "connected_client"]

HOST = "127.0.0.1"
TIMEOUT = 10.0  # seconds: a bound on every wait, far above what any of them takes


def close_client(client: Client) -> None:
    """Disconnect ``client``, stop its network thread and close every socket it holds.

    ``loop_stop()`` leaves open the socket pair ``loop_start()`` made until the client is
    garbage collected (eclipse-paho/paho.mqtt.python#627). The client's callbacks put it in a
    reference cycle, so that happens whenever the cyclic collector runs, and the socket's
    ResourceWarning then fails whichever test is running, or the whole session at its end.
    ``reinitialise()`` is paho's public way to close them; it also resets the client, so
    nothing may use it afterwards.
    """
    client.disconnect()
    client.loop_stop()
    client.reinitialise()


class MqttClient:
    """A paho-mqtt client on its own network thread: publish, subscribe and collect, close.

    ``protocol`` is paho's number (5 for MQTT 5, 4 for 3.1.1). ``paho`` is the underlying
    client, for what must be set before :meth:`connect` (``tls_set``, ``username_pw_set``).
    After :meth:`connect`, ``connack`` is the broker's answer and ``session_present`` its flag.
    """

    def __init__(
        self, *, client_id: str = "", protocol: int = 5, clean_session: bool | None = None
    ) -> None:
        """Prepare the client; nothing is sent until :meth:`connect`."""
        self.paho = Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=MQTTProtocolVersion(protocol),
        )
        # Many publishes may be in flight at once (numbered()); none is refused for a full queue.
        self.paho.max_inflight_messages_set(1000)
        self.paho.max_queued_messages_set(0)
        self.connack: ReasonCode | None = None
        self.session_present = False
        # Set by a CONNACK or by losing the connection, whichever comes first.
        self._answered = threading.Event()
        self._subscribed = threading.Event()
        self._arrived = threading.Condition()
        self._messages: list[MQTTMessage] = []
        self._taken = 0
        self._unflushed: list[MQTTMessageInfo] = []
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_message = self._on_message

    def _on_connect(
        self,
        client: Client,
        userdata: object,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connack = reason_code
        self.session_present = flags.session_present
        self._answered.set()

    def _on_disconnect(
        self,
        client: Client,
        userdata: object,
        flags: DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._answered.set()

    def _on_subscribe(
        self,
        client: Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._subscribed.set()

    def _on_message(self, client: Client, userdata: object, message: MQTTMessage) -> None:
        with self._arrived:
            self._messages.append(message)
            self._arrived.notify_all()

    def connect(self, port: int, *, host: str = HOST, keepalive: int = 60) -> bool:
        """Connect, start the network thread and wait for the broker's answer.

        Returns True if the broker accepted the connection; fails if it never answered.
        """
        self.paho.connect(host, port, keepalive=keepalive)
        self.paho.loop_start()
        assert self._answered.wait(TIMEOUT), f"no answer from {host}:{port}"
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, topic_filter: str, *, qos: int = 1) -> None:
        """Subscribe and wait for the SUBACK."""
        self._subscribed.clear()
        self.paho.subscribe(topic_filter, qos=qos)
        assert self._subscribed.wait(TIMEOUT), f"no SUBACK for {topic_filter!r}"

    def publish(
        self,
        topic: str,
        body: bytes | str = b"{}",
        *,
        qos: int = 1,
        retain: bool = False,
        user_properties: Sequence[tuple[str, str]] = (),
        content_type: str | None = None,
        wait: bool = True,
    ) -> None:
        """Publish; by default wait until it is sent (QoS 0) or acknowledged by the broker.

        With ``wait`` false it returns at once; :meth:`flush` waits for such publishes.
        """
        properties = None
        if user_properties or content_type is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if user_properties:
                properties.UserProperty = list(user_properties)
            if content_type is not None:
                properties.ContentType = content_type
        info = self.paho.publish(topic, body, qos=qos, retain=retain, properties=properties)
        if not wait:
            self._unflushed.append(info)
            return
        info.wait_for_publish(TIMEOUT)
        if not info.is_published():
            raise AssertionError(f"{topic!r} not acknowledged within {TIMEOUT}s")

    def publish_json(self, topic: str, data: Any, *, qos: int = 1, retain: bool = False) -> None:
        """Publish ``data`` as a JSON body and wait for the broker."""
        self.publish(topic, json.dumps(data), qos=qos, retain=retain)

    def numbered(
        self,
        topic: str,
        numbers: Iterable[int],
        *,
        rate: float | None = None,
        stop: threading.Event | None = None,
        padding: str = "",
    ) -> int:
        """Publish each number as the body at QoS 1, at ``rate`` per second (or at once).

        A ``padding`` is appended after a space, to make bodies of a given size. Nothing is
        awaited: :meth:`flush` waits for the broker. Returns how many were published (fewer if
        ``stop`` was set).
        """
        start = time.monotonic()
        sent = 0
        for number in numbers:
            if stop is not None and stop.is_set():
                break
            if rate is not None:
                # Keep a steady rate: sleep until this message's slot comes.
                delay = start + sent / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            body = f"{number} {padding}" if padding else str(number)
            self.publish(topic, body, wait=False)
            sent += 1
        return sent

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until the broker has acknowledged every publish made with ``wait`` false."""
        deadline = time.monotonic() + timeout
        for info in self._unflushed:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise AssertionError(f"the broker did not acknowledge message {info.mid} in time")
        self._unflushed.clear()

    def received(self) -> list[MQTTMessage]:
        """Return a copy of every message that arrived so far."""
        with self._arrived:
            return list(self._messages)

    def receive(self, timeout: float = TIMEOUT) -> MQTTMessage:
        """Return the next message not yet returned by ``receive``, waiting for it."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._messages) > self._taken, timeout):
                raise AssertionError(f"no message arrived within {timeout}s")
            message = self._messages[self._taken]
            self._taken += 1
            return message

    def close(self) -> None:
        """Disconnect, stop the network thread and close the client's sockets."""
        close_client(self.paho)

    def __enter__(self) -> Self:
        """Return the client; :meth:`close` runs on exit."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the client."""
        self.close()


def connected_client(
    port: int,
    *,
    host: str = HOST,
    protocol: int = 5,
    client_id: str = "",
    subscribe: str | None = None,
) -> MqttClient:
    """Return a client connected to ``host:port`` (and subscribed to ``subscribe`` at QoS 1).

    Fails the test if the broker refuses it or does not answer. Use it with ``with``.
    """
    client = MqttClient(client_id=client_id, protocol=protocol)
    try:
        accepted = client.connect(port, host=host)
        if accepted and subscribe is not None:
            client.subscribe(subscribe)
    except BaseException:
        client.close()
        raise
    if not accepted:
        client.close()
        raise AssertionError(f"{host}:{port} refused the test client: {client.connack}")
    return client
