"""Chunk files (SPEC §4): format and names, one file when unchunked, rollover at the
size limit (a property), the exact boundary, the chunk writer's restore."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditjournal import (
    AuditStore,
    ExportSettings,
)
from export_reading import (
    PREFIX,
    chunk_paths,
    export_files,
    read_sealed_chunk,
)
from export_runs import (
    replay,
    small_run,
)

# -- chunk format --------------------------------------------------------------------------


def test_chunk_files_format_and_names(store: AuditStore) -> None:
    with store.start_run(export=ExportSettings(chunk_size_bytes=1000)) as run:
        small_run(run, rows=12)
    directory = store.export_dir(run.run_id)
    paths = chunk_paths(directory)
    assert len(paths) > 3, "1000-byte chunks must roll over"
    assert [p.name for p in paths] == [f"audit_trail.{i:03d}.json" for i in range(len(paths))]
    assert not (directory / "audit_trail.json").exists()
    total = 0
    for path in paths:
        data = path.read_bytes()
        lines = data.split(b"\n")
        assert lines[0] == b"[" and lines[-2] == b"]" and lines[-1] == b""
        assert not lines[1].startswith(b",")
        assert all(line.startswith(b",") for line in lines[2:-2])
        for line in lines[1:-2]:
            raw = line.removeprefix(b",")
            assert raw == rfc8785.dumps(json.loads(raw))
            assert raw.startswith(b"{") and raw.endswith(b"}")
        total += len(read_sealed_chunk(path))
    manifest = json.loads((directory / "audit_trail.manifest.json").read_bytes())
    assert total == manifest["total_record_count"] == 3 + 12 * 4 + 1


def test_unchunked_export_is_one_file(store: AuditStore) -> None:
    with store.start_run(export=ExportSettings(chunk_size_bytes=None)) as run:
        small_run(run, rows=30)
    directory = store.export_dir(run.run_id)
    assert chunk_paths(directory) == []
    assert sorted(export_files(directory)) == [
        "audit_trail.json",
        "audit_trail.manifest.json",
        "audit_trail.sha256",
    ]
    manifest = json.loads((directory / "audit_trail.manifest.json").read_bytes())
    assert manifest["chunk_size_bytes"] is None and manifest["chunk_count"] == 1
    assert [c["file"] for c in manifest["chunks"]] == ["audit_trail.json"]
    records = read_sealed_chunk(directory / "audit_trail.json")
    assert len(records) == manifest["total_record_count"] == 3 + 30 * 4 + 1
    listing = (directory / "audit_trail.sha256").read_text()
    digest = hashlib.sha256((directory / "audit_trail.json").read_bytes()).hexdigest()
    manifest_digest = hashlib.sha256((directory / "audit_trail.manifest.json").read_bytes())
    assert listing == (
        f"{digest}  audit_trail.json\n{manifest_digest.hexdigest()}  audit_trail.manifest.json\n"
    )


def test_chunk_names_grow_beyond_three_digits(store: AuditStore, tmp_path: Path) -> None:
    with store.start_run(export=None) as run:
        small_run(run, rows=260, text=10)
    out = tmp_path / "many" / PREFIX
    result = replay(store, run.run_id, ExportSettings(chunk_size_bytes=64), out)
    assert result is not None and result.chunk_count > 1000
    names = [p.name for p in chunk_paths(out.parent)]
    assert names[999:1001] == ["audit_trail.999.json", "audit_trail.1000.json"]
    manifest = json.loads((out.parent / "audit_trail.manifest.json").read_bytes())
    assert [c["file"] for c in manifest["chunks"]] == names


# -- rollover (property) -------------------------------------------------------------------


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    chunk_size=st.integers(min_value=200, max_value=20_000),
    sizes=st.lists(st.integers(min_value=0, max_value=6_000), min_size=1, max_size=25),
    include_payloads=st.booleans(),
)
def test_rollover_respects_the_limit(
    chunk_size: int, sizes: list[int], include_payloads: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with AuditStore.open(root / "audit") as s:
            with s.start_run(export=None) as run:
                src = run.register_node(plugin_name="src", node_type="source")
                xf = run.register_node(plugin_name="xf", node_type="transform")
                run.register_edge(from_node_id=src, to_node_id=xf, label="continue")
                for i, size in enumerate(sizes):
                    row = run.create_row(
                        source_node_id=src, row_index=i, data={"i": i, "t": "é" * size}
                    )
                    tok = run.create_token(row_id=row)
                    sid = run.begin_node_state(
                        token_id=tok, node_id=xf, step_index=1, input_data={"t": "a" * size}
                    )
                    run.complete_node_state(sid, status="completed", output_data={"o": i})
            rid = run.run_id
            settings_ = ExportSettings(
                include_payloads=include_payloads, chunk_size_bytes=chunk_size
            )
            chunked = root / "chunked" / PREFIX
            whole = root / "whole" / PREFIX
            result = replay(s, rid, settings_, chunked)
            replay(
                s,
                rid,
                ExportSettings(include_payloads=include_payloads, chunk_size_bytes=None),
                whole,
            )
            assert result is not None
            paths = chunk_paths(chunked.parent)
            assert len(paths) == result.chunk_count
            all_records: list[bytes] = []
            previous: list[bytes] | None = None
            previous_size = 0
            for path in paths:
                records = read_sealed_chunk(path)  # valid JSON, canonical, records whole
                size = path.stat().st_size
                assert size <= chunk_size or len(records) == 1, (
                    f"{path.name}: {size} bytes > {chunk_size} with {len(records)} records"
                )
                if previous is not None:
                    # a chunk is only closed when the next record would not have fit
                    assert previous_size + len(records[0]) + 2 > chunk_size
                previous, previous_size = records, size
                all_records += records
            single = read_sealed_chunk(whole.parent / "audit_trail.json")
            assert all_records == single
            assert len(all_records) == 3 + 3 * len(sizes) + 1
            seqs = [json.loads(r)["seq"] for r in all_records]
            assert seqs == sorted(seqs)


def test_rollover_boundary_is_exact(store: AuditStore, tmp_path: Path) -> None:
    """A chunk of exactly ``chunk_size_bytes`` (counting ``]``) is allowed; one byte less
    and its last record moves to the next chunk."""
    with store.start_run(export=None) as run:
        small_run(run, rows=3)
    rid = run.run_id
    whole = tmp_path / "whole" / PREFIX
    replay(store, rid, ExportSettings(chunk_size_bytes=None), whole)
    records = read_sealed_chunk(whole.parent / "audit_trail.json")
    for k in range(1, 6):
        exact = len(b"[\n") + sum(len(r) + 1 for r in records[:k]) + (k - 1) + len(b"]\n")
        for limit, expect in ((exact, k), (exact - 1, k - 1)):
            if expect == 0:
                continue
            out = tmp_path / f"b{k}-{limit}" / PREFIX
            replay(store, rid, ExportSettings(chunk_size_bytes=limit), out)
            first = out.parent / "audit_trail.000.json"
            assert len(read_sealed_chunk(first)) == expect, (k, limit)
            if expect == k:
                assert first.stat().st_size == limit


def test_chunk_writer_restore_keeps_closed_chunks(tmp_path: Path) -> None:
    """Regression: restoring a snapshot with no current chunk deleted the last closed one."""
    from auditjournal.export.chunks import ChunkWriter

    prefix = tmp_path / "w" / PREFIX
    prefix.parent.mkdir()
    writer = ChunkWriter(prefix, 200)
    for seq in range(1, 9):
        writer.add(seq, rfc8785.dumps({"seq": seq, "pad": "p" * 60}))
    writer.flush()
    writer.finish()
    writer.close()
    snap = writer.snapshot()
    before = export_files(prefix.parent)
    assert len(before) >= 3 and snap["current"] is None
    again = ChunkWriter(prefix, 200)
    assert again.restore(snap)
    again.close()
    assert export_files(prefix.parent) == before


@pytest.mark.parametrize("chunk_size", [None, 150_000, 5_000])
def test_big_runs_of_lines_are_written_as_the_records_one_by_one(
    tmp_path: Path, chunk_size: int | None
) -> None:
    """Runs of lines past chunks._DIRECT_BYTES go to the I/O thread from the caller's
    bytes, between buffered ones (chunk openings, small runs): the files, chunk list and
    root are those of the records added one at a time."""
    from auditjournal.export import chunks
    from auditjournal.fs.digests import leaf_hashes

    records = [json.dumps({"n": i, "pad": "x" * (i % 700)}).encode() for i in range(900)]
    assert sum(map(len, records)) > 4 * chunks._DIRECT_BYTES
    results = []
    for batched in (False, True):
        prefix = tmp_path / f"b{batched}" / "audit_trail"
        prefix.parent.mkdir()
        writer = chunks.ChunkWriter(prefix, chunk_size)
        try:
            if batched:
                # (no flush between: what is buffered goes before a run written as it is)
                for start, stop in ((0, 3), (3, 400), (400, 401), (401, 900)):
                    part = records[start:stop]
                    lines = b"".join(b"," + r + b"\n" for r in part)
                    seqs = list(range(start, stop))
                    writer.add_lines(lines, [len(r) for r in part], seqs, leaf_hashes(part))
                writer.flush()
            else:
                for seq, record in enumerate(records):
                    writer.add(seq, record)
                writer.flush()
            infos = [c.as_dict() for c in writer.finish()]
        finally:
            writer.close()
        files = {p.name: p.read_bytes() for p in sorted(prefix.parent.glob("*.json"))}
        results.append((infos, files, writer.merkle.root()))
    assert results[0] == results[1]
