"""Following an export while it is written: every record once, across rollovers, until sealed."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from auditjournal import AuditStore, ExportSettings, ExportTail, TailFilter
from auditjournal.cli import cli
from auditjournal.export.chunks import iter_chunk_records
from auditjournal.export.projector import ExportPaths

SETTINGS = ExportSettings(chunk_size_bytes=3_000)


def record(run: Any, rows: int) -> None:
    src = run.register_node(plugin_name="csv", node_type="source", node_id="src")
    t1 = run.register_node(plugin_name="clean", node_type="transform", node_id="t1")
    for i in range(rows):
        row = run.create_row(source_node_id=src, row_index=i, data={"i": i, "pad": "p" * 60})
        tok = run.create_token(row_id=row)
        st = run.begin_node_state(token_id=tok, node_id=t1, step_index=1, input_data={"i": i})
        run.complete_node_state(st, status="completed", output_data={"o": i}, duration_ms=0.5)


def exported(prefix: Path) -> list[dict[str, Any]]:
    manifest = json.loads(ExportPaths(prefix).manifest.read_text())
    return [
        json.loads(line)
        for chunk in manifest["chunks"]
        for line in iter_chunk_records(prefix.parent / chunk["file"])
    ]


def test_live_tail_sees_every_record_once_across_rollovers(tmp_path: Path) -> None:
    with AuditStore.open(tmp_path / "audit") as store:
        run = store.start_run(export=SETTINGS, sql=False, run_id="r-tail")
        prefix = store.export_prefix(run.run_id, SETTINGS)
        seen: list[dict[str, Any]] = []
        tail = ExportTail(prefix)
        follower = threading.Thread(target=lambda: seen.extend(tail.follow(poll_interval=0.001)))
        follower.start()
        record(run, 200)
        run.complete()
        run.close()
        follower.join(timeout=30)
        assert not follower.is_alive()
    assert tail.sealed
    records = exported(prefix)
    assert len(json.loads(ExportPaths(prefix).manifest.read_text())["chunks"]) > 10  # rollovers
    assert seen == records  # same records, same order, none twice
    assert tail.seen == len(records) == tail.shown


def test_filters_and_from_end(tmp_path: Path) -> None:
    with AuditStore.open(tmp_path / "audit") as store:
        with store.start_run(export=SETTINGS, sql=False, run_id="r-filter") as run:
            record(run, 30)
        prefix = store.export_prefix(run.run_id, SETTINGS)
    records = exported(prefix)
    states = list(ExportTail(prefix, record_filter=TailFilter(frozenset({"node_state"}))))
    assert states == [r for r in records if r["record_type"] == "node_state"]
    one_row = next(r["row_id"] for r in records if r["record_type"] == "row")
    by_row = list(ExportTail(prefix, record_filter=TailFilter(row_id=one_row)))
    assert [r["record_type"] for r in by_row] == ["row", "token", "node_state"]
    assert all(r["row_id"] == one_row for r in by_row)
    by_node = list(ExportTail(prefix, record_filter=TailFilter(node_id="t1")))
    assert {r["record_type"] for r in by_node} == {"node", "node_state"}
    late = ExportTail(prefix, from_end=True)
    assert list(late) == []  # sealed and nothing new after the end
    assert late.sealed


def test_cli_tail_prints_json_lines_and_exits_zero_when_sealed(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    with AuditStore.open(root) as store:
        with store.start_run(export=ExportSettings(), sql=False, run_id="r-cli") as run:
            record(run, 10)
        prefix = store.export_prefix(run.run_id, ExportSettings())
    result = CliRunner().invoke(cli, ["tail", str(root), "r-cli", "--json", "--type", "row"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [r for r in exported(prefix) if r["record_type"] == "row"]
    assert "records shown; export sealed" in result.stderr


def test_an_unreadable_chunk_line_is_a_corrupt_export_not_a_corrupt_journal(
    tmp_path: Path,
) -> None:
    import pytest

    from auditjournal import CorruptExportError, CorruptJournalError
    from auditjournal.export.manifest import ExportPaths as Paths

    prefix = tmp_path / "audit_trail"
    Paths(prefix).chunk(0).write_bytes(b'[\n{"record_type":"run"\n')
    with pytest.raises(CorruptExportError, match="unreadable record line") as caught:
        ExportTail(prefix).poll()
    assert isinstance(caught.value, CorruptJournalError)  # old callers still catch it
