"""MQTT topic filters: validation and matching.

Pure functions and small compiled objects, no I/O. The mapper matches every incoming topic
against every subscription's :class:`TopicFilter`, so :meth:`TopicFilter.match` is on the hot
path. Payload-topic templates are in ``template``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "TopicFilter",
    "covers",
    "overlaps",
    "split_shared",
    "validate_filter",
    "validate_topic_name",
]

_SHARE_PREFIX = "$share/"
_WILDCARDS = frozenset({"+", "#"})
# MQTT strings carry a two-byte length prefix (MQTT 5 §1.5.4).
_MAX_BYTES = 65535
_SHOW_CHARS = 60
# How a TopicFilter matches: string equality, a prefix test for a lone trailing '#', or a regex.
_EXACT, _TAIL, _REGEX = 0, 1, 2
# The compiled matcher of filters that need no regex: it is never called for them.
_NO_REGEX = re.compile("(?!)").fullmatch


def _show(value: str) -> str:
    """Return ``repr(value)``, shortened so that an error message stays one readable line."""
    if len(value) > _SHOW_CHARS:
        return repr(value[:_SHOW_CHARS]) + f"... ({len(value)} characters)"
    return repr(value)


def _check_string(value: str, what: str) -> None:
    """Raise ValueError if ``value`` is not a non-empty, encodable, short enough MQTT string."""
    if not value:
        raise ValueError(f"invalid {what} '': must not be empty")
    if "\x00" in value:
        raise ValueError(f"invalid {what} {_show(value)}: contains a NUL character (U+0000)")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"invalid {what} {_show(value)}: contains a lone surrogate"
            f" {value[exc.start]!r}, which is not valid UTF-8"
        ) from None
    if size > _MAX_BYTES:
        raise ValueError(
            f"invalid {what} {_show(value)}: {size} UTF-8 bytes, more than the {_MAX_BYTES} allowed"
        )


def _check_levels(filter_: str, plain: str) -> None:
    """Raise ValueError naming the first misplaced wildcard in the plain filter ``plain``."""
    levels = plain.split("/")
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != last):
            where = "must be the last level" if level == "#" else "must be alone in its level"
            raise ValueError(
                f"invalid topic filter {_show(filter_)}: '#' {where} (level {index + 1}: {level!r})"
            )
        if "+" in level and level != "+":
            raise ValueError(
                f"invalid topic filter {_show(filter_)}: '+' must be alone in its level"
                f" (level {index + 1}: {level!r})"
            )


def split_shared(filter_: str) -> tuple[str | None, str]:
    """Split a shared-subscription filter into its group and the plain filter.

    Args:
        filter_: a topic filter, maybe of the form ``$share/<group>/<filter>``.

    Returns:
        ``(group, filter)`` for a shared subscription, ``(None, filter_)`` otherwise.
        Nothing is validated: call :func:`validate_filter` for that.
    """
    if filter_.startswith(_SHARE_PREFIX):
        group, sep, plain = filter_[len(_SHARE_PREFIX) :].partition("/")
        if sep:
            return group, plain
    return None, filter_


def validate_filter(filter_: str) -> None:
    """Check that ``filter_`` is a valid MQTT 5 topic filter (spec §4.7, §4.8.2).

    Args:
        filter_: the filter, plain or ``$share/<group>/<filter>``.

    Raises:
        ValueError: with a one-line message naming the filter and what is wrong with it.
    """
    _check_string(filter_, "topic filter")
    if filter_.startswith(_SHARE_PREFIX):
        group, sep, plain = filter_[len(_SHARE_PREFIX) :].partition("/")
        if not sep or not plain:
            raise ValueError(
                f"invalid topic filter {_show(filter_)}: a shared subscription needs"
                " '$share/<group>/<filter>' with a non-empty filter"
            )
        if not group:
            raise ValueError(
                f"invalid topic filter {_show(filter_)}: the share group after '$share/' is empty"
            )
        if "+" in group or "#" in group:
            raise ValueError(
                f"invalid topic filter {_show(filter_)}: the share group {group!r}"
                " must not contain '+' or '#'"
            )
        _check_levels(filter_, plain)
        return
    _check_levels(filter_, filter_)


def validate_topic_name(topic: str) -> None:
    """Check that ``topic`` is a valid MQTT topic name, one a message can be published to.

    Args:
        topic: the topic name (no wildcards allowed).

    Raises:
        ValueError: with a one-line message naming the topic and what is wrong with it.
    """
    _check_string(topic, "topic name")
    for wildcard in "+#":
        if wildcard in topic:
            raise ValueError(
                f"invalid topic name {_show(topic)}: contains the wildcard {wildcard!r},"
                " which only topic filters may use"
            )


class TopicFilter:
    """A validated MQTT topic filter compiled for fast matching against topic names.

    Attributes:
        filter: the filter as given, maybe with a ``$share/<group>/`` prefix.
        plain: the filter without the ``$share`` prefix; this is what topics are matched against.
        group: the share group, or None for an ordinary subscription.
        wildcards: the number of ``+`` and ``#`` levels, so the number of captures of a match.
        kinds: the wildcard behind each capture, ``"+"`` or ``"#"``, in order.
    """

    __slots__ = (
        "_how",
        "_no_dollar",
        "_regex",
        "_tail",
        "filter",
        "group",
        "kinds",
        "plain",
        "wildcards",
    )

    filter: str
    plain: str
    group: str | None
    wildcards: int
    kinds: tuple[str, ...]
    _how: int
    _no_dollar: bool
    _regex: Callable[[str], re.Match[str] | None]
    _tail: str

    def __init__(self, filter_: str) -> None:
        """Validate and compile ``filter_``.

        Raises:
            ValueError: if ``filter_`` is not a valid topic filter (see :func:`validate_filter`).
        """
        validate_filter(filter_)
        self.filter = filter_
        self.group, self.plain = split_shared(filter_)
        levels = self.plain.split("/")
        self.kinds = tuple(level for level in levels if level in {"+", "#"})
        self.wildcards = len(self.kinds)
        # Spec §4.7.2: a filter starting with a wildcard must not match topics starting with '$'.
        self._no_dollar = levels[0] in {"+", "#"}
        self._regex = _NO_REGEX
        self._tail = ""
        if not self.kinds:
            self._how = _EXACT
        elif self.kinds == ("#",):
            # "a/b/#" or "#": a prefix test beats the regex engine (measured about 20% quicker).
            self._how = _TAIL
            self._tail = self.plain[:-1]
        else:
            self._how = _REGEX
            self._regex = re.compile(_filter_pattern(levels), re.DOTALL).fullmatch

    def match(self, topic: str) -> tuple[str, ...] | None:
        """Match a topic name against this filter.

        Args:
            topic: the MQTT topic a message was published to.

        Returns:
            None if the topic does not match; otherwise the captures: one string per ``+``
            level and, for a trailing ``#``, the rest of the topic joined by ``/`` (``""`` when
            ``a/#`` matches ``a``). A filter without wildcards gives ``()``.
        """
        how = self._how
        if how == _EXACT:
            return () if topic == self.plain else None
        if self._no_dollar and topic[:1] == "$":
            return None
        if how == _TAIL:
            tail = self._tail
            if topic.startswith(tail):
                return (topic[len(tail) :],)
            # "a/#" also matches its parent level "a" (spec §4.7.1.2), with nothing captured.
            return ("",) if topic == tail[:-1] else None
        found = self._regex(topic)
        # An absent "#" group (topic equal to the parent level) is reported as "".
        return None if found is None else found.groups("")

    def topic_pattern(self) -> str:
        """Return a regex for every topic name this filter matches (and some '$' ones too)."""
        return _filter_pattern(self.plain.split("/"), capture=False)

    def __repr__(self) -> str:
        """Show the filter as given."""
        return f"TopicFilter({self.filter!r})"

    def __eq__(self, other: object) -> bool:
        """Filters are equal when written the same way."""
        if not isinstance(other, TopicFilter):
            return NotImplemented
        return self.filter == other.filter

    def __hash__(self) -> int:
        """Hash by the filter string, consistently with ``__eq__``."""
        return hash(self.filter)


def _filter_pattern(levels: list[str], *, capture: bool = True) -> str:
    """Translate a filter's levels into a regex (groups around wildcards when ``capture``).

    Without ``capture`` it describes topic names, which never hold '+' or '#'.
    """
    one = "([^/]*)" if capture else "[^/+#]*"
    rest = "(.*)" if capture else "[^+#]*"
    parts = [one if level == "+" else re.escape(level) for level in levels]
    if levels[-1] == "#":
        if len(levels) == 1:
            return rest
        # "a/#" also matches the parent "a" (spec §4.7.1.2), hence the optional tail.
        return "/".join(parts[:-1]) + f"(?:/{rest})?"
    return "/".join(parts)


def covers(outer: str, inner: str) -> bool:
    """Whether every topic ``inner`` matches is also matched by ``outer`` (same share group)."""
    outer_group, outer_plain = split_shared(outer)
    inner_group, inner_plain = split_shared(inner)
    if outer_group != inner_group:
        return False
    big, small = outer_plain.split("/"), inner_plain.split("/")
    # A filter starting with a wildcard matches no topic starting with '$' (MQTT 5 §4.7.2).
    if big[0] in _WILDCARDS and small[0] not in _WILDCARDS and small[0].startswith("$"):
        return False
    for index, level in enumerate(big):
        if level == "#":
            return True
        if index >= len(small) or small[index] == "#":
            return False
        if level not in {"+", small[index]}:
            return False
    return len(small) == len(big)


def overlaps(first: str, second: str) -> bool:
    """Whether some topic matches both filters (same share group)."""
    first_group, first_plain = split_shared(first)
    second_group, second_plain = split_shared(second)
    if first_group != second_group:
        return False
    a, b = first_plain.split("/"), second_plain.split("/")
    for x, y in ((a[0], b[0]), (b[0], a[0])):
        if x in _WILDCARDS and y not in _WILDCARDS and y.startswith("$"):
            return False
    for index in range(max(len(a), len(b))):
        left = a[index] if index < len(a) else None
        right = b[index] if index < len(b) else None
        if "#" in {left, right}:
            return True
        if left is None or right is None:
            return False
        if left != right and "+" not in {left, right}:
            return False
    return True
