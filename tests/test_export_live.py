"""The live export while the run is going on: the current chunk is readable line by line,
rolled chunks are closed, nothing is written for a node state still open."""

from __future__ import annotations

import json
import time
from pathlib import Path

import rfc8785

from auditjournal import (
    AuditStore,
    ExportSettings,
)
from export_reading import (
    chunk_paths,
    read_sealed_chunk,
    record_lines,
)
from export_runs import (
    small_run,
)


def wait_for_records(path: Path, count: int, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        data = path.read_bytes() if path.exists() else b""
        if data.count(b"\n") - 1 >= count:
            return data
        time.sleep(0.01)
    raise AssertionError(f"{path} did not reach {count} records: {data[-200:]!r}")


def test_unsealed_chunk_is_readable_line_by_line(store: AuditStore) -> None:
    settings_ = ExportSettings(chunk_size_bytes=None)
    run = store.start_run(export=settings_)
    try:
        src = run.register_node(plugin_name="src", node_type="source")
        xf = run.register_node(plugin_name="xf", node_type="transform")
        run.register_edge(from_node_id=src, to_node_id=xf, label="continue")
        row = run.create_row(source_node_id=src, row_index=0, data={"a": 1})
        tok = run.create_token(row_id=row)
        done = run.begin_node_state(token_id=tok, node_id=xf, step_index=1, input_data={"a": 1})
        run.complete_node_state(done, status="completed", output_data={"b": 2})
        still_open = run.begin_node_state(
            token_id=tok, node_id=xf, step_index=2, input_data={"b": 2}
        )
        run._journal.flush(fsync=False)
        path = store.export_dir(run.run_id) / "audit_trail.json"
        data = wait_for_records(path, 6)  # 2 nodes, edge, row, token, completed state
        time.sleep(0.05)
        assert path.read_bytes() == data, "nothing more may be written for the open state"
        assert b"]" not in data.split(b"\n")
        assert data.endswith(b"\n")
        lines = data[:-1].split(b"\n")
        assert lines[0] == b"["
        parsed = []
        for index, line in enumerate(lines[1:]):
            assert line.startswith(b",") == (index > 0)
            parsed.append(json.loads(line.removeprefix(b",")))
        assert [r["record_type"] for r in parsed] == [
            "node",
            "node",
            "edge",
            "row",
            "token",
            "node_state",
        ]
        assert parsed[-1]["state_id"] == done
        assert all(r.get("state_id") != still_open for r in parsed)
        assert not (store.export_dir(run.run_id) / "audit_trail.manifest.json").exists()
        run.complete_node_state(still_open, status="completed")
    finally:
        run.complete()
        run.close()
    sealed = path.read_bytes()
    assert sealed.startswith(data) and sealed.endswith(b"\n]\n")


def test_unsealed_rolled_chunks_are_closed_current_is_open(store: AuditStore) -> None:
    run = store.start_run(export=ExportSettings(chunk_size_bytes=700))
    try:
        small_run(run, rows=6)
        run._journal.flush(fsync=False)
        directory = store.export_dir(run.run_id)
        expected = 3 + 6 * 4
        deadline = time.monotonic() + 10
        while True:
            paths = chunk_paths(directory)
            count = sum(p.read_bytes().count(b"\n") for p in paths) - len(paths)
            count -= sum(p.read_bytes().endswith(b"]\n") for p in paths)
            if count >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert count == expected
        assert len(paths) > 2
        for path in paths[:-1]:
            read_sealed_chunk(path)
        current = paths[-1].read_bytes()
        assert not current.endswith(b"]\n") and current.endswith(b"\n")
        for raw in record_lines(current):
            assert raw == rfc8785.dumps(json.loads(raw))
    finally:
        run.complete()
        run.close()
