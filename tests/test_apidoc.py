"""docs/api.md is generated from the public docstrings and must not go stale (issue 15
item 12): change a docstring or a signature, run ``python tools/gen_apidoc.py``."""

from __future__ import annotations

import importlib.util
import inspect
import types
from collections.abc import Iterator
from pathlib import Path

import auditjournal

TOOL = Path(__file__).resolve().parent.parent / "tools" / "gen_apidoc.py"


def _generator() -> object:
    spec = importlib.util.spec_from_file_location("gen_apidoc", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_is_current() -> None:
    generator = _generator()
    committed = generator.API_MD  # type: ignore[attr-defined]
    assert committed.exists(), "docs/api.md missing: run python tools/gen_apidoc.py"
    assert committed.read_text() == generator.render(), (  # type: ignore[attr-defined]
        "docs/api.md is stale: run python tools/gen_apidoc.py and commit the result"
    )


def test_api_reference_covers_every_public_name() -> None:
    text = _generator().render()  # type: ignore[attr-defined]
    for name in auditjournal.__all__:
        if not name.startswith("__"):
            assert f"### `{name}" in text, name


def _public_callables(cls: type) -> Iterator[tuple[str, object]]:
    """A public class's public methods, properties, class- and static methods, its own and
    those it inherits from the library's classes (RunRecorder's calls live in mixins)."""
    seen: set[str] = set()
    for owner in cls.__mro__:
        if not owner.__module__.startswith("auditjournal"):
            continue
        for name, value in vars(owner).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(value, property):
                yield name, value.fget
            elif isinstance(value, classmethod | staticmethod):
                yield name, value.__func__
            elif inspect.isfunction(value):
                yield name, value


def undocumented(namespace: object = auditjournal) -> list[str]:
    """Every public name of ``namespace.__all__`` (and public method of a public class)
    without a docstring of its own."""
    missing = []
    for name in getattr(namespace, "__all__"):  # noqa: B009 - a module's, by name
        obj = getattr(namespace, name)
        if name.startswith("__") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not (obj.__doc__ or "").strip():
            missing.append(name)
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            missing += [
                f"{name}.{member}"
                for member, function in _public_callables(obj)
                if not (getattr(function, "__doc__", None) or "").strip()
            ]
    return missing


def test_every_public_method_has_a_docstring() -> None:
    """What docs/api.md shows must say something: no "(no docstring)" in the reference."""
    assert undocumented() == []
    assert "(no docstring)" not in _generator().render()  # type: ignore[attr-defined]


def test_the_docstring_check_finds_a_missing_one() -> None:
    class Documented:
        """A class."""

        def fine(self) -> None:
            """Has one."""

        @property
        def bare(self) -> int:
            return 1

    Documented.__module__ = "auditjournal.example"
    namespace = types.SimpleNamespace(__all__=["Documented"], Documented=Documented)
    assert undocumented(namespace) == ["Documented.bare"]
