"""The postgres collector's rows: the ``columns:`` option parsed, and a message made a row.

Every value is made ready for a text ``COPY``: PostgreSQL parses it by the column's type.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mqtt_collector import Message
from mqtt_collector.collectors import _dump_json

__all__ = [
    "DEFAULT_TYPES",
    "HASH",
    "NAME",
    "Column",
    "Row",
    "Shape",
    "check_columns",
    "table_shape",
]

NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_. ]*(\([0-9, ]*\))?[A-Za-z0-9_ ]*(\[[0-9]*\])*")
_CAPTURE = re.compile(r"\{([1-9][0-9]*)\}")
HASH = "message_hash"
_SOURCE_TYPES = {
    "topic": "text",
    "{topic}": "text",
    "captures": "text[]",
    "data": "jsonb",
    "payload": "bytea",
    "received_at": "timestamptz",
    "qos": "smallint",
    "retain": "boolean",
    "subscription": "text",
}
_SOURCES = (
    "topic, {1}, {2}..., captures, data, data.<field>..., payload, received_at, qos, retain,"
    " subscription"
)
DEFAULT_TYPES = {
    "topic": "text NOT NULL",
    "captures": "text[] NOT NULL",
    "data": "jsonb",
    "payload": "bytea",
    "received_at": "timestamptz NOT NULL",
    "qos": "smallint NOT NULL",
    "retain": "boolean NOT NULL",
}
Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Column:
    """One column of ``columns:``: its name, where its value comes from, its PostgreSQL type."""

    name: str
    source: str
    type: str


def _source_type(source: str) -> str:
    """The default type of ``source``; ValueError naming the known sources if it is none."""
    if source in _SOURCE_TYPES:
        return _SOURCE_TYPES[source]
    if _CAPTURE.fullmatch(source):
        return "text"
    if source.startswith("data.") and all(source.removeprefix("data.").split(".")):
        return "jsonb"
    raise ValueError(f"unknown source {source!r} (known: {_SOURCES})")


def _column(name: object, spec: object) -> Column:
    """Check one ``columns:`` entry, ``name: SOURCE`` or ``name: SOURCE::TYPE``."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(
            f"column {name!r}: a name must be a lower-case SQL identifier (a-z, 0-9, _)"
        )
    if name == HASH:
        raise ValueError(f"column {name!r}: the name is kept for idempotent mode's hash")
    if isinstance(spec, Mapping):
        raise ValueError(  # noqa: TRY004 - pydantic reports a ValueError
            f"column {name!r}: quote the source ({{1}} unquoted is a YAML mapping)"
        )
    if not isinstance(spec, str):
        raise ValueError(  # noqa: TRY004 - pydantic reports a ValueError
            f"column {name!r}: must be a source such as 'data.x::real', got {spec!r}"
        )
    source, cast, declared = (part.strip() for part in spec.partition("::"))
    try:
        default = _source_type(source)
    except ValueError as exc:
        raise ValueError(f"column {name!r}: {exc}") from None
    column_type = " ".join(declared.split()) if cast else default
    if not _TYPE.fullmatch(column_type):
        raise ValueError(f"column {name!r}: {declared!r} is not a PostgreSQL type name")
    return Column(name, source, column_type)


def check_columns(value: object) -> tuple[Column, ...] | None:
    """Check the ``columns`` option: a mapping of column names to sources."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise ValueError("must be a mapping of column names to sources, e.g. {celsius: data.c}")
    return tuple(_column(name, spec) for name, spec in value.items())


def _json_text(value: Any) -> str | None:
    """``value`` as JSON text for a json/jsonb column; ValueError if jsonb cannot hold it."""
    if value is None:
        return None
    if isinstance(value, bytes):
        raise TypeError("a bytes body is not JSON")
    text = _dump_json(value)
    if "\\u0000" in text:
        raise ValueError("jsonb cannot hold a NUL character (\\u0000)")
    return text


def _text_value(value: Any) -> Any:
    """A value psycopg's text COPY takes as it is; booleans, objects and lists as JSON text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


def _array(items: Sequence[Any]) -> str:
    """A PostgreSQL array literal of ``items`` as text (quicker than psycopg's list dumper)."""
    elements = (
        "NULL"
        if item is None
        else '"' + str(_text_value(item)).replace("\\", "\\\\").replace('"', '\\"') + '"'
        for item in items
    )
    return "{" + ",".join(elements) + "}"


