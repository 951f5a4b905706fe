"""The value a processor receives for every MQTT message."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Message", "new_message"]

_NO_PROPERTIES: MappingProxyType[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One MQTT message as delivered to collectors in ``payload.value``.

    Attributes:
        topic: the MQTT topic it was published to.
        data: the body decoded as the matching subscription says (json, text or bytes).
        raw: the body as received.
        qos: the QoS it was received with.
        retain: the retain flag as received.
        captures: the topic levels matched by the filter's wildcards, in order
            (``#`` gives the rest of the topic joined by ``/``).
        subscription: the filter that matched.
        received_at: Unix time of receipt.
        properties: MQTT 5 properties (user properties, content type, ...); empty on 3.1.1.
    """

    topic: str
    data: Any
    raw: bytes
    qos: int = 0
    retain: bool = False
    captures: tuple[str, ...] = ()
    subscription: str = ""
    received_at: float = 0.0
    properties: Mapping[str, Any] = field(default_factory=lambda: _NO_PROPERTIES)


_new = object.__new__
_set_topic, _set_data, _set_raw, _set_qos, _set_retain = (
    Message.__dict__[name].__set__ for name in ("topic", "data", "raw", "qos", "retain")
)
_set_captures, _set_subscription, _set_received_at, _set_properties = (
    Message.__dict__[name].__set__
    for name in ("captures", "subscription", "received_at", "properties")
)


def new_message(  # noqa: PLR0917 - every field, positionally, for speed
    topic: str,
    data: Any,
    raw: bytes,
    qos: int,
    retain: bool,  # noqa: FBT001 - positional on purpose
    captures: tuple[str, ...],
    subscription: str,
    received_at: float,
    properties: Mapping[str, Any],
) -> Message:
    """Return ``Message(topic=topic, ...)`` built field by field, as the mapper does per message.

    The same object the dataclass makes, in less time: a frozen dataclass's ``__init__``
    goes through ``object.__setattr__`` for each field; this sets the slots directly.
    """
    message = _new(Message)
    _set_topic(message, topic)
    _set_data(message, data)
    _set_raw(message, raw)
    _set_qos(message, qos)
    _set_retain(message, retain)
    _set_captures(message, captures)
    _set_subscription(message, subscription)
    _set_received_at(message, received_at)
    _set_properties(message, properties)
    return message
