"""The CSV export (SPEC §4 "Also: CSV export"): files, columns, cells, listing, journal event.

What the auditor relies on is re-derived with independent tools: the ``csv``
module reads the files back, ``rfc8785`` gives the expected canonical text of
nested values, ``hashlib`` and the real ``sha256sum -c`` check the listing, and
the sealed JSON export (read with ``json``) is the reference for the records.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from auditjournal import AuditStore, JournalLockedError, RunNotFoundError
from auditjournal.demo import run_demo
from auditjournal.errors import RunNotCompletedError
from auditjournal.model.events import CsvExported
from auditjournal.model.landscape_records import CONDITIONAL
from auditjournal.model.records import RECORD_TYPES
from auditjournal.recording.recorder import RunRecorder
from auditjournal.sql.csvexport import COLUMNS, CSV_LISTING_NAME, export_csv, journal_size
from landscape_run import LANDSCAPE_PAYLOAD_FIELDS, record_landscape

PAYLOAD_FIELDS = {
    "source_data",
    "input_data",
    "output_data",
    "reason",
    "request",
    "response",
    "sink_input",
    *LANDSCAPE_PAYLOAD_FIELDS,
}
CSV_NAMES = [f"{kind}.csv" for kind in RECORD_TYPES]


# -- helpers ------------------------------------------------------------------------------


# how the `store` fixture (conftest.py) opens its AuditStore
pytestmark = pytest.mark.store_options(durability="always")


def record_run(run: RunRecorder) -> None:
    """Every record type, with cells that need quoting, nesting and float formatting."""
    src = run.register_node(
        plugin_name='csv, "quoted"\nsource',
        node_type="source",
        config={"path": "in.csv", "ratio": 0.1, "big": 1e21, "nested": {"ü": [1, None]}},
        output_schema={"type": "object", "properties": {"id": {"type": "integer"}}},
    )
    gate = run.register_node(plugin_name="gate", node_type="gate")
    sink = run.register_node(plugin_name="sink", node_type="sink")
    edge = run.register_edge(from_node_id=gate, to_node_id=sink, label="ok,go", mode="move")
    for index in range(3):
        row = run.create_row(source_node_id=src, row_index=index, data={"id": index})
        token = run.create_token(row_id=row)
        child = run.create_token(row_id=row, parent_token_ids=[token], branch_name="b\r\n=1+1")
        state = run.begin_node_state(token_id=child, node_id=gate, step_index=1, input_data={})
        run.record_call(
            state_id=state,
            call_type="http",
            status="success",
            request={"url": "https://x"},
            response={"ok": True},
            latency_ms=12.5,
        )
        run.complete_node_state(
            state, status="completed", output_data={"id": index}, duration_ms=0.25
        )
        run.record_routing_event(state_id=state, edge_id=edge, mode="move", reason={"r": index})
        sink_state = run.begin_node_state(token_id=child, node_id=sink, step_index=2, input_data=1)
        run.complete_node_state(sink_state, status="completed", duration_ms=1e-7 * index)
        if index == 2:
            run.record_artifact(
                state_id=sink_state,
                sink_node_id=sink,
                artifact_type="file",
                path_or_uri="out.csv",
                content_hash="0" * 64,
                size_bytes=10,
                sink_input=[0, 1, 2],
            )
        run.record_token_outcome(token_id=child, outcome="completed", sink_name="out")
        run.record_token_outcome(token_id=token, outcome="forked")
    record_landscape(run)


@pytest.fixture
def run_id(store: AuditStore) -> str:
    with store.start_run(config={"pipeline": "csv-test", "when": dt.date(2024, 5, 1)}) as run:
        record_run(run)
    return run.run_id


def read_csv(path: Path) -> list[list[str]]:
    data = path.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf"), "no BOM"
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def sealed_records(store: AuditStore, run_id: str) -> list[dict[str, Any]]:
    """The records of the run's sealed JSON export, in export order, read with ``json``."""
    directory = store.export_dir(run_id)
    manifest = json.loads((directory / "audit_trail.manifest.json").read_bytes())
    out = []
    for chunk in manifest["chunks"]:
        text = (directory / chunk["file"]).read_text()
        out += json.loads(text)
    return out


