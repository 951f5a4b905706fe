"""The exceptions mqtt-collector raises.

Every exception derives from one root, so a caller can catch them all::

    CollectorError
    ├── ConfigError          a configuration file or value is wrong
    ├── QueueError           the collector queue was misused
    │   ├── QueueShutDownError   send() after the queue was shut down
    │   └── LifecycleError       a collector's lifecycle failed to set up
    ├── TransportError       the MQTT connection failed
    │   └── PublishRefusedError  the broker refused a publish (a failure reason code)
    └── IncompatibleClientError  aiomqtt/paho-mqtt do not work as the transport relies on
"""

from __future__ import annotations

__all__ = [
    "CollectorError",
    "ConfigError",
    "IncompatibleClientError",
    "LifecycleError",
    "PublishRefusedError",
    "QueueError",
    "QueueShutDownError",
    "TransportError",
]


class CollectorError(Exception):
    """The root of every exception raised by mqtt-collector."""


class ConfigError(CollectorError):
    """A configuration file or value is wrong; the message names the file and the key path."""


class QueueError(CollectorError):
    """The collector queue was used in a way it does not allow."""


class QueueShutDownError(QueueError):
    """A payload was sent to a collector queue that is shut down (or shutting down)."""


class LifecycleError(QueueError):
    """A collector's lifecycle raised while being set up; ``__cause__`` holds the original."""

    def __init__(self, key: str, cause: BaseException) -> None:
        """Build the error for the collector ``key`` whose lifecycle raised ``cause``."""
        super().__init__(f"collector {key!r}: lifecycle setup failed: {cause!r}")
        self.key = key


class TransportError(CollectorError):
    """The MQTT connection could not be made or was lost."""


class PublishRefusedError(TransportError):
    """The broker answered a publish with a failure reason code (MQTT 5; 0x80 and up)."""

    def __init__(self, topic: str, reason: str, code: int) -> None:
        """Build the error for the publish to ``topic`` refused with ``code`` (``reason``)."""
        super().__init__(f"the broker refused the publish to {topic!r}: 0x{code:02X} {reason}")
        self.topic = topic
        self.reason_code = code


class IncompatibleClientError(CollectorError):
    """aiomqtt or paho-mqtt no longer works the way the transport relies on.

    Fatal: no retry can help. The message says what was found and names the installed
    versions; install the versions ``pyproject.toml`` allows.
    """
