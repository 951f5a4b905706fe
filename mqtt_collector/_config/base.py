"""What every configuration model shares, and the turning of validation errors into one line."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    Strict,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydantic import ValidationError
    from pydantic_core import ErrorDetails

__all__ = [
    "ConfigModel",
    "FrozenMapping",
    "LocatedError",
    "NonEmptyText",
    "PublishQoS",
    "SubscribeQoS",
    "Text",
    "describe",
    "format_errors",
    "format_loc",
    "show",
]

_SHOW_CHARS = 60


class ConfigModel(BaseModel):
    """The base of every configuration section: immutable, and unknown keys are errors.

    Strings become numbers or booleans where those are expected, as ``${VAR}`` always yields a
    string. The reverse is refused (see :data:`Text`): YAML has already changed the text.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


Text = Annotated[str, Strict()]
"""A string key: only a YAML string (or a ``${VAR}``) is one.

YAML 1.1 reads ``0755`` as the number 493, ``0123`` as 83, ``yes`` as true and ``2024-01-01``
as a date; turning those back into strings would give ``'493'``, not what was written, so they
are refused with a message saying to quote them.
"""

NonEmptyText = Annotated[Text, Field(min_length=1)]
"""A string key that must not be empty."""


class LocatedError(ValueError):
    """A validator's error about a key below the one being validated.

    Raised inside a validator, it is reported at the validated value's path followed by
    ``loc``: a model validator of ``subscriptions[0]`` raising it with ``("topics", 1)`` gives
    ``subscriptions[0].topics[1]: <message>``.

    Attributes:
        loc: the keys and list indexes below the validated value.
    """

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        """Build the error for ``message`` at the relative path ``loc``."""
        super().__init__(message)
        self.loc = loc


def _qos(value: object, *, why: str) -> int:
    """Accept QoS 0 or 1 (also as a string, as ``${VAR}`` yields); refuse 2, saying ``why``."""
    level = value.strip() if isinstance(value, str) else value
    if isinstance(level, str) and level in {"0", "1", "2"}:
        level = int(level)
    if isinstance(level, int) and not isinstance(level, bool):
        if level in {0, 1}:
            return level
        if level == 2:  # noqa: PLR2004 - the QoS level
            raise ValueError(f"QoS 2 is not supported: {why}; use 1")
    raise ValueError(f"must be 0 or 1, got {show(value)}")


SubscribeQoS = Annotated[
    int,
    PlainValidator(
        partial(
            _qos,
            why=(
                "acknowledgement after processing cannot be completed across a reconnect,"
                " so a message could be lost"
            ),
        )
    ),
]
"""The QoS of a subscription, 0 or 1.

QoS 2 is refused: the MQTT client answers PUBREC on receipt and hands the message over at
PUBREL, and a new client after a reconnect neither knows the resent PUBREL nor sends PUBCOMP, so
the message is lost and a broker in-flight slot stays taken.
"""

PublishQoS = Annotated[
    int,
    PlainValidator(partial(_qos, why="its handshake cannot be completed across a reconnect")),
]
"""The QoS of a publish by the daemon (a dead letter), 0 or 1; QoS 2 is refused as above."""


def _freeze(value: object) -> object:
    """A read-only deep copy of YAML data: mappings become mappingproxies, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


def _thaw(value: object) -> object:
    """Plain dicts and lists again, for serialising."""
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_thaw(item) for item in value]
    return value


def _string_keys(value: object) -> object:
    """Refuse a mapping key YAML read as something else than a string (``0755:`` is 493)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                hint = _quote_hint(key) or f", got {show(key)}"
                raise ValueError(f"key {show(key)} must be a string{hint}")  # noqa: TRY004 - for pydantic
    return value


FrozenMapping = Annotated[
    Mapping[Text, Any],
    BeforeValidator(_string_keys),
    AfterValidator(_freeze),
    PlainSerializer(_thaw),
]
"""A YAML mapping made read-only (deeply); serialised back to plain dicts and lists."""