def expected_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return rfc8785.dumps(value).decode()


def csv_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# -- files, columns, rows -----------------------------------------------------------------


def test_columns_are_defined_for_exactly_the_record_types() -> None:
    assert tuple(COLUMNS) == RECORD_TYPES
    for kind, columns in COLUMNS.items():
        assert columns[:3] == ("record_type", "run_id", "seq"), kind
        assert len(set(columns)) == len(columns), kind


def test_one_file_per_record_type_and_a_listing(
    store: AuditStore, run_id: str, tmp_path: Path
) -> None:
    out = tmp_path / "csv"
    result = export_csv(store, run_id, out)
    assert sorted(p.name for p in out.iterdir()) == sorted([*CSV_NAMES, CSV_LISTING_NAME])
    assert [f.file for f in result.files] == CSV_NAMES
    assert result.out_dir == out
    assert result.listing_path == out / CSV_LISTING_NAME


def test_rows_equal_the_json_export_records_without_payloads(
    store: AuditStore, run_id: str, tmp_path: Path
) -> None:
    out = tmp_path / "csv"
    result = export_csv(store, run_id, out)
    records = sealed_records(store, run_id)
    for kind in RECORD_TYPES:
        rows = read_csv(out / f"{kind}.csv")
        header, body = rows[0], rows[1:]
        assert tuple(header) == COLUMNS[kind]
        want = [r for r in records if r["record_type"] == kind]
        assert want, f"the test run has no {kind} record"
        assert len(body) == len(want)
        for row, record in zip(body, want, strict=True):
            fields = {k: v for k, v in record.items() if k not in PAYLOAD_FIELDS}
            optional = {*CONDITIONAL.get(kind, ()), "appended_at"}
            assert set(fields) <= set(header), f"{kind} columns lack some record fields"
            assert set(header) - set(fields) <= optional, f"{kind}: a column of no field"
            assert row == [expected_cell(fields.get(c)) for c in header]
        info = next(f for f in result.files if f.file == f"{kind}.csv")
        assert info.rows == len(want)
    assert result.total_rows == len(records)


def test_cells_quoting_nesting_and_numbers(store: AuditStore, run_id: str, tmp_path: Path) -> None:
    out = tmp_path / "csv"
    export_csv(store, run_id, out)
    node = dict(zip(*read_csv(out / "node.csv")[:2], strict=True))
    assert node["plugin_name"] == 'csv, "quoted"\nsource'
    assert json.loads(node["config"]) == {
        "big": 1e21,
        "nested": {"ü": [1, None]},
        "path": "in.csv",
        "ratio": 0.1,
    }
    assert node["config"] == '{"big":1e+21,"nested":{"ü":[1,null]},"path":"in.csv","ratio":0.1}'
    assert node["input_schema"] == ""  # None
    raw = (out / "token.csv").read_bytes()
    assert b'"b\r\n=1+1"' in raw, "embedded CR/LF quoted, formula-like text kept verbatim"
    assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n")
    tokens = [
        dict(zip(read_csv(out / "token.csv")[0], r, strict=True))
        for r in read_csv(out / "token.csv")[1:]
    ]
    assert {t["parent_token_ids"] for t in tokens} >= {"[]"}
    call = dict(zip(*read_csv(out / "call.csv")[:2], strict=True))
    assert call["latency_ms"] == "12.5"
    state = dict(zip(*read_csv(out / "node_state.csv")[:2], strict=True))
    assert state["duration_ms"] == "0.25" and state["attempt"] == "0"
    sink_states = read_csv(out / "node_state.csv")[1:]
    durations = [r[COLUMNS["node_state"].index("duration_ms")] for r in sink_states]
    assert "2e-7" in durations, "ECMAScript form"


