"""The handle a sender gets back for every payload: its results, when they are ready."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mqtt_collector._payload import Payload
    from mqtt_collector._result import ResultList

__all__ = ["CollectorEvent"]

logger = logging.getLogger("mqtt_collector.queue")


class CollectorEvent:
    """The pending outcome of one sent payload.

    ``get_result()`` returns the ResultList once every collector is done, else None;
    ``await event.wait()`` waits for it. The queue always resolves an event, even at
    shutdown (with Error results for payloads it could not process), so ``wait()``
    never hangs past the queue's life.
    """

    __slots__ = ("_callbacks", "_result", "_waiter", "payload")

    def __init__(self, payload: Payload[Any]) -> None:
        """Track the outcome of ``payload``."""
        self.payload = payload
        self._result: ResultList | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._callbacks: list[Callable[[CollectorEvent], object]] | None = None

    def done(self) -> bool:
        """Return True once the results are in."""
        return self._result is not None

    def get_result(self) -> ResultList | None:
        """Return the ResultList, or None while collectors are still running.

        A ResultList is awaitable, so ``await event.get_result()`` works once done.
        """
        return self._result

    async def wait(self, timeout: float | None = None) -> ResultList:
        """Wait for the results and return them; raise TimeoutError after ``timeout`` seconds."""
        result = self._result
        if result is not None:
            return result
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = asyncio.get_running_loop().create_future()
        if timeout is None:
            await asyncio.shield(waiter)
        else:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        result = self._result
        assert result is not None  # the waiter is only resolved by _resolve
        return result

    def add_done_callback(self, callback: Callable[[CollectorEvent], object]) -> None:
        """Call ``callback(event)`` when the results are in (at once if they already are)."""
        if self._result is not None:
            callback(self)
            return
        if self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)

    def _resolve(self, result: ResultList) -> None:
        if self._result is not None:
            return
        self._result = result
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        callbacks = self._callbacks
        if callbacks is not None:
            self._callbacks = None
            for callback in callbacks:
                try:
                    callback(self)
                except Exception:
                    logger.exception("collector event callback %r raised", callback)

    def __repr__(self) -> str:
        """Show the payload and the state."""
        state = "pending" if self._result is None else repr(self._result)
        return f"<CollectorEvent {state} {self.payload!r}>"
