"""The handle a sender gets back for every payload: its results, when they are ready."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mqtt_collector._core.result import ResultList

if TYPE_CHECKING:
    from mqtt_collector._core.payload import Payload
    from mqtt_collector._core.result import Result

__all__ = ["CollectorEvent"]

logger = logging.getLogger("mqtt_collector.queue")


class CollectorEvent:
    """The pending outcome of one sent payload.

    ``get_result()`` returns the ResultList once every collector is done, else None;
    ``await event.wait()`` waits for it. The queue always resolves an event, even at
    shutdown (with Error results for payloads it could not process), so ``wait()``
    never hangs past the queue's life.

    ``abandoned`` is True when the shutdown gave up on the payload (its drain timed out, or
    it was still queued when the queue closed): some collector never finished it, and its
    Error results say so. A processor's own failure, even a CancelledError it raised, is
    never abandonment.
    """

    __slots__ = ("_callbacks", "_result", "_waiters", "abandoned", "payload")

    def __init__(self, payload: Payload[Any]) -> None:
        """Track the outcome of ``payload``."""
        self.payload = payload
        # A lone Result until someone asks: most events are never looked at, so the
        # ResultList is only built on demand.
        self._result: ResultList | Result | None = None
        self._waiters: list[asyncio.Future[None]] | None = None
        self._callbacks: list[Callable[[CollectorEvent], object]] | None = None
        self.abandoned = False

    def done(self) -> bool:
        """Return True once the results are in."""
        return self._result is not None

    def get_result(self) -> ResultList | None:
        """Return the ResultList, or None while collectors are still running.

        A ResultList is awaitable, so ``await event.get_result()`` works once done.
        """
        result = self._result
        if result is None or isinstance(result, ResultList):
            return result
        results = self._result = ResultList([result])
        return results

    async def wait(self, timeout: float | None = None) -> ResultList:
        """Wait for the results and return them; raise TimeoutError after ``timeout`` seconds.

        A waiter that is cancelled always sees CancelledError, even when the event
        resolves in the same loop turn (``asyncio.wait_for`` can swallow that on 3.11,
        so the timeout is a plain timer instead).
        """
        if self._result is None:
            if timeout is not None and timeout <= 0:
                raise TimeoutError("collector event not done")
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            if self._waiters is None:
                self._waiters = [waiter]
            else:
                self._waiters.append(waiter)
            timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
                # Resolving clears the list; otherwise (cancelled, timed out) drop our waiter.
                waiters = self._waiters
                if waiters is not None:
                    with contextlib.suppress(ValueError):
                        waiters.remove(waiter)
            if self._result is None:
                raise TimeoutError(f"collector event not done after {timeout}s")
        result = self.get_result()
        assert result is not None  # checked above, and a result is never unset
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

    def _resolve(self, result: ResultList | Result) -> None:
        if self._result is not None:
            return
        self._result = result
        if self._waiters is not None or self._callbacks is not None:
            self._notify()

    def _notify(self) -> None:
        """Wake every waiter and run every callback (the result is already set)."""
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)
        callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            try:
                callback(self)
            except Exception:
                logger.exception("collector event callback %r raised", callback)

    def __repr__(self) -> str:
        """Show the payload and the state."""
        state = "pending" if self._result is None else repr(self._result)
        return f"<CollectorEvent {state} {self.payload!r}>"


def _expire(waiter: asyncio.Future[None]) -> None:
    """End a ``wait(timeout=...)``: wake the waiter without a result."""
    if not waiter.done():
        waiter.set_result(None)
