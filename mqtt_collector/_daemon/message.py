"""The value a processor receives for every MQTT message."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Message"]

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
