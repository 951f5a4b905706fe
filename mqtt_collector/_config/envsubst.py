"""Environment substitution in configuration values: ``${VAR}``, ``${VAR:-default}``, ``$$``.

It runs on the parsed YAML tree, never on the file text, so a variable's value can never inject
YAML structure: it always stays one string.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["SubstitutionError", "expand", "substitute"]

# "$$", "${NAME}", "${NAME:-default}" (the default runs to the first "}"), or a "${" that is
# none of these; a "$" followed by anything else is left as it is.
_PATTERN = re.compile(
    r"\$(?:(?P<dollar>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|(?P<bad>\{))"
)
_SHOW_CHARS = 40


class SubstitutionError(ValueError):
    """A value could not be substituted; ``loc`` is the key path to it in the tree.

    Attributes:
        loc: the keys and list indexes leading to the bad string, outermost first.
    """

    def __init__(self, message: str, loc: tuple[str | int, ...] = ()) -> None:
        """Build the error for ``message`` at the key path ``loc``."""
        super().__init__(message)
        self.loc = loc


def expand(text: str, environ: Mapping[str, str]) -> str:
    """Replace every ``${VAR}``, ``${VAR:-default}`` and ``$$`` in ``text``.

    ``${VAR:-default}`` gives ``default`` when ``VAR`` is unset or empty (as in the shell);
    ``$$`` gives a literal ``$``; any other ``$`` is kept as it is.

    Args:
        text: the string to expand.
        environ: where variables are looked up.

    Returns:
        The expanded string.

    Raises:
        SubstitutionError: for a variable that is not set and has no default, or a ``${``
            that is not a well-formed reference.
    """
    if "$" not in text:
        return text

    def replace(found: re.Match[str]) -> str:
        if found["dollar"] is not None:
            return "$"
        if found["bad"] is not None:
            rest = text[found.start() : found.start() + _SHOW_CHARS]
            raise SubstitutionError(
                f"invalid substitution {rest!r}: write ${{NAME}} or ${{NAME:-default}}"
                " (NAME: letters, digits and '_'), or $$ for a literal '$'"
            )
        name = found["name"]
        default = found["default"]
        value = environ.get(name)
        if default is not None:
            return value or default
        if value is None:
            raise SubstitutionError(
                f"environment variable {name!r} is not set"
                f" (write ${{{name}:-default}} to give a default)"
            )
        return value

    return _PATTERN.sub(replace, text)


def substitute(tree: object, environ: Mapping[str, str]) -> object:
    """Return ``tree`` with :func:`expand` applied to every string value, at any depth.

    Mapping keys are left alone; lists and mappings are copied, other values returned as is.

    Args:
        tree: a parsed YAML document (mappings, lists and scalars).
        environ: where variables are looked up.

    Raises:
        SubstitutionError: as :func:`expand`, with ``loc`` set to the path of the bad value.
    """
    return _substitute(tree, environ, ())


def _substitute(tree: object, environ: Mapping[str, str], loc: tuple[str | int, ...]) -> object:
    """Substitute in ``tree``, found at ``loc``."""
    if isinstance(tree, str):
        try:
            return expand(tree, environ)
        except SubstitutionError as exc:
            raise SubstitutionError(str(exc), loc) from None
    if isinstance(tree, dict):
        return {key: _substitute(value, environ, (*loc, _key(key))) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_substitute(value, environ, (*loc, index)) for index, value in enumerate(tree)]
    return tree


def _key(key: object) -> str:
    """A mapping key as it appears in a key path."""
    return key if isinstance(key, str) else repr(key)
