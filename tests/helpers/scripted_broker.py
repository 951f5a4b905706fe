"""A scripted MQTT broker for the cases a real Mosquitto cannot produce.

It speaks just enough MQTT 3.1.1 and 5 over TCP on a free 127.0.0.1 port for a test to script
each connection: read the CONNECT, answer it (or not), send PUBLISHes, read the SUBSCRIBE and
the PUBACKs, answer when and how it likes. PINGREQs are answered by themselves. Every read is
bounded by ``WAIT`` seconds, so a script waiting for something that never comes fails the test.

    async def script(conn: ScriptedConnection) -> None:
        await conn.read_connect()
        await conn.connack()
        request = await conn.read_subscribe()
        await conn.suback(request.mid, [1])

    async with ScriptedBroker(script) as broker:
        ...  # a client connecting to broker.port is answered by script

Without a script it behaves as a broker that accepts everything: it answers CONNECT,
SUBSCRIBE (granting what was asked) and UNSUBSCRIBE, records the PUBACKs it gets, and sends the
latest client whatever a test gives it (:func:`publish_packet` builds a PUBLISH, valid or not)::

    async with ScriptedBroker() as broker:
        ...  # connect a client to broker.port
        await broker.wait_subscribed()
        await broker.publish(b"bad/+", b"1", mid=1)
        assert await broker.wait_pubacks(1) == [1]
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from types import TracebackType

__all__ = [
    "CONNACK",
    "CONNECT",
    "DISCONNECT",
    "PINGREQ",
    "PUBACK",
    "PUBLISH",
    "SUBSCRIBE",
    "Connect",
    "Packet",
    "ScriptedBroker",
    "ScriptedConnection",
    "Subscribe",
    "publish_packet",
]

HOST = "127.0.0.1"
WAIT = 10.0

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14
_V5 = 5


@dataclass(frozen=True, slots=True)
class Packet:
    """One control packet: its type (1..15), the header's low four bits, and the rest."""

    type: int
    flags: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Connect:
    """What a CONNECT said."""

    level: int  # 4: MQTT 3.1.1, 5: MQTT 5
    client_id: str
    clean_start: bool
    keepalive: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    """What a SUBSCRIBE asked for: its packet id and each ``(filter, qos)``."""

    mid: int
    filters: list[tuple[str, int]] = field(default_factory=list)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def publish_packet(
    topic: bytes, body: bytes, *, qos: int = 1, mid: int = 1, v5: bool = True, raw: bytes = b""
) -> bytes:
    """Return a PUBLISH packet: ``topic`` as given (any bytes), then the body.

    ``raw`` replaces everything after the fixed header when given (a malformed packet).
    """
    if raw:
        return bytes([PUBLISH << 4 | qos << 1]) + _varint(len(raw)) + raw
    data = _string(topic) + (struct.pack("!H", mid) if qos else b"")
    if v5:
        data += _varint(0)  # no properties
    data += body
    return bytes([PUBLISH << 4 | qos << 1]) + _varint(len(data)) + data


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[offset]
        offset += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, offset


def _read_string(data: bytes, offset: int) -> tuple[str, int]:
    (size,) = struct.unpack_from("!H", data, offset)
    start = offset + 2
    return data[start : start + size].decode(), start + size


