"""A TCP proxy a test puts between a client and a server, to cut the link and restore it.

:class:`TcpProxy` listens on a free 127.0.0.1 port and forwards each connection to the target.
:meth:`TcpProxy.cut` makes the server unreachable as a crash would: every connection through
the proxy is reset and new ones are refused, until :meth:`TcpProxy.restore` listens again on the
same port. :meth:`TcpProxy.freeze` makes it hang instead, as a lost network link does: nothing
is forwarded (connections stay open, new ones are accepted) until :meth:`TcpProxy.thaw`.

It runs its own event loop in a thread, so a test can use it from synchronous code (a daemon
subprocess) and from asyncio code alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from types import TracebackType

__all__ = ["TcpProxy"]

HOST = "127.0.0.1"
TIMEOUT = 10.0  # seconds: a bound on every call into the proxy's loop
_CHUNK = 65536


class TcpProxy:
    """Forward connections from ``127.0.0.1:port`` to ``target_host:target_port``.

    ``accepted`` counts the connections taken so far (to check a client really came through).
    Use it with ``with``: started on entry, closed on exit.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        """Prepare the proxy; nothing listens until :meth:`start`."""
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy")
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing: asyncio.Event | None = None

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(TIMEOUT)

    def start(self) -> None:
        """Start the proxy's thread and listen on a free port (kept by :meth:`restore`)."""
        self._thread.start()
        self._call(self._listen())

    def cut(self) -> None:
        """Reset every connection through the proxy and refuse new ones."""
        self._call(self._cut())

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        self._call(self._listen())

    def freeze(self) -> None:
        """Forward nothing more, either way, until :meth:`thaw`; connections stay open."""
        self._loop.call_soon_threadsafe(self._flow().clear)

    def thaw(self) -> None:
        """Forward again what waited and what comes."""
        self._loop.call_soon_threadsafe(self._flow().set)

    def _flow(self) -> asyncio.Event:
        assert self._flowing is not None, "the proxy is not started"
        return self._flowing

    def close(self) -> None:
        """Cut, stop the thread and close its loop."""
        if self._thread.is_alive():
            self._call(self._cut())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(TIMEOUT)
        self._loop.close()

    async def _listen(self) -> None:
        if self._flowing is None:
            self._flowing = asyncio.Event()
            self._flowing.set()
        self._server = await asyncio.start_server(
            self._forward, HOST, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # an RST, as a crashed server or a dropped link gives
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.accepted += 1
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream = await asyncio.open_connection(self.target_host, self.target_port)
            self._writers.add(upstream)
            async with asyncio.TaskGroup() as group:
                group.create_task(_pump(reader, upstream, self._flow()))
                group.create_task(_pump(up_reader, writer, self._flow()))
        except (OSError, ExceptionGroup):
            pass  # one side went away: close both
        finally:
            for side in (writer, upstream):
                if side is not None:
                    self._writers.discard(side)
                    side.transport.abort()
            self._tasks.discard(task)

    def __enter__(self) -> Self:
        """Start the proxy."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the proxy."""
        self.close()


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event
) -> None:
    """Copy ``reader`` to ``writer`` while ``flowing``, until the end of the stream; half-close."""
    while data := await reader.read(_CHUNK):
        await flowing.wait()
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()
