"""Sealing (SPEC §4): the manifest recomputed independently (RFC 6962 Merkle root,
per-chunk sha256), the sha256 listing, the ``export_sealed`` event and the run's end in
every way it can end."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

import auditjournal
from auditjournal import (
    AuditStore,
    ExportSettings,
    InvalidEventError,
    RunAlreadyCompletedError,
)
from auditjournal.model.events import (
    ExportSealed,
    RowCreated,
    RunCompleted,
)
from export_reading import (
    PREFIX,
    assert_same_files,
    check_manifest,
    chunk_paths,
    export_records,
    journal_bytes,
    mth,
)
from export_runs import (
    CONFIG,
    record_everything,
    replay,
    small_run,
)

# -- manifest, recomputed independently ----------------------------------------------------


def test_mth_reference_values() -> None:
    """Our own MTH against RFC 6962 test vectors (certificate-transparency, 8 leaves)."""
    leaves = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ]
    roots = {
        1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    }
    for n, root in roots.items():
        assert mth(leaves[:n]).hex() == root
    assert mth([]).hex() == hashlib.sha256(b"").hexdigest()
    assert auditjournal.proofs.merkle.merkle_root(
        [auditjournal.proofs.merkle.leaf_hash(x) for x in leaves[:5]]
    ) == mth(leaves[:5])


@pytest.mark.parametrize("chunk_size", [None, 900, 5000])
def test_manifest_recomputed_independently(store: AuditStore, chunk_size: int | None) -> None:
    settings_ = ExportSettings(chunk_size_bytes=chunk_size)
    with store.start_run(config=CONFIG, export=settings_) as run:
        record_everything(run)
        small_run(run, rows=7)
    directory = store.export_dir(run.run_id)
    manifest = check_manifest(directory, store, run.run_id, settings_)
    assert manifest["run_status"] == "completed"
    if chunk_size == 900:
        assert manifest["chunk_count"] > 5


def test_sha256sum_check_passes(store: AuditStore) -> None:
    sha256sum = shutil.which("sha256sum")
    if sha256sum is None:
        pytest.skip("sha256sum is not installed")
    with store.start_run(export=ExportSettings(chunk_size_bytes=800)) as run:
        small_run(run, rows=5)
    directory = store.export_dir(run.run_id)
    ok = subprocess.run(
        [sha256sum, "-c", "audit_trail.sha256"], cwd=directory, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    names = [p.name for p in chunk_paths(directory)]
    assert len(names) > 1
    listed = [*names, "audit_trail.manifest.json"]  # the manifest too (issue 15)
    assert ok.stdout.splitlines() == [f"{name}: OK" for name in listed]
    with open(directory / names[1], "ab") as fh:
        fh.write(b" ")
    bad = subprocess.run(
        [sha256sum, "-c", "audit_trail.sha256"], cwd=directory, capture_output=True, text=True
    )
    assert bad.returncode != 0 and f"{names[1]}: FAILED" in bad.stdout


# -- export_sealed and lifecycle -----------------------------------------------------------


def test_export_sealed_event_follows_run_completed(store: AuditStore) -> None:
    with store.start_run(export=ExportSettings(chunk_size_bytes=1000)) as run:
        small_run(run, rows=4)
    rid = run.run_id
    events = list(store.read_journal(rid))
    assert isinstance(events[-2], RunCompleted)
    sealed = events[-1]
    assert isinstance(sealed, ExportSealed) and sealed.seq == events[-2].seq + 1
    directory = store.export_dir(rid)
    manifest_bytes = (directory / "audit_trail.manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    assert sealed.manifest_sha256 == hashlib.sha256(manifest_bytes).hexdigest()
    assert sealed.chunk_count == manifest["chunk_count"] == len(chunk_paths(directory))
    assert sealed.record_count == manifest["total_record_count"] == 3 + 4 * 4 + 1
    assert sealed.merkle_root == manifest["merkle_root"]
    assert Path(sealed.export_path).resolve() == (directory / "audit_trail.manifest.json").resolve()
    result = run.export_result
    assert result is not None
    assert result.manifest_sha256 == sealed.manifest_sha256
    assert result.record_count == sealed.record_count
    assert result.run_status == "completed"
    # the export itself does not contain export_sealed: the journal head is run_completed
    assert manifest["journal_head"]["seq"] == events[-2].seq


def test_failed_run_is_sealed_with_open_states(store: AuditStore) -> None:
    settings_ = ExportSettings(chunk_size_bytes=2000)
    with pytest.raises(RuntimeError, match="boom"), store.start_run(export=settings_) as run:
        src = run.register_node(plugin_name="src", node_type="source")
        xf = run.register_node(plugin_name="xf", node_type="transform")
        run.register_edge(from_node_id=src, to_node_id=xf, label="continue")
        row = run.create_row(source_node_id=src, row_index=0, data={"a": 1})
        tok = run.create_token(row_id=row)
        first = run.begin_node_state(token_id=tok, node_id=xf, step_index=1, input_data=[1])
        done = run.begin_node_state(token_id=tok, node_id=xf, step_index=2, input_data=[2])
        run.complete_node_state(done, status="completed", output_data=[3])
        second = run.begin_node_state(token_id=tok, node_id=xf, step_index=3, input_data=[4])
        raise RuntimeError("boom")
    rid = run.run_id
    events = list(store.read_journal(rid))
    completed = next(e for e in events if isinstance(e, RunCompleted))
    assert completed.status == "failed"
    assert isinstance(events[-1], ExportSealed)
    assert run.export_result is not None and run.export_result.run_status == "failed"
    directory = store.export_dir(rid)
    manifest = check_manifest(directory, store, rid, settings_)
    assert manifest["run_status"] == "failed"
    records = [r for _, r in export_records(directory)]
    assert records[-1]["record_type"] == "run"
    assert records[-1]["status"] == "failed"
    assert records[-1]["error"] == {"type": "RuntimeError", "message": "boom"}
    states = {r["state_id"]: r for r in records if r["record_type"] == "node_state"}
    assert states[done]["status"] == "completed"
    for open_id, payload in ((first, [1]), (second, [4])):
        r = states[open_id]
        assert r["status"] == "open"
        assert r["seq"] == completed.seq
        assert r["input_data"] == payload
        assert r["output_data"] is None and r["output_data_ref"] is None
        assert r["completed_at"] is None
    # open states come right before the run record, in the order they were started
    assert [r.get("state_id") for r in records[-3:-1]] == [first, second]
    # and a replay gives the same bytes
    replay(store, rid, settings_, directory.parent / "replay" / PREFIX)
    assert_same_files(directory.parent / "replay", directory)


def test_interrupted_run_status(store: AuditStore) -> None:
    with pytest.raises(KeyboardInterrupt), store.start_run(export=ExportSettings()) as run:
        run.register_node(plugin_name="src", node_type="source")
        raise KeyboardInterrupt
    manifest = json.loads((store.export_dir(run.run_id) / "audit_trail.manifest.json").read_bytes())
    assert manifest["run_status"] == "interrupted"


def test_run_without_rows_is_sealed(store: AuditStore) -> None:
    settings_ = ExportSettings()
    with store.start_run(export=settings_) as run:
        src = run.register_node(plugin_name="src", node_type="source")
        sink = run.register_node(plugin_name="sink", node_type="sink")
        run.register_edge(from_node_id=src, to_node_id=sink, label="continue")
    directory = store.export_dir(run.run_id)
    manifest = check_manifest(directory, store, run.run_id, settings_)
    records = [r for _, r in export_records(directory)]
    assert [r["record_type"] for r in records] == ["node", "node", "edge", "run"]
    assert manifest["total_record_count"] == 4 and manifest["chunk_count"] == 1


def test_run_with_nothing_but_start_and_end(store: AuditStore) -> None:
    with store.start_run(export=ExportSettings()) as run:
        pass
    directory = store.export_dir(run.run_id)
    records = [r for _, r in export_records(directory)]
    assert [r["record_type"] for r in records] == ["run"]
    check_manifest(directory, store, run.run_id, ExportSettings())


def test_nothing_but_export_events_after_run_completed(store: AuditStore) -> None:
    run = store.start_run(export=ExportSettings())
    try:
        src = run.register_node(plugin_name="src", node_type="source")
        xf = run.register_node(plugin_name="xf", node_type="transform")
        edge = run.register_edge(from_node_id=src, to_node_id=xf, label="continue")
        row = run.create_row(source_node_id=src, row_index=0, data={"a": 1})
        tok = run.create_token(row_id=row)
        sid = run.begin_node_state(token_id=tok, node_id=xf, step_index=1, input_data={})
        run.complete(status="completed")
        assert run.completed and run.export_result is not None
        before = journal_bytes(store, run.run_id)
        last_seq = run.last_seq
        attempts = [
            lambda: run.register_node(plugin_name="late", node_type="sink"),
            lambda: run.register_edge(from_node_id=src, to_node_id=xf, label="late"),
            lambda: run.create_row(source_node_id=src, row_index=1, data={"b": 2}),
            lambda: run.create_token(row_id=row),
            lambda: run.begin_node_state(token_id=tok, node_id=xf, step_index=2, input_data={}),
            lambda: run.complete_node_state(sid, status="completed"),
            lambda: run.record_routing_event(state_id=sid, edge_id=edge),
            lambda: run.record_call(state_id=sid, call_type="http", status="success", request={}),
            lambda: run.record_artifact(
                state_id=sid,
                sink_node_id=xf,
                artifact_type="file",
                path_or_uri="x",
                content_hash="c" * 64,
                size_bytes=1,
            ),
            lambda: run.record_token_outcome(token_id=tok, outcome="completed"),
            lambda: run.complete(status="failed"),
        ]
        for attempt in attempts:
            with pytest.raises(RunAlreadyCompletedError):
                attempt()
        late_row = RowCreated(
            run_id=run.run_id,
            ts=dt.datetime.now(dt.UTC),
            row_id="late",
            source_node_id=src,
            row_index=9,
            source_data_hash="0" * 64,
            source_data_ref="0" * 64,
        )
        late_end = RunCompleted(run_id=run.run_id, ts=dt.datetime.now(dt.UTC), status="failed")
        for event in (late_row, late_end):
            with pytest.raises(InvalidEventError):
                run.append_export_event(event)
        run._journal.flush(fsync=False)
        assert run.last_seq == last_seq
        assert journal_bytes(store, run.run_id) == before
    finally:
        run.close()
    types = [type(e).__name__ for e in store.read_journal(run.run_id)]
    assert types[-2:] == ["RunCompleted", "ExportSealed"]
    assert types.count("RunCompleted") == 1
