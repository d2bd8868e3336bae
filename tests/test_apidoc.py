"""docs/api.md is generated from the public docstrings and must not go stale (issue 15
item 12): change a docstring or a signature, run ``python tools/gen_apidoc.py``."""

from __future__ import annotations

import importlib.util
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
