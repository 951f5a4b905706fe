"""A scripted MQTT broker for the tests: just enough MQTT to send a client raw packets.

`FakeBroker` listens on a free 127.0.0.1 port, answers CONNECT, SUBSCRIBE, UNSUBSCRIBE and
PINGREQ like a broker that accepts everything, records the PUBACKs it gets, and sends the
client whatever bytes a test gives it (`publish_packet` builds a PUBLISH, valid or not). It
speaks MQTT 5 or 3.1.1, as the client's CONNECT asks.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["FakeBroker", "publish_packet"]

HOST = "127.0.0.1"
WAIT = 10.0

_CONNECT, _PUBLISH, _PUBACK, _SUBSCRIBE, _UNSUBSCRIBE, _PINGREQ, _DISCONNECT = (
    1,
    3,
    4,
    8,
    10,
    12,
    14,
)
_MQTT5 = 5


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def publish_packet(
    topic: bytes, body: bytes, *, qos: int = 1, mid: int = 1, v5: bool = True, raw: bytes = b""
) -> bytes:
    """Return a PUBLISH packet: ``topic`` as given (any bytes), then the body.

    ``raw`` replaces everything after the fixed header when given (a malformed packet).
    """
    if raw:
        return _packet(0x30 | (qos << 1), raw)
    header = len(topic).to_bytes(2, "big") + topic
    if qos:
        header += mid.to_bytes(2, "big")
    if v5:
        header += b"\x00"  # no properties
    return _packet(0x30 | (qos << 1), header + body)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.v5 = True
        self.subscribed = asyncio.Event()
        self.closed = asyncio.Event()


class FakeBroker:
    """One scripted broker; ``async with FakeBroker() as broker`` starts and stops it.

    Attributes:
        port: where it listens.
        connections: how many connections it has accepted so far.
        pubacks: the packet identifiers of the PUBACKs received, in order, on any connection.
    """

    def __init__(self) -> None:
        """Prepare the broker; it listens once entered."""
        self.port = 0
        self.connections = 0
        self.pubacks: list[int] = []
        self._server: asyncio.Server | None = None
        self._current: _Connection | None = None
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close every connection and stop listening."""
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()

    @property
    def connection(self) -> _Connection:
        """The latest connection."""
        assert self._current is not None, "no client has connected"
        return self._current

    async def wait_subscribed(self) -> None:
        """Wait until the latest connection has subscribed."""
        async with asyncio.timeout(WAIT):
            while self._current is None:
                await self._wait_change()
            await self._current.subscribed.wait()

    async def wait_closed(self) -> None:
        """Wait until the client has closed the latest connection."""
        async with asyncio.timeout(WAIT):
            await self.connection.closed.wait()

    async def wait_pubacks(self, count: int) -> list[int]:
        """Wait until ``count`` PUBACKs have come; return their packet identifiers."""
        async with asyncio.timeout(WAIT):
            while len(self.pubacks) < count:
                await self._wait_change()
        return self.pubacks

    async def send(self, data: bytes) -> None:
        """Send ``data`` to the client on the latest connection."""
        writer = self.connection.writer
        writer.write(data)
        await writer.drain()

    async def publish(self, topic: bytes, body: bytes, *, qos: int = 1, mid: int = 1) -> None:
        """Send a PUBLISH as the latest connection's protocol encodes it."""
        await self.send(publish_packet(topic, body, qos=qos, mid=mid, v5=self.connection.v5))

    async def _wait_change(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        connection = _Connection(reader, writer)
        self.connections += 1
        self._current = connection
        self._notify()
        try:
            await self._serve(connection)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            connection.closed.set()
            self._notify()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def _serve(self, connection: _Connection) -> None:
        reader, writer = connection.reader, connection.writer
        while True:
            first = (await reader.readexactly(1))[0]
            length, shift = 0, 0
            while True:
                byte = (await reader.readexactly(1))[0]
                length += (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            body = await reader.readexactly(length)
            kind = first >> 4
            if kind == _CONNECT:
                connection.v5 = body[6] == _MQTT5  # after the protocol name b"\0\4MQTT"
                writer.write(b"\x20\x03\x00\x00\x00" if connection.v5 else b"\x20\x02\x00\x00")
            elif kind == _SUBSCRIBE:
                writer.write(self._suback(body, v5=connection.v5))
                connection.subscribed.set()
            elif kind == _UNSUBSCRIBE:
                mid = body[:2]
                writer.write(_packet(0xB0, mid + (b"\x00\x00" if connection.v5 else b"")))
            elif kind == _PINGREQ:
                writer.write(b"\xd0\x00")
            elif kind == _PUBACK:
                self.pubacks.append(int.from_bytes(body[:2], "big"))
            elif kind == _DISCONNECT:
                return
            self._notify()
            await writer.drain()

    @staticmethod
    def _suback(body: bytes, *, v5: bool) -> bytes:
        mid, position = body[:2], 2
        if v5:
            props, shift = 0, 0
            while True:
                byte = body[position]
                position += 1
                props += (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            position += props
        granted = bytearray()
        while position < len(body):
            size = int.from_bytes(body[position : position + 2], "big")
            position += 2 + size
            granted.append(body[position] & 0x03)
            position += 1
        return _packet(0x90, mid + (b"\x00" if v5 else b"") + bytes(granted))
