"""Tests for resolving ``"package.module:attribute"`` strings."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mqtt_collector._config.imports import add_import_dir, import_object
from tests import sample_collectors

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture
def make_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """Write a uniquely named package into a fresh working directory (not importable); its name.

    sys.path and sys.modules are restored afterwards, so nothing leaks between tests.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in {"", str(Path.cwd())}])
    names: list[str] = []

    def make(source: str) -> str:
        name = f"userpkg_{uuid.uuid4().hex}"
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
        (tmp_path / name / "sinks.py").write_text(source)
        names.append(name)
        return name

    yield make
    for module in [m for m in sys.modules if m.split(".")[0] in names]:
        del sys.modules[module]


def test_import_object_returns_the_attribute() -> None:
    """'module:attr' gives the module's attribute."""
    assert import_object("tests.sample_collectors:store") is sample_collectors.store


def test_import_object_follows_a_dotted_attribute() -> None:
    """'module:attr.sub' walks attributes after the colon."""
    found = import_object("tests.sample_collectors:Holder.store")
    assert found is sample_collectors.store


def test_import_object_names_a_missing_attribute() -> None:
    """A missing attribute is an ImportError naming the path and the module."""
    with pytest.raises(ImportError) as caught:
        import_object("tests.sample_collectors:stor")
    assert str(caught.value) == (
        "cannot import 'tests.sample_collectors:stor':"
        " module 'tests.sample_collectors' has no attribute 'stor'"
    )


def test_import_object_names_a_missing_sub_attribute() -> None:
    """A missing attribute after a dot names the object it was looked up on."""
    with pytest.raises(ImportError) as caught:
        import_object("tests.sample_collectors:Holder.nope")
    assert str(caught.value) == (
        "cannot import 'tests.sample_collectors:Holder.nope':"
        " 'tests.sample_collectors:Holder' has no attribute 'nope'"
    )


def test_import_object_names_a_missing_module() -> None:
    """A module that does not exist is an ImportError with Python's reason."""
    with pytest.raises(ImportError) as caught:
        import_object("nosuch_pkg_for_tests.mod:x")
    assert str(caught.value) == (
        "cannot import 'nosuch_pkg_for_tests.mod:x': No module named 'nosuch_pkg_for_tests'"
    )


@pytest.mark.parametrize(
    "path", ["tests.sample_collectors", "tests.sample_collectors:", ":store", "a b:c", "a:b:c"]
)
def test_import_object_refuses_a_malformed_path(path: str) -> None:
    """Anything but 'dotted.module:dotted.attribute' is a ValueError naming the form."""
    with pytest.raises(ValueError, match=r"is not of the form 'package\.module:attribute'"):
        import_object(path)


def test_import_object_never_imports_from_the_working_directory(
    make_package: Callable[[str], str],
) -> None:
    """A package in the working directory is not importable: that directory is not searched."""
    name = make_package("async def store(payload, ctx):\n    return None\n")
    with pytest.raises(ImportError, match=f"No module named '{name}'"):
        import_object(f"{name}.sinks:store")
    assert str(Path.cwd()) not in sys.path


def test_add_import_dir_appends_after_everything_else(
    make_package: Callable[[str], str],
) -> None:
    """A directory made importable goes last on sys.path, and its modules are then found."""
    name = make_package("async def store(payload, ctx):\n    return None\n")
    before = list(sys.path)
    add_import_dir(Path.cwd())
    add_import_dir(Path.cwd())
    assert sys.path == [*before, str(Path.cwd())]
    found = import_object(f"{name}.sinks:store")
    assert getattr(found, "__name__", None) == "store"


def test_import_object_wraps_an_exception_raised_by_the_module(
    make_package: Callable[[str], str],
) -> None:
    """A module raising at import gives one ImportError line naming the exception."""
    name = make_package("raise RuntimeError('no database configured')\n")
    add_import_dir(Path.cwd())
    with pytest.raises(ImportError) as caught:
        import_object(f"{name}.sinks:store")
    assert str(caught.value) == (
        f"cannot import '{name}.sinks:store': importing '{name}.sinks' raised"
        " RuntimeError: no database configured"
    )


def test_import_object_reports_an_import_error_inside_the_module(
    make_package: Callable[[str], str],
) -> None:
    """A module whose own import fails names the module that is missing."""
    name = make_package("import nosuch_dependency_for_tests\n")
    add_import_dir(Path.cwd())
    with pytest.raises(ImportError) as caught:
        import_object(f"{name}.sinks:store")
    assert str(caught.value) == (
        f"cannot import '{name}.sinks:store': No module named 'nosuch_dependency_for_tests'"
    )
