"""``import-landscape`` on the eight real Landscape databases (issue 14, item 6).

Each fixture run imports; ``verify --journal`` is VALID; per table the rows read and
imported equal the database's own counts; the sealed export has the expected
number of records; payloads are in the store with the fixture files' bytes;
original times, ids and hashes are kept; importing again is refused and appends
nothing. The fixtures are opened read-only and never written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pty
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from auditjournal import AuditStore, canonical_json
from auditjournal.errors import RowNotFoundError
from auditjournal.evidence.verify import verify_export
from auditjournal.landscape.importer import import_landscape
from auditjournal.landscape.schema import TABLES, THROUGH
from auditjournal.sql import lineage, lineagetext
from landscape_run import record_landscape

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "elspeth-landscape"
if not FIXTURES.is_dir():
    FIXTURES = Path("/work/shared/fixtures/elspeth-landscape")
RECORDS = {
    "audit_export": 69,
    "batch_aggregation": 114,
    "chaosllm_sentiment": 87,
    "fork_coalesce": 113,
    "json_explode": 42,
    "landscape_journal": 21,
    "nan_json": 41,
    "schema_contracts_demo": 55,
}
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="Landscape fixtures not found")


def landscape(name: str) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{FIXTURES / name / 'audit.db'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def run_id_of(name: str) -> str:
    with landscape(name) as conn:
        return str(conn.execute("SELECT run_id FROM runs").fetchone()[0])


def counts(name: str, run_id: str) -> dict[str, int]:
    """Per table, the run's rows, counted by the database itself."""
    out = {}
    with landscape(name) as conn:
        for table in TABLES:
            if table == "calls":
                query = (
                    "SELECT count(*) FROM calls WHERE state_id IN (SELECT state_id FROM "
                    "node_states WHERE run_id = ?) OR operation_id IN (SELECT operation_id "
                    "FROM operations WHERE run_id = ?)"
                )
                out[table] = conn.execute(query, (run_id, run_id)).fetchone()[0]
            elif table in THROUGH:
                parent, column, key = THROUGH[table]
                query = (
                    f"SELECT count(*) FROM {table} WHERE {column} IN "
                    f"(SELECT {key} FROM {parent} WHERE run_id = ?)"
                )
                out[table] = conn.execute(query, (run_id,)).fetchone()[0]
            else:
                query = f"SELECT count(*) FROM {table} WHERE run_id = ?"
                out[table] = conn.execute(query, (run_id,)).fetchone()[0]
    return out


def records_of(store: AuditStore, run_id: str) -> list[dict[str, Any]]:
    export = store.export_dir(run_id)
    manifest = json.loads((export / "audit_trail.manifest.json").read_text())
    out: list[dict[str, Any]] = []
    for chunk in manifest["chunks"]:
        out += json.loads((export / chunk["file"]).read_text())
    return out


