"""Lineage queries (runs / show / explain) over the SQL tables, and their CLI wiring.

The key property: ``explain`` of a row gives exactly the records the JSON export
holds about that row (parsed here with ``json`` from the chunk files), on every
backend.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditjournal import (
    AuditStore,
    ExportSettings,
    RowNotFoundError,
    RunNotFoundError,
    SqlDatabase,
    explain_row,
    list_runs,
    show_run,
)
from auditjournal.cli import cli, main
from test_sqlproj import BACKENDS, Backend, backend_url, dump_tables, record_rich_run

RECORD_LISTS = ("tokens", "node_states", "routing_events", "calls", "artifacts", "token_outcomes")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    url = backend_url(request.param, tmp_path)
    store = AuditStore.open(tmp_path / "root", database_url=url)
    database = store.sql_database()
    env = Backend(request.param, url, store, database, [])
    try:
        yield env
    finally:
        for run_id in env.run_ids:
            database.delete_run(run_id)
        store.close()


def export_records(store: AuditStore, run_id: str) -> list[dict[str, Any]]:
    """Every record of the run's sealed export, read with ``json`` from its chunk files."""
    directory = store.export_dir(run_id)
    manifest = json.loads((directory / "audit_trail.manifest.json").read_bytes())
    records: list[dict[str, Any]] = []
    for chunk in manifest["chunks"]:
        records += json.loads((directory / chunk["file"]).read_bytes())
    assert len(records) == manifest["total_record_count"]
    return records


def row_subset(records: list[dict[str, Any]], row_id: str) -> list[dict[str, Any]]:
    """What the export says about one row: records naming it, and artifacts of its states."""
    mine = [r for r in records if r.get("row_id") == row_id]
    states = {r["state_id"] for r in mine if r["record_type"] == "node_state"}
    mine += [r for r in records if r["record_type"] == "artifact" and r["state_id"] in states]
    return mine


