"""The callable types a user supplies to a collector, named once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from mqtt_collector._collector import Context
    from mqtt_collector._payload import Payload
    from mqtt_collector._result import Result

__all__ = ["LifecycleManager", "Processor"]

Processor: TypeAlias = "Callable[[Payload[Any], Context], Awaitable[Result]]"
"""An async function that handles one payload and returns ``Ok(value)`` or ``Error(exc)``."""

LifecycleManager: TypeAlias = "Callable[[Context], AbstractAsyncContextManager[Any]]"
"""A factory taking the collector's Context and returning an async context manager.

It is entered once when the queue starts (open connections there, keep them on the
Context) and exited when the queue has shut down.
"""
