"""The commands with ``--journal-url`` (issue 12 items 3 and 4): project, replay, verify
--journal, runs, show, tail over a run whose journal is in PostgreSQL, from a root that
never saw the run being recorded."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from auditjournal import AuditStore
from auditjournal.cli import main

pytestmark = pytest.mark.postgres


def invoke(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def record(tmp_path: Path, url: str, run_id: str = "r1") -> None:
    """A run with two writers (each with its own root), no live export anywhere."""
    with (
        AuditStore.open(tmp_path / "coordinator", journal_url=url) as a,
        AuditStore.open(tmp_path / "writer", journal_url=url) as b,
        a.start_run(run_id=run_id, export=None, sql=False) as run,
    ):
        src = run.register_node(plugin_name="csv", node_type="source", node_id="src")
        run.flush()
        with b.join_run(run_id) as other:
            for i in range(30):
                row = other.create_row(source_node_id="src", row_index=i, data={"i": i})
                other.create_token(row_id=row)
        for i in range(30):
            row = run.create_row(source_node_id=src, row_index=100 + i, data={"j": i})
            run.create_token(row_id=row)


def exports_equal(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir() if not p.name.startswith("."))
    assert "audit_trail.manifest.json" in names
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    return not mismatch and not errors


def test_project_replay_verify_runs_show_tail_with_a_journal_url(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    record(tmp_path, pg_url)
    root = tmp_path / "projector"
    code, out, err = invoke(capsys, "project", root, "--journal-url", pg_url, "--no-sql")
    assert code == 0, err
    assert "sealed r1" in out
    export = root / "runs" / "r1" / "export"
    code, out, err = invoke(
        capsys, "verify", export, "--journal", tmp_path / "auditor", "r1", "--journal-url", pg_url
    )
    assert code == 0, out + err
    assert "VALID" in out
    code, out, err = invoke(
        capsys, "replay", tmp_path / "r", "r1", "--out", tmp_path / "again", "--journal-url", pg_url
    )
    assert code == 0, err
    assert exports_equal(export, tmp_path / "again")
    code, out, err = invoke(capsys, "runs", tmp_path / "q", "--journal-url", pg_url, "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert [r["run_id"] for r in listed] == ["r1"]
    code, out, err = invoke(capsys, "show", tmp_path / "q", "r1", "--journal-url", pg_url)
    assert code == 0, err
    assert "r1" in out
    code, out, err = invoke(capsys, "tail", root, "r1", "--journal-url", pg_url, "--timeout", 5)
    assert code == 0, err
    assert "export sealed" in err
    assert len(out.splitlines()) >= 121  # the run, its node, 60 rows, 60 tokens


def test_export_csv_with_a_journal_url(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    record(tmp_path, pg_url)
    out = tmp_path / "csv"
    args = ["export-csv", tmp_path / "exporter", "r1", "--out", out, "--json"]
    code, printed, err = invoke(capsys, *args, "--journal-url", pg_url)
    assert code == 0, err
    result = json.loads(printed)
    rows = {f["file"]: f["rows"] for f in result["files"]}
    assert rows["row.csv"] == 60 and rows["token.csv"] == 60
    listing = (out / "audit_trail.csv.sha256").read_text()
    assert "row.csv" in listing
    # the export is recorded in the run's journal in PostgreSQL, once
    with AuditStore.open(tmp_path / "check", journal_url=pg_url) as store:
        kinds = [type(e).__name__ for e in store.read_journal("r1")]
    assert kinds.count("CsvExported") == 1
    assert result["recorded"] is True
    code, printed, err = invoke(capsys, *args, "--journal-url", pg_url)
    assert code == 0, err
    assert json.loads(printed)["recorded"] is False  # the same export: recorded once
    with AuditStore.open(tmp_path / "check", journal_url=pg_url) as store:
        kinds = [type(e).__name__ for e in store.read_journal("r1")]
    assert kinds.count("CsvExported") == 1


def test_commands_name_a_missing_run_or_a_bad_url_in_one_line(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = invoke(
        capsys, "replay", tmp_path / "r", "nope", "--out", tmp_path / "o", "--journal-url", pg_url
    )
    assert code == 2
    assert err.startswith("auditjournal: error: no run 'nope'") and err.count("\n") == 1
    bad = "postgresql+psycopg://postgres@127.0.0.1:1/x"
    code, _, err = invoke(capsys, "runs", tmp_path / "q", "--journal-url", bad)
    assert code == 1
    assert err.startswith("auditjournal: error: cannot") and err.count("\n") == 1
    code, _out, err = invoke(capsys, "verify", tmp_path, "--journal-url", pg_url)
    assert code == 2


def test_project_follow_seals_a_run_recorded_while_it_runs(tmp_path: Path, pg_url: str) -> None:
    root = tmp_path / "projector"
    follower = subprocess.Popen(
        [sys.executable, "-m", "auditjournal", "project", str(root), "--follow", "--no-sql",
         "--journal-url", pg_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        record(tmp_path, pg_url, "live")
        manifest = root / "runs" / "live" / "export" / "audit_trail.manifest.json"
        deadline = time.monotonic() + 60
        while not manifest.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert manifest.exists()
    finally:
        follower.terminate()
        follower.communicate(timeout=30)
    with AuditStore.open(tmp_path / "check", journal_url=pg_url) as store:
        store.sync_run("live")
        from auditjournal import ExportSettings, replay_export

        replay_export(
            journal_dir=store.journal_dir("live"),
            run_id="live",
            payloads=store.payloads,
            settings=ExportSettings(),
            prefix=tmp_path / "replayed" / "audit_trail",
        )
    assert exports_equal(manifest.parent, tmp_path / "replayed")
