"""Resolving ``"package.module:attribute"`` strings, as the configuration names user code."""

from __future__ import annotations

import importlib
import os
import sys

__all__ = ["add_import_dir", "import_object"]

# A module path and an attribute path: dotted Python identifiers on either side of one ":".
_FORM = "'package.module:attribute'"


def import_object(path: str) -> object:
    """Import the object named by ``path``, e.g. ``"myapp.sinks:store"``.

    The attribute may be dotted (``"myapp.sinks:Store.handle"``). The module is found on
    ``sys.path`` as it stands: installed packages, ``PYTHONPATH``, and whatever
    :func:`add_import_dir` appended (the configuration file's directory). The working
    directory is never added.

    Args:
        path: ``"package.module:attribute"``.

    Returns:
        The object.

    Raises:
        ValueError: if ``path`` is not of that form.
        ImportError: if the module cannot be imported (whatever its import raised) or has
            no such attribute; the message starts with ``cannot import '<path>':``.
    """
    module_name, attribute = _split(path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import {path!r}: {exc}") from exc
    except Exception as exc:
        # A user's module may raise anything at import; keep it one clear line.
        raise ImportError(
            f"cannot import {path!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    found: object = module
    owner = f"module {module_name!r}"
    walked = f"{module_name}:"
    for name in attribute.split("."):
        try:
            found = getattr(found, name)
        except AttributeError:
            raise ImportError(
                f"cannot import {path!r}: {owner} has no attribute {name!r}"
            ) from None
        walked += name
        owner = repr(walked)
        walked += "."
    return found


def add_import_dir(directory: str | os.PathLike[str]) -> None:
    """Make modules in ``directory`` importable, after everything already on ``sys.path``.

    Appended, never inserted: a ``sqlite3.py`` or ``uvloop.py`` there can never shadow the
    standard library or an installed package, so it is never run in their place.
    """
    path = os.path.abspath(directory)  # noqa: PTH100 - a str is what sys.path holds
    if path not in sys.path:
        sys.path.append(path)


def _split(path: str) -> tuple[str, str]:
    """Split ``path`` into its module and attribute parts, checking both."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not all(_dotted(part) for part in (module_name, attribute)):
        raise ValueError(f"{path!r} is not of the form {_FORM}")
    return module_name, attribute


def _dotted(text: str) -> bool:
    """Whether ``text`` is a non-empty dotted sequence of Python identifiers."""
    return bool(text) and all(part.isidentifier() for part in text.split("."))