def iso(text: str) -> str:
    return dt.datetime.fromisoformat(text).isoformat() + "Z"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """All eight fixtures imported into one store (the fixtures themselves untouched)."""
    before = {p: p.read_bytes() for p in FIXTURES.rglob("audit.db")}
    root = tmp_path_factory.mktemp("imported") / "audit"
    reports = {}
    with AuditStore.open(root) as store:
        for name in RECORDS:
            reports[name] = import_landscape(
                str(FIXTURES / name / "audit.db"), FIXTURES / name / "payloads", store
            )
    assert {p: p.read_bytes() for p in FIXTURES.rglob("audit.db")} == before
    return {"root": root, "reports": reports}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_each_fixture_imports_whole_and_verifies(imported: dict[str, Any], name: str) -> None:
    report = imported["reports"][name]
    (run,) = report.runs
    run_id = run_id_of(name)
    assert run.run_id == run_id and run.status == "imported", run.message
    assert report.ok
    expected = counts(name, run_id)
    assert [t.table for t in run.tables] == list(TABLES)
    for table in run.tables:
        assert (table.read, table.imported) == (expected[table.table],) * 2, table
        assert table.not_mapped == ()
    assert run.records == RECORDS[name]
    with AuditStore.open(imported["root"]) as store:
        sealed = store.export_dir(run_id)
        result = verify_export(sealed, journal=(store.journal_dir(run_id), store.payloads))
        assert result.ok, result.lines
        records = records_of(store, run_id)
        assert len(records) == RECORDS[name]
        files = list((FIXTURES / name / "payloads").rglob("*"))
        for path in (p for p in files if p.is_file()):
            assert store.payloads.get(path.name) == path.read_bytes()
        assert run.payloads.missing == 0
        with landscape(name) as conn:
            started = conn.execute("SELECT started_at, completed_at FROM runs").fetchone()
            states = {
                r["state_id"]: r
                for r in conn.execute("SELECT * FROM node_states WHERE run_id = ?", (run_id,))
            }
        (run_record,) = [r for r in records if r["record_type"] == "run"]
        assert run_record["started_at"] == iso(started["started_at"])
        assert run_record["completed_at"] == iso(started["completed_at"])
        assert run_record["reproducibility_grade"] == "replay_reproducible"
        for state in (r for r in records if r["record_type"] == "node_state"):
            row = states[state["state_id"]]
            assert (
                state["input_hash"] == row["input_hash"] and state["input_data_retained"] is False
            )
            assert state["started_at"] == iso(row["started_at"])
        shown = lineage.show_run(store, run_id)
        assert shown["counts"]["rows"] == expected["rows"]
        assert sum(shown["counts"]["node_states"].values()) == expected["node_states"]


def test_importing_again_is_refused_and_appends_nothing(imported: dict[str, Any]) -> None:
    root = imported["root"]
    run_id = run_id_of("landscape_journal")
    journal = root / "runs" / run_id / "journal"
    before = {p.name: p.read_bytes() for p in journal.iterdir()}
    with AuditStore.open(root) as store:
        again = import_landscape(
            str(FIXTURES / "landscape_journal" / "audit.db"),
            FIXTURES / "landscape_journal" / "payloads",
            store,
        )
    (run,) = again.runs
    assert run.status == "refused" and f"run {run_id} is already in" in (run.message or "")
    assert not again.ok
    assert {p.name: p.read_bytes() for p in journal.iterdir()} == before


def test_a_row_rejected_at_validation_links_to_its_row(imported: dict[str, Any]) -> None:
    run_id = run_id_of("nan_json")
    with AuditStore.open(imported["root"]) as store:
        records = records_of(store, run_id)
    errors = {
        r["validation_error_id"]: r for r in records if r["record_type"] == "validation_error"
    }
    nan = errors["verr_e90fb9c0d9a2"]
    assert nan["row_id"] == "ce46c23806674fb5afff8d21479b17e2"
    assert nan["row_hash"] == "16607a75d54292a2d286814cd173b9219b84d2bf490438e1be33ebe4a6b2a1ba"
    assert nan["row_data"] == {"__line_number__": 2, "__raw_line__": '{"id": 2, "value": NaN}'}
    assert (nan["schema_mode"], nan["destination"]) == ("parse", "quarantine")
    assert errors["verr_87db719453f7"]["row_id"] == "81a75a1f7f8343458b8e79f1d633c51a"
    outcomes = {r["outcome_id"]: r for r in records if r["record_type"] == "token_outcome"}
    assert outcomes["out_ae2a791d0225"]["error_hash"] == "7b3f68595e04e337"