def explained_records(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [result["row"], *(r for name in RECORD_LISTS for r in result[name])]


def by_identity(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: (r["record_type"], r["seq"], r.get("started_seq", 0)))


# -- explain == export ------------------------------------------------------------------


def test_explain_equals_the_export_for_every_row(backend: Backend) -> None:
    run_id = backend.new_run_id()
    record_rich_run(backend.store, run_id, export=ExportSettings(chunk_size_bytes=3000), sql=True)
    records = export_records(backend.store, run_id)
    row_ids = [r["row_id"] for r in records if r["record_type"] == "row"]
    assert len(row_ids) > 10
    kinds: set[str] = set()
    for row_id in row_ids:
        result = explain_row(backend.store, run_id, row_id, refresh=False)
        got = explained_records(result)
        want = row_subset(records, row_id)
        assert by_identity(got) == by_identity(want), f"row {row_id}"
        kinds |= {r["record_type"] for r in got}
    assert kinds == {
        "row",
        "token",
        "node_state",
        "routing_event",
        "call",
        "artifact",
        "token_outcome",
    }


def test_explain_shows_the_whole_lineage_of_a_forked_row(backend: Backend) -> None:
    run_id = backend.new_run_id()
    record_rich_run(backend.store, run_id, sql=True)
    result = explain_row(backend.store, run_id, "r9", refresh=False)  # forked, llm retried
    assert result["row"]["source_data"] == {
        "i": 9,
        "text": "row 9 lorem lorem lorem lorem ",
        "v": 2.25,
    }
    parent, *children = result["tokens"]
    assert parent["parent_token_ids"] == []
    assert [c["parent_token_ids"] for c in children] == [[parent["token_id"]]] * 2
    assert {c["branch_name"] for c in children} == {"a", "b"}
    assert [s["node_id"] for s in result["node_states"]].count("node-3") == 2
    first = result["node_states"][0]
    assert first["input_data"] == result["row"]["source_data"]
    assert first["output_data"]["clean"] is True
    statuses = [(c["status"], c["response"]) for c in result["calls"]]
    assert ("error", None) in statuses
    assert ("success", {"label": 0, "score": 0.59}) in statuses
    assert result["calls"][0]["request"] == {"prompt": "classify 9"}
    assert all(r["reason"] == {"label": 0, "rule": "label"} for r in result["routing_events"])
    outcomes = sorted(o["outcome"] for o in result["token_outcomes"])
    assert outcomes == ["completed", "completed", "forked"]
    assert result["outcome"] == "forked, completed"
    assert result["node_names"]["node-3"] == "classify"


def test_explain_an_open_state_and_a_missing_row(backend: Backend) -> None:
    run_id = backend.new_run_id()
    record_rich_run(backend.store, run_id, sql=True, rows=3)
    result = explain_row(backend.store, run_id, "row-" + str(_last_row_number(backend, run_id)))
    (state,) = result["node_states"]
    assert state["status"] == "open" and state["output_data"] is None
    assert result["outcome"] is None
    with pytest.raises(RowNotFoundError):
        explain_row(backend.store, run_id, "no-such-row")
    with pytest.raises(RunNotFoundError):
        explain_row(backend.store, "no-such-run", "r1")


def _last_row_number(backend: Backend, run_id: str) -> int:
    rows = dump_tables(backend.database, run_id)["rows"]
    return max(int(r["row_id"].split("-")[1]) for r in rows if r["row_id"].startswith("row-"))


# -- runs and show -----------------------------------------------------------------------


def test_list_runs_reports_status_counts_and_export_state(backend: Backend) -> None:
    sealed, plain, running = (backend.new_run_id(k) for k in ("sealed", "plain", "running"))
    record_rich_run(backend.store, sealed, export=ExportSettings(), sql=True, rows=4)
    record_rich_run(backend.store, plain, sql=False, rows=2)  # projected by the refresh
    run = backend.store.start_run(run_id=running, export=ExportSettings(), sql=False)
    src = run.register_node(plugin_name="csv", node_type="source")
    run.create_row(source_node_id=src, row_index=0, data={"a": 1})
    first_chunk = backend.store.export_dir(running) / "audit_trail.000.json"
    deadline = time.monotonic() + 10
    while not first_chunk.exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # the live export writes records within a flush interval
    run.close()  # unfinished: its export has chunks but no manifest
    found = {r["run_id"]: r for r in list_runs(backend.store)}
    assert set(found) == {sealed, plain, running}
    assert found[sealed]["status"] == "completed"
    assert found[sealed]["export"]["state"] == "sealed"
    assert found[sealed]["export"]["manifest_matches_journal"] is True
    assert found[sealed]["rows"] == 5
    assert found[sealed]["events"] == len(list(backend.store.read_journal(sealed)))
    assert found[sealed]["duration_s"] >= 0
    assert found[plain]["export"]["state"] == "none"
    assert found[plain]["rows"] == 3
    assert found[running]["status"] == "running"
    assert found[running]["duration_s"] is None
    assert found[running]["export"]["state"] == "live (unsealed)"


def test_list_runs_without_refresh_shows_unprojected_runs(tmp_path: Path) -> None:
    with AuditStore.open(tmp_path / "root") as store:
        record_rich_run(store, "r1", sql=False, rows=2)
        (found,) = list_runs(store, refresh=False)
        assert found["status"] == "not projected" and found["events"] == 0
        (found,) = list_runs(store)
        assert found["status"] == "completed" and found["rows"] == 3


def test_show_run_counts_by_state_outcome_and_call(backend: Backend) -> None:
    run_id = backend.new_run_id()
    record_rich_run(backend.store, run_id, export=ExportSettings(), sql=True)
    result = show_run(backend.store, run_id, refresh=False)
    assert result["run"]["status"] == "completed"
    assert result["run"]["config"] == {"name": "rich", "rows": 12}
    assert [n["plugin_name"] for n in result["nodes"]] == [
        "csv",
        "clean",
        "classify",
        "route",
        "out",
    ]
    assert len(result["edges"]) == 5
    counts = result["counts"]
    assert counts["rows"] == 13
    # rows 0-11: 5 and 11 fail, 4 and 10 are quarantined, 1 and 9 fork into two tokens;
    # the llm call errors once before succeeding for rows 0, 3, 6, 9 (both tokens of 9)
    assert counts["token_outcomes"] == {
        "completed": 10,
        "failed": 2,
        "forked": 2,
        "quarantined": 2,
    }
    assert counts["node_states"]["open"] == 1
    assert counts["node_states"]["failed"] == 2
    assert counts["calls"] == {"http/success": 1, "llm/error": 5, "llm/success": 10}
    assert counts["artifacts"] == 1  # every 5th row, but 5 fails and 10 is quarantined
    assert result["export"]["state"] == "sealed"
    assert result["events"] == len(list(backend.store.read_journal(run_id)))


# -- CLI wiring --------------------------------------------------------------------------


@pytest.fixture
def recorded_root(tmp_path: Path) -> Path:
    root = tmp_path / "audit"
    with AuditStore.open(root) as store:
        record_rich_run(store, "r1", export=ExportSettings(), sql=True, rows=4)
        record_rich_run(store, "r2", sql=False, rows=2)
    return root


def test_cli_runs_show_explain(recorded_root: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["runs", str(recorded_root)])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0].split() == [
        "RUN",
        "STATUS",
        "STARTED",
        "DURATION",
        "ROWS",
        "EVENTS",
        "EXPORT",
    ]
    assert "sealed" in out.output
    data = json.loads(runner.invoke(cli, ["runs", str(recorded_root), "--json"]).output)
    assert [r["run_id"] for r in data] == ["r1", "r2"]

    out = runner.invoke(cli, ["show", str(recorded_root), "r1"])
    assert out.exit_code == 0, out.output
    assert "classify" in out.output and "export     sealed" in out.output
    data = json.loads(runner.invoke(cli, ["show", str(recorded_root), "r1", "--json"]).output)
    assert data["counts"]["rows"] == 5

    out = runner.invoke(cli, ["explain", str(recorded_root), "r1", "--row", "r1"])
    assert out.exit_code == 0, out.output
    assert "source data" in out.output and "      routed " in out.output  # label -> target
    data = json.loads(
        runner.invoke(cli, ["explain", str(recorded_root), "r1", "--row", "r1", "--json"]).output
    )
    with AuditStore.open(recorded_root) as store:
        assert data == explain_row(store, "r1", "r1")


