"""The rest of the Landscape model (issue 14, items 1 and 2): new events and records.

Operations, batches and their members and outputs, validation and transform errors,
checkpoints, secret resolutions, preflight results, field resolution, schema
contracts, the reproducibility grade, token and outcome group fields, and the
original time of everything (``occurred_at``). Each new record type is checked in
the JSON export (live and replayed, byte for byte), in the SQL tables (SQLite and,
when configured, PostgreSQL) against the export, and in extract bundles; bad input
gets a typed error and appends nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from auditjournal import (
    AuditJournalError,
    AuditStore,
    BatchAlreadyCompletedError,
    DuplicateIdError,
    ExportSettings,
    InvalidEventError,
    LifecycleError,
    NaiveTimestampError,
    OperationAlreadyCompletedError,
    PayloadNotFoundError,
    RunRecorder,
    Selection,
    SqlDatabase,
    UnknownIdError,
    export_csv,
    extract_bundle,
    verify_bundle,
)
from auditjournal.evidence.extract import read_bundle, write_bundle
from auditjournal.evidence.verify import verify_export
from auditjournal.export.replay import replay_export
from auditjournal.model.canonical import canonical_json
from auditjournal.model.events import EVENT_TYPES
from auditjournal.model.landscape_records import CONDITIONAL, FIELDS, LANDSCAPE_RECORD_TYPES
from auditjournal.model.recordtypes import REF_FIELDS
from auditjournal.sql import lineage, schema
from landscape_run import PLUS_ONE, T0, at, record_landscape

PG_ENV = "AUDITJOURNAL_TEST_DATABASE_URL"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    s = AuditStore.open(tmp_path / "audit", durability="none")
    yield s
    s.close()


def export_records(store: AuditStore, run_id: str) -> list[dict[str, Any]]:
    directory = store.export_dir(run_id)
    manifest = json.loads((directory / "audit_trail.manifest.json").read_bytes())
    out: list[dict[str, Any]] = []
    for chunk in manifest["chunks"]:
        out += json.loads((directory / chunk["file"]).read_text())
    return out


def export_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def recorded(store: AuditStore, run_id: str = "lrun") -> tuple[dict[str, Any], RunRecorder]:
    with store.start_run(run_id=run_id, config={"p": 1}, occurred_at=at(-1)) as run:
        ids = record_landscape(run)
        run.complete(reproducibility_grade="replay_reproducible", occurred_at=at(9))
    return ids, run


def by_type(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r["record_type"] == kind]


def iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).replace(tzinfo=None).isoformat() + "Z"


# -- the export ---------------------------------------------------------------------------


def test_every_new_record_type_is_exported_with_its_fields(store: AuditStore) -> None:
    ids, _ = recorded(store)
    records = export_records(store, "lrun")
    for kind in LANDSCAPE_RECORD_TYPES:
        found = by_type(records, kind)
        assert found, kind
        for r in found:  # every field, plus appended_at only with an original time
            assert set(r) - {"appended_at"} - PAYLOADS == set(FIELDS[kind]), kind

    (load, write) = sorted(by_type(records, "operation"), key=lambda r: r["started_seq"])
    assert load["operation_id"] == ids["load"] and load["status"] == "completed"
    assert load["started_at"] == iso(at(1)) and load["completed_at"] == iso(at(2))
    assert load["input_hash"] == load["input_data_ref"]
    assert load["input_data"] == {"path": "in.csv"}
    assert load["output_data_ref"] is None and load["output_data"] is None  # hash only
    assert load["output_hash"] == hashlib.sha256(b"not kept").hexdigest()
    assert "appended_at" in load
    assert write["status"] == "open" and write["completed_at"] is None  # never completed

    batches = {r["batch_id"]: r for r in by_type(records, "batch")}
    done = batches[ids["batch"]]
    assert (done["status"], done["trigger_type"], done["aggregation_state_id"]) == (
        "completed",
        "count",
        ids["flush"],
    )
    assert done["created_at"] == iso(at(3)) and done["completed_at"] == iso(at(4))
    still = batches[ids["open_batch"]]
    assert (still["status"], still["attempt"], still["trigger_reason"]) == (
        "executing",
        1,
        "end of source",
    )
    assert still["completed_at"] is None
    members = by_type(records, "batch_member")
    assert [(m["token_id"], m["row_id"], m["ordinal"]) for m in members] == [
        (ids["tokens"][0], ids["rows"][0], 0),
        (ids["tokens"][1], ids["rows"][1], 1),
    ]
    (output,) = by_type(records, "batch_output")
    assert (output["batch_id"], output["output_type"], output["output_id"]) == (
        ids["batch"],
        "token",
        ids["produced"],
    )


def test_rejected_rows_keep_their_data_even_without_a_canonical_form(store: AuditStore) -> None:
    ids, _ = recorded(store)
    records = export_records(store, "lrun")
    errors = {r["validation_error_id"]: r for r in by_type(records, "validation_error")}
    nan = errors["verr-1"]
    assert nan["row_data_canonical"] is False
    assert nan["row_data"]["__repr__"] == "{'value': nan}"
    assert nan["row_hash"] == nan["row_data_ref"]
    assert (nan["row_id"], nan["node_id"], nan["schema_mode"], nan["destination"]) == (
        ids["rows"][2],
        ids["src"],
        "parse",
        "quarantine",
    )
    assert nan["created_at"] == iso(at(5))
    plain = errors["verr-2"]
    assert plain["row_data"] == {"__raw_line__": "x"} and plain["row_data_canonical"] is True
    assert plain["row_hash"] == hashlib.sha256(canonical_json({"__raw_line__": "x"})).hexdigest()
    assert plain["row_id"] is None and "appended_at" not in plain
    (terr,) = by_type(records, "transform_error")
    assert terr["error_details"] == {"type": "ValueError", "message": "bad"}
    assert terr["row_id"] == ids["rows"][2] and terr["row_data"] == {"id": 2}
    (cp,) = by_type(records, "checkpoint")
    assert cp["aggregation_state"] == '{"buffer": [1.0]}'  # a JSON string, kept verbatim
    assert cp["coalesce_state_ref"] is None and cp["sequence_number"] == 9


def test_run_level_facts_grade_groups_and_original_times(store: AuditStore) -> None:
    ids, _ = recorded(store)
    records = export_records(store, "lrun")
    (run,) = by_type(records, "run")
    assert run["reproducibility_grade"] == "replay_reproducible"
    assert run["started_at"] == iso(at(-1)) and run["completed_at"] == iso(at(9))
    assert "appended_at" in run and run["appended_at"] != run["completed_at"]
    (resolution,) = run["field_resolutions"]
    assert resolution["mapping"] == {
        "  Amount (USD)  ": "amount_usd",
        "Customer ID!!": "customer_id",
    }
    assert [(c["node_id"], c["role"], c["contract_hash"]) for c in run["schema_contracts"]] == [
        (None, "run", "0620"),
        (
            ids["src"],
            "output",
            hashlib.sha256(canonical_json({"mode": "OBSERVED"})).hexdigest(),
        ),
    ]
    (secret,) = run["secret_resolutions"]
    assert secret["fingerprint"] == "ab" * 32 and secret["resolved_at"] == iso(at(0.5))
    (pre,) = run["preflight_results"]
    assert pre["result"] == {"ok": True, "latency": 0.25}
    outcomes = {(o["token_id"], o["outcome"]): o for o in by_type(records, "token_outcome")}
    buffered = outcomes[(ids["tokens"][0], "buffered")]
    assert buffered["batch_id"] == ids["batch"] and "fork_group_id" not in buffered
    diverted = outcomes[(ids["tokens"][2], "diverted")]
    assert diverted["error_hash"] == "7b3f68595e04e337"
    assert diverted["expected_branches"] == {"count": 2}
    assert diverted["recorded_at"] == iso(at(6)) and "appended_at" in diverted
    tokens = {t["token_id"]: t for t in by_type(records, "token")}
    assert tokens[ids["produced"]]["step_in_pipeline"] == 1
    (src,) = [n for n in by_type(records, "node") if n["node_id"] == ids["src"]]
    assert src["registered_at"] == iso(T0) and "appended_at" in src


def test_a_run_without_the_new_fields_keeps_its_record_keys(store: AuditStore) -> None:
    """Conditional keys appear only with a value: the records of a run that uses none of
    the new fields have exactly the keys they had before issue 14."""
    with store.start_run(run_id="plain") as run:
        src = run.register_node(plugin_name="s", node_type="source")
        row = run.create_row(source_node_id=src, row_index=0, data={})
        tok = run.create_token(row_id=row)
        run.record_token_outcome(token_id=tok, outcome="completed")
    for r in export_records(store, "plain"):
        assert "appended_at" not in r
        assert not set(CONDITIONAL.get(r["record_type"], ())) & set(r)


def test_replay_gives_the_live_export_byte_for_byte(store: AuditStore, tmp_path: Path) -> None:
    recorded(store)
    live = export_bytes(store.export_dir("lrun"))
    for workers in (1, 2):
        prefix = tmp_path / f"replay{workers}" / "audit_trail"
        prefix.parent.mkdir()
        replay_export(
            journal_dir=store.journal_dir("lrun"),
            run_id="lrun",
            payloads=store.payloads,
            settings=ExportSettings(),
            prefix=prefix,
            workers=workers,
            range_bytes=512,
        )
        replayed = export_bytes(prefix.parent)
        assert {k: v for k, v in replayed.items() if "checkpoint" not in k} == {
            k: v for k, v in live.items() if "checkpoint" not in k
        }


def test_extract_bundle_of_a_batched_row_carries_its_member_and_errors(
    store: AuditStore, tmp_path: Path
) -> None:
    ids, _ = recorded(store)
    bundle = extract_bundle(store.export_dir("lrun"), Selection(row_id=ids["rows"][2]))
    kinds = {item["record"]["record_type"] for item in bundle["records"]}
    assert {"validation_error", "transform_error", "checkpoint"} <= kinds
    bundle0 = extract_bundle(store.export_dir("lrun"), Selection(row_id=ids["rows"][0]))
    assert "batch_member" in {item["record"]["record_type"] for item in bundle0["records"]}
    for each in (bundle, bundle0):
        path = tmp_path / "bundle.json"
        write_bundle(each, path)
        report = verify_bundle(read_bundle(path))
        assert report.ok, [c for c in report.checks if not c.ok]


# -- SQL -----------------------------------------------------------------------------------

PAYLOADS = {"input_data", "output_data", "row_data", "aggregation_state", "coalesce_state"}
_SQL_TABLES = {
    "operation": schema.operations,
    "batch": schema.batches,
    "batch_member": schema.batch_members,
    "batch_output": schema.batch_outputs,
    "validation_error": schema.validation_errors,
    "transform_error": schema.transform_errors,
    "checkpoint": schema.landscape_checkpoints,
}


def _sql_urls(tmp_path: Path) -> list[str]:
    urls = [f"sqlite:///{tmp_path / 'l.db'}"]
    if os.environ.get(PG_ENV):
        urls.append(os.environ[PG_ENV])
    return urls


def test_sql_tables_hold_the_export_records(store: AuditStore, tmp_path: Path) -> None:
    """Each new table's rows, read back as records, equal the export's records (without
    payloads); on SQLite always, on PostgreSQL when configured."""
    run_id = f"lsql-{os.getpid()}-{tmp_path.name[-12:]}"
    recorded(store, run_id)
    records = export_records(store, run_id)
    for url in _sql_urls(tmp_path):
        database = SqlDatabase(url)
        try:
            lineage.refresh_tables(store, [run_id], database)
            with database.engine.connect() as conn:
                for kind, table in _SQL_TABLES.items():
                    rows = conn.execute(
                        sa.select(table).where(table.c.run_id == run_id).order_by(table.c.seq)
                    )
                    got = sorted((lineage._record(kind, r) for r in rows), key=lambda r: r["seq"])
                    want = [
                        {k: v for k, v in r.items() if k not in PAYLOADS}
                        for r in by_type(records, kind)
                    ]
                    assert got == sorted(want, key=lambda r: r["seq"]), (url, kind)
                run = conn.execute(
                    sa.select(schema.runs).where(schema.runs.c.run_id == run_id)
                ).one()
                assert run.reproducibility_grade == "replay_reproducible"
                grade_counts = {
                    t.name: conn.execute(
                        sa.select(sa.func.count()).where(t.c.run_id == run_id)
                    ).scalar()
                    for t in (
                        schema.secret_resolutions,
                        schema.preflight_results,
                        schema.field_resolutions,
                        schema.schema_contracts,
                    )
                }
                assert grade_counts == {
                    "secret_resolutions": 1,
                    "preflight_results": 1,
                    "field_resolutions": 1,
                    "schema_contracts": 2,
                }
                outcome = conn.execute(
                    sa.select(schema.token_outcomes).where(
                        schema.token_outcomes.c.run_id == run_id,
                        schema.token_outcomes.c.outcome == "diverted",
                    )
                ).one()
                assert json.loads(outcome.expected_branches_json) == {"count": 2}
        finally:
            database.delete_run(run_id)
            database.close()


def test_interruptions_and_resumptions_are_sql_rows_and_csv(
    store: AuditStore, tmp_path: Path
) -> None:
    """``run_interrupted``/``run_resumed`` (a writer that stopped, a new one that took
    over) are rows of ``run_interruptions``, equal to the run record's ``interruptions``;
    on SQLite always, on PostgreSQL when configured. The CSV run file lists them too."""
    run_id = f"lint-{os.getpid()}-{tmp_path.name[-12:]}"
    first = store.start_run(run_id=run_id, config={"p": 1})
    src = first.register_node(plugin_name="s", node_type="source", node_id="src")
    first.create_row(source_node_id=src, row_index=0, data={"a": 1})
    first.close()  # the writer stops without completing
    second = store.resume_run(run_id, reason="host rebooted")
    second.create_row(source_node_id=src, row_index=1, data={"a": 2})
    second.close()
    third = store.resume_run(run_id)
    third.complete("completed")
    third.close()
    out = tmp_path / "replayed"
    out.mkdir()
    replay_export(
        journal_dir=store.journal(run_id), run_id=run_id, payloads=store.payloads,
        settings=ExportSettings(), prefix=out / "audit_trail",
    )  # fmt: skip
    manifest = json.loads((out / "audit_trail.manifest.json").read_text())
    records = [r for c in manifest["chunks"] for r in json.loads((out / c["file"]).read_text())]
    (run,) = by_type(records, "run")
    assert [i["kind"] for i in run["interruptions"]] == ["interrupted", "resumed"] * 2
    for url in _sql_urls(tmp_path):
        database = SqlDatabase(url)
        try:
            lineage.refresh_tables(store, [run_id], database)
            table = schema.run_interruptions
            with database.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(table).where(table.c.run_id == run_id).order_by(table.c.seq)
                ).all()
            got = []
            for r in rows:
                item: dict[str, Any] = {"seq": r.seq, "kind": r.kind}
                if r.kind == "interrupted":
                    item |= {"last_seq": r.last_seq, "bytes_dropped": r.bytes_dropped}
                    item["reason"] = r.reason
                else:
                    item["writer"] = json.loads(r.writer_json)
                got.append(item | {"at": iso(r.at.replace(tzinfo=dt.UTC))})
            assert got == run["interruptions"], url
            assert got[0]["reason"] == "host rebooted" and got[1]["writer"]["pid"] == os.getpid()
        finally:
            database.delete_run(run_id)
            database.close()
    csv_dir = tmp_path / "csv"
    export_csv(store, run_id, csv_dir)
    with (csv_dir / "run.csv").open(newline="") as f:
        (row,) = csv.DictReader(f)
    assert json.loads(row["interruptions"]) == run["interruptions"]


def test_an_artifact_keeps_its_idempotency_key(store: AuditStore, tmp_path: Path) -> None:
    """Export record, SQL column and CSV column; absent (not null) when not given."""
    run_id = f"lidem-{os.getpid()}-{tmp_path.name[-12:]}"
    with store.start_run(run_id=run_id) as run:
        src = run.register_node(plugin_name="s", node_type="source", node_id="src")
        sink = run.register_node(plugin_name="k", node_type="sink", node_id="sink")
        row = run.create_row(source_node_id=src, row_index=0, data={"a": 1})
        tok = run.create_token(row_id=row)
        state = run.begin_node_state(token_id=tok, node_id=sink, step_index=1, input_data=[1])
        for key in ("sink-write-7f3a", None):
            run.record_artifact(
                state_id=state, sink_node_id=sink, artifact_type="file", path_or_uri="o",
                content_hash="0" * 64, size_bytes=1, idempotency_key=key,
            )  # fmt: skip
        with pytest.raises(InvalidEventError, match="idempotency_key"):
            run.record_artifact(
                state_id=state, sink_node_id=sink, artifact_type="file", path_or_uri="o",
                content_hash="0" * 64, size_bytes=1, idempotency_key=7,  # type: ignore[arg-type]
            )  # fmt: skip
        run.complete_node_state(state, status="completed", output_data=[1])
        run.complete()
    keyed, plain = by_type(export_records(store, run_id), "artifact")
    assert keyed["idempotency_key"] == "sink-write-7f3a" and "idempotency_key" not in plain
    for url in _sql_urls(tmp_path):
        database = SqlDatabase(url)
        try:
            lineage.refresh_tables(store, [run_id], database)
            table = schema.artifacts
            with database.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(table).where(table.c.run_id == run_id).order_by(table.c.seq)
                ).all()
            assert [r.idempotency_key for r in rows] == ["sink-write-7f3a", None], url
            got = [lineage._record("artifact", r) for r in rows]
            assert got == [
                {k: v for k, v in r.items() if k != "sink_input"} for r in (keyed, plain)
            ]
        finally:
            database.delete_run(run_id)
            database.close()
    csv_dir = tmp_path / "csv"
    export_csv(store, run_id, csv_dir)
    with (csv_dir / "artifact.csv").open(newline="") as f:
        assert [r["idempotency_key"] for r in csv.DictReader(f)] == ["sink-write-7f3a", ""]


def test_a_version_2_database_is_upgraded_in_place(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v2.db'}"
    SqlDatabase(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # as version 2 had it: no run_interruptions, no key column
        conn.execute(sa.text("DROP TABLE run_interruptions"))
        conn.execute(sa.text("ALTER TABLE artifacts DROP COLUMN idempotency_key"))
        conn.execute(sa.text("UPDATE schema_version SET version = 2"))
        conn.execute(
            sa.text("INSERT INTO runs (run_id, status, started_seq) VALUES ('old', 'completed', 1)")
        )
    engine.dispose()
    SqlDatabase(url).close()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version FROM schema_version")).scalar() == 3
        columns = {c["name"] for c in sa.inspect(conn).get_columns("artifacts")}
        assert "idempotency_key" in columns
        assert sa.inspect(conn).has_table("run_interruptions")
        assert conn.execute(sa.text("SELECT status FROM runs")).scalar() == "completed"
    engine.dispose()


def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v1.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the version-1 tables, as the previous release made them
        conn.execute(sa.text("CREATE TABLE runs (run_id VARCHAR(128) PRIMARY KEY, status TEXT)"))
        conn.execute(
            sa.text("CREATE TABLE schema_version (name VARCHAR(64) PRIMARY KEY, version INT)")
        )
        conn.execute(sa.text("INSERT INTO schema_version VALUES ('auditjournal-landscape', 1)"))
        conn.execute(sa.text("INSERT INTO runs VALUES ('old', 'completed')"))
    engine.dispose()
    SqlDatabase(url).close()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version FROM schema_version")).scalar() == 3
        columns = {c["name"] for c in sa.inspect(conn).get_columns("runs")}
        assert {"reproducibility_grade", "appended_at", "config_json"} <= columns
        assert sa.inspect(conn).has_table("operations")
        assert conn.execute(sa.text("SELECT status FROM runs")).scalar() == "completed"
    engine.dispose()


# -- bad input: a typed error, nothing appended ---------------------------------------------


def journal_bytes(store: AuditStore, run: RunRecorder) -> bytes:
    run._journal.flush(fsync=False)
    return b"".join(p.read_bytes() for p in sorted(store.journal_dir(run.run_id).glob("*.jsonl")))


@pytest.fixture
def live(store: AuditStore) -> Iterator[tuple[RunRecorder, dict[str, Any]]]:
    run = store.start_run(run_id="bad", export=None, sql=False)
    src = run.register_node(plugin_name="s", node_type="source", node_id="src")
    agg = run.register_node(plugin_name="a", node_type="aggregation", node_id="agg")
    row = run.create_row(source_node_id=src, row_index=0, data={}, row_id="r0")
    tok = run.create_token(row_id=row, token_id="t0")
    run.create_batch(aggregation_node_id=agg, batch_id="b-done")
    run.add_batch_member(batch_id="b-done", token_id=tok)
    run.update_batch("b-done", status="completed")
    run.create_batch(aggregation_node_id=agg, batch_id="b-open")
    run.add_batch_member(batch_id="b-open", token_id=tok, ordinal=4)
    op = run.begin_operation(node_id=src, operation_type="source_load", operation_id="op-1")
    run.complete_operation(op, status="completed")
    yield run, {"src": src, "agg": agg, "tok": tok}
    run.close()


NAIVE = dt.datetime(2026, 1, 1, 12, 0)
BAD_CALLS: list[tuple[str, type[AuditJournalError], Any]] = [
    ("naive-row", NaiveTimestampError, lambda r: r.create_row(
        source_node_id="src", row_index=1, data={}, occurred_at=NAIVE)),
    ("naive-complete", NaiveTimestampError, lambda r: r.complete(occurred_at=NAIVE)),
    ("naive-batch", NaiveTimestampError, lambda r: r.create_batch(
        aggregation_node_id="agg", occurred_at=NAIVE)),
    ("unknown-operation-call", UnknownIdError, lambda r: r.record_call(
        operation_id="op-nope", call_type="http", status="success", request={})),
    ("unknown-operation-complete", UnknownIdError, lambda r: r.complete_operation(
        "op-nope", status="completed")),
    ("operation-twice", OperationAlreadyCompletedError, lambda r: r.complete_operation(
        "op-1", status="completed")),
    ("sink-write-on-a-source", InvalidEventError, lambda r: r.begin_operation(
        node_id="src", operation_type="sink_write")),
    ("member-of-unknown-batch", UnknownIdError, lambda r: r.add_batch_member(
        batch_id="b-nope", token_id="t0")),
    ("member-of-completed-batch", BatchAlreadyCompletedError, lambda r: r.add_batch_member(
        batch_id="b-done", token_id="t0")),
    ("member-twice", DuplicateIdError, lambda r: r.add_batch_member(
        batch_id="b-open", token_id="t0")),
    ("update-of-completed-batch", BatchAlreadyCompletedError, lambda r: r.update_batch(
        "b-done", status="failed")),
    ("output-of-unknown-token", UnknownIdError, lambda r: r.record_batch_output(
        batch_id="b-open", output_type="token", output_id="t-nope")),
    ("outcome-of-unknown-batch", UnknownIdError, lambda r: r.record_token_outcome(
        token_id="t0", outcome="buffered", batch_id="b-nope")),
    ("unknown-outcome", InvalidEventError, lambda r: r.record_token_outcome(
        token_id="t0", outcome="vanished")),
    ("fingerprint-not-hex", InvalidEventError, lambda r: r.record_secret_resolution(
        env_var_name="K", source="env", fingerprint="hunter2")),
    ("slot-in-two-forms", InvalidEventError, lambda r: r.begin_operation(
        node_id="src", operation_type="source_load", input_data={}, input_hash="a" * 64)),
    ("ref-not-stored", PayloadNotFoundError, lambda r: r.begin_operation(
        node_id="src", operation_type="source_load", input_data_ref="a" * 64)),
    ("rejected-row-without-data", InvalidEventError, lambda r: r.record_validation_error(
        error="e", schema_mode="fixed", destination="discard")),
    ("unknown-preflight-type", InvalidEventError, lambda r: r.record_preflight_result(
        result_type="vibes", name="n", result={})),
    ("negative-checkpoint", InvalidEventError, lambda r: r.record_checkpoint(
        token_id="t0", node_id="agg", sequence_number=-1, upstream_topology_hash="t",
        node_config_hash="c")),
    ("run-contract-with-a-node", InvalidEventError, lambda r: r.record_schema_contract(
        contract={}, node_id="src", role="run")),
]  # fmt: skip


@pytest.mark.parametrize(("name", "error", "call"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_is_a_typed_error_and_appends_nothing(
    store: AuditStore,
    live: tuple[RunRecorder, dict[str, Any]],
    name: str,
    error: type[AuditJournalError],
    call: Any,
) -> None:
    run, _ = live
    before, last = journal_bytes(store, run), run.last_seq
    with pytest.raises(error) as info:
        call(run)
    assert "hunter2" not in str(info.value)
    assert run.last_seq == last and journal_bytes(store, run) == before


def test_second_field_resolution_or_contract_is_a_lifecycle_error(
    store: AuditStore, live: tuple[RunRecorder, dict[str, Any]]
) -> None:
    run, ids = live
    run.record_field_resolution(mapping={"A": "a"}, source_node_id=ids["src"])
    run.record_schema_contract(contract={"m": 1})
    last = run.last_seq
    with pytest.raises(LifecycleError):
        run.record_field_resolution(mapping={"B": "b"}, source_node_id=ids["src"])
    with pytest.raises(LifecycleError):
        run.record_schema_contract(contract={"m": 2})
    assert run.last_seq == last


def test_occurred_at_is_stored_in_utc_and_order_stays_by_seq(
    store: AuditStore, live: tuple[RunRecorder, dict[str, Any]]
) -> None:
    run, ids = live
    later = dt.datetime(2030, 1, 1, 13, 0, tzinfo=PLUS_ONE)
    earlier = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    run.create_row(source_node_id=ids["src"], row_index=1, data={}, occurred_at=later)
    run.create_row(source_node_id=ids["src"], row_index=2, data={}, occurred_at=earlier)
    run._journal.flush(fsync=False)
    events = list(store.read_journal("bad"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-2].occurred_at == dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert events[-2].occurred_at.utcoffset() == dt.timedelta(0)
    assert events[-1].occurred_at == earlier
    assert events[-1].ts >= events[-2].ts  # append time: the journal's own, in seq order


# -- journals recorded before issue 14 ------------------------------------------------------

PRE14 = Path(__file__).parent / "data" / "pre14"
"""A run recorded and sealed by the code before issue 14 (commit b8fc182): every classic
record type, a forked token, a buffered outcome, an open state, a failed run."""


def test_a_journal_recorded_before_keeps_its_export_bytes(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    shutil.copytree(PRE14, root)
    sealed = root / "runs" / "pre14" / "export"
    before = export_bytes(sealed)
    with AuditStore.open(root) as store:
        report = verify_export(sealed, journal=(store.journal_dir("pre14"), store.payloads))
        # its listing predates issue 15's manifest line (docs/decisions.md: an old
        # listing verifies INVALID on its own, "replay it"), and its manifest issue 16's
        # completeness certificate (a fresh projection carries one); every other check holds
        failed = {c.file: c.reason for c in report.checks if not c.ok}
        assert set(failed) == {"audit_trail.sha256", "journal of run pre14"}, report.checks
        assert "completeness" in failed["journal of run pre14"]
        prefix = tmp_path / "again" / "audit_trail"
        prefix.parent.mkdir()
        replay_export(
            journal_dir=store.journal_dir("pre14"),
            run_id="pre14",
            payloads=store.payloads,
            settings=ExportSettings(),
            prefix=prefix,
        )
        again = {k: v for k, v in export_bytes(prefix.parent).items() if not k.startswith(".")}
        listing = "audit_trail.sha256"
        assert again[listing].startswith(before.pop(listing))  # plus the manifest's line
        del again[listing]
        manifest = "audit_trail.manifest.json"
        fresh = json.loads(again.pop(manifest))
        assert "completeness" in fresh  # the certificate is the one addition (issue 16)
        del fresh["completeness"]
        assert fresh == json.loads(before.pop(manifest))
        assert again == before  # every chunk byte-identical
        out = tmp_path / "csv"
        export_csv(store, "pre14", out)
        header = (out / "token_outcome.csv").read_text().splitlines()[0].split(",")
        assert header[-1] == "appended_at"  # new columns come after the old ones
        assert (out / "batch.csv").read_text().count("\n") == 1  # header only


def test_verify_journal_checks_every_payload_ref_of_every_event(store: AuditStore) -> None:
    refs = {
        name
        for cls in EVENT_TYPES.values()
        for name in cls.__struct_fields__
        if name.endswith("_ref")
    }
    assert refs <= set(REF_FIELDS)
    recorded(store)
    sealed = store.export_dir("lrun")
    report = verify_export(sealed, journal=(store.journal_dir("lrun"), store.payloads))
    assert report.ok, [c for c in report.checks if not c.ok]


# -- hash-only payloads (item 3) -------------------------------------------------------------


def _hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


def record_hash_only(run: RunRecorder) -> dict[str, str]:
    src = run.register_node(plugin_name="s", node_type="source", node_id="hs")
    llm = run.register_node(
        plugin_name="llm", node_type="transform", node_id="hl", payload_policy="hash_only"
    )
    sink = run.register_node(plugin_name="o", node_type="sink", node_id="hk")
    gate = run.register_node(plugin_name="g", node_type="gate", node_id="hg")
    edge = run.register_edge(from_node_id=gate, to_node_id=sink, label="x", edge_id="he")
    row = run.create_row(source_node_id=src, row_index=0, source_data_hash=_hash({"r": 1}))
    tok = run.create_token(row_id=row)
    by_policy = run.begin_node_state(
        token_id=tok, node_id=llm, step_index=1, input_data={"secret-ish": "not stored"}
    )
    run.record_call(
        state_id=by_policy,
        call_type="llm",
        status="success",
        request_hash=_hash({"prompt": "p"}),
        response_hash=_hash({"text": "t"}),
    )
    run.complete_node_state(by_policy, status="completed", output_data={"out": "not stored"})
    given = run.begin_node_state(
        token_id=tok,
        node_id=gate,
        step_index=2,
        input_hash=_hash({"in": 1}),
        context_before={"buffer": 2},
    )
    run.record_routing_event(state_id=given, edge_id=edge, reason_hash=_hash({"why": 1}))
    run.complete_node_state(
        given, status="completed", output_hash=_hash({"o": 1}), context_after={"result": 0.5}
    )
    run.create_row(source_node_id=src, row_index=1, data={"kept": True})
    run.create_row(source_node_id=src, row_index=2, source_data_ref=_hash({"kept": True}))
    sink_state = run.begin_node_state(token_id=tok, node_id=sink, step_index=3, input_data=[1])
    run.record_artifact(
        state_id=sink_state,
        sink_node_id=sink,
        artifact_type="file",
        path_or_uri="o",
        content_hash="0" * 64,
        size_bytes=1,
        sink_input_hash=_hash([1]),
    )
    return {"row": row, "by_policy": by_policy, "given": given}


def test_hash_only_data_is_exported_as_not_retained(store: AuditStore, tmp_path: Path) -> None:
    with store.start_run(run_id="hash") as run:
        ids = record_hash_only(run)
    records = export_records(store, "hash")
    rows = by_type(records, "row")
    assert rows[0]["source_data_hash"] == _hash({"r": 1})
    assert rows[0]["source_data_ref"] is None and rows[0]["source_data_retained"] is False
    assert rows[0]["source_data"] is None
    assert "source_data_retained" not in rows[1] and rows[1]["source_data"] == {"kept": True}
    assert rows[2]["source_data_ref"] == rows[1]["source_data_ref"]  # given as a stored ref
    states = {s["state_id"]: s for s in by_type(records, "node_state")}
    policy = states[ids["by_policy"]]
    assert policy["input_hash"] == _hash({"secret-ish": "not stored"})
    assert (policy["input_data_ref"], policy["input_data"]) == (None, None)
    assert policy["input_data_retained"] is False and policy["output_data_retained"] is False
    assert policy["output_hash"] == _hash({"out": "not stored"})
    given = states[ids["given"]]
    assert given["input_data_retained"] is False and given["output_data_retained"] is False
    assert given["context_before"] == {"buffer": 2} and given["context_after"] == {"result": 0.5}
    assert "context_before" not in policy and "context_after" not in policy
    (call,) = by_type(records, "call")
    assert call["request_ref"] is None and call["request_retained"] is False
    assert call["response_retained"] is False and call["response_hash"] == _hash({"text": "t"})
    (routing,) = by_type(records, "routing_event")
    assert routing["reason_retained"] is False and routing["reason"] is None
    (artifact,) = by_type(records, "artifact")
    assert artifact["sink_input_retained"] is False
    (node,) = [n for n in by_type(records, "node") if n["node_id"] == "hl"]
    assert node["payload_policy"] == "hash_only"
    for data in (b"not stored", b'"prompt"'):  # hashed, never written anywhere
        assert not any(data in p.read_bytes() for p in store.root.rglob("pack-*.dat"))
    report = verify_export(
        store.export_dir("hash"), journal=(store.journal_dir("hash"), store.payloads)
    )
    assert report.ok, [c for c in report.checks if not c.ok]  # not retained is not missing
    for url in _sql_urls(tmp_path):
        database = SqlDatabase(url)
        try:
            lineage.refresh_tables(store, ["hash"], database)
            explained = lineage.explain_row(store, "hash", ids["row"], database=database)
            want = {r["state_id"]: r for r in by_type(records, "node_state")}
            for state in explained["node_states"]:
                assert state == want[state["state_id"]], url
            assert explained["row"] == rows[0]
            assert explained["calls"] == [call]
        finally:
            database.delete_run("hash")
            database.close()


def test_explain_gathers_the_new_records_of_each_row(store: AuditStore, tmp_path: Path) -> None:
    """For every row, explain's new lists equal the export's records naming that row."""
    ids, _ = recorded(store)
    records = export_records(store, "lrun")
    database = SqlDatabase(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        lineage.refresh_tables(store, ["lrun"], database)
        for row_id in ids["rows"]:
            story = lineage.explain_row(store, "lrun", row_id, database=database)
            for key, kind in (
                ("validation_errors", "validation_error"),
                ("transform_errors", "transform_error"),
                ("checkpoints", "checkpoint"),
                ("batch_members", "batch_member"),
            ):
                want = [r for r in by_type(records, kind) if r["row_id"] == row_id]
                assert story[key] == want, (row_id, key)
        story = lineage.explain_row(store, "lrun", ids["rows"][0], database=database)
        (found,) = story["batches"]
        (batch,) = [b for b in by_type(records, "batch") if b["batch_id"] == ids["batch"]]
        assert found["batch"] == batch
        assert found["outputs"] == by_type(records, "batch_output")
    finally:
        database.close()
