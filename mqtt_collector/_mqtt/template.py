"""Payload-topic templates such as ``site/{1}``: parsed once, rendered for every message."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from mqtt_collector._mqtt.topic import TopicFilter

__all__ = ["TopicTemplate"]

# Template field names are digits (captures) or "topic"; anything else is rejected by name.
_CAPTURE_NAME = re.compile(r"[0-9]+")


class TopicTemplate:
    """A Payload-topic template such as ``site/{1}``, parsed once and rendered per message.

    ``{1}``, ``{2}``, ... are the filter's wildcard captures (1-based), ``{topic}`` is the
    whole MQTT topic, ``{{`` and ``}}`` are literal braces.

    Attributes:
        template: the template as given.
        wildcards: the number of captures the filter it belongs to provides.
    """

    __slots__ = ("_format", "_parts", "template", "wildcards")

    template: str
    wildcards: int

    def __init__(self, template: str, *, wildcards: int) -> None:
        """Parse ``template`` for a filter with ``wildcards`` captures.

        Raises:
            ValueError: for an empty template, unbalanced braces, ``{0}``, a capture number
                above ``wildcards`` or an unknown field name.
        """
        self.template = template
        self.wildcards = wildcards
        # Literal strings, capture indexes (0-based) and None for {topic}, in order.
        self._parts: tuple[str | int | None, ...] = _parse_template(template, wildcards)
        # A str.format string built from the parsed parts, so it holds nothing but our own
        # positional fields ({0} the topic, {N} capture N): measured about twice as quick as
        # joining the parts in Python.
        self._format: Callable[..., str] = "".join(
            _escape_braces(part)
            if isinstance(part, str)
            else ("{0}" if part is None else f"{{{part + 1}}}")
            for part in self._parts
        ).format

    def render(self, topic: str, captures: tuple[str, ...]) -> str:
        """Build the Payload topic for one message.

        Args:
            topic: the MQTT topic of the message.
            captures: what the filter's wildcards matched (from :meth:`TopicFilter.match`).

        Returns:
            The template with every field replaced.
        """
        return self._format(topic, *captures)

    def could_produce(self, payload_topic: str, *, filter_: TopicFilter) -> bool:
        """Tell whether some topic matched by ``filter_`` could render to ``payload_topic``.

        Conservative: it may say True for a topic no message will produce, never False for
        one that some message would. A capture or ``{topic}`` never yields '+' or '#' (topic
        names cannot hold them), so ``site/+`` is producible only by a template written so.

        Args:
            payload_topic: a Payload topic a collector listens to.
            filter_: the filter this template's captures come from.

        Raises:
            ValueError: if the template names a capture ``filter_`` does not have.
        """
        pieces: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                pieces.append(re.escape(part))
            elif part is None:
                pieces.append(f"(?:{filter_.topic_pattern()})")
            elif part < filter_.wildcards:
                # A capture is part of a topic name, so it never holds a wildcard character.
                pieces.append("[^/+#]*" if filter_.kinds[part] == "+" else "[^+#]*")
            else:
                raise ValueError(
                    f"topic template {self.template!r}: '{{{part + 1}}}' names capture"
                    f" {part + 1} but the filter {filter_.filter!r} has {_count(filter_.wildcards)}"
                )
        return re.fullmatch("".join(pieces), payload_topic, re.DOTALL) is not None

    def __repr__(self) -> str:
        """Show the template and its capture count."""
        return f"TopicTemplate({self.template!r}, wildcards={self.wildcards})"

    def __eq__(self, other: object) -> bool:
        """Templates are equal when written the same way for the same number of captures."""
        if not isinstance(other, TopicTemplate):
            return NotImplemented
        return (self.template, self.wildcards) == (other.template, other.wildcards)

    def __hash__(self) -> int:
        """Hash consistently with ``__eq__``."""
        return hash((self.template, self.wildcards))


def _escape_braces(literal: str) -> str:
    """Double the braces of a literal so that str.format gives it back unchanged."""
    return literal.replace("{", "{{").replace("}", "}}")


def _count(wildcards: int) -> str:
    """Say how many wildcards a filter has, in words that read well after 'has'."""
    if wildcards == 0:
        return "no wildcards"
    return f"only {wildcards} wildcard{'s' if wildcards != 1 else ''}"


def _parse_template(template: str, wildcards: int) -> tuple[str | int | None, ...]:
    """Split a template into literals, 0-based capture indexes and None for ``{topic}``."""
    where = f"topic template {template!r}"
    if not template:
        raise ValueError(f"{where}: must not be empty")
    parts: list[str | int | None] = []
    literal: list[str] = []
    index, end = 0, len(template)
    while index < end:
        char = template[index]
        if char == "}":
            if template.startswith("}}", index):
                literal.append("}")
                index += 2
                continue
            raise ValueError(
                f"{where}: unbalanced '}}' at position {index} (write '}}}}' for '}}')"
            )
        if char != "{":
            literal.append(char)
            index += 1
            continue
        if template.startswith("{{", index):
            literal.append("{")
            index += 2
            continue
        close = template.find("}", index)
        opened = template.find("{", index + 1)
        if close < 0 or 0 <= opened < close:
            raise ValueError(
                f"{where}: unbalanced '{{' at position {index} (write '{{{{' for '{{')"
            )
        name = template[index + 1 : close]
        if literal:
            parts.append("".join(literal))
            literal.clear()
        parts.append(_field(where, name, wildcards))
        index = close + 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def _field(where: str, name: str, wildcards: int) -> int | None:
    """Resolve a field name to a 0-based capture index, or None for ``{topic}``."""
    if name == "topic":
        return None
    if not _CAPTURE_NAME.fullmatch(name):
        raise ValueError(
            f"{where}: unknown field '{{{name}}}'; use {{1}}, {{2}}, ... for the filter's"
            " wildcard captures or {topic} for the MQTT topic"
        )
    number = int(name)
    if number == 0:
        raise ValueError(f"{where}: '{{0}}' is not a capture; captures are numbered from {{1}}")
    if name != str(number):
        raise ValueError(f"{where}: write '{{{number}}}' instead of '{{{name}}}'")
    if number > wildcards:
        raise ValueError(
            f"{where}: '{{{number}}}' names capture {number} but the filter has {_count(wildcards)}"
        )
    return number - 1
