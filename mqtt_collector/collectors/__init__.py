"""Built-in collectors a configuration can name without writing any code.

Each one is a processor (and, where it holds a file or a database, a lifecycle) to put in the
``collectors:`` section of the YAML; its settings go under ``options:`` and are checked when the
lifecycle starts, so a wrong option stops the daemon at start-up with one line naming the
collector key and the option::

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
- :mod:`mqtt_collector.collectors.sqlite`: one row per message in a SQLite table.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from mqtt_collector import ConfigError

__all__: list[str] = []


class _OptionReader:
    """Reads and checks a collector's ``ctx.options``, raising ConfigError naming key and option.

    Shared by the built-in collectors so every one words its errors the same way and refuses
    unknown options (a typo must not be silently ignored).
    """

    __slots__ = ("_options", "key")

    def __init__(self, ctx: Any, known: Collection[str]) -> None:
        """Read the options of the collector ``ctx`` belongs to; refuse any not in ``known``."""
        self.key: str = str(getattr(ctx, "key", "<unnamed>"))
        options = getattr(ctx, "options", None)
        self._options: Mapping[str, Any] = {} if options is None else options
        unknown = sorted(set(self._options) - set(known))
        if unknown:
            raise self.error(unknown[0], f"unknown option (known: {', '.join(sorted(known))})")

    def error(self, name: str, problem: str) -> ConfigError:
        """Build the one-line error for a bad option ``name``."""
        return ConfigError(f"collector {self.key!r}: option {name!r}: {problem}")

    def string(self, name: str, *, default: str | None = None) -> str:
        """Return the non-empty string option ``name``; required when ``default`` is None."""
        value = self._options.get(name, default)
        if value is None:
            raise self.error(name, "is required")
        if not isinstance(value, str) or not value:
            raise self.error(name, f"must be a non-empty string, got {value!r}")
        return value

    def boolean(self, name: str, *, default: bool) -> bool:
        """Return the boolean option ``name`` (YAML true/false only, not 0/1 or "yes")."""
        value = self._options.get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, got {value!r}")
        return value

    def integer(self, name: str, *, default: int | None, minimum: int) -> int | None:
        """Return the integer option ``name`` (at least ``minimum``), or None when set to null."""
        value = self._options.get(name, default)
        if value is None:
            return None
        # bool is an int subclass: `true` must not pass for 1.
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(name, f"must be an integer >= {minimum} or null, got {value!r}")
        return value

    def choice(self, name: str, *, choices: Collection[str], default: str) -> str:
        """Return the string option ``name``, lower-cased, which must be one of ``choices``."""
        value = self._options.get(name, default)
        if not isinstance(value, str) or value.lower() not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value.lower()