def _field(data: Any, path: Sequence[str]) -> Any:
    """Follow ``path`` into decoded JSON: keys of objects, indexes of lists; None if absent."""
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _extractor(source: str) -> Callable[[Message], Any]:
    """The function taking a column's raw value out of a message."""
    if capture := _CAPTURE.fullmatch(source):
        index = int(capture[1]) - 1
        return lambda m: m.captures[index] if index < len(m.captures) else None
    if source.startswith("data."):
        path = tuple(source.removeprefix("data.").split("."))
        return lambda m: _field(m.data, path)
    extractors: dict[str, Callable[[Message], Any]] = {
        "topic": lambda m: m.topic,
        "{topic}": lambda m: m.topic,
        "captures": lambda m: _array(m.captures),
        "data": lambda m: m.data,
        "payload": lambda m: m.raw,
        "received_at": lambda m: datetime.fromtimestamp(m.received_at, UTC),
        "qos": lambda m: m.qos,
        "retain": lambda m: m.retain,
        "subscription": lambda m: m.subscription,
    }
    return extractors[source]


def _converter(column: Column) -> Callable[[Message], Any]:
    """The function giving ``column``'s value for a message, ready for a text COPY."""
    extract = _extractor(column.source)
    base = column.type.lower()
    if base in {"json", "jsonb"}:

        def json_value(message: Message) -> Any:
            try:
                return _json_text(extract(message))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"column {column.name!r}: {exc}") from None

        return json_value
    if base.endswith("]"):
        return lambda m: (
            _array(value) if isinstance(value := extract(m), list) else _text_value(value)
        )
    return lambda m: _text_value(extract(m))


def _default_row(message: Message) -> Row:
    """The default table's row: data as jsonb when it can be, else the raw body."""
    try:
        data = None if isinstance(message.data, bytes) else _json_text(message.data)
    except (TypeError, ValueError):
        data = None
    return (
        message.topic,
        _array(message.captures),
        data,
        message.raw if data is None else None,
        datetime.fromtimestamp(message.received_at, UTC),
        message.qos,
        message.retain,
    )


def _message_hash(message: Message) -> bytes:
    """The idempotency key without ``key``: topic and body (a topic holds no NUL)."""
    return hashlib.blake2b(message.topic.encode() + b"\0" + message.raw, digest_size=16).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Shape:
    """What the collector writes: column names and types, and how a message becomes a row."""

    names: tuple[str, ...]
    types: tuple[str, ...]
    key: tuple[str, ...]  # the unique key in idempotent mode, () otherwise
    row: Callable[[Message], Row]


def _row_of_columns(columns: Sequence[Column]) -> Callable[[Message], Row]:
    """The row builder of ``columns:``: each column's value, converted for its type."""
    converters = tuple(_converter(column) for column in columns)
    return lambda message: tuple(convert(message) for convert in converters)


def _row_with_hash(build: Callable[[Message], Row]) -> Callable[[Message], Row]:
    """``build``'s row followed by the message's hash (idempotent mode without ``key``)."""
    return lambda message: (*build(message), _message_hash(message))


def table_shape(
    columns: Sequence[Column] | None, *, idempotent: bool, key: tuple[str, ...] | None
) -> Shape:
    """The table shape and row builder of the ``columns``, ``idempotent`` and ``key`` options."""
    if columns is None:
        names, types = tuple(DEFAULT_TYPES), tuple(DEFAULT_TYPES.values())
        build: Callable[[Message], Row] = _default_row
    else:
        names = tuple(column.name for column in columns)
        types = tuple(column.type for column in columns)
        build = _row_of_columns(columns)
    if not idempotent:
        return Shape(names=names, types=types, key=(), row=build)
    if key is None:
        return Shape(
            names=(*names, HASH),
            types=(*types, "bytea NOT NULL"),
            key=(HASH,),
            row=_row_with_hash(build),
        )
    # The key's columns are NOT NULL: NULLs are distinct, so would never conflict.
    types = tuple(
        f"{kind} NOT NULL" if name in key and "NOT NULL" not in kind else kind
        for name, kind in zip(names, types, strict=True)
    )
    return Shape(names=names, types=types, key=key, row=build)
