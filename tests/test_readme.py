"""The README's Python examples run as written: each ```python block on its own, in a fresh
interpreter, in an empty directory (so ``./audit`` is a new store)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from auditjournal import PayloadStore
from auditjournal.evidence.verify import verify_export

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(text: str) -> list[str]:
    """The bodies of the fenced ```python blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, re.M | re.S)


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def run_block(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_blocks_are_found() -> None:
    assert python_blocks("x\n```python\na = 1\n```\n```sh\nls\n```\n```python\nb\n```\n") == [
        "a = 1\n",
        "b\n",
    ]
    assert BLOCKS, "README.md has no ```python block: the examples would go untested"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index: int, tmp_path: Path) -> None:
    done = run_block(BLOCKS[index], tmp_path)
    assert done.returncode == 0, f"README python block {index + 1} failed:\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr


def test_the_recording_example_leaves_a_sealed_export_that_verifies(tmp_path: Path) -> None:
    (example,) = [b for b in BLOCKS if "AuditStore.open(" in b]
    done = run_block(example, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) >= 3 and lines[-1].endswith(" ExportSealed"), done.stdout
    assert lines[-2].endswith(" RunCompleted"), done.stdout
    (run,) = (tmp_path / "audit" / "runs").iterdir()
    export = run / "export"
    printed = tmp_path / lines[0].split(" ")[0]  # the example prints where the export is
    assert printed.resolve() == export.resolve(), lines[0]
    payloads = PayloadStore(tmp_path / "audit" / "payloads")
    try:
        report = verify_export(export, journal=(run / "journal", payloads))
    finally:
        payloads.close()
    assert report.ok, [c.line() for c in report.checks if not c.ok]
