"""The operator's edges of the command line (issue 15): expected OS failures are one
line and an exit code, ``replay --out`` never clobbers evidence, read commands work on
a read-only copy and never write to it, and the smaller findings (item 9).

Commands go through :func:`auditjournal.cli.main`, where errors become exit codes; a
read-only target is a real read-only filesystem (tmpfs remounted ``ro``), so writes
fail with the kernel's EROFS even for root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from auditjournal import ExportSettings
from auditjournal.cli import main
from auditjournal.demo import run_demo
from auditjournal.evidence.verify import verify_export
from faults import read_only_copy


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


Invoke = Callable[..., Result]


@dataclass(frozen=True)
class Recorded:
    root: Path
    run_id: str
    export: Path


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    base = tmp_path_factory.mktemp("operators")
    run = run_demo(base / "audit", rows=6, export=ExportSettings(chunk_size_bytes=5000))
    assert run.report.ok
    return Recorded(run.root, run.run_id, run.export_dir)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Invoke:
    def invoke(*args: str | Path) -> Result:
        capsys.readouterr()
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    assert result.code == code, result
    assert "Traceback" not in result.out + result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("auditjournal") and "error: " in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def _tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


# -- item 1: one line, never a traceback ----------------------------------------------------


def test_output_into_a_missing_directory_is_a_usage_error(
    cli: Invoke, recorded: Recorded, tmp_path: Path
) -> None:
    out = tmp_path / "missing" / "b.json"
    result = cli("extract", recorded.export, "--seq", "5", "--out", out)
    assert_one_line_error(result, 2, "does not exist")
    assert not out.parent.exists()
    result = cli("report", recorded.export, "--out", out)
    assert_one_line_error(result, 2, "does not exist")


def test_outputs_on_a_read_only_filesystem_are_one_line(
    cli: Invoke, recorded: Recorded, tmp_path: Path
) -> None:
    with read_only_copy(tmp_path / "ro", recorded.root) as ro:
        root = ro / recorded.root.name
        cases = [
            ("demo", "--root", ro / "new", "--rows", "2"),
            ("keygen", "--out", ro / "keys"),
            ("replay", recorded.root, recorded.run_id, "--out", ro / "replayed"),
            ("extract", recorded.export, "--seq", "5", "--out", ro / "b.json"),
            ("report", recorded.export, "--out", ro / "r.html"),
            ("export-csv", recorded.root, recorded.run_id, "--out", ro / "csv"),
        ]
        for args in cases:
            assert_one_line_error(cli(*args), 2, "read-only filesystem")
        # the store itself read-only: export-csv must record into the journal, so it fails
        result = cli("export-csv", root, recorded.run_id, "--out", tmp_path / "csv")
        assert_one_line_error(result, 1, "Read-only file system")


def test_an_os_error_during_work_is_one_line_exit_1(
    cli: Invoke, recorded: Recorded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OS error the checks up front cannot foresee (here a write that fails with EIO
    half-way) still ends as one line and exit 1."""
    import auditjournal.cli.evidence as evidence_cli

    def failing(bundle: object, out: Path) -> None:
        raise OSError(5, "Input/output error", str(out))

    monkeypatch.setattr(evidence_cli, "write_bundle", failing)
    result = cli("extract", recorded.export, "--seq", "5", "--out", tmp_path / "b.json")
    assert_one_line_error(result, 1, "Input/output error", "b.json")


# -- item 2: replay --out -------------------------------------------------------------------


def test_replay_never_overwrites_the_live_export(
    cli: Invoke, recorded: Recorded, tmp_path: Path
) -> None:
    root = tmp_path / "audit"
    shutil.copytree(recorded.root, root)
    live = root / "runs" / recorded.run_id / "export"
    before = _tree(live)
    for extra in ((), ("--force",)):
        result = cli("replay", root, recorded.run_id, "--out", live, "--chunk-size", "none", *extra)
        assert_one_line_error(result, 2, "live export")
        assert _tree(live) == before
    report = verify_export(live)
    assert report.ok


def test_replay_refuses_a_non_empty_out_unless_forced(
    cli: Invoke, recorded: Recorded, tmp_path: Path
) -> None:
    out = tmp_path / "replayed"
    assert cli("replay", recorded.root, recorded.run_id, "--out", out).code == 0
    sealed = _tree(out)
    stale = out / "audit_trail.099.json"
    stale.write_text("[\n]\n")
    result = cli("replay", recorded.root, recorded.run_id, "--out", out, "--chunk-size", "none")
    assert_one_line_error(result, 2, "not empty", "--force")
    assert _tree(out) == {**sealed, stale.name: b"[\n]\n"}
    result = cli("replay", recorded.root, recorded.run_id, "--out", out, "--force")
    assert result.code == 0, result
    assert verify_export(out).ok
