"""The one place that reaches into aiomqtt's private parts, each checked loudly.

aiomqtt 2.x has no public switch for acknowledging messages after processing;
paho-mqtt, which it wraps, has (``manual_ack_set`` and ``ack``). aiomqtt's public
message iterator also starts a task per message, so the daemon takes messages straight
from its queue when one is waiting. And aiomqtt reads the socket whenever it is
readable, so ``ReadGate`` takes over its reader, to stop reading while the daemon holds
as many unacked messages as it may (flow control that does not trust the broker to
honour Receive Maximum). If a new aiomqtt or paho-mqtt release moves any of this, these
functions raise IncompatibleClientError, naming the installed versions (and the tests
fail), instead of silently acking on receipt: that is fatal, never a reason to reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import importlib.metadata
import os
import select
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho

from mqtt_collector._exceptions import IncompatibleClientError, TransportError

if TYPE_CHECKING:
    import aiomqtt

__all__ = [
    "VERIFIED",
    "ReadGate",
    "check_client",
    "close_socket",
    "disconnected_future",
    "enable_manual_ack",
    "intercept_messages",
    "message_queue",
    "paho_client",
    "send_ack",
    "watch_connection",
]

# What the reach into private parts was verified with (pyproject.toml pins these minors).
VERIFIED = "aiomqtt 2.5 and paho-mqtt 2.2"
# While paused, the socket is peeked at this often, so that a lost connection is seen.
_PROBE_INTERVAL = 0.5
# While paused, a control packet (a PINGRESP, a DISCONNECT) first in line is read if it
# is whole within this many bytes; a PUBLISH never is.
_PROBE_BYTES = 4096
_PUBLISH = 3  # the packet type in the first byte's high nibble


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def incompatible(what: str) -> IncompatibleClientError:
    """Return the fatal error for a broken assumption ``what``, naming the installed versions."""
    return IncompatibleClientError(
        f"{what}: installed aiomqtt {_version('aiomqtt')}, paho-mqtt {_version('paho-mqtt')};"
        f" mqtt-collector works with {VERIFIED}"
    )


def _paho_client(client: aiomqtt.Client) -> paho.Client:
    inner = getattr(client, "_client", None)
    if not isinstance(inner, paho.Client):
        raise incompatible(
            "aiomqtt does not expose its paho-mqtt client as '_client', so messages"
            " cannot be acknowledged after processing"
        )
    return inner


def _disconnected(client: aiomqtt.Client) -> asyncio.Future[Any]:
    disconnected = getattr(client, "_disconnected", None)
    if not isinstance(disconnected, asyncio.Future):
        raise incompatible("aiomqtt keeps no '_disconnected' future")
    return disconnected


def paho_client(client: aiomqtt.Client) -> paho.Client:
    """Return the paho-mqtt client ``client`` wraps (for its public API)."""
    return _paho_client(client)


def disconnected_future(client: aiomqtt.Client) -> asyncio.Future[Any]:
    """Return the future aiomqtt resolves when ``client``'s connection ends."""
    return _disconnected(client)


def check_client(client: aiomqtt.Client) -> None:
    """Check, before it connects, every private part of ``client`` the transport uses."""
    inner = _paho_client(client)
    message_queue(client)
    _disconnected(client)
    if not callable(getattr(inner, "_sock_close", None)):
        raise incompatible("paho-mqtt has no '_sock_close'")
    if not isinstance(getattr(inner, "_ping_t", None), (int, float)):
        raise incompatible("paho-mqtt keeps no '_ping_t' (when the last PINGREQ went out)")


def enable_manual_ack(client: aiomqtt.Client) -> None:
    """Make ``client`` leave PUBACK/PUBCOMP to ``send_ack``; call before connecting."""
    inner = _paho_client(client)
    inner.manual_ack_set(on=True)
    if getattr(inner, "_manual_ack", None) is not True:
        raise incompatible("paho-mqtt did not switch to manual acknowledgement")


def send_ack(client: aiomqtt.Client, mid: int, qos: int) -> None:
    """Send the PUBACK (QoS 1) or PUBCOMP (QoS 2) for message ``mid``."""
    rc = _paho_client(client).ack(mid, qos)
    if rc != paho.MQTT_ERR_SUCCESS:
        raise TransportError(f"could not acknowledge message {mid}: {paho.error_string(rc)}")