def test_cli_errors_are_one_line_with_usage_exit_code(
    recorded_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["explain", str(recorded_root), "r1", "--row", "nope"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == "auditjournal: error: no row 'nope' in run 'r1'"
    with pytest.raises(SystemExit) as exited:
        main(["replay", str(recorded_root), "r1"])
    assert exited.value.code == 2
    assert "--out" in capsys.readouterr().err


def test_cli_replay_db_rebuilds_tables(recorded_root: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rebuilt.db'}"
    out = CliRunner().invoke(cli, ["replay", str(recorded_root), "r1", "--db", url])
    assert out.exit_code == 0, out.output
    assert "rebuilt the SQL tables of run r1" in out.output
    assert not (tmp_path / "replayed").exists()
    with AuditStore.open(recorded_root) as store:
        live = dump_tables(store.sql_database(), "r1")
    rebuilt = SqlDatabase(url)
    assert dump_tables(rebuilt, "r1") == live
    rebuilt.close()
    out = CliRunner().invoke(
        cli,
        ["replay", str(recorded_root), "r1", "--db", "default", "--out", str(tmp_path / "x")],
    )
    assert out.exit_code == 0, out.output
    assert (tmp_path / "x" / "audit_trail.manifest.json").is_file()


@pytest.mark.parametrize("sql", [True, False])
def test_cli_project_keeps_tables_current(tmp_path: Path, sql: bool) -> None:
    root = tmp_path / "audit"
    with AuditStore.open(root) as store:
        record_rich_run(store, "r1", sql=False, rows=2)
    args = ["project", str(root), "--sql" if sql else "--no-sql"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    assert "sealed r1" in out.output
    with AuditStore.open(root) as store:
        checkpoint = store.sql_database().checkpoint("r1")
        if sql:
            assert checkpoint is not None
            assert checkpoint.last_seq == len(list(store.read_journal("r1")))
            (run,) = dump_tables(store.sql_database(), "r1")["runs"]
            assert run["export_status"] == "sealed"
        else:
            assert checkpoint is None


def test_export_state_notices_a_changed_or_missing_manifest(tmp_path: Path) -> None:
    with AuditStore.open(tmp_path / "root") as store:
        record_rich_run(store, "r1", export=ExportSettings(), sql=True, rows=2)
        manifest = store.export_dir("r1") / "audit_trail.manifest.json"
        manifest.write_bytes(manifest.read_bytes() + b" ")
        (found,) = list_runs(store)
        assert found["export"]["state"] == "sealed, manifest differs from the journal"
        assert found["export"]["manifest_matches_journal"] is False
        manifest.unlink()
        (found,) = list_runs(store)
        assert found["export"]["state"] == "sealed, manifest missing"
