"""Every code block of docs/examples.md runs as it is (issue 15 item 12), in order, in
an empty directory, and leaves runs that the read commands explain."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from auditjournal.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", EXAMPLES.read_text(), re.S)


def test_every_example_runs_and_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = _blocks()
    assert len(blocks) >= 6
    for number, block in enumerate(blocks):
        exec(compile(block, f"{EXAMPLES.name} block {number + 1}", "exec"), {})
    assert "refused:" in capsys.readouterr().out

    def run(*args: str) -> str:
        capsys.readouterr()
        try:
            main(list(args))
        except SystemExit as exc:
            assert not exc.code, capsys.readouterr()
        return capsys.readouterr().out

    listed = {r["run_id"]: r for r in json.loads(run("runs", "audit", "--json"))}
    assert listed["crashed"]["status"] == "failed"
    assert all(r["status"] in ("completed", "failed") for r in listed.values())
    assert "routed review -> node-4 (review)" in run(
        "explain", "audit", "routing", "--row-index", "0"
    )
    forks = run("explain", "audit", "forks", "--row-index", "0")
    assert forks.count("branch ") == 2 and "outcome completed" in forks
    assert "row order-A-1" in run("explain", "audit", "orders-2026-11-30", "--where", "order=A-1")