def test_payloads_are_not_inlined(store: AuditStore, run_id: str, tmp_path: Path) -> None:
    out = tmp_path / "csv"
    export_csv(store, run_id, out)
    for kind in RECORD_TYPES:
        header = read_csv(out / f"{kind}.csv")[0]
        assert not PAYLOAD_FIELDS & set(header)
    row = dict(zip(*read_csv(out / "row.csv")[:2], strict=True))
    assert row["source_data_ref"] == hashlib.sha256(rfc8785.dumps({"id": 0})).hexdigest()


def test_a_failed_run_exports_its_open_states(store: AuditStore, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), store.start_run(export=None) as run:
        node = run.register_node(plugin_name="t", node_type="transform")
        src = run.register_node(plugin_name="s", node_type="source")
        token = run.create_token(row_id=run.create_row(source_node_id=src, row_index=0, data=1))
        run.begin_node_state(token_id=token, node_id=node, step_index=1, input_data=2)
        raise RuntimeError("boom")
    export_csv(store, run.run_id, tmp_path / "csv")
    states = read_csv(tmp_path / "csv" / "node_state.csv")
    state = dict(zip(states[0], states[1], strict=True))
    assert state["status"] == "open" and state["completed_at"] == "" and state["output_hash"] == ""
    run_row = dict(zip(*read_csv(tmp_path / "csv" / "run.csv")[:2], strict=True))
    assert run_row["status"] == "failed"
    assert json.loads(run_row["error"]) == {"message": "boom", "type": "RuntimeError"}


def test_the_demo_run_exports(tmp_path: Path) -> None:
    demo = run_demo(tmp_path / "audit", rows=25)
    with AuditStore.open(tmp_path / "audit") as store:
        result = export_csv(store, demo.run_id, tmp_path / "csv")
        records = sealed_records(store, demo.run_id)
    assert result.total_rows == len(records)
    for info in result.files:
        kind = info.file.removesuffix(".csv")
        assert info.rows == sum(r["record_type"] == kind for r in records)


# -- the sha256 listing -------------------------------------------------------------------


