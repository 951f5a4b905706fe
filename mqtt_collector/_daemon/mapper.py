"""From an MQTT message to a Payload: match subscriptions, decode once, build topics."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from mqtt_collector._core.payload import Delivery, Payload
from mqtt_collector._daemon.message import Message
from mqtt_collector._mqtt.template import TopicTemplate
from mqtt_collector._mqtt.topic import TopicFilter
from mqtt_collector._mqtt.transport import Inbound

__all__ = ["Mapper", "MappingError", "Route"]


class MappingError(ValueError):
    """A message that cannot become a Payload; ``reason`` is a short machine-readable cause."""

    def __init__(self, reason: str, message: str) -> None:
        """Say why (``reason``: decode, too_large) and how (``message``)."""
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One subscription as the mapper uses it."""

    filter: str
    matcher: TopicFilter
    templates: tuple[TopicTemplate, ...]
    decode: str
    priority: int | None
    max_body_bytes: int | None


def _decode(kind: str, body: bytes) -> object:
    if kind == "json":
        if not body:
            raise MappingError("decode", "empty body is not JSON")
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise MappingError("decode", f"invalid JSON: {exc}") from None
    if kind == "text":
        try:
            return body.decode()
        except UnicodeDecodeError as exc:
            raise MappingError("decode", f"invalid UTF-8: {exc}") from None
    return body


def _union(topic: str, found: Sequence[tuple[Route, tuple[str, ...]]]) -> tuple[str, ...]:
    """Every matching route's rendered topics, each once, in config order."""
    names = {
        template.render(topic, captures): None
        for route, captures in found
        for template in route.templates
    }
    return tuple(names)


class Mapper:
    """Turns messages into ``Payload(Message, delivery=TOPIC)`` by the configured routes.

    The first route (in config order) whose filter matches decides the decoding, the
    captures and the priority; the Payload topics are the union over every matching route.
    """

    def __init__(self, routes: Sequence[Route], *, default_priority: int) -> None:
        """Map by ``routes``; ``default_priority`` where a route sets none."""
        self._routes = tuple(routes)
        self._default_priority = default_priority

    def matches(self, topic: str) -> list[tuple[Route, tuple[str, ...]]]:
        """Return each route matching ``topic`` with its captures, in config order."""
        found = []
        for route in self._routes:
            captures = route.matcher.match(topic)
            if captures is not None:
                found.append((route, captures))
        return found

    def payload_topics(self, topic: str) -> tuple[str, ...]:
        """Return the Payload topics a message on ``topic`` gets (empty if no route matches)."""
        return _union(topic, self.matches(topic))

    def map(self, inbound: Inbound) -> Payload[Message] | None:
        """Return the Payload for ``inbound``, or None if no route matches its topic.

        Raises:
            MappingError: the body is too large or cannot be decoded.
        """
        topic = inbound.topic
        found = self.matches(topic)
        if not found:
            return None
        first, captures = found[0]
        body = inbound.body
        limit = first.max_body_bytes
        if limit is not None and len(body) > limit:
            raise MappingError(
                "too_large", f"body of {len(body)} bytes exceeds max_body_bytes ({limit})"
            )
        data = _decode(first.decode, body)
        if len(found) == 1 and len(first.templates) == 1:
            topics: tuple[str, ...] = (first.templates[0].render(topic, captures),)
        else:
            topics = _union(topic, found)
        message = Message(
            topic=topic,
            data=data,
            raw=body,
            qos=inbound.qos,
            retain=inbound.retain,
            captures=captures,
            subscription=first.filter,
            received_at=time.time(),
            properties=inbound.properties,
        )
        priority = first.priority
        return Payload(
            message,
            delivery=Delivery.TOPIC,
            topics=topics,
            priority=self._default_priority if priority is None else priority,
        )
