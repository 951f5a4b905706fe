"""mqtt-collector: feed MQTT messages, routed by topic, into Python collectors.

The collector queue (Collector, CollectorQueue, Payload, ...) is usable on its own and
knows nothing of MQTT; the daemon (``mqtt-collector run``) feeds it from a broker.
"""

import importlib.metadata as _metadata

from mqtt_collector._buffer import QueueType
from mqtt_collector._collector import Collector, Context
from mqtt_collector._event import CollectorEvent
from mqtt_collector._exceptions import (
    CollectorError,
    ConfigError,
    LifecycleError,
    QueueError,
    QueueShutDownError,
    TransportError,
)
from mqtt_collector._message import Message
from mqtt_collector._payload import Delivery, Payload
from mqtt_collector._queue import CollectorQueue, EventPublisher
from mqtt_collector._result import Error, Ok, Result, ResultList
from mqtt_collector._router import Router, SimpleRouter
from mqtt_collector._typing import LifecycleManager, Processor

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