def message_queue(client: aiomqtt.Client) -> asyncio.Queue[Any]:
    """Return the queue aiomqtt puts received messages in."""
    queue = getattr(client, "_queue", None)
    if not isinstance(queue, asyncio.Queue):
        raise incompatible("aiomqtt keeps no message queue as '_queue'")
    return queue


def intercept_messages(
    client: aiomqtt.Client,
    *,
    accepted: Callable[[int, int], None],
    rejected: Callable[[int, int, str, str], None],
) -> None:
    """Catch what aiomqtt's message callback raises, instead of letting paho's read fail.

    aiomqtt refuses a topic that is not UTF-8 or holds a wildcard by raising inside
    paho's read, which leaves paho handling the same half-read packet on every read.
    Each message goes through aiomqtt's callback (public paho API: ``on_message``) as
    before; ``accepted(mid, qos)`` follows each one it took, ``rejected(mid, qos, topic,
    reason)`` each one it refused (the topic as text, or as the repr of its bytes).
    Call before connecting.
    """
    inner = _paho_client(client)
    original = inner.on_message
    if original is None:
        raise incompatible("aiomqtt sets no paho on_message callback")

    def on_message(paho_client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            original(paho_client, userdata, message)
        except Exception as exc:  # noqa: BLE001 - whatever aiomqtt refuses is skipped
            rejected(message.mid, message.qos, *_refusal(message, exc))
        else:
            accepted(message.mid, message.qos)

    inner.on_message = on_message

    # A PUBLISH paho cannot decode at all (bad properties, a length that does not add up)
    # makes it drop the connection, and the broker sends the same packet first on the
    # next one, for ever. Its topic and packet id come before the part that fails, so it
    # is skipped and acked like a refused one; only a packet too short to hold even those
    # still ends the connection.
    handle = getattr(inner, "_handle_publish", None)
    if not callable(handle) or not isinstance(getattr(inner, "_in_packet", None), dict):
        raise incompatible("paho-mqtt has no '_handle_publish' and '_in_packet'")

    def handle_publish() -> Any:
        try:
            return handle()
        except Exception as exc:
            packet = inner._in_packet  # noqa: SLF001 - checked above
            salvaged = _publish_header(packet["command"], bytes(packet["packet"]))
            if salvaged is None:
                raise
            mid, qos, topic = salvaged
            rejected(mid, qos, topic, f"the packet cannot be decoded: {type(exc).__name__}: {exc}")
            return paho.MQTT_ERR_SUCCESS

    inner._handle_publish = handle_publish  # type: ignore[method-assign]  # noqa: SLF001


def _publish_header(command: int, packet: bytes) -> tuple[int, int, str] | None:
    """Return a PUBLISH packet's id, QoS and topic (as text, or the repr of its bytes)."""
    qos = (command & 0x06) >> 1
    if len(packet) < 2:  # noqa: PLR2004 - the topic's length field
        return None
    end = 2 + int.from_bytes(packet[:2], "big")
    if len(packet) < end + (2 if qos else 0):
        return None
    raw = packet[2:end]
    mid = int.from_bytes(packet[end : end + 2], "big") if qos else 0
    try:
        topic = raw.decode("utf-8")
    except UnicodeDecodeError:
        topic = repr(raw)
    return mid, qos, topic


class _Waiting(enum.Enum):
    NOTHING = enum.auto()  # nothing to read, or a packet not whole yet
    CONTROL = enum.auto()  # the end of the stream, an error, or a whole control packet
    PUBLISH = enum.auto()  # a PUBLISH first in line (or TLS data: its type is hidden)


def _waiting(sock: socket.socket) -> _Waiting:
    """Peek at what waits on ``sock`` (the raw bytes, even under TLS) without reading it."""
    try:
        head = socket.socket.recv(sock, _PROBE_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return _Waiting.NOTHING
    except OSError:
        return _Waiting.CONTROL  # reset or broken: paho's read sees the loss
    if not head:
        return _Waiting.CONTROL  # the end of the stream
    if isinstance(sock, ssl.SSLSocket) or head[0] >> 4 == _PUBLISH:
        return _Waiting.PUBLISH
    size = _packet_size(head)
    return _Waiting.NOTHING if size is None or size > len(head) else _Waiting.CONTROL


def _peer_closed(sock: socket.socket) -> bool:
    """Whether the peer has shut its end while data still waits unread (Linux's POLLRDHUP).

    A peek sees the end of the stream only once everything before it is read; POLLRDHUP says
    so at once. Where the flag does not exist, keepalive finds the loss instead.
    """
    rdhup = getattr(select, "POLLRDHUP", None)
    if rdhup is None:
        return False
    poller = select.poll()
    poller.register(sock.fileno(), rdhup)
    return any(event & rdhup for _, event in poller.poll(0))


def _packet_size(head: bytes) -> int | None:
    """Return the whole size of the packet ``head`` starts, or None if its header is cut."""
    length, shift = 0, 0
    for position, byte in enumerate(head[1:5], start=2):
        length += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return position + length
    return None


def _refusal(message: paho.MQTTMessage, exc: Exception) -> tuple[str, str]:
    """Return the topic as best it can be shown, and what was wrong with the message."""
    try:
        topic = message.topic
    except UnicodeDecodeError as error:
        return repr(error.object), "the topic is not valid UTF-8"
    if "+" in topic or "#" in topic:
        return topic, "the topic holds a wildcard (+ or #)"
    if not topic:
        return topic, "the topic is empty"
    return topic, f"{type(exc).__name__}: {exc}"


class ReadGate:
    """Stops and restarts the reading of one connected client's socket.

    While paused, no PUBLISH is read from the broker: what it sends waits in the socket
    buffers and, once they are full, in the broker. Acks still go out (writing is apart).
    Every ``_PROBE_INTERVAL`` the socket is peeked at: an end of stream, an error, or a
    whole control packet first in line (a PINGRESP, a DISCONNECT) is read at once. When a
    PUBLISH is first in line (or, on TLS, anything: its packet types cannot be seen), the
    broker's PINGRESP cannot be reached: paho's keepalive timeout is then suspended (its
    PINGREQs still go out, so the broker sees us alive), and the socket itself is the
    evidence: TCP keepalive and TCP_USER_TIMEOUT (set at connect) end a connection to a
    dead peer, and a reset or timed-out socket ends the connection here.
    """

    def __init__(self, client: aiomqtt.Client, *, full: Callable[[], bool]) -> None:
        """Gate ``client``, which must be connected; call from its event loop.

        The gate takes over reading from aiomqtt and pauses itself as soon as ``full()``
        is true after a read, so at most one read's worth of messages passes the bound.
        """
        self._client = client
        self._paho = _paho_client(client)
        self._disconnected = _disconnected(client)
        self._loop = asyncio.get_running_loop()
        self._full = full
        self._holds = 0
        self._paused_fd: int | None = None
        self._probe_handle: asyncio.TimerHandle | None = None
        fd = self._fileno()
        if fd is not None:
            # Replaces aiomqtt's reader, which does the same but never pauses; aiomqtt
            # installs it once, while connecting, and never again. asyncio's loop says
            # whether there was one to remove; uvloop's says nothing (None).
            if self._loop.remove_reader(fd) is False:
                raise incompatible("aiomqtt had not installed its socket reader once connected")
            self._loop.add_reader(fd, self._read)

    @property
    def paused(self) -> bool:
        """Whether reading is paused."""
        return self._paused_fd is not None

    @contextlib.contextmanager
    def held_open(self) -> Iterator[None]:
        """Keep reading while in the block: a SUBACK or PUBACK awaited there must get in."""
        self._holds += 1
        self.resume()
        try:
            yield
        finally:
            self._holds -= 1

    def pause(self) -> None:
        """Stop reading the socket (no-op if paused, held open or closed)."""
        if self._paused_fd is not None or self._holds:
            return
        fd = self._fileno()
        if fd is None:
            return
        self._loop.remove_reader(fd)
        self._paused_fd = fd
        self._probe_handle = self._loop.call_later(_PROBE_INTERVAL, self._probe)

    def resume(self) -> None:
        """Read the socket again (no-op unless paused, or if it was closed meanwhile)."""
        fd, self._paused_fd = self._paused_fd, None
        if self._probe_handle is not None:
            self._probe_handle.cancel()
            self._probe_handle = None
        if fd is not None and self._fileno() == fd:
            self._loop.add_reader(fd, self._read)

    def _probe(self) -> None:
        self._probe_handle = None
        if self._paused_fd is None:
            return
        self._read_control()
        if self._paused_fd is not None and self._fileno() is not None:
            self._probe_handle = self._loop.call_later(_PROBE_INTERVAL, self._probe)

    def _read_control(self) -> None:
        """Read, while paused, every control packet waiting before the first PUBLISH."""
        for _ in range(_PROBE_BYTES // 2):  # each packet is at least two bytes: a safe bound
            sock = self._paho.socket()
            if self._disconnected.done() or not isinstance(sock, socket.socket):
                return
            waiting = _waiting(sock)
            if waiting is _Waiting.NOTHING:
                return
            if waiting is _Waiting.PUBLISH:
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:  # reset, or timed out by TCP keepalive: data waits, it is dead
                    self._fail(ConnectionError(error, os.strerror(error)))
                    return
                if _peer_closed(sock):
                    # The broker closed its end (a DISCONNECT and the end of the stream wait
                    # behind the PUBLISHes): nothing read now could be acked, it resends them.
                    self._fail(ConnectionResetError("the broker closed the connection"))
                    return
                # The PINGRESP waits behind the PUBLISH: keep paho from timing out.
                self._paho._ping_t = 0  # noqa: SLF001 - checked by check_client
                return
            self._read()  # the end, an error, or one whole control packet

    def _fail(self, exc: Exception) -> None:
        """End the connection after a failed read: never read it again, close its socket.

        paho keeps a packet it failed to handle and would handle it again on every read.
        """
        fd = self._fileno()
        if fd is not None:
            self._loop.remove_reader(fd)
        self._paused_fd = None
        if self._probe_handle is not None:
            self._probe_handle.cancel()
            self._probe_handle = None
        close_socket(self._client)
        if not self._disconnected.done():
            self._disconnected.set_exception(exc)

    def _fileno(self) -> int | None:
        sock = self._paho.socket()
        if sock is None:
            return None
        fd = sock.fileno()
        return fd if fd >= 0 else None

    def _read(self) -> None:
        # What aiomqtt's own reader does: read, drain what TLS has decoded, and turn a
        # failure into the lost connection its message iterator is waiting for.
        try:
            while True:
                self._paho.loop_read()
                sock = self._paho.socket()
                pending = getattr(sock, "pending", None)
                if pending is None or pending() <= 0:
                    break
        except Exception as exc:  # noqa: BLE001 - handed to aiomqtt as the connection's end
            self._fail(exc)
            return
        if self._full():
            self.pause()


def watch_connection(
    client: aiomqtt.Client,
    *,
    on_connack: Callable[[bool], None],
    on_disconnect: Callable[[int], None],
) -> None:
    """Report the CONNACK's session-present flag and the reason code of a broker's DISCONNECT.

    aiomqtt drops both: its CONNACK handler ignores the flags, and a broker's DISCONNECT
    reason only shows in an exception's text. paho's callbacks (public API) carry them, so
    aiomqtt's own are wrapped, once, before connecting. ``on_disconnect`` is called only
    for a DISCONNECT packet the broker sent, not for a closed socket.
    """
    inner = _paho_client(client)
    connected, disconnected = inner.on_connect, inner.on_disconnect
    if connected is None or disconnected is None:
        raise incompatible("aiomqtt sets no paho on_connect/on_disconnect callbacks")

    def connack(*args: Any) -> None:
        flags = args[2]
        on_connack(bool(getattr(flags, "session_present", False)))
        connected(*args)

    def disconnect(*args: Any) -> None:
        flags, reason = args[2], args[3]
        if getattr(flags, "is_disconnect_packet_from_server", False):
            on_disconnect(int(getattr(reason, "value", reason)))
        disconnected(*args)

    inner.on_connect = connack
    inner.on_disconnect = disconnect


def close_socket(client: aiomqtt.Client) -> None:
    """Close the socket of a client whose connect failed; no-op if it is closed.

    aiomqtt leaves it open, and watched by the event loop, when no CONNACK comes in time.
    paho's own close also tells aiomqtt, which then stops watching it.
    """
    close = getattr(_paho_client(client), "_sock_close", None)
    if not callable(close):
        raise incompatible("paho-mqtt has no '_sock_close'")
    close()