def test_listing_is_sha256sum_format_and_matches(
    store: AuditStore, run_id: str, tmp_path: Path
) -> None:
    out = tmp_path / "csv"
    result = export_csv(store, run_id, out)
    listing = (out / CSV_LISTING_NAME).read_bytes()
    lines = listing.decode().splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == CSV_NAMES
    for line, info in zip(lines, result.files, strict=True):
        digest, name = line.split("  ", 1)
        data = (out / name).read_bytes()
        assert digest == hashlib.sha256(data).hexdigest() == info.sha256
        assert len(data) == info.bytes
    assert result.listing_sha256 == hashlib.sha256(listing).hexdigest()


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="sha256sum not installed")
def test_sha256sum_check_passes_and_catches_a_change(
    store: AuditStore, run_id: str, tmp_path: Path
) -> None:
    out = tmp_path / "csv"
    export_csv(store, run_id, out)
    ok = subprocess.run(
        ["sha256sum", "-c", CSV_LISTING_NAME], cwd=out, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count(": OK") == len(CSV_NAMES)
    with open(out / "edge.csv", "ab") as fh:
        fh.write(b"tampered\r\n")
    bad = subprocess.run(
        ["sha256sum", "-c", CSV_LISTING_NAME], cwd=out, capture_output=True, text=True
    )
    assert bad.returncode != 0 and "edge.csv: FAILED" in bad.stdout


# -- the export is audited ----------------------------------------------------------------


def test_csv_exported_event_in_the_journal(store: AuditStore, run_id: str, tmp_path: Path) -> None:
    before = list(store.read_journal(run_id))
    out = tmp_path / "csv"
    result = export_csv(store, run_id, out)
    after = list(store.read_journal(run_id))
    assert after[: len(before)] == before
    (event,) = after[len(before) :]
    assert isinstance(event, CsvExported)
    assert result.recorded
    assert event.seq == before[-1].seq + 1
    assert event.out_dir == os.path.abspath(out)
    assert event.listing_sha256 == hashlib.sha256((out / CSV_LISTING_NAME).read_bytes()).hexdigest()
    assert event.files == result.files
    for info in event.files:
        data = (out / info.file).read_bytes()
        assert info.sha256 == hashlib.sha256(data).hexdigest()
        assert info.bytes == len(data)
        assert info.rows == len(read_csv(out / info.file)) - 1
    # the raw journal line carries the same (grep/jq-able) data
    line = (store.journal_dir(run_id) / "00000000000000000001.jsonl").read_text().splitlines()[-1]
    assert json.loads(line)["type"] == "csv_exported"


def test_exports_are_deterministic(store: AuditStore, run_id: str, tmp_path: Path) -> None:
    first = export_csv(store, run_id, tmp_path / "a")
    second = export_csv(store, run_id, tmp_path / "b")
    assert csv_files(tmp_path / "a") == csv_files(tmp_path / "b")
    assert first.files == second.files and first.listing_sha256 == second.listing_sha256
    again = export_csv(store, run_id, tmp_path / "a")
    assert not again.recorded, "the identical export is recorded once"
    assert csv_files(tmp_path / "a") == csv_files(tmp_path / "b")
    events = [e for e in store.read_journal(run_id) if isinstance(e, CsvExported)]
    assert sorted(e.out_dir for e in events) == [
        os.path.abspath(tmp_path / "a"),
        os.path.abspath(tmp_path / "b"),
    ]


def test_out_dir_is_used_exactly_as_given(store: AuditStore, run_id: str, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "er" / "report.csv"
    export_csv(store, run_id, str(out))
    assert (out / "run.csv").is_file() and (out / CSV_LISTING_NAME).is_file()
    assert sorted(p.name for p in (tmp_path / "deep" / "er").iterdir()) == ["report.csv"]


def test_progress_counts_journal_bytes(store: AuditStore, run_id: str, tmp_path: Path) -> None:
    total = journal_size(store, run_id)
    steps: list[int] = []
    export_csv(store, run_id, tmp_path / "csv", progress=steps.append)
    assert steps and all(step > 0 for step in steps)
    assert sum(steps) == total


# -- refusals: nothing is written ---------------------------------------------------------


def test_a_run_that_has_not_completed_is_refused(store: AuditStore, tmp_path: Path) -> None:
    run = store.start_run(export=None)
    record_run(run)
    out = tmp_path / "missing" / "csv"
    with pytest.raises(RunNotCompletedError, match="has not completed"):
        export_csv(store, run.run_id, out)
    assert not (tmp_path / "missing").exists(), "nothing written, created directories removed"
    run.close()  # closed but still unfinished (as after a crash)
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    journal_before = list(store.read_journal(run.run_id))
    with pytest.raises(RunNotCompletedError):
        export_csv(store, run.run_id, existing)
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    assert list(store.read_journal(run.run_id)) == journal_before


def test_a_recorder_still_holding_the_journal_is_reported(
    store: AuditStore, tmp_path: Path
) -> None:
    run = store.start_run(export=None)
    record_run(run)
    run.complete()  # completed, but the recorder still holds the journal until close()
    out = tmp_path / "csv"
    with pytest.raises(JournalLockedError, match="close it and export again"):
        export_csv(store, run.run_id, out)
    assert not out.exists(), "nothing written"
    run.close()
    result = export_csv(store, run.run_id, out)
    assert result.recorded
    assert isinstance(list(store.read_journal(run.run_id))[-1], CsvExported)


def test_unknown_run(store: AuditStore, tmp_path: Path) -> None:
    with pytest.raises(RunNotFoundError):
        export_csv(store, "no-such-run", tmp_path / "csv")
    assert not (tmp_path / "csv").exists()


def test_older_files_are_replaced_whole(store: AuditStore, run_id: str, tmp_path: Path) -> None:
    out = tmp_path / "csv"
    out.mkdir()
    (out / "row.csv").write_text("stale")
    export_csv(store, run_id, out)
    assert (out / "row.csv").read_text(encoding="utf-8").startswith("record_type,")
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary files left"


def test_the_csv_reads_back_with_the_standard_reader(
    store: AuditStore, run_id: str, tmp_path: Path
) -> None:
    out = tmp_path / "csv"
    export_csv(store, run_id, out)
    text = (out / "node.csv").read_bytes().decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert rows[0]["plugin_name"] == 'csv, "quoted"\nsource'


# -- a killed exporter's temporary files (issue 10, item 8) ---------------------------------


def _temporary_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


def test_a_killed_export_leaves_temporary_files_that_the_next_export_removes(
    tmp_path: Path,
) -> None:
    """SIGKILL an `export-csv` child while it writes: its temporary files stay behind
    (nothing can run in a killed process). The next export into that directory removes
    them and writes the same files a clean export writes elsewhere."""
    root = tmp_path / "audit"
    with (
        AuditStore.open(root) as store,
        store.start_run(run_id="big", export=None, sql=False) as run,
    ):
        src = run.register_node(plugin_name="csv", node_type="source")
        for index in range(8_000):
            row = run.create_row(source_node_id=src, row_index=index, data={"i": index})
            run.create_token(row_id=row)
    out = tmp_path / "csv"
    child = subprocess.Popen(
        [sys.executable, "-m", "auditjournal", "export-csv", str(root), "big", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out.is_dir() and _temporary_files(out)):
            assert child.poll() is None, "the export ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        time.sleep(0.05)  # well into writing the rows
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    left = _temporary_files(out)
    assert left, "the killed export left no temporary files (it finished first?)"
    assert not (out / CSV_LISTING_NAME).exists()
    with AuditStore.open(root) as store:
        result = export_csv(store, "big", out)
        reference = export_csv(store, "big", tmp_path / "reference")
    assert _temporary_files(out) == []
    assert sorted(p.name for p in out.iterdir()) == sorted([*CSV_NAMES, CSV_LISTING_NAME])
    for name in CSV_NAMES:
        assert (out / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
    assert result.total_rows == reference.total_rows == 16_002
    check = subprocess.run(
        ["sha256sum", "-c", "--quiet", CSV_LISTING_NAME], cwd=out, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_only_our_own_temporary_names_are_removed(
    store: AuditStore, run_id: str, tmp_path: Path
) -> None:
    out = tmp_path / "csv"
    out.mkdir()
    ours = [".row.csv.tmp-123-7f3a", f".{CSV_LISTING_NAME}.tmp-123-456"]
    theirs = [".row.csv.tmp-notours", "row.csv.tmp-1-2", ".notes.csv.tmp-1-2", "keep.txt"]
    for name in ours + theirs:
        (out / name).write_text("x")
    (out / ".node.csv.tmp-9-9").symlink_to(tmp_path / "elsewhere")  # not a regular file
    export_csv(store, run_id, out)
    names = {p.name for p in out.iterdir()}
    assert not names & set(ours)
    assert set(theirs) | {".node.csv.tmp-9-9"} <= names


def test_a_second_export_into_a_directory_being_written_is_refused(
    store: AuditStore, run_id: str, tmp_path: Path
) -> None:
    """The directory's flock is what makes the clean-up safe: while one exporter holds it,
    another neither removes its temporary files nor mixes its files with them."""
    import fcntl

    out = tmp_path / "csv"
    out.mkdir()
    (out / ".row.csv.tmp-1-abc").write_text("being written by the other exporter")
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(JournalLockedError, match="another CSV export is writing"):
            export_csv(store, run_id, out)
        assert (out / ".row.csv.tmp-1-abc").exists()
    finally:
        os.close(fd)
    export_csv(store, run_id, out)
    assert _temporary_files(out) == []
