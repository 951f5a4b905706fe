"""mqtt-collector: feed MQTT messages, routed by topic, into Python collectors.

The collector queue (Collector, CollectorQueue, Payload, ...) is usable on its own and
knows nothing of MQTT; the daemon (``mqtt-collector run``) feeds it from a broker.
"""

import importlib.metadata as _metadata

from mqtt_collector._core.buffer import QueueType
from mqtt_collector._core.collector import Collector, Context, LifecycleManager, Processor
from mqtt_collector._core.event import CollectorEvent
from mqtt_collector._core.group_commit import GroupCommit
from mqtt_collector._core.payload import Delivery, Payload
from mqtt_collector._core.queue import CollectorQueue, EventPublisher
from mqtt_collector._core.result import Error, Ok, Result, ResultList
from mqtt_collector._core.router import Router, SimpleRouter
from mqtt_collector._daemon.message import Message
from mqtt_collector._exceptions import (
    CollectorError,
    ConfigError,
    LifecycleError,
    QueueError,
    QueueShutDownError,
    TransportError,
)

try:
    __version__ = _metadata.version("mqtt-collector")
except (
    _metadata.PackageNotFoundError
):  # pragma: no cover - running from a tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "Collector",
    "CollectorError",
    "CollectorEvent",
    "CollectorQueue",
    "ConfigError",
    "Context",
    "Delivery",
    "Error",
    "EventPublisher",
    "GroupCommit",
    "LifecycleError",
    "LifecycleManager",
    "Message",
    "Ok",
    "Payload",
    "Processor",
    "QueueError",
    "QueueShutDownError",
    "QueueType",
    "Result",
    "ResultList",
    "Router",
    "SimpleRouter",
    "TransportError",
    "__version__",
]