def format_loc(loc: Sequence[str | int]) -> str:
    """Write a key path the way the YAML reads: ``collectors[1].retry.attempts``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def show(value: object) -> str:
    """Name a YAML value in a message: ``3``, ``'abc'``, ``true``, ``null``, ``a list``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    if len(text) > _SHOW_CHARS:
        return text[:_SHOW_CHARS] + "..."
    return text


def _bound(value: object) -> str:
    """Write a limit from a constraint: ``0`` rather than pydantic's ``0.0``."""
    return f"{value:g}" if isinstance(value, float) else show(value)


# The message for each common pydantic error type; {got} is the offending value.
_MESSAGES = {
    "missing": "required key is missing",
    "extra_forbidden": "unknown key",
    "string_type": "must be a string, got {got}",
    "string_too_short": "must not be empty",
    "int_type": "must be an integer, got {got}",
    "int_parsing": "must be an integer, got {got}",
    "int_from_float": "must be an integer, got {got}",
    "float_type": "must be a number, got {got}",
    "float_parsing": "must be a number, got {got}",
    "bool_type": "must be true or false, got {got}",
    "bool_parsing": "must be true or false, got {got}",
    "dict_type": "must be a mapping, got {got}",
    "model_type": "must be a mapping, got {got}",
    "model_attributes_type": "must be a mapping, got {got}",
    "list_type": "must be a list, got {got}",
    "tuple_type": "must be a list, got {got}",
    "too_short": "must not be empty",
    "path_not_file": "no such file: {path}",
    "path_type": "must be a file path, got {got}",
    "greater_than": "must be greater than {gt}, got {got}",
    "greater_than_equal": "must be at least {ge}, got {got}",
    "less_than": "must be less than {lt}, got {got}",
    "less_than_equal": "must be at most {le}, got {got}",
    "literal_error": "must be {expected}, got {got}",
    "enum": "must be {expected}, got {got}",
}


# What YAML reads an unquoted scalar as, with an example of such text, for "quote it" hints.
_YAML_READS: tuple[tuple[type | tuple[type, ...], str, str], ...] = (
    (bool, "a boolean", "yes"),
    ((int, float), "a number", "0123"),
    ((dt.date, dt.datetime), "a date", "2024-01-01"),
)


def _quote_hint(value: object) -> str | None:
    """Say to quote a scalar that YAML did not keep as text; None for anything else."""
    for kinds, kind, example in _YAML_READS:
        if isinstance(value, kinds):
            return f"; quote it ('{example}' in YAML is read as {kind})"
    return None


def describe(error: ErrorDetails) -> tuple[tuple[str | int, ...], str]:
    """Return the key path and a plain message for one pydantic error."""
    loc = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, LocatedError):
        return (*loc, *cause.loc), str(cause)
    if isinstance(cause, ValueError | AssertionError):
        return loc, str(cause)
    if error["type"] in {"string_type", "path_type"}:
        # Without the value: it may be a password, and it is not what was written anyway.
        hint = _quote_hint(error["input"])
        if hint is not None:
            return loc, f"must be a string{hint}"
    template = _MESSAGES.get(error["type"])
    if template is None:
        return loc, error["msg"]
    values = {key: _bound(value) if key != "expected" else value for key, value in ctx.items()}
    return loc, template.format(**values, got=show(error["input"]), path=repr(error["input"]))


def format_errors(exc: ValidationError, *, prefix: tuple[str | int, ...] = ()) -> str:
    """Turn a ValidationError into one line: ``path: message; path: message``.

    An error about a value is left out when a more precise one about a part of it is
    reported (an empty string in a list says more than "the list is empty").

    Args:
        exc: the error pydantic raised.
        prefix: the key path of what was validated, put in front of every path.
    """
    described = [describe(error) for error in exc.errors(include_url=False)]
    locs = [loc for loc, _ in described]
    lines: list[str] = []
    for loc, message in described:
        if any(len(other) > len(loc) and other[: len(loc)] == loc for other in locs):
            continue
        path = format_loc((*prefix, *loc))
        line = f"{path}: {message}" if path else message
        if line not in lines:
            lines.append(line)
    return "; ".join(lines)
