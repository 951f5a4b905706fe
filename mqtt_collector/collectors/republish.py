"""A collector that publishes each message again, to a topic built from its own: MQTT to MQTT.

Use it as::

    processor: mqtt_collector.collectors.republish:publish
    options: {topic: "clean/{1}/{2}", qos: 1, retain: true}

The ``topic`` template is written as a subscription's ``topics:`` templates are: ``{1}``,
``{2}``, ... are the wildcard captures of the filter the message matched, ``{topic}`` its whole
topic, ``{{`` and ``}}`` literal braces. From ``sensors/+/+/reading``, the message on
``sensors/north/t1/reading`` goes to ``clean/north/t1``.

It publishes through ``ctx.publish``, the daemon's own publishing connection (the one dead
letters take), and returns only once the broker has acknowledged the publish (QoS 1): so the
message in hand is acknowledged only after its copy is with the broker. A publish that fails
(connection lost, or an MQTT 5 PUBACK refusing it, e.g. the broker's ACL) is an ``Error``,
retried and dead-lettered per the collector's ``retry`` and ``dead_letter``; a message given up
on that way is acknowledged without its copy, as for any collector. Delivery is at least once:
a message republished but not yet acknowledged when the daemon stops is republished when the
broker sends it again. Messages are published concurrently (up to ``queue.max_consumers`` at
once), so copies may leave in another order than the originals came.

**Loops.** An output topic that the daemon's own subscriptions match would bring each copy back
to be republished again, without end. The options alone do not say which filters feed the
collector, so this cannot be refused when the configuration is loaded: keep the output outside
every subscription that feeds the collector (``clean/...`` from ``sensors/...``). What can be
caught is caught per message: a copy whose topic the original's own filter matches is not
published (an ``Error`` saying so). A loop through two subscriptions (each one's output matched
by the other) is not caught.

Options:
    topic: the output topic template (required), without ``+`` or ``#``; not starting with
        ``$`` (the broker's own topics). A capture the message's filter does not have is an
        ``Error`` for that message.
    qos: the QoS to publish at, 0 or 1 (default 1). At 0 nothing acknowledges the publish:
        the original is acknowledged once the copy is handed to the connection.
    retain: publish the copies as retained messages (default false): the broker keeps the
        last one on each output topic for subscribers to come. An empty body then clears it.
    body: ``raw`` (default: the body bytes as received) or ``json`` (the decoded ``data``
        encoded again as compact JSON; a value JSON cannot hold, such as ``bytes`` from
        ``decode: bytes`` or NaN, is an ``Error``).

MQTT 5 properties of the original (user properties, content type) are not copied.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import PlainValidator, PrivateAttr

from mqtt_collector import ConfigError, Context, Error, Message, Ok, Payload, Result
from mqtt_collector.collectors import (
    _Boolean,
    _choice,
    _dump_json,
    _Options,
    _read_options,
    _string,
)

__all__ = ["Options", "publish"]

_CAPTURE = re.compile(r"[1-9][0-9]*")
_Part = str | int | None  # a literal, a 0-based capture index, or None for {topic}


def _parse(template: str) -> tuple[_Part, ...]:
    """Split ``template`` into literals, capture indexes and None for ``{topic}``.

    Raises:
        ValueError: unbalanced braces, an unknown field, a wildcard or a leading ``$``.
    """
    parts: list[_Part] = []
    literal: list[str] = []
    index = 0
    while index < len(template):
        char = template[index]
        if template.startswith(("{{", "}}"), index):
            literal.append(char)
            index += 2
        elif char == "}":
            raise ValueError(f"unbalanced '}}' at position {index} (write '}}}}' for '}}')")
        elif char != "{":
            literal.append(char)
            index += 1
        else:
            close = template.find("}", index)
            if close < 0 or "{" in template[index + 1 : close]:
                raise ValueError(f"unbalanced '{{' at position {index} (write '{{{{' for '{{')")
            if literal:
                parts.append("".join(literal))
                literal.clear()
            parts.append(_field(template[index + 1 : close]))
            index = close + 1
    if literal:
        parts.append("".join(literal))
    text = "".join(part for part in parts if isinstance(part, str))
    if "+" in text or "#" in text or "\0" in text:
        raise ValueError("a topic has no wildcards: '+', '#' (or NUL) are not allowed")
    if isinstance(parts[0], str) and parts[0].startswith("$"):
        raise ValueError("must not start with '$' (topics the broker keeps for itself)")
    return tuple(parts)


def _field(name: str) -> int | None:
    """A 0-based capture index for ``{1}``, ``{2}``, ...; None for ``{topic}``."""
    if name == "topic":
        return None
    if not _CAPTURE.fullmatch(name):
        raise ValueError(
            f"unknown field '{{{name}}}'; use {{1}}, {{2}}, ... for the filter's wildcard"
            " captures or {topic} for the message's topic"
        )
    return int(name) - 1


def _template(value: object) -> str:
    """Check the ``topic`` option: a topic template the daemon's syntax allows."""
    template = _string(value)
    _parse(template)
    return template


