"""The gmqtt transport: the only module that talks to gmqtt (with ``private``).

gmqtt reads and parses in one pass per received chunk, with less per message than paho,
which makes it the faster client. Each message goes straight from gmqtt's parser into the
queue ``messages()`` reads, with no task per message: QoS 0 through a plain ``on_message``
callback, QoS 1 through ``private.take_qos1`` (gmqtt's public way to ack after processing
runs a task per message and writes each PUBACK on its own). A QoS 1 message joins the
connection's ``AckOrder`` under its packet id as it arrives; the acks the ledger releases
in one turn of the event loop leave in one write, in arrival order. The configuration
refuses MQTT 3.1.1 with QoS 1/2 on this transport (gmqtt acknowledges on receipt there).

Publishing (dead letters, ``ctx.publish``) goes by a second connection of its own, through
the aiomqtt transport's: gmqtt 0.8 neither returns a publish's packet id nor reads the
reason code of a PUBACK, so a refused publish could not be told from an accepted one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import gmqtt
import structlog

from mqtt_collector._exceptions import TransportError
from mqtt_collector._mqtt.ack_order import AckOrder
from mqtt_collector._mqtt.aiomqtt.transport import AiomqttTransport
from mqtt_collector._mqtt.gmqtt.private import (
    check_client,
    downgraded,
    mark_alive,
    reading_transport,
    take_qos1,
)
from mqtt_collector._mqtt.keepalive import keepalive_socket_options
from mqtt_collector._mqtt.tls import TLSOptions
from mqtt_collector._mqtt.transport import ConnectError, ConnectionInfo, Inbound

__all__ = ["GmqttTransport"]

logger = structlog.get_logger("mqtt_collector.transport")
# What gmqtt logs (a lost connection as a warning with a traceback, a write to a closed
# socket, "max number of failed connection attempts" as it declines to reconnect) goes to
# debug: the daemon's own warnings say it better.
_client_log = logging.getLogger("mqtt_collector.mqtt_client.gmqtt")


def _at_debug(record: logging.LogRecord) -> bool:
    record.levelno, record.levelname = logging.DEBUG, "DEBUG"
    return _client_log.isEnabledFor(logging.DEBUG)


for _name in ("mqtt_collector.mqtt_client.gmqtt", "gmqtt.mqtt.protocol", "gmqtt.client"):
    logging.getLogger(_name).addFilter(_at_debug)

_NO_PROPERTIES: Mapping[str, Any] = MappingProxyType({})
# gmqtt's property names, as the aiomqtt transport gives them; every value comes as a list.
_PROPERTY_NAMES = {
    "user_property": "user_properties",
    "payload_format_id": "payload_format_indicator",
}
_LISTS = frozenset({"user_property", "subscription_identifier"})
_NOT_PROPERTIES = frozenset({"dup", "retain"})  # gmqtt adds the flags to the properties
_DISCONNECT_TIMEOUT = 2.0  # the daemon's stop budget keeps 2 s for the disconnect
_UNSUPPORTED_PROTOCOL = 0x84  # MQTT 5 CONNACK reason code
_UNSPECIFIED_ERROR = 0x80
_SUCCESS = 0  # the PUBACK reason code on_message returns
_PUBACK = 0x4002 << 16  # PUBACK, remaining length 2 (Success, no properties), packet id
_PROBE_INTERVAL = 0.5  # while paused, the socket is looked at this often
_PEEK_BYTES = 256  # while paused, the unread bytes peeked at for a DISCONNECT
_PINGRESP_HEADER = 0xD0
_DISCONNECT_TYPE = 14
_ONE_BYTE_LENGTH = 0x80  # a remaining length below this takes one byte
_NO_RECONNECT = -2  # gmqtt: fewer retries than 0 failed connections, and not unlimited (-1)
_LOST = None  # what the queue holds after the last message of a lost connection


def _properties(properties: dict[str, Any]) -> Mapping[str, Any]:
    if len(properties) <= len(_NOT_PROPERTIES):
        return _NO_PROPERTIES
    return MappingProxyType(
        {
            _PROPERTY_NAMES.get(name, name): value if name in _LISTS else value[0]
            for name, value in properties.items()
            if name not in _NOT_PROPERTIES
        }
    )


class _Connection:
    """One gmqtt client's connection: its messages, the acks they wait for, its reading."""

    def __init__(self, client: gmqtt.Client, number: int) -> None:
        self.client = client
        self.number = number
        self.queue: asyncio.Queue[Inbound | None] = asyncio.Queue()
        self.acks: list[int] = []  # packet ids whose PUBACKs go in the next write
        self.lost = False
        self.info: ConnectionInfo | None = None  # what connect() returned
        self.reading: asyncio.Transport | None = None
        self.paused = False
        self.holds = 0
        self.probe: asyncio.TimerHandle | None = None
        self.subacks: dict[int, asyncio.Future[Sequence[int]]] = {}
        self.unsubacks: dict[int, asyncio.Future[None]] = {}

    def write_acks(self) -> None:
        """Write the PUBACKs due, in one write (nothing once the connection is lost)."""
        mids, self.acks = self.acks, []
        if not mids or self.lost:
            return
        reading = self.reading
        if reading is None:  # acks due before connect() returned (a skipped message)
            reading = self.reading = reading_transport(self.client)
        if not reading.is_closing():
            reading.write(struct.pack(f"!{len(mids)}I", *[_PUBACK | mid for mid in mids]))