class ScriptedConnection:
    """One client connection to a :class:`ScriptedBroker`, driven by the test's script."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Wrap an accepted connection."""
        self._reader = reader
        self._writer = writer
        self.connect: Connect | None = None
        self.subscribed = asyncio.Event()
        self.closed = asyncio.Event()

    @property
    def v5(self) -> bool:
        """Whether the client spoke MQTT 5 in its CONNECT (3.1.1 before it has)."""
        return self.connect is not None and self.connect.level == _V5

    async def read(self, *, timeout: float | None = WAIT) -> Packet:
        """Return the next packet from the client, answering PINGREQs on the way.

        Raises:
            EOFError: the client closed the connection.
        """
        while True:
            async with asyncio.timeout(timeout):
                try:
                    header = await self._reader.readexactly(1)
                    length, shift = 0, 0
                    while True:
                        byte = (await self._reader.readexactly(1))[0]
                        length += (byte & 0x7F) << shift
                        shift += 7
                        if not byte & 0x80:
                            break
                    body = await self._reader.readexactly(length)
                except asyncio.IncompleteReadError:
                    raise EOFError("the client closed the connection") from None
            packet = Packet(header[0] >> 4, header[0] & 0x0F, body)
            if packet.type == PINGREQ:
                await self.send(PINGRESP, 0, b"")
                continue
            return packet

    async def expect(self, kind: int) -> Packet:
        """Return the next packet, which must be of type ``kind``."""
        packet = await self.read()
        if packet.type != kind:
            raise AssertionError(f"expected packet type {kind}, got {packet.type}")
        return packet

    async def read_connect(self) -> Connect:
        """Read the CONNECT (the first packet) and remember what it said."""
        body = (await self.expect(CONNECT)).body
        _, offset = _read_string(body, 0)
        level, flags = body[offset], body[offset + 1]
        (keepalive,) = struct.unpack_from("!H", body, offset + 2)
        offset += 4
        if level == _V5:
            size, offset = _read_varint(body, offset)
            offset += size
        client_id, _ = _read_string(body, offset)
        self.connect = Connect(level, client_id, bool(flags & 0x02), keepalive)
        return self.connect

    async def connack(
        self, code: int = 0, *, session_present: bool = False, v311_format: bool = False
    ) -> None:
        """Answer the CONNECT; ``v311_format`` sends a 3.1.1 CONNACK whatever the client spoke."""
        body = bytes([1 if session_present else 0, code])
        if self.v5 and not v311_format:
            body += _varint(0)
        await self.send(CONNACK, 0, body)

    async def read_subscribe(self) -> Subscribe:
        """Read packets up to the next SUBSCRIBE (PUBACKs on the way are dropped); return it."""
        while True:
            packet = await self.read()
            if packet.type == SUBSCRIBE:
                break
            if packet.type != PUBACK:
                raise AssertionError(f"expected SUBSCRIBE, got packet type {packet.type}")
        return self._subscribe(packet.body)

    def _subscribe(self, body: bytes) -> Subscribe:
        (mid,) = struct.unpack_from("!H", body, 0)
        offset = 2
        if self.v5:
            size, offset = _read_varint(body, offset)
            offset += size
        request = Subscribe(mid)
        while offset < len(body):
            name, offset = _read_string(body, offset)
            request.filters.append((name, body[offset] & 0x03))
            offset += 1
        return request

    async def suback(self, mid: int, codes: Sequence[int]) -> None:
        """Answer SUBSCRIBE ``mid`` with one reason code (granted QoS, or >= 0x80) per filter."""
        body = struct.pack("!H", mid) + (_varint(0) if self.v5 else b"") + bytes(codes)
        await self.send(SUBACK, 0, body)

    async def publish(self, topic: str | bytes, body: bytes, *, mid: int, qos: int = 1) -> None:
        """Send a PUBLISH (``mid`` is ignored at QoS 0); a bytes ``topic`` is sent as it is."""
        data = _string(topic) + (struct.pack("!H", mid) if qos else b"")
        if self.v5:
            data += _varint(0)
        await self.send(PUBLISH, qos << 1, data + body)

    async def read_pubacks(self, mids: Sequence[int]) -> list[Packet]:
        """Read packets until every one of ``mids`` is PUBACKed; return the other packets."""
        waiting = set(mids)
        others = []
        while waiting:
            packet = await self.read()
            if packet.type == PUBACK:
                (mid,) = struct.unpack_from("!H", packet.body, 0)
                waiting.discard(mid)
            else:
                others.append(packet)
        return others

    async def disconnect(self, reason: int = 0) -> None:
        """Send a DISCONNECT (with ``reason`` on MQTT 5) and close the connection."""
        await self.send(DISCONNECT, 0, bytes([reason, 0]) if self.v5 else b"")
        self.close()

    async def send(self, kind: int, flags: int, body: bytes) -> None:
        """Send one packet."""
        await self.send_raw(bytes([kind << 4 | flags]) + _varint(len(body)) + body)

    async def send_raw(self, data: bytes) -> None:
        """Send ``data`` as it is (one packet or several, valid or not)."""
        self._writer.write(data)
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()

    async def wait_closed(self) -> None:
        """Wait (bounded) until the client has closed the connection; reading drops packets."""
        with contextlib.suppress(EOFError, ConnectionError):
            while True:
                await self.read()

    def close(self) -> None:
        """Close the connection from the broker's side."""
        self._writer.close()
        self.closed.set()


