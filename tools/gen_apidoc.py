#!/usr/bin/env python3
"""Regenerate docs/api.md from the public docstrings: ``python tools/gen_apidoc.py``.

The reference covers exactly ``auditjournal.__all__``: each name's signature
and docstring, and for a class its public methods and properties.
tests/test_apidoc.py fails when docs/api.md is stale.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any

import auditjournal

API_MD = Path(__file__).resolve().parent.parent / "docs" / "api.md"

_HEADER = """# API reference

Generated from the public docstrings by `python tools/gen_apidoc.py`
(`tests/test_apidoc.py` fails when it is stale). Everything here is importable
from `auditjournal`; the command line is described in the README and
[operating.md](operating.md).
"""

_KINDS = (
    ("Store and recording", lambda o: inspect.isclass(o) and not _is_error(o)),
    ("Functions", inspect.isfunction),
    ("Errors", lambda o: inspect.isclass(o) and _is_error(o)),
)


def _is_error(obj: type) -> bool:
    return issubclass(obj, BaseException)


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _doc(obj: Any) -> str:
    doc = inspect.getdoc(obj)
    return doc.strip() if doc else "(no docstring)"


def _members(cls: type) -> list[str]:
    out = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            out.append(f"- `{name}` (property): {_first_line(value)}")
        elif isinstance(value, classmethod | staticmethod):
            function = value.__func__
            out.append(f"- `{name}{_signature(function)}`: {_first_line(function)}")
        elif inspect.isfunction(value):
            out.append(f"- `{name}{_signature(value)}`: {_first_line(value)}")
    return out


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj)
    if not doc:
        return "(no docstring)"
    return " ".join(doc.split("\n\n", 1)[0].split())


def render() -> str:
    """docs/api.md as it should be now."""
    names = sorted(n for n in auditjournal.__all__ if not n.startswith("__"))
    sections = [_HEADER]
    placed: set[str] = set()
    for title, wanted in _KINDS:
        lines = [f"## {title}\n"]
        for name in names:
            obj = getattr(auditjournal, name)
            if name in placed or not wanted(obj):
                continue
            placed.add(name)
            if inspect.isclass(obj) and _is_error(obj):
                base = obj.__mro__[1].__name__
                lines.append(f"### `{name}({base})`\n\n{_doc(obj)}\n")
                continue
            lines.append(f"### `{name}{_signature(obj)}`\n\n{_doc(obj)}\n")
            if inspect.isclass(obj):
                members = _members(obj)
                if members:
                    lines.append("\n".join(members) + "\n")
        sections.append("\n".join(lines))
    rest = [n for n in names if n not in placed]
    lines = ["## Types\n"]
    for name in rest:
        obj = getattr(auditjournal, name)
        args = typing.get_args(obj)
        if args:
            members = ", ".join(f"`{a.__name__}`" for a in args)
            lines.append(f"### `{name}`\n\nOne of: {members}.\n")
        else:
            lines.append(f"### `{name}`\n\n{_doc(obj)}\n")
    sections.append("\n".join(lines))
    return "\n".join(sections).rstrip() + "\n"


def main() -> None:
    API_MD.write_text(render())
    print(f"wrote {API_MD.relative_to(API_MD.parent.parent)}")


if __name__ == "__main__":
    main()
