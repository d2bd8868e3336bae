"""ChunkWriter.add_lines (records built elsewhere, e.g. by the parallel replay's workers)
writes exactly what add() writes record by record: same chunk files, same rollovers,
same chunk infos, same Merkle root, however the records are batched."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditjournal.errors import StorageError
from auditjournal.export.chunks import ChunkWriter
from auditjournal.proofs.merkle import leaf_hash


def write(
    directory: Path,
    limit: int | None,
    records: list[bytes],
    batches: list[int] | None,
    io_thread: bool = True,
) -> tuple[dict[str, bytes], list[dict[str, object]], bytes]:
    writer = ChunkWriter(directory / "audit_trail", limit, io_thread=io_thread)
    try:
        if batches is None:
            for seq, record in enumerate(records, start=1):
                writer.add(seq, record)
        else:
            start = 0
            for size in [*batches, len(records)]:
                part = records[start : start + size]
                lines = b"".join(b"," + r + b"\n" for r in part)
                seqs = list(range(start + 1, start + 1 + len(part)))
                writer.add_lines(
                    lines, [len(r) for r in part], seqs, b"".join(map(leaf_hash, part))
                )
                writer.flush()
                start += len(part)
        infos = [c.as_dict() for c in writer.finish()]
        root = writer.merkle.root()
    finally:
        writer.close()
    files = {p.name: p.read_bytes() for p in sorted(directory.glob("audit_trail*.json"))}
    return files, infos, root


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=60),
    limit=st.one_of(st.none(), st.integers(min_value=20, max_value=1_500)),
    batches=st.lists(st.integers(min_value=0, max_value=25), max_size=8),
)
def test_add_lines_writes_what_add_writes(
    sizes: list[int], limit: int | None, batches: list[int]
) -> None:
    records = [b'{"n":"' + bytes([97 + i % 26]) * size + b'"}' for i, size in enumerate(sizes)]
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
        want = write(Path(one), limit, records, None)
        got = write(Path(two), limit, records, batches)
    assert got == want
    if limit is not None:  # no chunk over the limit unless it holds a single record
        for name, data in got[0].items():
            assert len(data) <= limit or data.count(b"\n") == 3, name


def test_add_lines_refuses_mismatched_lengths(tmp_path: Path) -> None:
    writer = ChunkWriter(tmp_path / "audit_trail", None)
    try:
        with pytest.raises(ValueError, match="one seq"):
            writer.add_lines(b",{}\n", [2], [1, 2], leaf_hash(b"{}"))
    finally:
        writer.close()


def _inode(path: Path) -> int:
    return path.stat().st_ino


def _open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


RECORDS = [b'{"n":"' + b"x" * 200 + b'","i":' + str(i).encode() + b"}" for i in range(60)]


def test_every_chunk_is_fsynced_by_finish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Closed chunks are fsynced on a sync thread as they close, the last one (and any
    # restored from a checkpoint) by finish() itself: all of them before it returns.
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr("auditjournal.export.chunks.os.fsync", fsync)
    writer = ChunkWriter(tmp_path / "audit_trail", 1_000)
    try:
        for seq, record in enumerate(RECORDS[:30], start=1):
            writer.add(seq, record)
        writer.flush()
        snap = writer.snapshot()
        assert len(snap["closed"]) > 3
    finally:
        writer.close()
    synced.clear()  # a resumed writer: the chunks closed before are not known to be synced
    resumed = ChunkWriter(tmp_path / "audit_trail", 1_000)
    try:
        assert resumed.restore(snap)
        for seq, record in enumerate(RECORDS[30:], start=31):
            resumed.add(seq, record)
        infos = resumed.finish()
        assert len(infos) > 8
        assert {_inode(tmp_path / info.file) for info in infos} <= set(synced)
    finally:
        resumed.close()


def test_a_failed_background_fsync_fails_finish_and_leaks_no_fd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("auditjournal.export.chunks.os.fsync", fsync)
    before = _open_fds()
    writer = ChunkWriter(tmp_path / "audit_trail", 1_000)
    try:
        with pytest.raises(StorageError, match="fsync"):
            for seq, record in enumerate(RECORDS, start=1):
                writer.add(seq, record)
                writer.flush()
            writer.finish()
    finally:
        writer.close()
    assert _open_fds() == before


@given(
    records=st.lists(
        st.binary(min_size=1, max_size=300).map(lambda b: b.hex().encode()), max_size=40
    ),
    limit=st.sampled_from([None, 400, 2_000]),
    batches=st.lists(st.integers(0, 9), max_size=6),
)
@settings(max_examples=40, deadline=None)
def test_written_in_the_callers_thread_the_chunks_are_the_same(
    records: list[bytes], limit: int | None, batches: list[int]
) -> None:
    """A live projector writes its small steps itself (``io_thread=False``): the same
    files, chunk infos and root as through the I/O thread."""
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        threaded = write(Path(a), limit, records, batches)
        inline = write(Path(b), limit, records, batches, io_thread=False)
    assert inline == threaded


def test_a_writer_in_the_callers_thread_starts_no_io_thread_and_reports_a_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from faults import fail_writes

    before = {t.name for t in threading.enumerate()}
    writer = ChunkWriter(tmp_path / "audit_trail", 1_000, io_thread=False)
    try:
        assert {t.name for t in threading.enumerate()} == before
        writer.add(1, RECORDS[0])
        writer.flush()
        fail_writes(monkeypatch, "audit_trail")
        writer.add(2, RECORDS[1])
        with pytest.raises(StorageError, match="cannot write export chunk"):
            writer.flush()
    finally:
        writer.close()