def test_a_row_consumed_into_a_batch(imported: dict[str, Any]) -> None:
    run_id = run_id_of("batch_aggregation")
    with AuditStore.open(imported["root"]) as store:
        records = records_of(store, run_id)
    batch = next(
        r for r in records
        if r["record_type"] == "batch" and r["batch_id"] == "616926363f4040c28a1ebd71dd5f643c"
    )  # fmt: skip
    assert (batch["status"], batch["trigger_type"], batch["attempt"]) == ("completed", "count", 0)
    assert batch["aggregation_state_id"] == "f536e6b56dd1449d8cc577d0ab4a8f33"
    members = [
        r for r in records
        if r["record_type"] == "batch_member" and r["batch_id"] == batch["batch_id"]
    ]  # fmt: skip
    assert [m["token_id"][:8] for m in sorted(members, key=lambda m: m["ordinal"])] == [
        "df1f8195", "900e886d", "30b1b5ff", "3b54c4f2", "11a67956",
    ]  # fmt: skip
    outcomes = [
        (o["outcome"], o.get("batch_id"))
        for o in records
        if o["record_type"] == "token_outcome"
        and o["token_id"] == "df1f819569ee467ab80dbdcde5d9555e"
    ]
    assert outcomes == [("buffered", batch["batch_id"]), ("consumed_in_batch", batch["batch_id"])]
    made = next(
        r for r in records
        if r["record_type"] == "token" and r["token_id"] == "a5bbc42c91654974896a42a94f35b8e9"
    )  # fmt: skip
    assert made["parent_token_ids"] == ["11a67956080f44b797db66aa2ae78daf"]
    assert made["expand_group_id"] == "0ca629f3623d412db822f926f94db088"


def test_a_forked_and_coalesced_row(imported: dict[str, Any]) -> None:
    run_id = run_id_of("fork_coalesce")
    with AuditStore.open(imported["root"]) as store:
        story = lineage.explain_row(store, run_id, "82851b06d62f4711b592ec345f0fdb22")
    forked = next(o for o in story["token_outcomes"] if o["outcome"] == "forked")
    assert forked["fork_group_id"] == "361d9a509edb493b9e0250e941d8c5b1"
    assert forked["expected_branches"] == ["path_a", "path_b"]
    joined = next(t for t in story["tokens"] if t["token_id"] == "b108b8d889224a018ae58630edb695d8")
    assert joined["parent_token_ids"] == [
        "5d0956cb07044bbaa3ea15ddde193949",
        "33ef4fdd3b3448f58505f574ddf4ee75",
    ]
    assert {r["mode"] for r in story["routing_events"]} == {"copy", "move"}


def test_a_row_with_retried_failing_calls_and_no_clear_secret(imported: dict[str, Any]) -> None:
    run_id = run_id_of("chaosllm_sentiment")
    with AuditStore.open(imported["root"]) as store:
        story = lineage.explain_row(store, run_id, "d749a2fe4eec4e97b1469aa9f5be12fa")
        records = records_of(store, run_id)
    llm = [s for s in story["node_states"] if s["node_id"] == "transform_llm_0_7e1ec10c8449"]
    assert [(s["attempt"], s["status"]) for s in llm] == [
        (0, "failed"), (1, "failed"), (2, "failed"), (3, "completed"),
    ]  # fmt: skip
    codes = [c["error"]["status_code"] for c in story["calls"] if c["status"] == "error"]
    assert codes == [429, 502, 429]
    for call in story["calls"]:  # request and response: the payload files' bytes
        request = (
            FIXTURES
            / "chaosllm_sentiment"
            / "payloads"
            / call["request_hash"][:2]
            / call["request_hash"]
        )
        assert json.loads(request.read_bytes()) == call["request"]
    node = next(
        r
        for r in records
        if r["record_type"] == "node" and r["node_id"].startswith("transform_llm")
    )
    assert node["redacted"] == ["config"] and node["config_hash"].startswith("7e1ec10c8449")
    assert node["config"]["api_key"] in ("<redacted>",) or node["config"]["api_key"].startswith(
        "<fingerprint:"
    )
    secret = b"fake-key-chaosllm-does-not-check"
    for path in imported["root"].rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path


def test_schema_contracts_and_field_resolution(imported: dict[str, Any]) -> None:
    run_id = run_id_of("schema_contracts_demo")
    with AuditStore.open(imported["root"]) as store:
        records = records_of(store, run_id)
    (run,) = [r for r in records if r["record_type"] == "run"]
    (resolution,) = run["field_resolutions"]
    assert resolution["mapping"]["  Amount (USD)  "] == "amount_usd"
    assert resolution["normalization_version"] == "1.0.0"
    hashes = {c["contract_hash"] for c in run["schema_contracts"] if c["role"] == "run"}
    assert hashes == {"0620073d82b148b5a8712698f37b92be"}


