"""From an MQTT message to a Payload: match subscriptions, decode once, build topics."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from mqtt_collector._config.routes import Decoder
from mqtt_collector._core.payload import Payload, topic_payload
from mqtt_collector._daemon.message import Message, new_message
from mqtt_collector._mqtt.template import TopicTemplate
from mqtt_collector._mqtt.topic import TopicFilter
from mqtt_collector._mqtt.transport import Inbound

__all__ = ["Mapper", "MappingError", "Route", "body_decoder"]

# A user decoder's reason is cut to this many characters: its exception may quote the body.
_REASON_CHARS = 200
# Topics whose routing the mapper remembers (devices publish to a bounded set of topics); past
# this many it forgets them all and starts again, so memory stays bounded whatever arrives.
_CACHED_TOPICS = 4096
_json_decode = json.JSONDecoder().decode  # what json.loads uses, for a str


class MappingError(ValueError):
    """A message that cannot become a Payload; ``reason`` is a short machine-readable cause."""

    def __init__(self, reason: str, message: str) -> None:
        """Say why (``reason``: decode, too_large) and how (``message``)."""
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One subscription as the mapper uses it.

    ``decode`` names the decoding as configured; ``decoder`` is the imported user function
    when it names one. ``decode_body`` is the function the mapper calls, chosen once here so
    that no message pays for the choice.
    """

    filter: str
    matcher: TopicFilter
    templates: tuple[TopicTemplate, ...]
    decode: str
    priority: int | None
    max_body_bytes: int | None
    decoder: Decoder | None = None
    decode_body: Decoder = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Choose the body decoder (the dataclass is frozen, hence ``object.__setattr__``)."""
        object.__setattr__(self, "decode_body", body_decoder(self.decode, self.decoder))


def body_decoder(decode: str, decoder: Decoder | None = None) -> Decoder:
    """Return the function that decodes bodies as ``decode`` says.

    It returns the Message's ``data`` or raises MappingError with reason ``decode``.

    Args:
        decode: ``json``, ``text``, ``bytes``, ``msgpack``, or a user decoder's
            ``"package.module:function"`` (used in its refusals' reasons).
        decoder: the user decoder ``decode`` names, as the configuration imported it.

    Raises:
        ValueError: ``decode`` is not built in and no ``decoder`` is given.
        ImportError: ``msgpack`` without the msgpack package (the configuration checks it).
    """
    built_in = _BUILT_IN.get(decode)
    if built_in is not None:
        return built_in
    if decode == "msgpack":
        return _msgpack_decoder()
    if decoder is None:
        raise ValueError(f"decode {decode!r}: no decoder function given")
    return _user_decoder(decode, decoder)


def _json(body: bytes, topic: str) -> object:  # noqa: ARG001 - every decoder is given the topic
    if not body:
        raise MappingError("decode", "empty body is not JSON")
    try:
        # What json.loads does, without its encoding sniffing for the common case: a first
        # byte that is ASCII and not NUL, and a second that is not NUL, is UTF-8 to it too
        # (UTF-16/32, with or without a BOM, start otherwise).
        if 0 < body[0] < 0x80 and (len(body) == 1 or body[1]):  # noqa: PLR2004 - ASCII
            return _json_decode(body.decode("utf-8", "surrogatepass"))
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MappingError("decode", f"invalid JSON: {exc}") from None


def _text(body: bytes, topic: str) -> object:  # noqa: ARG001 - every decoder is given the topic
    try:
        return body.decode()
    except UnicodeDecodeError as exc:
        raise MappingError("decode", f"invalid UTF-8: {exc}") from None


def _bytes(body: bytes, topic: str) -> object:  # noqa: ARG001 - every decoder is given the topic
    return body


_BUILT_IN: dict[str, Decoder] = {"json": _json, "text": _text, "bytes": _bytes}


def _msgpack_decoder() -> Decoder:
    """Decode MessagePack: strings as ``str``, binary as ``bytes``, timestamps as datetimes.

    Map keys must be strings or bytes (msgpack's ``strict_map_key``): other keys hash
    predictably, so a crafted body could make one dict cost quadratic time to build. Other
    extension types stay ``msgpack.ExtType``.
    """
    import msgpack  # noqa: PLC0415 - an optional extra, imported only when a route uses it

    unpackb = msgpack.unpackb

    def decode(body: bytes, topic: str) -> object:  # noqa: ARG001 - as every decoder
        try:
            return unpackb(body, raw=False, timestamp=3, strict_map_key=True)
        except Exception as exc:  # noqa: BLE001 - whatever the C unpacker raises, the body is bad
            raise MappingError(
                "decode", f"invalid msgpack: {_describe(exc, typed=False)}"
            ) from None

    return decode


def _user_decoder(name: str, decoder: Decoder) -> Decoder:
    """Wrap a user decoder so that whatever it raises refuses the message, with its reason.

    Everything but KeyboardInterrupt and SystemExit (which ask the process to stop) is a
    refusal: the decoder is synchronous, so even a CancelledError is its own, never the
    daemon's, and nothing it raises may end the receive loop.
    """

    def decode(body: bytes, topic: str) -> object:
        try:
            value = decoder(body, topic)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - a decoder's fault refuses one message
            raise MappingError("decode", f"decoder {name} raised {_describe(exc)}") from None
        if inspect.iscoroutine(value):
            value.close()
            raise MappingError(
                "decode", f"decoder {name} returned a coroutine; a decoder must be synchronous"
            )
        return value

    return decode


def _describe(exc: BaseException, *, typed: bool = True) -> str:
    """``Type: message`` (or the message alone, unless ``typed``) on one line, bounded in length.

    An exception without a message is named by its type; one whose ``str()`` fails too.
    """
    try:
        text = " ".join(str(exc).split())
    except Exception:  # noqa: BLE001 - a user's exception class may be as broken as its decoder
        text = ""
    name = type(exc).__name__
    described = (f"{name}: {text}" if typed else text) if text else name
    if len(described) > _REASON_CHARS:
        return described[: _REASON_CHARS - 3] + "..."
    return described


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
        # topic: (first matching route, its captures, Payload topics, priority), or None
        self._routing: dict[str, tuple[Route, tuple[str, ...], tuple[str, ...], int] | None] = {}

    def _route(self, topic: str) -> tuple[Route, tuple[str, ...], tuple[str, ...], int] | None:
        """Work out (and remember) how messages on ``topic`` are routed."""
        found = self.matches(topic)
        routing = None
        if found:
            first, captures = found[0]
            if len(found) == 1 and len(first.templates) == 1:
                topics: tuple[str, ...] = (first.templates[0].render(topic, captures),)
            else:
                topics = _union(topic, found)
            priority = self._default_priority if first.priority is None else first.priority
            routing = (first, captures, topics, priority)
        if len(self._routing) >= _CACHED_TOPICS:
            self._routing.clear()
        self._routing[topic] = routing
        return routing

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
        try:
            routing = self._routing[topic]
        except KeyError:
            routing = self._route(topic)
        if routing is None:
            return None
        first, captures, topics, priority = routing
        body = inbound.body
        limit = first.max_body_bytes
        if limit is not None and len(body) > limit:
            raise MappingError(
                "too_large", f"body of {len(body)} bytes exceeds max_body_bytes ({limit})"
            )
        data = first.decode_body(body, topic)
        message = new_message(
            topic,
            data,
            body,
            inbound.qos,
            inbound.retain,
            captures,
            first.filter,
            time.time(),
            inbound.properties,
        )
        return topic_payload(message, topics, priority)
