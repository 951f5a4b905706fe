"""The package's layers, as folders: each imports only what lies below it, and nothing circles.

Layers, lowest first: the collector queue core (``_core``), the MQTT side (``_mqtt``), the
configuration (``_config``), the daemon (``_daemon``), the demo (``_demo``). The core and
the MQTT side stand alone; the built-in collectors use the public package only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mqtt_collector

PACKAGE = Path(mqtt_collector.__file__).parent
NAME = "mqtt_collector"

# Shared by every layer: the exception tree and the public package's own names.
_COMMON = {f"{NAME}._exceptions"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (under TYPE_CHECKING too), absolute."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            module = node.module or ""
            found.add(module)
            # `from mqtt_collector._core import pool` imports the module pool.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


MODULES = {_module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def _own(imports: set[str]) -> set[str]:
    """The package's own modules among ``imports``."""
    own = {name for name in imports if name == NAME or name.startswith(f"{NAME}.")}
    return {name for name in own if name in MODULES}


def _in(module: str, layer: str) -> bool:
    return module == f"{NAME}.{layer}" or module.startswith(f"{NAME}.{layer}.")


def _layer_modules(layer: str) -> list[str]:
    return [name for name in MODULES if _in(name, layer)]


@pytest.mark.parametrize(
    ("layer", "allowed", "third_party_banned"),
    [
        ("_core", (), ("aiomqtt", "paho", "yaml", "pydantic", "structlog")),
        ("_mqtt", (), ("yaml", "pydantic")),
        ("_config", ("_core", "_mqtt"), ()),
        ("_daemon", ("_core", "_mqtt", "_config"), ()),
        ("_demo", ("_core", "_mqtt", "_config", "_daemon"), ()),
    ],
)
def test_layer_imports_only_what_lies_below(
    layer: str, allowed: tuple[str, ...], third_party_banned: tuple[str, ...]
) -> None:
    """A layer imports itself, the layers below it and the exception tree; nothing above."""
    modules = _layer_modules(layer)
    assert modules, f"no modules in {layer}"
    wrong = {
        (module, imported)
        for module in modules
        for imported in _own(MODULES[module])
        if not _in(imported, layer)
        and imported not in _COMMON
        and not any(_in(imported, below) for below in allowed)
    }
    assert wrong == set()
    banned = {
        (module, imported)
        for module in modules
        for imported in MODULES[module]
        if imported.split(".")[0] in third_party_banned
    }
    assert banned == set()


def test_builtin_collectors_use_only_the_public_package() -> None:
    """The built-in collectors import ``mqtt_collector`` and ``mqtt_collector.collectors`` only."""
    public = {NAME, f"{NAME}.collectors"}
    wrong = {
        (module, imported)
        for module in _layer_modules("collectors")
        for imported in _own(MODULES[module])
        if imported not in public and not _in(imported, "collectors")
    }
    assert wrong == set()


def test_no_import_circle() -> None:
    """No module reaches itself through the package's own imports (TYPE_CHECKING ones too)."""
    graph = {name: _own(imports) - {name} for name, imports in MODULES.items()}
    # A package's __init__ importing its own submodules is not a circle through it.
    circles = []
    for start in graph:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    circles.append([*path, nxt])
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert circles == []


def test_layer_test_sees_every_module() -> None:
    """Every module of the package is in a layer, is a top-level helper, or is a collector."""
    top = {
        f"{NAME}.{name}" for name in ("", "__main__", "_cli", "_logging", "_exceptions", "testing")
    }
    top = {name.rstrip(".") for name in top}
    layered = {
        name
        for name in MODULES
        if any(
            _in(name, layer)
            for layer in ("_core", "_mqtt", "_config", "_daemon", "_demo", "collectors")
        )
    }
    assert set(MODULES) - layered - top == set()