# -- failure modes, on copies ----------------------------------------------------------------


def copy_fixture(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


def test_a_damaged_payload_fails_the_run_and_leaves_nothing(tmp_path: Path) -> None:
    copy = copy_fixture("landscape_journal", tmp_path)
    victim = next(p for p in (copy / "payloads").rglob("*") if p.is_file())
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    with AuditStore.open(tmp_path / "audit") as store:
        report = import_landscape(str(copy / "audit.db"), copy / "payloads", store)
        (run,) = report.runs
        assert run.status == "failed" and "does not hash to" in (run.message or "")
        assert not store.journal_dir(run.run_id).exists()
        assert run.run_id not in [r["run_id"] for r in lineage.list_runs(store)]


def test_a_purged_payload_is_imported_hash_only(tmp_path: Path) -> None:
    copy = copy_fixture("landscape_journal", tmp_path)
    with sqlite3.connect(copy / "audit.db") as conn:
        ref = conn.execute("SELECT source_data_ref FROM rows LIMIT 1").fetchone()[0]
    (copy / "payloads" / ref[:2] / ref).unlink()
    with AuditStore.open(tmp_path / "audit") as store:
        report = import_landscape(str(copy / "audit.db"), copy / "payloads", store)
        (run,) = report.runs
        assert run.status == "imported" and run.payloads.missing == 1
        row = next(r for r in records_of(store, run.run_id) if r.get("source_data_hash") == ref)
        assert row["source_data_retained"] is False and row["source_data"] is None
        result = verify_export(
            store.export_dir(run.run_id), journal=(store.journal_dir(run.run_id), store.payloads)
        )
        assert result.ok, result.lines


PLANTED = "planted-clear-secret-4f1c"


def plant_secret(copy: Path, table: str, key: str, ref_column: str, hash_column: str) -> str:
    """Put a clear secret field into the payload of one row of ``table`` (a new
    canonical file, its ref and hash in the row); returns the row's id."""
    with sqlite3.connect(copy / "audit.db") as conn:
        ident, old = conn.execute(
            f"SELECT {key}, {ref_column} FROM {table} WHERE {ref_column} IS NOT NULL LIMIT 1"
        ).fetchone()
        value = json.loads((copy / "payloads" / old[:2] / old).read_bytes())
        value["x-api-key"] = PLANTED
        data = canonical_json(value)
        new = hashlib.sha256(data).hexdigest()
        (copy / "payloads" / new[:2]).mkdir(exist_ok=True)
        (copy / "payloads" / new[:2] / new).write_bytes(data)
        conn.execute(
            f"UPDATE {table} SET {ref_column} = ?, {hash_column} = ? WHERE {key} = ?",
            (new, new, ident),
        )
    return str(ident)


def test_a_secret_in_a_copied_call_or_operation_payload_appears_nowhere(tmp_path: Path) -> None:
    copy = copy_fixture("chaosllm_sentiment", tmp_path)
    call = plant_secret(copy, "calls", "call_id", "request_ref", "request_hash")
    operation = plant_secret(
        copy, "operations", "operation_id", "input_data_ref", "input_data_hash"
    )
    root = tmp_path / "audit"
    with AuditStore.open(root) as store:
        report = import_landscape(str(copy / "audit.db"), copy / "payloads", store)
        (run,) = report.runs
        assert run.status == "imported" and report.ok, run.message
        assert run.payloads.filtered == 2
        assert any(f"calls {call}: request" in n and "x-api-key" in n for n in run.notes)
        records = records_of(store, run.run_id)
        story_calls = [r for r in records if r.get("call_id") == call]
        csv = tmp_path / "csv"
        subprocess.run(
            [sys.executable, "-m", "auditjournal", "export-csv", str(root), run.run_id,
             "--out", str(csv)],
            check=True, capture_output=True,
        )  # fmt: skip
    (recorded,) = story_calls
    assert recorded["redacted"] == ["request"]
    assert recorded["request"]["x-api-key"] == "<redacted>"
    (op,) = [r for r in records if r.get("operation_id") == operation and "input_data" in r]
    assert op["input_data"]["x-api-key"] == "<redacted>"
    result = verify_export(
        store.export_dir(run.run_id), journal=(store.journal_dir(run.run_id), store.payloads)
    )
    assert result.ok, result.lines
    for path in [*root.rglob("*"), *csv.rglob("*")]:
        if path.is_file():
            assert PLANTED.encode() not in path.read_bytes(), path
    assert PLANTED not in json.dumps(msgspec.to_builtins(report))


def test_an_artifacts_idempotency_key_is_imported(tmp_path: Path) -> None:
    copy = copy_fixture("nan_json", tmp_path)
    with sqlite3.connect(copy / "audit.db") as conn:
        keys = {
            a: f"sink-once-{i}"
            for i, (a,) in enumerate(conn.execute("SELECT artifact_id FROM artifacts LIMIT 2"))
        }
        for artifact, key in keys.items():
            conn.execute(
                "UPDATE artifacts SET idempotency_key = ? WHERE artifact_id = ?", (key, artifact)
            )
    with AuditStore.open(tmp_path / "audit") as store:
        report = import_landscape(str(copy / "audit.db"), copy / "payloads", store)
        (run,) = report.runs
        assert run.status == "imported" and report.ok
        records = records_of(store, run.run_id)
        shown = lineage.explain_row(store, run.run_id, records_of_row(records))
    got = {
        r["artifact_id"]: r.get("idempotency_key")
        for r in records
        if r["record_type"] == "artifact"
    }
    assert {a: k for a, k in got.items() if k is not None} == keys and len(got) == 3
    assert all(a.get("idempotency_key") == keys.get(a["artifact_id"]) for a in shown["artifacts"])


def records_of_row(records: list[dict[str, Any]]) -> str:
    """The row of the first artifact's state."""
    state = next(r["state_id"] for r in records if r["record_type"] == "artifact")
    return str(next(r["row_id"] for r in records if r.get("state_id") == state and "row_id" in r))


def test_an_unknown_outcome_refuses_the_run_naming_it(tmp_path: Path) -> None:
    copy = copy_fixture("landscape_journal", tmp_path)
    with sqlite3.connect(copy / "audit.db") as conn:
        outcome_id = conn.execute("SELECT outcome_id FROM token_outcomes LIMIT 1").fetchone()[0]
        conn.execute(
            "UPDATE token_outcomes SET outcome = 'vanished' WHERE outcome_id = ?", (outcome_id,)
        )
    with AuditStore.open(tmp_path / "audit") as store:
        (run,) = import_landscape(str(copy / "audit.db"), copy / "payloads", store).runs
    assert run.status == "failed"
    assert "token_outcomes" in (run.message or "") and "vanished" in (run.message or "")


def test_an_unknown_column_is_reported_not_mapped(tmp_path: Path) -> None:
    copy = copy_fixture("landscape_journal", tmp_path)
    with sqlite3.connect(copy / "audit.db") as conn:
        conn.execute("ALTER TABLE rows ADD COLUMN shiny_new TEXT")
        conn.execute("UPDATE rows SET shiny_new = 'x'")
    with AuditStore.open(tmp_path / "audit") as store:
        report = import_landscape(str(copy / "audit.db"), copy / "payloads", store)
    (run,) = report.runs
    (rows,) = [t for t in run.tables if t.table == "rows"]
    assert [(u.what, u.rows) for u in rows.not_mapped] == [("shiny_new", 2)]
    assert run.status == "imported" and not report.ok


def test_an_interrupted_landscape_run_is_imported_as_interrupted(tmp_path: Path) -> None:
    copy = copy_fixture("landscape_journal", tmp_path)
    with sqlite3.connect(copy / "audit.db") as conn:
        conn.execute("UPDATE runs SET status = 'running', completed_at = NULL")
        (run_id,) = conn.execute("SELECT run_id FROM runs").fetchone()
        token, node = conn.execute("SELECT token_id, node_id FROM node_states LIMIT 1").fetchone()
        conn.execute(
            "INSERT INTO checkpoints VALUES ('cp-1', ?, ?, ?, 9, '{\"b\": 1.0}', NULL, "
            "'2026-11-30 10:52:40.000001', ?, ?, 4)",
            (run_id, token, node, "a" * 64, "b" * 64),
        )
    with AuditStore.open(tmp_path / "audit") as store:
        (refused,) = import_landscape(str(copy / "audit.db"), copy / "payloads", store).runs
        assert refused.status == "refused" and "--allow-running" in (refused.message or "")
        assert not store.journal(run_id).exists()
        (run,) = import_landscape(
            str(copy / "audit.db"), copy / "payloads", store, allow_running=True
        ).runs
        assert run.imported_status == "interrupted" and run.notes
        records = records_of(store, run_id)
    (cp,) = [r for r in records if r["record_type"] == "checkpoint"]
    assert cp["aggregation_state"] == '{"b": 1.0}' and cp["sequence_number"] == 9
    (run_record,) = [r for r in records if r["record_type"] == "run"]
    assert run_record["status"] == "interrupted"
    assert run_record["completed_at"] == "2026-11-30T10:52:40.000001Z"  # the latest time


def test_allow_running_on_the_command_line(tmp_path: Path) -> None:
    copy = copy_fixture("landscape_journal", tmp_path)
    with sqlite3.connect(copy / "audit.db") as conn:
        conn.execute("UPDATE runs SET status = 'running', completed_at = NULL")
    args = [
        sys.executable, "-m", "auditjournal", "import-landscape", str(copy / "audit.db"),
        "--payloads", str(copy / "payloads"), "--root", str(tmp_path / "audit"),
    ]  # fmt: skip
    refused = subprocess.run(args, capture_output=True, text=True)
    assert refused.returncode == 1 and "still marked running" in refused.stdout
    allowed = subprocess.run([*args, "--allow-running"], capture_output=True, text=True)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "running -> imported" in allowed.stdout and "as 'interrupted'" in allowed.stdout


def test_progress_counts_every_row_up_to_the_total(tmp_path: Path) -> None:
    name = "batch_aggregation"
    seen: list[Any] = []
    with AuditStore.open(tmp_path / "audit") as store:
        report = import_landscape(
            str(FIXTURES / name / "audit.db"), FIXTURES / name / "payloads", store,
            progress=seen.append,
        )  # fmt: skip
    (run,) = report.runs
    total = sum(t.imported for t in run.tables)
    assert total == sum(counts(name, run.run_id).values())
    done = [s.done for s in seen]
    assert done[-1] == total and done == sorted(set(done))  # every row, each counted once
    steps = {(s.table, b - a) for s, a, b in zip(seen[1:], done, done[1:], strict=False)}
    assert {table for table, step in steps if step != 1} == {"tokens"}  # and their parents
    assert {s.total for s in seen} == {total} and {s.run_id for s in seen} == {run.run_id}
    tables = [s.table for s in seen]
    assert tables[0] == "runs" and {"batch_members", "token_outcomes"} <= set(tables)


def test_the_command_shows_progress_on_a_terminal_and_quiet_shows_nothing(
    tmp_path: Path,
) -> None:
    name = "landscape_journal"
    args = [
        sys.executable, "-m", "auditjournal", "import-landscape", str(FIXTURES / name / "audit.db"),
        "--payloads", str(FIXTURES / name / "payloads"),
    ]  # fmt: skip
    primary, secondary = pty.openpty()  # stderr a terminal, as for a person
    env = {**os.environ, "COLUMNS": "120", "TERM": "dumb"}
    try:
        shown = subprocess.run(
            [*args, "--root", str(tmp_path / "a")], stdout=subprocess.PIPE, stderr=secondary,
            text=True, env=env,
        )  # fmt: skip
        os.close(secondary)
        err = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal's other end is closed: all read
                break
            if not chunk:
                break
            err += chunk
    finally:
        os.close(primary)
    assert shown.returncode == 0
    rows = sum(counts(name, run_id_of(name)).values())
    assert f"{rows}/{rows}" in err.decode() and "rows (token_outcomes)" in err.decode()
    quiet = subprocess.run(
        [*args, "--root", str(tmp_path / "b"), "--quiet"], capture_output=True, text=True
    )
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    again = subprocess.run(
        [*args, "--root", str(tmp_path / "b"), "-q"], capture_output=True, text=True
    )
    assert again.returncode == 1 and "already in" in again.stdout


def test_the_command_prints_the_table_and_exits_by_outcome(tmp_path: Path) -> None:
    name = "landscape_journal"
    args = [
        sys.executable, "-m", "auditjournal", "import-landscape", str(FIXTURES / name / "audit.db"),
        "--payloads", str(FIXTURES / name / "payloads"), "--root", str(tmp_path / "audit"),
    ]  # fmt: skip
    first = subprocess.run(args, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "export sealed (21 records)" in first.stdout and "token_outcomes" in first.stdout
    again = subprocess.run([*args, "--json"], capture_output=True, text=True)
    assert again.returncode == 1
    assert json.loads(again.stdout)["runs"][0]["status"] == "refused"
    bad = subprocess.run(
        [*args[:4], str(tmp_path / "nope.db"), *args[5:]], capture_output=True, text=True
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "no such database file" in bad.stderr


def test_explain_a_row_consumed_into_a_batch_shows_the_batch(imported: dict[str, Any]) -> None:
    run_id = run_id_of("batch_aggregation")
    with AuditStore.open(imported["root"]) as store:
        story = lineage.explain_row(store, run_id, "a40a76e0058d4da8aee9ca6e47c80cfc")
    (found,) = story["batches"]
    assert found["batch"]["batch_id"] == "616926363f4040c28a1ebd71dd5f643c"
    with landscape("batch_aggregation") as conn:
        members = conn.execute(
            "SELECT token_id FROM batch_members WHERE batch_id = ? ORDER BY ordinal",
            ("616926363f4040c28a1ebd71dd5f643c",),
        ).fetchall()
    assert [m["token_id"] for m in found["members"]] == [m[0] for m in members]
    assert [m["token_id"] for m in story["batch_members"]] == ["df1f819569ee467ab80dbdcde5d9555e"]
    # what the batch produced, checked against the database's own rows
    with landscape("batch_aggregation") as conn:
        (made,) = conn.execute(
            "SELECT p.token_id, p.parent_token_id FROM token_parents p JOIN batch_members m "
            "ON m.token_id = p.parent_token_id WHERE m.batch_id = ?",
            ("616926363f4040c28a1ebd71dd5f643c",),
        ).fetchall()
        states = conn.execute(
            "SELECT state_id, node_id, status FROM node_states WHERE token_id = ? "
            "ORDER BY started_at",
            (made["token_id"],),
        ).fetchall()
        outcomes = conn.execute(
            "SELECT outcome, sink_name FROM token_outcomes WHERE token_id = ?", (made["token_id"],)
        ).fetchall()
        written = conn.execute(
            "SELECT artifact_id FROM artifacts WHERE produced_by_state_id IN "
            "(SELECT state_id FROM node_states WHERE token_id = ?)",
            (made["token_id"],),
        ).fetchall()
    (produced,) = found["produced"]
    assert produced["token"]["token_id"] == made["token_id"] == "a5bbc42c91654974896a42a94f35b8e9"
    assert produced["found"] == f"child of member {made['parent_token_id']}"
    assert [(s["state_id"], s["node_id"], s["status"]) for s in produced["node_states"]] == [
        tuple(r) for r in states
    ]
    assert [(o["outcome"], o["sink_name"]) for o in produced["token_outcomes"]] == [
        tuple(r) for r in outcomes
    ]
    assert [a["artifact_id"] for a in produced["artifacts"]] == [r[0] for r in written] != []
    shown = lineagetext.render_explain(story)
    assert (
        "produced token a5bbc42c91654974896a42a94f35b8e9 of row 1dc8be3218a44ca0b5945048c48a37dc "
        f"(child of member {made['parent_token_id']})" in shown
    )
    assert (
        "    outcome completed -> output" in shown and "file://output/batch_summaries.csv" in shown
    )
    assert "batch 616926363f4040c28a1ebd71dd5f643c  completed, trigger count, 5 members" in shown
    assert "(not retained)" in shown  # node-state data is hash-only
    assert "outcome consumed_in_batch (batch 616926363f4040c28a1ebd71dd5f643c)" in shown


def test_explain_a_row_rejected_at_validation(imported: dict[str, Any]) -> None:
    run_id = run_id_of("nan_json")
    with AuditStore.open(imported["root"]) as store:
        story = lineage.explain_row(store, run_id, "ce46c23806674fb5afff8d21479b17e2")
    (error,) = story["validation_errors"]
    assert error["validation_error_id"] == "verr_e90fb9c0d9a2"
    assert error["row_data"]["__line_number__"] == 2
    assert story["outcome"] == "quarantined"
    assert any(r["mode"] == "divert" for r in story["routing_events"])
    shown = lineagetext.render_explain(story)
    assert "rejected at validation verr_e90fb9c0d9a2 (schema mode parse) -> quarantine" in shown
    assert "error hash 7b3f68595e04e337" in shown


def test_explain_a_validation_error_shows_its_story(imported: dict[str, Any]) -> None:
    run_id = run_id_of("nan_json")
    with AuditStore.open(imported["root"]) as store:
        story = lineage.explain_validation_error(store, run_id, "verr_e90fb9c0d9a2")
        with pytest.raises(RowNotFoundError, match="no validation error 'verr_nope'"):
            lineage.explain_validation_error(store, run_id, "verr_nope")
    with landscape("nan_json") as conn:
        error = conn.execute(
            "SELECT * FROM validation_errors WHERE error_id = 'verr_e90fb9c0d9a2'"
        ).fetchone()
    record = story["validation_error"]
    assert (record["error"], record["schema_mode"], record["destination"]) == (
        error["error"], error["schema_mode"], error["destination"],
    )  # fmt: skip
    assert record["row_data"] == json.loads(error["row_data_json"])
    # the rejection made a row (quarantined): the story is that row's
    assert story["row"]["row_id"] == "ce46c23806674fb5afff8d21479b17e2"
    assert story["outcome"] == "quarantined"
    args = [
        sys.executable, "-m", "auditjournal", "explain", str(imported["root"]), run_id,
        "--validation-error", "verr_e90fb9c0d9a2", "--no-refresh",
    ]  # fmt: skip
    shown = subprocess.run(args, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "rejected at validation verr_e90fb9c0d9a2 (schema mode parse) -> quarantine" in (
        shown.stdout
    )
    assert "outcome quarantined" in shown.stdout
    missing = subprocess.run([*args[:-2], "verr_nope"], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert "no validation error 'verr_nope'" in missing.stderr
    both = subprocess.run([*args, "--row", "x"], capture_output=True, text=True)
    assert both.returncode == 2 and "--validation-error ID" in both.stderr


def test_explain_a_validation_error_that_made_no_row(tmp_path: Path) -> None:
    with AuditStore.open(tmp_path / "audit") as store:
        run = store.start_run(run_id="verr-run")
        record_landscape(run)
        run.complete("completed")
        run.close()
        story = lineage.explain_validation_error(store, "verr-run", "verr-2")
    assert story["row"] is None
    assert story["validation_error"]["row_data"] == {"__raw_line__": "x"}
    shown = lineagetext.render_validation_error(story)
    assert "validation error verr-2 of run verr-run" in shown
    assert "rejected (schema mode fixed) -> discard: missing field" in shown
    assert 'data {"__raw_line__":"x"}' in shown and "it never became a row" in shown
