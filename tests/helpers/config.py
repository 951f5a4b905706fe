"""Helpers for the configuration tests: write a config file, load it, get its one-line error."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import yaml

from mqtt_collector._config.load import Config, load_config
from mqtt_collector._exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


def subscription(**keys: Any) -> dict[str, Any]:
    """A valid subscription entry, with ``keys`` added or replaced."""
    return {"filter": "sensors/#", **keys}


def collector(**keys: Any) -> dict[str, Any]:
    """A valid collector entry, with ``keys`` added or replaced."""
    return {
        "key": "store",
        "processor": "tests.sample_collectors:store",
        "topics": ["sensors/temp"],
        **keys,
    }


def base(**sections: Any) -> dict[str, Any]:
    """A valid, minimal configuration, with top-level ``sections`` added or replaced."""
    return {"subscriptions": [subscription()], "collectors": [collector()], **sections}


def write(directory: Path, data: Mapping[str, Any] | str) -> Path:
    """Write ``data`` (a mapping dumped as YAML, or YAML text) to ``directory/config.yaml``."""
    path = directory / "config.yaml"
    text = data if isinstance(data, str) else yaml.safe_dump(dict(data), sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def load(
    directory: Path, data: Mapping[str, Any] | str, environ: Mapping[str, str] | None = None
) -> Config:
    """Write and load a configuration, with an empty environment unless one is given."""
    return load_config(write(directory, data), environ={} if environ is None else environ)


def error(
    directory: Path, data: Mapping[str, Any] | str, environ: Mapping[str, str] | None = None
) -> str:
    """Write a bad configuration and return its ConfigError message after ``<path>: ``.

    Fails unless loading raises ConfigError with a one-line message starting with the path.
    """
    path = write(directory, data)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={} if environ is None else environ)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")