class GmqttTransport:
    """An MQTT 5 connection through gmqtt, acking QoS 1/2 messages only when told to.

    A new gmqtt client is made for each connection, with gmqtt's own reconnecting off (the
    daemon reconnects). Every QoS 1/2 message joins the connection's ``AckOrder`` as it
    arrives (a malformed one skipped joins it already settled), and acks go out in that
    order. It pauses reading the socket while ``receive_maximum`` messages are held (read
    and not yet handed out, or handed out and not yet acked), whatever the broker does; what
    gmqtt had read from the socket before is still parsed, so the bound is passed by at most
    one read's worth. While paused, the socket is looked at every half second: an error on
    it ends the connection, and gmqtt's keepalive check is told the broker is alive (its
    PINGRESP waits behind the unread messages); TCP keepalive and TCP_USER_TIMEOUT tell a
    dead broker from a quiet one.
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

        ``protocol`` must be ``"5"``: on 3.1.1 gmqtt acknowledges messages on receipt.
        ``on_malformed()`` is called for each malformed message skipped (for a counter).
        ``max_packet_size`` is announced at CONNECT: the broker sends no larger packet.
        """
        if protocol != "5":
            raise ValueError(
                f"the gmqtt transport speaks MQTT 5 only (it cannot acknowledge after"
                f" processing on 3.1.1), got protocol {protocol!r}"
            )
        self.host = host
        self.port = port
        self.client_id = client_id
        self.v5 = True
        self._username = username
        self._password = password
        self._tls = tls
        self._keepalive = keepalive
        self._persistent = persistent
        self._session_expiry = session_expiry
        self._receive_maximum = receive_maximum
        self._connect_timeout = connect_timeout
        self._on_malformed = on_malformed
        self._max_packet_size = max_packet_size
        self._connection = 0
        self._current: _Connection | None = None  # set from the CONNECT on
        self._up = False
        self._ledger = AckOrder(self._send_ack)
        self._unread = 0  # QoS 1/2 messages in the ledger not yet handed out
        # The publishing connection: aiomqtt's, which reads the PUBACK reason code.
        self._publisher = AiomqttTransport(
            host=host,
            port=port,
            client_id=client_id,
            protocol=protocol,
            username=username,
            password=password,
            tls=tls,
            keepalive=keepalive,
            connect_timeout=connect_timeout,
        )

    @property
    def connection(self) -> int:
        """The number of the current (or last) connection; 0 before the first."""
        return self._connection

    @property
    def connected(self) -> bool:
        """Whether connect() succeeded and disconnect() was not called since.

        As for aiomqtt, a connection the broker lost stays "connected" until disconnect():
        the daemon tells its own disconnect from a loss by this.
        """
        return self._up

    @property
    def on_ack(self) -> Callable[[], object] | None:
        """Called for each ack of a message ``messages()`` yielded (for a counter)."""
        return self._ledger.on_ack

    @on_ack.setter
    def on_ack(self, hook: Callable[[], object] | None) -> None:
        self._ledger.on_ack = hook

    def _make_client(self) -> gmqtt.Client:
        properties: dict[str, Any] = {
            "session_expiry_interval": self._session_expiry if self._persistent else 0,
            "receive_maximum": self._receive_maximum,
        }
        if self._max_packet_size is not None:
            properties["maximum_packet_size"] = self._max_packet_size
        client = gmqtt.Client(
            self.client_id,
            # MQTT 5 Clean Start: a persistent session must never be cleaned, not even on
            # the first connect of this process.
            clean_session=not self._persistent,
            optimistic_acknowledgement=False,
            logger=_client_log,
            **properties,
        )
        check_client(client)
        client.reconnect_retries = _NO_RECONNECT
        if self._username is not None:
            client.set_auth_credentials(self._username, self._password)
        return client

    async def connect(self) -> ConnectionInfo:
        """Connect (a new client each time); raise TransportError if that fails.

        Raises ConnectError, which says whether the broker refused the protocol version or
        never answered the CONNECT. Returns what the broker says about the connection:
        whether it kept our session, and later the reason code of a DISCONNECT it sends.
        """
        await self.disconnect()
        info = ConnectionInfo()
        try:
            client = self._make_client()
            context = self._tls.context() if self._tls is not None else False
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise TransportError(f"cannot set up the connection: {exc}") from exc
        # A resumed session's messages may come right behind the CONNACK, before
        # connect() returns: they belong to the new connection's ledger.
        number = self._connection + 1
        current = _Connection(client, number)
        self._ledger.reset(number)
        self._unread = 0
        self._current = current
        self._wire(current, info)
        try:
            await asyncio.wait_for(
                client.connect(
                    self.host,
                    self.port,
                    ssl=context,
                    keepalive=self._keepalive,
                    version=gmqtt.constants.MQTTv50,
                ),
                self._connect_timeout,
            )
        except (TimeoutError, OSError, gmqtt.mqtt.handler.MQTTConnectError) as exc:
            self._current = None
            error = self._connect_error(client, exc)
            await _close(current)
            raise error from exc
        self._connection = number
        self._up = True
        transport = reading_transport(client)
        current.reading = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                for level, option, value in keepalive_socket_options(self._keepalive):
                    sock.setsockopt(level, option, value)
        if self._full():
            self._pause(current)
        return info

    def _connect_error(self, client: gmqtt.Client, exc: BaseException) -> ConnectError:
        if isinstance(exc, TimeoutError):
            if downgraded(client):  # the broker answered MQTT 5 with "unacceptable version"
                return ConnectError(
                    f"cannot connect to {self.host}:{self.port}: the broker refused MQTT 5",
                    unsupported_protocol=True,
                )
            return ConnectError(
                f"cannot connect to {self.host}:{self.port}: Operation timed out", timed_out=True
            )
        code = getattr(exc, "_code", None)
        return ConnectError(
            f"cannot connect to {self.host}:{self.port}: {exc}",
            unsupported_protocol=code == _UNSUPPORTED_PROTOCOL,
        )

    def _wire(self, current: _Connection, info: ConnectionInfo) -> None:
        """Set the client's callbacks, for ``current`` only."""
        client = current.client
        current.info = info

        def connected(_client: Any, flags: int, _rc: int, _properties: Any) -> None:
            info.session_present = bool(flags)

        def disconnected(_client: Any, packet: Any, *_: Any) -> None:
            if isinstance(packet, bytes) and packet and info.disconnect_reason is None:
                info.disconnect_reason = packet[0]  # a DISCONNECT the broker sent
            self._lost(current)

        def subscribed(_client: Any, mid: int, codes: Sequence[int], _props: Any) -> None:
            future = current.subacks.pop(mid, None)
            if future is not None and not future.done():
                future.set_result(list(codes))

        def unsubscribed(_client: Any, mid: int, _codes: Any) -> None:
            future = current.unsubacks.pop(mid, None)
            if future is not None and not future.done():
                future.set_result(None)

        def on_message(
            _client: Any,
            topic: str | bytes,
            body: bytes,
            qos: int,
            properties: dict[str, Any],
        ) -> int:
            # QoS 0 only (QoS 1 comes through take_qos1; the daemon never asks for QoS 2).
            self._arrived(current, topic, body, qos, 0, properties)
            return _SUCCESS

        def on_qos1(mid: int, body: bytes, topic: str | bytes, properties: dict[str, Any]) -> None:
            self._arrived(current, topic, body, 1, mid, properties)

        client.on_connect = connected
        client.on_disconnect = disconnected
        client.on_subscribe = subscribed
        client.on_unsubscribe = unsubscribed
        client.on_message = on_message
        take_qos1(client, on_qos1)

    def _arrived(  # noqa: PLR0917 - what gmqtt hands over
        self,
        current: _Connection,
        topic: str | bytes,
        body: bytes,
        qos: int,
        mid: int,
        properties: dict[str, Any],
    ) -> None:
        """Take one message from gmqtt's parser: in line for its ack, and in the queue."""
        if current.lost or current is not self._current:
            return  # its socket is closed: the broker sends it again
        if qos > 1:
            # Never asked for: gmqtt gives no packet id here, so it cannot be acked.
            self._skip(topic, 0, qos, reason="QoS 2 was never asked for")
        elif isinstance(topic, str) and "+" not in topic and "#" not in topic:
            self._take(
                current,
                Inbound(
                    topic,
                    body,
                    qos,
                    bool(properties.get("retain")),
                    mid,
                    _properties(properties),
                    current.number,
                ),
            )
        else:
            self._skip(topic, mid, qos)

    def _take(self, current: _Connection, message: Inbound) -> None:
        """Put ``message`` in line for its ack and in the queue; pause reading if full."""
        if message.qos:
            self._ledger.arrived(message.mid, message.qos)
            self._unread += 1
        current.queue.put_nowait(message)
        if self._full():
            self._pause(current)

    def _skip(self, topic: str | bytes, mid: int, qos: int, *, reason: str = "") -> None:
        """Log and count a malformed message; it is acked in its turn."""
        shown = repr(topic) if isinstance(topic, bytes) else topic
        if not reason:
            reason = (
                "the topic is not valid UTF-8"
                if isinstance(topic, bytes)
                else "the topic holds a wildcard (+ or #)"
            )
        logger.warning("malformed message skipped", topic=shown, reason=reason, qos=qos)
        if self._on_malformed is not None:
            self._on_malformed()
        if qos and mid:  # packet ids start at 1; 0: none to ack with (QoS 2 here)
            self._ledger.skipped(mid, qos)

    def _send_ack(self, mid: int, qos: int) -> None:  # noqa: ARG002 - AckOrder's signature
        """Queue ``mid``'s PUBACK: those due in this turn of the loop leave in one write."""
        current = self._current
        if current is None or current.lost:
            return
        current.acks.append(mid)
        if len(current.acks) == 1:
            asyncio.get_running_loop().call_soon(current.write_acks)

    def _lost(self, current: _Connection) -> None:
        if not current.lost:
            _end(current)

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> list[int]:
        """Subscribe to every ``(filter, qos)`` in one SUBSCRIBE; return the broker's codes.

        One code per filter, in order: the QoS granted, or a failure reason (0x80 and up).
        It waits for the SUBACK as long as it takes; the caller bounds the wait.
        """
        current = self._require()
        future: asyncio.Future[Sequence[int]] = asyncio.get_running_loop().create_future()
        try:
            mid = current.client.subscribe(
                [gmqtt.Subscription(topic, qos=qos) for topic, qos in filters]
            )
        except Exception as exc:
            raise TransportError(f"subscribe failed: {exc}") from exc
        current.subacks[mid] = future
        with self._held_open(current):
            codes = list(await future)
        # A SUBACK with too few codes answers nothing for the rest: count them refused.
        return codes + [_UNSPECIFIED_ERROR] * (len(filters) - len(codes))

    async def unsubscribe(self, filters: Sequence[str]) -> None:
        """Unsubscribe from ``filters`` and wait for the broker's answer."""
        current = self._require()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            mid = current.client.unsubscribe(list(filters))
        except Exception as exc:
            raise TransportError(f"unsubscribe failed: {exc}") from exc
        current.unsubacks[mid] = future
        with self._held_open(current):
            await future

    def backlog(self) -> int:
        """Return how many received messages ``messages()`` has not yet yielded."""
        current = self._current
        if current is None:
            return 0
        return current.queue.qsize() - (1 if current.lost else 0)

    async def messages(self) -> AsyncIterator[Inbound]:
        """Yield messages until the connection is lost (then raise TransportError)."""
        current = self._require()
        queue = current.queue
        while True:
            message = queue.get_nowait() if not queue.empty() else await queue.get()
            if message is None:
                queue.put_nowait(_LOST)  # for the next reader too
                raise TransportError("connection lost")
            if message.qos:
                self._unread -= 1
            else:
                self._maybe_resume()
            yield message

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
        return self._up and self._ledger.blocked()

    def _full(self) -> bool:
        """Whether ``receive_maximum`` messages are held: read, or handed out and not acked."""
        current = self._current
        if current is None:
            return False
        held = self.backlog() + len(self._ledger) - self._unread
        return held >= self._receive_maximum

    def _pause(self, current: _Connection) -> None:
        reading = current.reading
        if current.holds or current.lost or reading is None or reading.is_closing():
            return
        if reading.is_reading():
            reading.pause_reading()
        if not current.paused:
            current.paused = True
            current.probe = asyncio.get_running_loop().call_later(
                _PROBE_INTERVAL, self._probe, current
            )

    def _resume(self, current: _Connection) -> None:
        self._stop_probe(current)
        current.paused = False
        reading = current.reading
        if reading is not None and not reading.is_closing() and not reading.is_reading():
            reading.resume_reading()

    def _maybe_resume(self) -> None:
        current = self._current
        if current is not None and current.paused and not self._full():
            self._resume(current)

    @staticmethod
    def _stop_probe(current: _Connection) -> None:
        if current.probe is not None:
            current.probe.cancel()
            current.probe = None

    def _probe(self, current: _Connection) -> None:
        """While paused: end a connection whose socket failed, else keep gmqtt's keepalive calm."""
        current.probe = None
        reading = current.reading
        if not current.paused or current.lost or reading is None or reading.is_closing():
            return
        ending = _broker_ending(reading)
        if ending is not None:
            if current.info is not None and current.info.disconnect_reason is None:
                current.info.disconnect_reason = ending or None
            reading.abort()  # gmqtt sees the connection lost
            return
        mark_alive(current.client)
        current.probe = asyncio.get_running_loop().call_later(_PROBE_INTERVAL, self._probe, current)

    @contextlib.contextmanager
    def _held_open(self, current: _Connection) -> Iterator[None]:
        # The broker's answer must be read even while the daemon holds all it may.
        current.holds += 1
        if current.paused:
            self._resume(current)
        try:
            yield
        finally:
            current.holds -= 1
            if not current.holds and self._full() and current is self._current:
                self._pause(current)

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        qos: int,
        retain: bool = False,
        user_properties: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Publish on the publishing connection (``<client_id>-publish``, a clean session).

        Raises PublishRefusedError when the broker's PUBACK carries a failure reason code
        (0x87 Not authorized, say), TransportError when it cannot be sent or acknowledged.
        """
        await self._publisher.publish(
            topic, body, qos=qos, retain=retain, user_properties=user_properties
        )

    async def disconnect(self) -> None:
        """Disconnect both connections cleanly (bounded in time); never raises."""
        current, self._current = self._current, None
        self._up = False
        await asyncio.gather(self._publisher.disconnect(), _close(current))

    def _require(self) -> _Connection:
        current = self._current
        if current is None or not self._up:
            raise TransportError("not connected")
        if current.lost:
            raise TransportError("connection lost")
        return current


def _end(current: _Connection) -> None:
    """Mark ``current`` lost: ``messages()`` ends after what it holds, answers fail."""
    current.lost = True
    GmqttTransport._stop_probe(current)  # noqa: SLF001 - the module's own
    current.queue.put_nowait(_LOST)
    for futures in (current.subacks, current.unsubacks):
        for future in futures.values():
            if not future.done():
                future.set_exception(TransportError("connection lost"))
        futures.clear()


async def _close(current: _Connection | None) -> None:
    """Disconnect ``current``'s client (the acks due go first) and close its socket."""
    if current is None:
        return
    if not current.lost:
        current.write_acks()  # before the DISCONNECT: the broker must not send them again
        _end(current)  # messages() ends
    current.client.reconnect_retries = _NO_RECONNECT
    reading = current.reading
    if reading is not None and not reading.is_closing() and not reading.is_reading():
        reading.resume_reading()  # reading again lets the close see the broker's answer
    GmqttTransport._stop_probe(current)  # noqa: SLF001 - the module's own
    with contextlib.suppress(Exception):
        await asyncio.wait_for(current.client.disconnect(), _DISCONNECT_TIMEOUT)
    if reading is not None and not reading.is_closing():
        reading.abort()


def _broker_ending(reading: asyncio.Transport) -> int | None:  # noqa: PLR0911 - one per case
    """While paused, whether the broker ended the connection: None if not, else its reason.

    The socket failed (reset, or timed out by TCP), or the unread bytes are, after any
    PINGRESPs, a DISCONNECT (its reason code, 0 without one) or the end of the stream (0).
    The bytes are only peeked at; under TLS they are ciphertext and only the end counts.
    """
    sock = reading.get_extra_info("socket")
    if sock is None:
        return None
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            return 0
        # asyncio hands out a TransportSocket without recv(): peek through a duplicate.
        with socket.fromfd(sock.fileno(), sock.family, sock.type) as peer:
            head = peer.recv(_PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None
    except OSError:
        return 0
    if not head:
        return 0
    if reading.get_extra_info("sslcontext") is not None:
        return None
    offset = 0
    while offset + 1 < len(head) and head[offset] == _PINGRESP_HEADER and head[offset + 1] == 0:
        offset += 2
    if offset + 1 < len(head) and head[offset] >> 4 == _DISCONNECT_TYPE:
        size = head[offset + 1]
        return head[offset + 2] if 0 < size < _ONE_BYTE_LENGTH and offset + 2 < len(head) else 0
    return None
