"""Built-in collectors a configuration can name without writing any code.

Each one is a processor (and, where it holds a file or a database, a lifecycle) to put in the
``collectors:`` section of the YAML; its settings go under ``options:``. Each module declares
them as a pydantic model named ``Options``, which the configuration is checked against when it
is loaded, so ``mqtt-collector check`` and ``run`` refuse a wrong option before anything
connects, in one line naming the key path
(``config.yaml: collectors[1].options.path: required key is missing``)::

    collectors:
      - key: trace
        processor: mqtt_collector.collectors.log:log
        topics: ["{topic}"]
      - key: archive
        processor: mqtt_collector.collectors.jsonl:write
        lifecycle: mqtt_collector.collectors.jsonl:open_file
        topics: [temperature]
        options: {path: /var/lib/mqtt-collector/messages.jsonl}
      - key: store
        processor: mqtt_collector.collectors.sqlite:write
        lifecycle: mqtt_collector.collectors.sqlite:open_database
        topics: [temperature]
        options: {path: /var/lib/mqtt-collector/messages.db, table: readings}

The modules, each documenting its options:

- :mod:`mqtt_collector.collectors.log`: one structured log line per message.
- :mod:`mqtt_collector.collectors.jsonl`: one JSON object per line, appended to a file.
- :mod:`mqtt_collector.collectors.sqlite`: rows in a SQLite table, a transaction per batch.
- :mod:`mqtt_collector.collectors.postgres`: rows in a PostgreSQL table, written with COPY in a
  transaction per batch (the ``postgres`` extra).
- :mod:`mqtt_collector.collectors.http`: batches POSTed to a URL as a JSON array or NDJSON (the
  ``http`` extra).
- :mod:`mqtt_collector.collectors.republish`: each message published again to a topic built from
  its captures, through the daemon's own connection.

The batching ones (sqlite, postgres, http) hand each message to a
:class:`~mqtt_collector.GroupCommit`: a call returns once the batch holding its message is
committed, so with QoS 1 a message is acknowledged only after that.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError

from mqtt_collector import ConfigError

__all__: list[str] = []

_Model = TypeVar("_Model", bound=BaseModel)


class _Options(BaseModel):
    """The base of the built-in collectors' ``Options``: immutable, unknown options refused.

    A typo must not be silently ignored. Each field checks its value with one of the
    validators below, so every built-in collector words its errors the same way.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


def _string(value: object) -> str:
    """Check a non-empty string option."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def _boolean(value: object) -> bool:
    """Check a boolean option: YAML true/false only, not 0/1 or "yes"."""
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")  # noqa: TRY004 - pydantic
    return value


_String = Annotated[str, PlainValidator(_string)]
"""A non-empty string option."""

_Boolean = Annotated[bool, PlainValidator(_boolean)]
"""A boolean option: YAML true/false only, not 0/1 or "yes"."""


def _at_least_one(value: object) -> int:
    """Check a count option: an integer >= 1 (``true`` is not 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be an integer >= 1, got {value!r}")
    return value


def _seconds(*, zero: bool) -> PlainValidator:
    """A finite number of seconds option: above 0, or at least 0 when ``zero`` is allowed."""
    bound = ">= 0" if zero else "> 0"

    def check(value: object) -> float:
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and (value > 0 or (zero and value == 0))
        ):
            return float(value)
        raise ValueError(f"must be a number of seconds {bound}, got {value!r}")

    return PlainValidator(check)


_BatchSize = Annotated[int, PlainValidator(_at_least_one)]
"""The ``batch_size`` option of the batching collectors: the most messages one batch holds."""

_BatchDelay = Annotated[float, _seconds(zero=True)]
"""The ``batch_delay`` option of the batching collectors: seconds a batch may wait for more."""


def _integer_or_null(minimum: int) -> PlainValidator:
    """An integer option of at least ``minimum``, or null."""

    def check(value: object) -> int | None:
        if value is None:
            return None
        # bool is an int subclass: `true` must not pass for 1.
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"must be an integer >= {minimum} or null, got {value!r}")
        return value

    return PlainValidator(check)


def _choice(*choices: str) -> PlainValidator:
    """A string option, any case, that must be one of ``choices``; kept lower-cased."""

    def check(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
        return value.lower()

    return PlainValidator(check)


_dump_json: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":")
).encode
"""``json.dumps`` strict and compact: TypeError for what JSON cannot hold, ValueError for NaN."""


def _read_options(ctx: Any, model: type[_Model]) -> _Model:
    """Return ``ctx.options`` as a ``model`` instance, raising ConfigError naming key and option.

    The daemon has validated the options when it loaded the configuration and set the instance
    as ``ctx.options``; a collector built by hand (the queue used as a library) may hold a plain
    mapping, which is validated here once and replaced on the context by the instance.
    """
    options = getattr(ctx, "options", None)
    if isinstance(options, model):
        return options
    try:
        checked = model.model_validate(dict(options or {}))
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        name = ".".join(str(part) for part in error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, ValueError):
            problem = str(cause)
        elif error["type"] == "missing":
            problem = "is required"
        elif error["type"] == "extra_forbidden":
            problem = f"unknown option (known: {', '.join(sorted(model.model_fields))})"
        else:
            problem = error["msg"]
        raise _option_error(ctx, name, problem) from None
    ctx.options = checked
    return checked


def _option_error(ctx: Any, name: str, problem: str) -> ConfigError:
    """The one-line error for a bad option ``name`` of the collector ``ctx`` belongs to."""
    return ConfigError(
        f"collector {str(getattr(ctx, 'key', '<unnamed>'))!r}: option {name!r}: {problem}"
    )


def _needs_lifecycle(ctx: Any, processor: str, lifecycle: str) -> ConfigError:
    """The error a ``processor`` returns when the ``lifecycle`` it needs is not configured."""
    return ConfigError(
        f"collector {getattr(ctx, 'key', '<unnamed>')!r}: {processor} needs"
        f" lifecycle: mqtt_collector.collectors.{lifecycle}"
    )