class ScriptedBroker:
    """A TCP server on a free 127.0.0.1 port running ``script`` for each connection.

    ``connections`` lists every connection accepted so far. A script that raises fails the
    test at exit (except when the client went away: EOFError, ConnectionError). Without a
    script, every connection is served by :meth:`accept_everything`, and ``pubacks`` lists the
    packet identifiers of the PUBACKs received, in order, on any connection.
    """

    def __init__(
        self, script: Callable[[ScriptedConnection], Awaitable[None]] | None = None
    ) -> None:
        """Prepare the broker; it listens inside ``async with``."""
        self._script = self.accept_everything if script is None else script
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._errors: list[BaseException] = []
        self._changed = asyncio.Event()
        self.connections: list[ScriptedConnection] = []
        self.pubacks: list[int] = []
        self.port = 0

    async def __aenter__(self) -> Self:
        """Start listening."""
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop listening, end every connection, and raise what a script raised."""
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        if self._errors and exc is None:
            raise self._errors[0]

    async def accept_everything(self, conn: ScriptedConnection) -> None:
        """The script of a broker that accepts everything and records the PUBACKs."""
        await conn.read_connect()
        await conn.connack()
        while True:
            packet = await conn.read(timeout=None)
            if packet.type == SUBSCRIBE:
                request = conn._subscribe(packet.body)
                await conn.suback(request.mid, [qos for _, qos in request.filters])
                conn.subscribed.set()
            elif packet.type == UNSUBSCRIBE:
                reasons = b"\x00\x00" if conn.v5 else b""  # no properties, success
                await conn.send(UNSUBACK, 0, packet.body[:2] + reasons)
            elif packet.type == PUBACK:
                (mid,) = struct.unpack_from("!H", packet.body, 0)
                self.pubacks.append(mid)
            elif packet.type == DISCONNECT:
                return
            self._changed.set()

    @property
    def connection(self) -> ScriptedConnection:
        """The latest connection."""
        assert self.connections, "no client has connected"
        return self.connections[-1]

    async def wait_subscribed(self) -> None:
        """Wait until the latest connection has subscribed."""
        async with asyncio.timeout(WAIT):
            while not self.connections:
                await self._wait_change()
            await self.connection.subscribed.wait()

    async def wait_closed(self) -> None:
        """Wait until the latest connection has ended."""
        async with asyncio.timeout(WAIT):
            await self.connection.closed.wait()

    async def wait_pubacks(self, count: int) -> list[int]:
        """Wait until ``count`` PUBACKs have come; return their packet identifiers."""
        async with asyncio.timeout(WAIT):
            while len(self.pubacks) < count:
                await self._wait_change()
        return self.pubacks

    async def send(self, data: bytes) -> None:
        """Send ``data`` as it is to the client on the latest connection."""
        await self.connection.send_raw(data)

    async def publish(self, topic: str | bytes, body: bytes, *, qos: int = 1, mid: int = 1) -> None:
        """Send a PUBLISH to the latest connection, as its protocol encodes it."""
        await self.connection.publish(topic, body, mid=mid, qos=qos)

    async def _wait_change(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = ScriptedConnection(reader, writer)
        self.connections.append(connection)
        self._changed.set()
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._script(connection)
        except (EOFError, ConnectionError, asyncio.CancelledError):
            pass
        except Exception as exc:  # noqa: BLE001 - reported at exit, to fail the test
            self._errors.append(exc)
        finally:
            connection.closed.set()
            self._changed.set()
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
