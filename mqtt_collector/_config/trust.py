"""Warnings about files a configuration trusts: secrets others can read, code others can change.

The config holds credentials, and it names code the daemon runs (processors, lifecycles): a
literal password in a file the group or others can read is a leaked password, and a config or
collector module they can write is a way to run their code as the daemon's user.
``mqtt-collector check`` prints these warnings and ``run`` logs them at start.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from mqtt_collector._config.load import Config

__all__ = ["trust_warnings"]

# Keys that may hold a secret, as a path of keys from the top of the file.
_SECRETS = (("broker", "password"), ("broker", "tls", "key_password"))
_SECRET_FILES = (("broker", "password_file"), ("broker", "tls", "key_password_file"))
_GROUP_OTHERS_READ = stat.S_IRGRP | stat.S_IROTH
_GROUP_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


def trust_warnings(config: Config) -> list[str]:
    """Say which of the config's files others may read (secrets) or write (code, the config)."""
    path = Path(config.path)
    mode = _mode(path)
    if mode is None:
        return []
    found: list[str] = []
    raw = _raw(path)
    for keys in _SECRETS:
        value = _get(raw, keys)
        literal = isinstance(value, str | int) and str(value) and "${" not in str(value)
        if literal and mode & _GROUP_OTHERS_READ:
            found.append(
                f"{path}: {'.'.join(keys)}: a literal secret in a file the group or others can"
                f" read (mode {_octal(mode)}): chmod go-rw {path}, or take it from the"
                f" environment (${{VAR}}) or from {keys[-1]}_file"
            )
    for keys in _SECRET_FILES:
        value = _get(raw, keys)
        secret_mode = _mode(Path(value)) if isinstance(value, str) and "${" not in value else None
        if secret_mode is not None and secret_mode & _GROUP_OTHERS_READ:
            found.append(
                f"{path}: {'.'.join(keys)}: {value} can be read by the group or others"
                f" (mode {_octal(secret_mode)}): chmod go-rw {value}"
            )
    if mode & _GROUP_OTHERS_WRITE:
        found.append(
            f"{path}: the group or others can write it (mode {_octal(mode)}), and it names"
            f" code to run: chmod go-w {path}"
        )
    for module_file in _collector_modules(config):
        module_mode = _mode(module_file)
        if module_mode is not None and module_mode & _GROUP_OTHERS_WRITE:
            found.append(
                f"{path}: the collector module {module_file} can be written by the group or"
                f" others (mode {_octal(module_mode)}), and the daemon runs it:"
                f" chmod go-w {module_file}"
            )
    return found


def _mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode
    except OSError:
        return None


def _octal(mode: int) -> str:
    return f"{stat.S_IMODE(mode):04o}"


def _raw(path: Path) -> object:
    """The file as written, before ``${VAR}`` substitution (it loaded once already)."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def _get(tree: object, keys: tuple[str, ...]) -> object:
    for key in keys:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def _collector_modules(config: Config) -> list[Path]:
    """The files of the modules defining the processors and lifecycles, each once, in order."""
    files: dict[Path, None] = {}
    for collector in config.collectors:
        for found in (collector.processor, collector.lifecycle):
            module: Any = sys.modules.get(getattr(found, "__module__", None) or "")
            name = getattr(module, "__file__", None)
            if isinstance(name, str):
                files[Path(name)] = None
    return list(files)
