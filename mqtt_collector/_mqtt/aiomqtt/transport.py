"""The aiomqtt transport: the only module that talks to aiomqtt (with ``private``)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from mqtt_collector._exceptions import PublishRefusedError, TransportError
from mqtt_collector._mqtt.ack_order import AckOrder
from mqtt_collector._mqtt.aiomqtt.private import (
    ReadGate,
    check_client,
    close_socket,
    enable_manual_ack,
    intercept_messages,
    message_queue,
    send_ack,
    watch_connection,
)
from mqtt_collector._mqtt.aiomqtt.publish import PublishConnection
from mqtt_collector._mqtt.envelope import envelope
from mqtt_collector._mqtt.keepalive import keepalive_socket_options
from mqtt_collector._mqtt.tls import TLSOptions
from mqtt_collector._mqtt.transport import ConnectError, ConnectionInfo, Inbound

__all__ = ["AiomqttTransport"]

logger = structlog.get_logger("mqtt_collector.transport")
# What aiomqtt and paho log: a lost connection at error level ("failed to receive on
# socket"), next to the daemon's own warning that says it better. It goes to debug, and
# paho's packet-by-packet trace (debug already) nowhere.
_client_log = logging.getLogger("mqtt_collector.mqtt_client")


def _at_debug(record: logging.LogRecord) -> bool:
    if record.levelno < logging.INFO:
        return False
    record.levelno, record.levelname = logging.DEBUG, "DEBUG"
    return _client_log.isEnabledFor(logging.DEBUG)


_client_log.addFilter(_at_debug)

_NO_PROPERTIES: Mapping[str, Any] = MappingProxyType({})
# Attributes paho keeps on every Properties object besides the properties themselves.
_PAHO_INTERNAL = frozenset({"packetType", "types", "names", "properties"})
_PROPERTY_NAMES = {
    "UserProperty": "user_properties",
    "ContentType": "content_type",
    "ResponseTopic": "response_topic",
    "CorrelationData": "correlation_data",
    "PayloadFormatIndicator": "payload_format_indicator",
    "MessageExpiryInterval": "message_expiry_interval",
    "SubscriptionIdentifier": "subscription_identifier",
    "TopicAlias": "topic_alias",
}
_DISCONNECT_TIMEOUT = 2.0  # the daemon's stop budget keeps 2 s for the disconnect
_UNSUPPORTED_PROTOCOL = 1  # MQTT 3.1.1 CONNACK return code
_UNSUPPORTED_PROTOCOL_V5 = 0x84  # MQTT 5 CONNACK reason code
_UNSPECIFIED_ERROR = 0x80


def _properties(props: Properties | None) -> Mapping[str, Any]:
    if props is None:
        return _NO_PROPERTIES
    attrs = vars(props)
    if len(attrs) <= len(_PAHO_INTERNAL):
        return _NO_PROPERTIES
    return MappingProxyType(
        {
            _PROPERTY_NAMES.get(name, name): value
            for name, value in attrs.items()
            if name not in _PAHO_INTERNAL
        }
    )


class AiomqttTransport:
    """An MQTT connection through aiomqtt, acking QoS 1/2 messages only when told to.

    A new aiomqtt client is made for each connection, so nothing of a lost connection
    (packet ids, unacked messages) leaks into the next one. Every QoS 1/2 message joins
    the connection's ``AckOrder`` as it arrives (a malformed one skipped joins it already
    settled), and acks go out in that order. It stops reading the socket while
    ``receive_maximum`` messages are held (read and not yet handed out, or handed out and
    not yet acked), whatever the broker does:
    Mosquitto 2.0.11, for one, stops honouring Receive Maximum (and its own
    ``max_inflight_messages``) once acks flow, and would flood a slow daemon.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        protocol: str,
        username: str | None = None,
        password: str | None = None,
        tls: TLSOptions | None = None,
        keepalive: int = 30,
        persistent: bool = False,
        session_expiry: int = 0,
        receive_maximum: int = 1000,
        connect_timeout: float = 10.0,
        on_malformed: Callable[[], object] | None = None,
        max_packet_size: int | None = None,
    ) -> None:
        """Hold the connection settings; nothing connects until ``connect()``.

        ``on_malformed()`` is called for each malformed message skipped (for a counter).
        ``max_packet_size`` is announced at CONNECT (MQTT 5): the broker sends no larger
        packet (it drops such a message instead).
        """
        if protocol not in ("5", "3.1.1"):
            raise ValueError(f"protocol must be '5' or '3.1.1', got {protocol!r}")
        self.host = host
        self.port = port
        self.client_id = client_id
        self.v5 = protocol == "5"
        self._username = username
        self._password = password
        self._tls = tls
        self._keepalive = keepalive
        self._persistent = persistent
        self._session_expiry = session_expiry
        self._receive_maximum = receive_maximum
        self._connect_timeout = connect_timeout
        self._client: aiomqtt.Client | None = None
        self._connection = 0
        self._gate: ReadGate | None = None
        self._ledger = AckOrder(self._send_ack)
        self._acking: aiomqtt.Client | None = None  # the client acks go out by
        self._unread = 0  # QoS 1/2 messages in the ledger not yet handed out
        self._on_malformed = on_malformed
        self._max_packet_size = max_packet_size
        self._publisher = PublishConnection(
            functools.partial(self._make_client, publisher=True), timeout=connect_timeout
        )

    @property
    def connection(self) -> int:
        """The number of the current (or last) connection; 0 before the first."""
        return self._connection

    @property
    def connected(self) -> bool:
        """Whether a connection is up."""
        return self._client is not None

    def _make_client(self, *, publisher: bool = False) -> aiomqtt.Client:
        """Return a new client: the receiving one, or (``publisher``) the publishing one.

        The publishing client has a clean session and a client id of its own
        (``<client_id>-publish``); it subscribes to nothing and is never paused.
        """
        persistent = self._persistent and not publisher
        properties = None
        if self.v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self._session_expiry if persistent else 0
            if not publisher:
                properties.ReceiveMaximum = self._receive_maximum
                if self._max_packet_size is not None:
                    properties.MaximumPacketSize = self._max_packet_size
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=f"{self.client_id}-publish" if publisher else self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if self.v5 else aiomqtt.ProtocolVersion.V311,
            username=self._username,
            password=self._password,
            keepalive=self._keepalive,
            clean_session=None if self.v5 else not persistent,
            # MQTT 5: a persistent session must never be cleaned, not even on the
            # first connect of this process, or what the broker kept for us is lost.
            # paho refuses any other value than its default on 3.1.1 (clean_session
            # says it there).
            clean_start=not persistent if self.v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
            tls_context=self._tls.context() if self._tls is not None else None,
            tls_insecure=True if self._tls is not None and self._tls.insecure else None,
            timeout=self._connect_timeout,
            logger=_client_log,
            socket_options=keepalive_socket_options(self._keepalive),
        )
        if publisher:
            return client
        enable_manual_ack(client)
        check_client(client)
        intercept_messages(client, accepted=self._arrived, rejected=self._skip)
        return client

    @property
    def on_ack(self) -> Callable[[], object] | None:
        """Called for each ack of a message ``messages()`` yielded (for a counter)."""
        return self._ledger.on_ack

    @on_ack.setter
    def on_ack(self, hook: Callable[[], object] | None) -> None:
        self._ledger.on_ack = hook

    def _arrived(self, mid: int, qos: int) -> None:
        """Note a message aiomqtt took (it waits in aiomqtt's queue for ``messages()``)."""
        if qos:
            self._ledger.arrived(mid, qos)
            self._unread += 1

    def _skip(self, mid: int, qos: int, topic: str, reason: str) -> None:
        """Log and count a malformed message; it is acked in its turn."""
        logger.warning("malformed message skipped", topic=topic, reason=reason, qos=qos)
        if self._on_malformed is not None:
            self._on_malformed()
        if qos:
            self._ledger.skipped(mid, qos)

    def _send_ack(self, mid: int, qos: int) -> None:
        client = self._acking  # set from the CONNECT on: a skipped message may come first
        if client is None:
            return
        with contextlib.suppress(TransportError):  # the connection is going: it will resend
            send_ack(client, mid, qos)

    async def connect(self) -> ConnectionInfo:
        """Connect (a new client each time); raise TransportError if that fails.

        Raises ConnectError, which says whether the broker refused the protocol version or
        never answered the CONNECT. Returns what the broker says about the connection:
        whether it kept our session, and later the reason code of a DISCONNECT it sends.
        """
        await self.disconnect()
        info = ConnectionInfo()

        def connack(session_present: bool) -> None:  # noqa: FBT001 - a callback
            info.session_present = session_present

        def disconnected(reason: int) -> None:
            info.disconnect_reason = reason

        try:
            client = self._make_client()
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise TransportError(f"cannot set up the connection: {exc}") from exc
        watch_connection(client, on_connack=connack, on_disconnect=disconnected)
        # A resumed session's messages may come right behind the CONNACK, before
        # __aenter__ returns: they belong to the new connection's ledger.
        self._ledger.reset(self._connection + 1)
        self._unread = 0
        self._acking = client
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            self._acking = None
            close_socket(client)  # left open, and read, when no CONNACK came
            raise self._connect_error(exc) from exc
        self._client = client
        self._connection += 1
        self._gate = ReadGate(client, full=self._full)
        return info

    def _connect_error(self, exc: aiomqtt.MqttError) -> ConnectError:
        rc = exc.rc if isinstance(exc, aiomqtt.MqttCodeError) else None
        code = rc.value if isinstance(rc, ReasonCode) else rc
        # paho reads a 3.1.1 CONNACK "unacceptable protocol version" (1) to an MQTT 5
        # CONNECT as the MQTT 5 code 0x84.
        unsupported = code == (_UNSUPPORTED_PROTOCOL_V5 if self.v5 else _UNSUPPORTED_PROTOCOL)
        return ConnectError(
            f"cannot connect to {self.host}:{self.port}: {exc}",
            unsupported_protocol=unsupported,
            # aiomqtt's words when no CONNACK came within the timeout.
            timed_out=type(exc) is aiomqtt.MqttError and str(exc) == "Operation timed out",
        )

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> list[int]:
        """Subscribe to every ``(filter, qos)`` in one SUBSCRIBE; return the broker's codes.

        One code per filter, in order: the QoS granted, or a failure reason (0x80 and up).
        It waits for the SUBACK as long as it takes, without holding reading open: the
        messages keep flowing (and being acked) meanwhile, and some brokers answer only
        once the session's queued messages are acked. The caller bounds the wait.
        """
        client = self._require()
        try:
            granted = await client.subscribe(list(filters), timeout=math.inf)
        except aiomqtt.MqttError as exc:
            raise TransportError(f"subscribe failed: {exc}") from exc
        codes = [_code(code) for code in granted]
        # A SUBACK with too few codes answers nothing for the rest: count them refused.
        return codes + [_UNSPECIFIED_ERROR] * (len(filters) - len(codes))

    async def unsubscribe(self, filters: Sequence[str]) -> None:
        """Unsubscribe from ``filters`` and wait for the broker's answer."""
        client = self._require()
        try:
            with self._held_open():
                await client.unsubscribe(list(filters))
        except aiomqtt.MqttError as exc:
            raise TransportError(f"unsubscribe failed: {exc}") from exc

    def backlog(self) -> int:
        """Return how many received messages ``messages()`` has not yet yielded."""
        client = self._client
        return 0 if client is None else message_queue(client).qsize()

    async def messages(self) -> AsyncIterator[Inbound]:
        """Yield messages until the connection is lost (then raise TransportError)."""
        client = self._require()
        queue = message_queue(client)
        waiting = client.messages
        connection = self._connection
        while True:
            if queue.empty():
                # aiomqtt's iterator also watches for the connection going away.
                try:
                    message = await anext(waiting)
                except aiomqtt.MqttError as exc:
                    raise TransportError(f"connection lost: {_cause(exc)}") from exc
            else:
                message = queue.get_nowait()
            body = message.payload
            if message.qos:
                self._unread -= 1
            else:
                self._maybe_resume()
            yield Inbound(
                message.topic.value,
                body if isinstance(body, bytes) else str(body or "").encode(),
                message.qos,
                message.retain,
                message.mid,
                _properties(message.properties),
                connection,
            )

    def ack(self, message: Inbound) -> None:
        """Acknowledge ``message`` once every earlier one of its connection is (QoS 1/2)."""
        if message.qos:
            self._ledger.settle(message.connection, message.mid, ack=True)
            self._maybe_resume()

    def hold(self, message: Inbound) -> None:
        """Never acknowledge ``message`` on this connection, nor anything after it."""
        if message.qos:
            self._ledger.settle(message.connection, message.mid, ack=False)

    def unacked(self) -> int:
        """Return how many QoS 1/2 messages of this connection await their ack."""
        return len(self._ledger)

    def blocked(self) -> bool:
        """Whether acks on this connection are stuck behind a held message."""
        return self._client is not None and self._ledger.blocked()

    def _held_open(self) -> contextlib.AbstractContextManager[None]:
        # The broker's answer must be read even while the daemon holds all it may.
        gate = self._gate
        return contextlib.nullcontext() if gate is None else gate.held_open()

    def _full(self) -> bool:
        """Whether ``receive_maximum`` messages are held: read, or handed out and not acked."""
        client = self._client
        if client is None:
            return False
        held = message_queue(client).qsize() + len(self._ledger) - self._unread
        return held >= self._receive_maximum

    def _maybe_resume(self) -> None:
        gate = self._gate
        if gate is not None and gate.paused and not self._full():
            gate.resume()

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        qos: int,
        retain: bool = False,
        user_properties: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Publish on the publishing connection, with user properties (3.1.1: an envelope).

        On MQTT 3.1.1, which has no properties, a publish with user properties goes as the
        JSON envelope of ``_mqtt.envelope``.

        That connection is never paused: its PUBACK cannot wait behind messages the
        receiving connection must not read (which would break the memory bound). Raises
        PublishRefusedError when the broker's PUBACK carries a failure reason code (MQTT 5:
        0x87 Not authorized, say). On 3.1.1 a PUBACK has no reason code, and Mosquitto
        acknowledges a publish its ACL drops: a refusal cannot be seen; nor at QoS 0.
        """
        properties = None
        if user_properties and self.v5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.UserProperty = list(user_properties)
        elif user_properties:
            body = envelope(body, user_properties)
        reason = await self._publisher.publish(
            topic, body, qos=qos, retain=retain, properties=properties
        )
        if reason is not None and reason.is_failure:
            raise PublishRefusedError(topic, reason.getName(), int(reason.value))

    async def disconnect(self) -> None:
        """Disconnect both connections cleanly (bounded in time); never raises.

        A publish still waiting for its ack fails: it was for a message of this connection,
        which the broker will send again anyway.
        """
        client, self._client = self._client, None
        self._acking = None
        if self._gate is not None:
            # Reading again lets the disconnect see the broker's answer.
            self._gate.resume()
            self._gate = None
        await asyncio.gather(self._publisher.close(), _close(client))

    def _require(self) -> aiomqtt.Client:
        if self._client is None:
            raise TransportError("not connected")
        return self._client


async def _close(client: aiomqtt.Client | None) -> None:
    if client is None:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.__aexit__(None, None, None), _DISCONNECT_TIMEOUT)
    # aiomqtt returns at once, leaving the socket open, if the connection had failed.
    with contextlib.suppress(Exception):
        close_socket(client)


def _code(code: object) -> int:
    """Return a SUBACK code as a number (paho gives ReasonCodes, or ints on 3.1.1)."""
    if isinstance(code, ReasonCode):
        return int(code.value)
    return int(code) if isinstance(code, int) else _UNSPECIFIED_ERROR


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__
    return str(exc) if cause is None else f"{exc} ({cause})"
