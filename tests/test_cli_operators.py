"""The operator's edges of the command line (issue 15): expected OS failures are one
line and an exit code, ``replay --out`` never clobbers evidence, read commands work on
a read-only copy and never write to it, and the smaller findings (item 9).

Commands go through :func:`auditjournal.cli.main`, where errors become exit codes; a
read-only target is a real read-only filesystem (tmpfs remounted ``ro``), so writes
fail with the kernel's EROFS even for root.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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


# -- item 3: tail says what it waits for and stops when waiting cannot end ---------------------

_KILLED_WRITER = """
import os, signal, sys, time
from auditjournal import AuditStore, ExportSettings
store = AuditStore.open(sys.argv[1], durability="always")
run = store.start_run(config={{}}, run_id="killed", export={export}, sql=False)
src = run.register_node(plugin_name="src", node_type="source")
for i in range(3):
    run.create_row(source_node_id=src, row_index=i, data={{"i": i}})
export = store.export_dir("killed")
for _ in range(3000):  # the live export's thread wrote the rows (or there is none)
    if {export} is None or "".join(
        f.read_text() for f in export.glob("audit_trail.0*.json")
    ).count('"record_type":"row"') == 3:
        break
    time.sleep(0.01)
print("ready", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _record_and_kill(root: Path, export: str) -> None:
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER.format(export=export), str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -9, child.stderr
    assert child.stdout.strip() == "ready"


def test_tail_stops_when_the_writer_was_killed(cli: Invoke, tmp_path: Path) -> None:
    root = tmp_path / "audit"
    _record_and_kill(root, "ExportSettings(chunk_size_bytes=200)")
    result = cli("tail", root, "killed", "--timeout", "60")
    assert result.code == 1, result
    assert "writer of run killed is gone" in result.err
    assert "not sealed (timed out)" not in result.err
    assert len(result.out.splitlines()) == 4  # its node and rows: all the export holds
    result = cli("tail", root, "killed", "--journal", "--timeout", "60")
    assert result.code == 1, result
    assert "writer of run killed is gone" in result.err
    assert "row_created" in result.out


def test_tail_stops_on_a_completed_run_without_an_export(cli: Invoke, tmp_path: Path) -> None:
    from auditjournal import AuditStore

    root = tmp_path / "audit"
    with AuditStore.open(root) as store, store.start_run(export=None, run_id="plain") as run:
        run.register_node(plugin_name="src", node_type="source")
    result = cli("tail", root, "plain", "--timeout", "60")
    assert result.code == 1, result
    assert "completed without a live export" in result.err
    assert "auditjournal project" in result.err
    # the journal of the same run: complete, so tail --journal shows it and ends well
    result = cli("tail", root, "plain", "--journal", "--timeout", "60")
    assert result.code == 0, result
    assert result.out.splitlines()[-1].split()[2] == "run_completed"


def test_tail_stops_on_a_sealed_export_with_a_chunk_missing(
    cli: Invoke, recorded: Recorded, tmp_path: Path
) -> None:
    root = tmp_path / "audit"
    shutil.copytree(recorded.root, root)
    chunks = sorted((root / "runs" / recorded.run_id / "export").glob("audit_trail.*.json"))
    chunks = [c for c in chunks if "manifest" not in c.name]
    assert len(chunks) >= 3
    chunks[1].unlink()
    result = cli("tail", root, recorded.run_id, "--timeout", "60")
    assert_one_line_error(result, 1, chunks[1].name, "is missing")


def test_tail_latest_lines_and_timestamps(cli: Invoke, recorded: Recorded, tmp_path: Path) -> None:
    root = tmp_path / "audit"
    shutil.copytree(recorded.root, root)
    run_demo(root, rows=2)  # started later: the newest
    newest = sorted(p.name for p in (root / "runs").iterdir() if p.name != recorded.run_id)
    result = cli("tail", root, "--latest", "-n", "3", "--timeout", "60")
    assert result.code == 0, result
    assert f"following run {newest[0]}" in result.err
    lines = result.out.splitlines()
    assert len(lines) == 3
    assert lines[-1].split()[2] == "run"  # the run record closes the export
    assert all(re.search(r" 20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d", line) for line in lines), lines
    every = cli("tail", root, recorded.run_id, "--json", "--timeout", "60")
    last_two = cli("tail", root, recorded.run_id, "--json", "-n", "2", "--timeout", "60")
    assert last_two.out.splitlines() == every.out.splitlines()[-2:]
    journal = cli("tail", root, recorded.run_id, "--journal", "-n", "2", "--json")
    assert [json.loads(x)["type"] for x in journal.out.splitlines()] == [
        "node_state_completed",
        "run_completed",
    ] or len(journal.out.splitlines()) == 2
    assert_one_line_error(cli("tail", root, "--timeout", "1"), 2, "--latest")


# -- item 9: the smaller findings ----------------------------------------------------------------


def test_tail_type_must_be_a_record_type(cli: Invoke, recorded: Recorded) -> None:
    result = cli("tail", recorded.root, recorded.run_id, "--type", "nodestate")
    assert_one_line_error(result, 2, "'nodestate' is not one of", "node_state")
    result = cli("tail", recorded.root, recorded.run_id, "--journal", "--type", "node_state")
    assert_one_line_error(result, 2, "'node_state' is not one of", "node_state_started")


def test_tail_node_shows_its_calls_and_routing_like_extract(
    cli: Invoke, recorded: Recorded, tmp_path: Path
) -> None:
    every = [
        json.loads(x)
        for x in cli("tail", recorded.root, recorded.run_id, "--json").out.splitlines()
    ]
    nodes = {r["node_id"]: r for r in every if r["record_type"] == "node"}
    state_node = {r["state_id"]: r["node_id"] for r in every if r["record_type"] == "node_state"}
    for kind in ("call", "routing_event"):
        node = next(state_node[r["state_id"]] for r in every if r["record_type"] == kind)
        assert node in nodes
        shown = cli("tail", recorded.root, recorded.run_id, "--json", "--node", node)
        records = [json.loads(x) for x in shown.out.splitlines()]
        bundle = tmp_path / f"{kind}.json"
        assert cli("extract", recorded.export, "--node", node, "--out", bundle).code == 0
        extracted = sorted(r["record"]["seq"] for r in json.loads(bundle.read_text())["records"])
        # the same records, and the edges to and from the node (which name it)
        assert sorted(r["seq"] for r in records if r["record_type"] != "edge") == extracted
        edges = [r for r in records if r["record_type"] == "edge"]
        assert edges and all(node in (e["from_node_id"], e["to_node_id"]) for e in edges)
        assert kind in {r["record_type"] for r in records}


def test_broken_pipe_exits_0(tmp_path: Path) -> None:
    """``tail | head -1``: the reader goes away; like other tools, exit 0 and say nothing.
    The output is larger than a pipe holds, so tail is still writing when head leaves."""
    run = run_demo(tmp_path / "audit", rows=150)
    size = sum(p.stat().st_size for p in run.export_dir.glob("audit_trail.*.json"))
    assert size > 4 * 65536
    script = (
        f"{sys.executable} -m auditjournal tail {run.root} {run.run_id} --json | head -1;"
        ' echo "rc=${PIPESTATUS[0]}"'
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "rc=0", done
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr


# -- items 5, 6: read commands read the root they are given, and never write to it ------------


def _tree_state(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``root`` with its mode and bytes (a new -wal or -shm file counts)."""
    return {
        str(p.relative_to(root)): (p.stat().st_mode, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_runs_and_show_check_the_copy_they_are_given(
    cli: Invoke, recorded: Recorded, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(recorded.root, copy)
    manifest = copy / "runs" / recorded.run_id / "export" / "audit_trail.manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"chunk_count"', b'"chunk_count" '))
    listed = json.loads(cli("runs", copy, "--json").out)
    assert listed[0]["export"]["state"] == "sealed, manifest differs from the journal"
    assert listed[0]["export"]["manifest"] == str(manifest)
    shown = json.loads(cli("show", copy, recorded.run_id, "--json").out)
    assert shown["export"]["manifest_matches_journal"] is False
    original = json.loads(cli("runs", recorded.root, "--json").out)
    assert original[0]["export"]["state"] == "sealed"
    shutil.rmtree(manifest.parent)
    listed = json.loads(cli("runs", copy, "--json").out)
    assert listed[0]["export"]["state"] == "sealed, manifest missing"


def test_read_commands_work_on_a_read_only_copy(
    cli: Invoke, recorded: Recorded, tmp_path: Path
) -> None:
    rows = [
        json.loads(line)["row_id"]
        for line in cli(
            "tail", recorded.root, recorded.run_id, "--json", "--type", "row"
        ).out.splitlines()
    ]
    expected = {
        "runs": cli("runs", recorded.root, "--json").out,
        "show": cli("show", recorded.root, recorded.run_id, "--json").out,
        "explain": cli("explain", recorded.root, recorded.run_id, "--row", rows[0], "--json").out,
        "verify-store": cli("verify-store", recorded.root, "--json").out,
    }
    with read_only_copy(tmp_path / "ro", recorded.root) as ro:
        root = ro / recorded.root.name
        got = {
            "runs": cli("runs", root, "--json"),
            "show": cli("show", root, recorded.run_id, "--json"),
            "explain": cli("explain", root, recorded.run_id, "--row", rows[0], "--json"),
            "verify-store": cli("verify-store", root, "--json"),
        }
        for name, result in got.items():
            assert result.code == 0, (name, result)
            assert result.out.replace(str(root), str(recorded.root)) == expected[name], name


def test_read_commands_never_write_to_the_store(cli: Invoke, tmp_path: Path) -> None:
    """Neither when the tables are current nor when a journal holds more than they do
    (a run recorded without SQL): the answer is complete, the store unchanged."""
    from auditjournal import AuditStore

    root = tmp_path / "audit"
    first = run_demo(root, rows=3)
    with AuditStore.open(root) as store, store.start_run(run_id="no-sql", sql=False) as run:
        src = run.register_node(plugin_name="src", node_type="source")
        row = run.create_row(source_node_id=src, row_index=0, data={"customer_id": "C7"})
    before = _tree_state(root)
    listed = cli("runs", root, "--json")
    assert listed.code == 0, listed
    by_id = {r["run_id"]: r for r in json.loads(listed.out)}
    assert by_id["no-sql"]["rows"] == 1 and by_id["no-sql"]["status"] == "completed"
    assert by_id[first.run_id]["rows"] == 3
    assert cli("show", root, "no-sql").code == 0
    explained = cli("explain", root, "no-sql", "--row", row, "--json")
    assert json.loads(explained.out)["row"]["source_data"] == {"customer_id": "C7"}
    assert cli("runs", root).code == 0
    assert cli("verify-store", root).code == 0
    assert _tree_state(root) == before
    # a database the caller names is theirs: brought up to date there
    mine = tmp_path / "mine.db"
    assert cli("runs", root, "--db", f"sqlite:///{mine}").code == 0
    assert mine.is_file()


def test_read_commands_read_a_version_1_database_without_upgrading_it(
    cli: Invoke, tmp_path: Path
) -> None:
    """A landscape.db of schema version 1 (before issue 14's tables and columns) cannot be
    upgraded by a read command (read-only): it is upgraded in the copy in memory."""
    import sqlite3

    root = tmp_path / "audit"
    first = run_demo(root, rows=3)
    db = root / "landscape.db"
    with sqlite3.connect(db) as conn:  # as version 1 had it: no operations table
        conn.execute("DROP TABLE operations")
        conn.execute("UPDATE schema_version SET version = 1")
    conn.close()
    before = _tree_state(root)
    shown = cli("show", root, first.run_id, "--json")
    assert shown.code == 0, shown
    assert json.loads(shown.out)["run"]["status"] == "completed"
    rows = cli("tail", root, first.run_id, "--json", "--type", "row").out.splitlines()
    row = json.loads(rows[0])["row_id"]
    explained = cli("explain", root, first.run_id, "--row", row, "--json")
    assert explained.code == 0, explained
    assert json.loads(explained.out)["row"]["row_id"] == row
    assert _tree_state(root) == before  # still version 1: the caller's to upgrade
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (1,)
    conn.close()


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A signed export and its public key."""
    from auditjournal.proofs.signing import generate_keypair

    base = tmp_path_factory.mktemp("signed")
    private, public = generate_keypair(base / "keys")
    settings = ExportSettings(chunk_size_bytes=3000, sign="ed25519", signing_key_file=str(private))
    run = run_demo(base / "audit", rows=4, export=settings)
    return run.export_dir, public


def test_a_signature_not_checked_is_said_loudly_and_can_be_required(
    cli: Invoke, signed: tuple[Path, Path], recorded: Recorded
) -> None:
    export, public = signed
    result = cli("verify", export)
    assert result.code == 0
    assert "signature present but NOT CHECKED (no key given)" in result.out
    assert "WARNING: the manifest is signed but its signature was NOT checked" in result.err
    assert_one_line_error(cli("verify", export, "--require-signature"), 2, "--public-key")
    result = cli("verify", export, "--require-signature", "--public-key", public)
    assert result.code == 0 and result.out.rstrip().endswith("VALID"), result
    assert "WARNING" not in result.err
    # an unsigned export fails when a signature is required
    result = cli("verify", recorded.export, "--require-signature", "--public-key", public)
    assert result.code == 1
    assert "audit_trail.manifest.json: INVALID: signature: the manifest is not signed" in result.out
    from auditjournal.evidence.verify import verify_export

    unchecked = verify_export(export, require_signature=True)
    assert not unchecked.ok
    assert unchecked.checks[0].reason == (
        "a signature is required; it is present but NOT CHECKED (no key given)"
    )


def test_a_tampered_chunk_is_blamed_alone(cli: Invoke, recorded: Recorded, tmp_path: Path) -> None:
    export = tmp_path / "export"
    shutil.copytree(recorded.export, export)
    chunk = export / "audit_trail.001.json"
    data = bytearray(chunk.read_bytes())
    at = data.index(b'"seq":') + 6
    data[at] = ord("9") if data[at] != ord("9") else ord("8")
    chunk.write_bytes(bytes(data))
    result = cli("verify", export)
    assert result.code == 1
    invalid = [line for line in result.out.splitlines() if "INVALID:" in line]
    # the chunk alone: not the manifest (its root), not the next chunk (its first seq)
    assert len(invalid) == 1 and invalid[0].startswith("audit_trail.001.json: INVALID: ")
    chunk.unlink()
    invalid = [line for line in cli("verify", export).out.splitlines() if "INVALID:" in line]
    assert invalid == ["audit_trail.001.json: INVALID: missing"]


def test_the_sha256_listing_covers_the_manifest(recorded: Recorded, tmp_path: Path) -> None:
    export = tmp_path / "export"
    shutil.copytree(recorded.export, export)
    check = ["sha256sum", "-c", "--quiet", "audit_trail.sha256"]
    assert subprocess.run(check, cwd=export).returncode == 0
    manifest = export / "audit_trail.manifest.json"
    lines = (export / "audit_trail.sha256").read_text().splitlines()
    assert lines[-1].endswith("  audit_trail.manifest.json")
    manifest.write_bytes(manifest.read_bytes().replace(b'"run_status"', b'"run_status" '))
    assert subprocess.run(check, cwd=export, capture_output=True).returncode == 1
    report = verify_export(export)
    listing = next(c for c in report.checks if c.file == "audit_trail.sha256")
    assert listing.reason == "lists another sha256 for audit_trail.manifest.json"


def test_a_chunk_size_out_of_range_is_a_usage_error(
    cli: Invoke, recorded: Recorded, tmp_path: Path
) -> None:
    result = cli("demo", "--root", tmp_path / "d", "--chunk-size", "0")
    assert_one_line_error(result, 2, "chunk_size_bytes must be")
    assert not (tmp_path / "d").exists()
    result = cli(
        "replay", recorded.root, recorded.run_id, "--out", tmp_path / "r", "--chunk-size", "-5"
    )
    assert_one_line_error(result, 2, "chunk_size_bytes must be")


def test_root_and_database_from_the_environment(
    cli: Invoke, recorded: Recorded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDITJOURNAL_ROOT", str(recorded.root))
    listed = cli("runs", "--json")
    assert listed.code == 0, listed
    assert [r["run_id"] for r in json.loads(listed.out)] == [recorded.run_id]
    shown = cli("show", recorded.run_id, "--json")
    assert shown.code == 0 and json.loads(shown.out)["run"]["run_id"] == recorded.run_id
    tail = cli("tail", recorded.run_id, "-n", "1")
    assert tail.code == 0 and tail.out.split()[2] == "run"
    database = tmp_path / "env.db"
    monkeypatch.setenv("AUDITJOURNAL_DATABASE_URL", f"sqlite:///{database}")
    assert cli("runs").code == 0
    assert database.is_file()  # the tables went where the environment said
    # without the variable, ./audit (help said so; now it is true)
    monkeypatch.delenv("AUDITJOURNAL_ROOT")
    monkeypatch.delenv("AUDITJOURNAL_DATABASE_URL")
    monkeypatch.chdir(recorded.root.parent)
    assert recorded.root.name == "audit"
    assert json.loads(cli("runs", "--json").out)[0]["run_id"] == recorded.run_id
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(cli("runs"), 2, "audit is not an auditjournal root")


def test_json_on_replay_extract_project_keygen(
    cli: Invoke, recorded: Recorded, tmp_path: Path
) -> None:
    replayed = cli("replay", recorded.root, recorded.run_id, "--out", tmp_path / "r", "--json")
    assert replayed.code == 0, replayed
    value = json.loads(replayed.out)
    assert (
        value["export"]["manifest_sha256"]
        == hashlib.sha256((tmp_path / "r" / "audit_trail.manifest.json").read_bytes()).hexdigest()
    )
    assert value["tables"] is None
    bundle = tmp_path / "b.json"
    extracted = json.loads(
        cli("extract", recorded.export, "--seq", "5", "--out", bundle, "--json").out
    )
    assert extracted == {"out": str(bundle), "records": 1, "seqs": [5]}
    keys = json.loads(cli("keygen", "--out", tmp_path / "keys", "--json").out)
    assert Path(keys["private_key"]).is_file() and Path(keys["public_key"]).is_file()
    assert "PRIVATE" not in json.dumps(keys)
    from auditjournal import AuditStore

    root = tmp_path / "audit"
    with AuditStore.open(root) as store, store.start_run(export=None, run_id="later") as run:
        run.register_node(plugin_name="src", node_type="source")
    projected = cli("project", root, "--json")
    assert projected.code == 0, projected
    (line,) = projected.out.splitlines()
    assert json.loads(line)["run_id"] == "later" and json.loads(line)["chunk_count"] >= 1


def test_tables_right_align_numbers_and_show_names_edges(cli: Invoke, recorded: Recorded) -> None:
    lines = cli("runs", recorded.root).out.splitlines()
    header, row = lines[0], lines[1]
    for column in ("ROWS", "EVENTS", "DURATION"):
        end = header.index(column) + len(column)
        assert row[end - 1] != " " and row[end] == " ", (column, header, row)
    shown = cli("show", recorded.root, recorded.run_id).out
    assert "edge-" in shown
    # each edge names both nodes by id (plugin names repeat: two csv_sink nodes) and its label
    edge = r"edge-\d+ +node-\d+ \(route_by_score\) +--review--> +node-\d+ \(csv_sink\) +move$"
    assert re.search(edge, shown, re.MULTILINE)
    counts = shown.splitlines()
    header = next(line for line in counts if line.split() == ["COUNT", "TOTAL", "BY"])
    rows = next(line for line in counts if line.strip().startswith("rows "))
    end = header.index("TOTAL") + len("TOTAL")
    assert rows[end - 1] != " " and rows.rstrip() == rows[:end], (header, rows)
    assert all(line == line.rstrip() for line in shown.splitlines())  # no trailing spaces


@pytest.mark.parametrize("no_color", [False, True])
def test_tables_on_a_terminal_are_styled_unless_no_color(
    cli: Invoke, recorded: Recorded, monkeypatch: pytest.MonkeyPatch, no_color: bool
) -> None:
    """On a terminal (FORCE_COLOR makes rich treat the capture as one) the status is
    coloured; NO_COLOR keeps the table and drops every escape sequence. --json stays JSON."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("TERM", raising=False)
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    runs = cli("runs", recorded.root).out
    shown = cli("show", recorded.root, recorded.run_id).out
    for out in (runs, shown):
        assert ("\x1b[" in out) is not no_color, out
        assert "completed" in out and "sealed" in out
    assert re.sub(r"\x1b\[[0-9;]*m", "", runs).split()[:7] == [
        "RUN",
        "STATUS",
        "STARTED",
        "DURATION",
        "ROWS",
        "EVENTS",
        "EXPORT",
    ]
    listed = json.loads(cli("runs", recorded.root, "--json").out)
    assert [r["run_id"] for r in listed] == [recorded.run_id]
    assert json.loads(cli("show", recorded.root, recorded.run_id, "--json").out)["run"][
        "status"
    ] == ("completed")
    routing = next(line for line in shown.splitlines() if line.strip().startswith("routing_events"))
    assert "edge-" not in routing and "review -> node-" in routing


# -- item 7: honest progress, --quiet ---------------------------------------------------------


def test_verify_progress_adds_up_to_its_total(recorded: Recorded) -> None:
    """The bar's total is what verify reports, to the byte: plain (it ended at 99 %) and
    with the journal (it sat at 99 % while the journal was checked)."""
    from auditjournal.evidence.verify import verify_work
    from auditjournal.journal.filebackend import FileRunJournal
    from auditjournal.payloads.store import PayloadStore

    seen: list[int] = []
    assert verify_export(recorded.export, progress=seen.append).ok
    assert sum(seen) == verify_work(recorded.export) > 0
    journal = recorded.root / "runs" / recorded.run_id / "journal"
    payloads = PayloadStore(recorded.root / "payloads")
    try:
        seen.clear()
        report = verify_export(recorded.export, journal=(journal, payloads), progress=seen.append)
    finally:
        payloads.close()
    assert report.ok
    journal_bytes = sum(p.stat().st_size for p in journal.glob("*.jsonl"))
    assert (
        sum(seen)
        == verify_work(recorded.export, FileRunJournal(journal, recorded.run_id))
        == verify_work(recorded.export) + 2 * journal_bytes
    )
    assert seen[-2:] == [journal_bytes, journal_bytes]  # the journal's two steps come last


def test_verify_quiet_prints_only_what_is_invalid(
    cli: Invoke, recorded: Recorded, tmp_path: Path
) -> None:
    result = cli("verify", recorded.export, "--quiet")
    assert (result.code, result.out, result.err) == (0, "", "")
    export = tmp_path / "export"
    shutil.copytree(recorded.export, export)
    (export / "audit_trail.002.json").unlink()
    result = cli("verify", export, "-q")
    assert result.code == 1
    assert result.out == "audit_trail.002.json: INVALID: missing\n"
    bundle = tmp_path / "b.json"
    assert cli("extract", recorded.export, "--seq", "5", "--out", bundle).code == 0
    result = cli("verify-bundle", bundle, "--quiet")
    assert (result.code, result.out) == (0, "")


# -- item 4: runs whose writer is gone are flagged ------------------------------------------


def test_runs_show_project_flag_a_run_whose_writer_is_gone(cli: Invoke, tmp_path: Path) -> None:
    from auditjournal import AuditStore

    root = tmp_path / "audit"
    _record_and_kill(root, "None")
    with AuditStore.open(root) as store:
        live = store.start_run(run_id="live", export=None)  # its writer: this process
        try:
            listed = cli("runs", root)
            assert listed.code == 0, listed
            status = {line.split()[0]: line for line in listed.out.splitlines()[1:]}
            assert "running, writer gone" in status["killed"]
            assert "writer gone" not in status["live"] and "running" in status["live"]
            assert "run killed is running but its writer is gone" in listed.err
            assert "run live" not in listed.err
            as_json = {r["run_id"]: r for r in json.loads(cli("runs", root, "--json").out)}
            assert as_json["killed"]["writer_gone"] and not as_json["live"]["writer_gone"]
            shown = cli("show", root, "killed")
            assert "its writer is gone" in shown.out and "resume_run('killed')" in shown.err
            assert "writer is gone" not in cli("show", root, "live").out
            projected = cli("project", root, "--run", "killed", "--no-sql")
            assert "run killed did not complete and its writer is gone" in projected.err
        finally:
            live.complete()
    # once completed, nothing is flagged
    with AuditStore.open(root) as store:
        store.resume_run("killed").complete()
    listed = cli("runs", root)
    assert "writer gone" not in listed.out + listed.err


# -- item 8: "what happened to customer C0001?" ------------------------------------------------


def test_explain_finds_rows_by_index_and_by_a_source_field(cli: Invoke, recorded: Recorded) -> None:
    rows = [
        json.loads(line)
        for line in cli(
            "tail", recorded.root, recorded.run_id, "--json", "--type", "row"
        ).out.splitlines()
    ]
    by_index = cli("explain", recorded.root, recorded.run_id, "--row-index", "2", "--json")
    assert by_index.code == 0, by_index
    (found,) = json.loads(by_index.out)
    assert found["row_id"] == next(r["row_id"] for r in rows if r["row_index"] == 2)
    customer = rows[3]["source_data"]["customer_id"]
    by_field = cli("explain", recorded.root, recorded.run_id, "--where", f"customer_id={customer}")
    assert by_field.code == 0, by_field
    assert by_field.out.startswith(f"row {rows[3]['row_id']} (index {rows[3]['row_index']})")
    both = cli(
        "explain",
        recorded.root,
        recorded.run_id,
        "--row-index",
        "2",
        "--where",
        f"customer_id={customer}",
    )
    assert_one_line_error(both, 2, "no row with row_index 2 and customer_id=")
    assert_one_line_error(cli("explain", recorded.root, recorded.run_id), 2, "name the row")
    assert_one_line_error(
        cli("explain", recorded.root, recorded.run_id, "--where", "customer_id"), 2, "FIELD=VALUE"
    )


def test_explain_where_passes_over_rows_whose_data_was_not_retained(
    cli: Invoke, tmp_path: Path
) -> None:
    """A hash-only row (issue 14) has no data to compare: it matches no --where, and the
    rows that have data are still found."""
    from auditjournal import AuditStore

    root = tmp_path / "audit"
    with AuditStore.open(root) as store, store.start_run(run_id="mixed") as run:
        src = run.register_node(plugin_name="src", node_type="source")
        run.create_row(source_node_id=src, row_index=0, source_data_hash="ab" * 32)
        kept = run.create_row(source_node_id=src, row_index=1, data={"customer_id": "C7"})
    found = cli("explain", root, "mixed", "--where", "customer_id=C7", "--json")
    assert found.code == 0, found
    (explained,) = json.loads(found.out)
    assert explained["row_id"] == kept
    assert_one_line_error(
        cli("explain", root, "mixed", "--where", "customer_id=C8"), 2, "no row with"
    )


def test_explain_shows_what_each_step_changed_and_routes_by_label(
    cli: Invoke, recorded: Recorded
) -> None:
    row = json.loads(
        cli("tail", recorded.root, recorded.run_id, "--json", "--type", "row").out.splitlines()[0]
    )
    out = cli("explain", recorded.root, recorded.run_id, "--row", row["row_id"], "--full").out
    # the demo's normalize step trims the name; the LLM step adds a sentiment
    assert re.search(r'^        ~ name: "\s+\S.*" -> "\S.*\S"$', out, re.M), out
    assert re.search(r"^        \+ sentiment: \{", out, re.M), out
    routed = [line for line in out.splitlines() if line.startswith("      routed ")]
    assert routed and all(
        re.search(r"routed (accepted|review) -> node-\d+ \(csv_sink\)", r) for r in routed
    )
    assert "edge-" not in "\n".join(routed)


def test_field_diff() -> None:
    from auditjournal.sql.rowfind import field_diff

    before = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}
    after = {"a": 1, "b": {"c": 2, "d": 4, "x": None}, "f": "new"}
    assert field_diff(before, after) == [
        ("~", "b.d", 3, 4),
        ("+", "b.x", None, None),
        ("-", "e", [1], None),
        ("+", "f", None, "new"),
    ]
    assert field_diff(1, 1.0) == [("~", "", 1, 1.0)]
    assert field_diff({"a": 1}, {"a": 1}) == []


# -- item 11: the standard logging an operator already collects ---------------------------------


def test_a_recovery_is_logged_with_the_bytes_dropped_and_no_payload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from auditjournal import AuditStore

    root = tmp_path / "audit"
    _record_and_kill(root, "None")
    segment = sorted((root / "runs" / "killed" / "journal").glob("*.jsonl"))[-1]
    torn = b'{"type":"row_created","data":"secret-payload-value'
    with open(segment, "ab") as fh:
        fh.write(torn)
    with caplog.at_level(logging.WARNING, logger="auditjournal"), AuditStore.open(root) as store:
        store.resume_run("killed").complete()
    (record,) = [r for r in caplog.records if "recovered after a crash" in r.getMessage()]
    assert record.name.startswith("auditjournal.")
    message = record.getMessage()
    assert f"{len(torn)} byte(s) of a torn last entry dropped from {segment.name}" in message
    assert "secret" not in message


def test_report_progress_adds_up_to_its_total(recorded: Recorded, tmp_path: Path) -> None:
    """The report reads the chunks twice (verify, then the records); its bar's total is
    both, to the byte (it was cut in halves and ended short)."""
    from auditjournal.evidence.verify import verify_work
    from auditjournal.report import write_report

    seen: list[int] = []
    write_report(recorded.export, tmp_path / "r.html", progress=seen.append)
    assert sum(seen) == 2 * verify_work(recorded.export)


@pytest.mark.parametrize("workers", [1, 2])
def test_replay_progress_adds_up_to_the_journal(
    recorded: Recorded, tmp_path: Path, workers: int
) -> None:
    """replay had no progress at all; now it reports journal bytes as they are projected,
    in one process and in ranges on worker processes, adding up to the journal's size."""
    from auditjournal.export.replay import replay_export
    from auditjournal.journal.filebackend import FileRunJournal
    from auditjournal.payloads.store import PayloadStore

    journal = recorded.root / "runs" / recorded.run_id / "journal"
    payloads = PayloadStore(recorded.root / "payloads")
    seen: list[int] = []
    try:
        result = replay_export(
            journal_dir=journal,
            run_id=recorded.run_id,
            payloads=payloads,
            settings=ExportSettings(chunk_size_bytes=5000),
            prefix=tmp_path / "audit_trail",
            workers=workers,
            range_bytes=4096,
            progress=seen.append,
        )
    finally:
        payloads.close()
    assert result is not None
    assert sum(seen) == FileRunJournal(journal, recorded.run_id).size_bytes() > 0
    assert all(n > 0 for n in seen)
    if workers > 1:
        assert len(seen) > 2  # range by range (one process: one step per 4096 events)
    assert (tmp_path / "audit_trail.manifest.json").read_bytes() == (
        recorded.export / "audit_trail.manifest.json"
    ).read_bytes()


def test_verify_colours_its_verdicts_unless_no_color(recorded: Recorded) -> None:
    """Through rich: colours on a terminal (forced here with FORCE_COLOR), none with
    NO_COLOR (https://no-color.org), none into a pipe; the words are the same."""
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}

    def verify(**env: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "auditjournal", "verify", str(recorded.export)],
            capture_output=True,
            text=True,
            env={**base, **env},
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    coloured = verify(FORCE_COLOR="1")
    assert "\x1b[32m" in coloured  # green "valid"
    plain = verify()
    assert "\x1b[" not in plain
    no_color = verify(FORCE_COLOR="1", NO_COLOR="1")
    assert not re.search(r"\x1b\[(3\d|9\d)", no_color)  # no colour; bold may stay
    strip = re.compile(r"\x1b\[[0-9;]*m")
    assert strip.sub("", coloured) == plain == strip.sub("", no_color)


def test_a_lock_probe_refuses_a_planted_link(
    cli: Invoke, recorded: Recorded, tmp_path: Path
) -> None:
    root = tmp_path / "audit"
    shutil.copytree(recorded.root, root)
    lock = root / "runs" / recorded.run_id / "journal" / ".lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(tmp_path / "elsewhere")
    result = cli("runs", root)
    assert "Traceback" not in result.err
    assert result.code == 0  # a completed run: its writer is not asked about
    from auditjournal.errors import StorageError
    from auditjournal.fs.storage import lock_held

    with pytest.raises(StorageError, match="cannot probe lock file"):
        lock_held(lock)
