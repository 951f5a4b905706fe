"""A collector: a keyed processor with its topics, lifecycle and context."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeAlias

from mqtt_collector._core.result import Error, Ok

if TYPE_CHECKING:
    from mqtt_collector._core.payload import Payload
    from mqtt_collector._core.result import Result

__all__ = ["Collector", "Context", "LifecycleManager", "Processor", "run_processor"]


class Context(SimpleNamespace):
    """A namespace for whatever a collector needs at hand: set any attribute on it.

    The daemon sets ``ctx.key`` (the collector key), ``ctx.options`` (the YAML
    ``options:``: an instance of the collector's declared ``Options`` model, or the read-only
    mapping) and ``ctx.publish`` (an async ``publish(topic, body, *, qos=1, retain=False,
    user_properties=())`` on the daemon's MQTT connection) before the lifecycle runs.
    """


Processor: TypeAlias = "Callable[[Payload[Any], Context], Awaitable[Result]]"
"""An async function that handles one payload and returns ``Ok(value)`` or ``Error(exc)``."""

LifecycleManager: TypeAlias = "Callable[[Context], AbstractAsyncContextManager[Any]]"
"""A factory taking the collector's Context and returning an async context manager.

It is entered once when the queue starts (open connections there, keep them on the
Context) and exited when the queue has shut down.
"""


class Collector:
    """Routes payloads by ``key`` and ``topics`` to ``processor``, called with the ``ctx``.

    Args:
        key: unique, non-empty name of the collector.
        processor: ``async def processor(payload, ctx) -> Result``.
        lifecycle: optional factory ``lifecycle(ctx)`` returning an async context manager,
            entered when the queue starts and exited when it stops.
        topics: the topics the collector listens to (``Delivery.TOPIC``).
        ctx: the Context passed to the processor; a new empty one by default.
    """

    __slots__ = ("ctx", "key", "lifecycle", "processor", "topics")

    def __init__(
        self,
        key: str,
        processor: Processor,
        *,
        lifecycle: LifecycleManager | None = None,
        topics: Iterable[str] | None = None,
        ctx: Context | None = None,
    ) -> None:
        """Build the collector; raise ValueError/TypeError naming any bad argument."""
        if not isinstance(key, str) or not key:
            raise ValueError(f"collector key must be a non-empty string, got {key!r}")
        if not callable(processor):
            raise TypeError(f"collector {key!r}: processor must be callable, got {processor!r}")
        if lifecycle is not None and not callable(lifecycle):
            raise TypeError(f"collector {key!r}: lifecycle must be callable, got {lifecycle!r}")
        if isinstance(topics, str):
            raise TypeError(f"collector {key!r}: topics must be a list of strings, not {topics!r}")
        topic_list = list(topics or ())
        for topic in topic_list:
            if not isinstance(topic, str) or not topic:
                raise ValueError(
                    f"collector {key!r}: topics must be non-empty strings, got {topic!r}"
                )
        if ctx is not None and not isinstance(ctx, Context):
            raise TypeError(f"collector {key!r}: ctx must be a Context, got {ctx!r}")
        self.key = key
        self.processor = processor
        self.lifecycle = lifecycle
        self.topics = topic_list
        self.ctx = Context() if ctx is None else ctx

    async def run(self, payload: Payload[Any]) -> Result:
        """Run the processor on ``payload``; every failure becomes an Error result.

        The one place a processor's faults are contained (the consumer pool runs the same
        steps inline for a plain Collector). A subclass may override it to add behaviour
        around contained runs (the daemon's error policy retries and dead-letters there);
        an override must return a Result and let only its own task's cancellation through.
        """
        return await run_processor(self.key, self.processor, payload, self.ctx)

    def __repr__(self) -> str:
        """Show the key and topics."""
        return f"Collector({self.key!r}, topics={self.topics!r})"


async def run_processor(
    key: str, processor: Processor, payload: Payload[Any], ctx: Context
) -> Result:
    """Call ``processor(payload, ctx)`` for collector ``key``; every failure becomes an Error.

    A processor that raises (``asyncio.CancelledError`` included) yields ``Error(exc)``, and
    one returning anything but Ok or Error yields ``Error(TypeError)``; only the cancellation
    of the calling task itself is let through.
    """
    try:
        result = await processor(payload, ctx)
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        return Error(exc)
    except Exception as exc:  # noqa: BLE001 - containing every processor fault is the point
        return Error(exc)
    cls = result.__class__
    if cls is Ok or cls is Error:
        return result
    return Error(
        TypeError(f"collector {key!r}: processor returned {cls.__name__}, not Ok or Error")
    )