def _qos(value: object) -> int:
    """Check the ``qos`` option: 0 or 1 (QoS 2 is refused everywhere in the daemon)."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in (0, 1):
        raise ValueError(f"must be 0 or 1, got {value!r}")
    return int(value)


class Options(_Options):
    """The republish collector's options, as described in the module docstring."""

    topic: Annotated[str, PlainValidator(_template)]
    qos: Annotated[int, PlainValidator(_qos)] = 1
    retain: _Boolean = False
    body: Annotated[str, _choice("raw", "json")] = "raw"

    _parts: tuple[_Part, ...] = PrivateAttr(default=())

    def model_post_init(self, _context: Any, /) -> None:
        """Parse the template once."""
        self._parts = _parse(self.topic)

    def render(self, message: Message) -> str:
        """Return the output topic for ``message``.

        Raises:
            ValueError: the template names a capture the message's filter does not have.
        """
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
            elif part is None:
                out.append(message.topic)
            elif part < len(message.captures):
                out.append(message.captures[part])
            else:
                raise ValueError(
                    f"topic template {self.topic!r}: '{{{part + 1}}}' names capture {part + 1}"
                    f" but the filter {message.subscription!r} has"
                    f" {len(message.captures)} wildcard(s)"
                )
        return "".join(out)


def _matches(topic_filter: str, topic: str) -> bool:
    """Whether MQTT ``topic_filter`` (maybe ``$share/<group>/...``) matches ``topic``."""
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[-1]
    levels, wanted = topic.split("/"), topic_filter.split("/")
    if topic.startswith("$") and wanted[0] in ("+", "#"):
        return False  # wildcards do not reach the broker's own topics
    for index, level in enumerate(wanted):
        if level == "#":
            return True
        if index >= len(levels) or (level not in ("+", levels[index])):
            return False
    return len(levels) == len(wanted)


def _body(message: Message, options: Options) -> bytes:
    """The body to publish: as received, or ``data`` as compact JSON.

    Raises:
        ValueError: ``body: json`` and a ``data`` JSON cannot hold (TypeError: ``bytes``).
    """
    if options.body == "raw":
        return message.raw
    if isinstance(message.data, bytes | bytearray):
        raise TypeError("body: json: the message was decoded as bytes (decode: bytes); use raw")
    try:
        text = _dump_json(message.data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"body: json: the data cannot be written as JSON: {exc}") from None
    return text.encode("utf-8")


async def publish(payload: Payload[Message], ctx: Context) -> Result:
    """Publish the message in ``payload.value`` to its output topic; ``Ok(topic)`` once acked.

    Anything ``ctx.publish`` raises (TransportError, PublishRefusedError) propagates, and the
    daemon makes it this message's ``Error``.
    """
    options = _read_options(ctx, Options)
    send = getattr(ctx, "publish", None)
    if send is None:
        return Error(
            ConfigError(
                f"collector {getattr(ctx, 'key', '<unnamed>')!r}: republish needs ctx.publish,"
                " which the daemon gives every collector"
            )
        )
    message = payload.value
    try:
        topic = options.render(message)
        body = _body(message, options)
    except (TypeError, ValueError) as exc:
        return Error(exc)
    if _matches(message.subscription, topic):
        return Error(
            ValueError(
                f"not published to {topic!r}: the filter {message.subscription!r} matches it,"
                " so the copy would come back to be republished without end"
            )
        )
    await send(topic, body, qos=options.qos, retain=options.retain)
    return Ok(topic)
