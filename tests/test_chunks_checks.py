"""Checks of chunks.py pinned one by one (see tools/mutate.py): the size limit at its
exact boundary, restoring a checkpoint only onto the files it describes, records
read whole whatever the read block, and write failures that are reported."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from auditjournal.errors import StorageError
from auditjournal.export.chunks import ChunkWriter, chunk_name, iter_chunk_records
from auditjournal.proofs.merkle import leaf_hash, merkle_root


def record(n: int, size: int) -> bytes:
    """A record of exactly ``size`` bytes."""
    head = b'{"n":%d,"p":"' % n
    return head + b"x" * (size - len(head) - 2) + b'"}'


def chunk_size(records: list[bytes]) -> int:
    """Bytes of a closed chunk holding ``records``: "[\\n", lines, "]\\n"."""
    return 2 + sum(len(r) + 1 for r in records) + (len(records) - 1) + 2


def write(
    directory: Path, limit: int | None, records: list[bytes], *, lines: bool
) -> list[dict[str, Any]]:
    writer = ChunkWriter(directory / "audit_trail", limit)
    try:
        if lines:
            writer.add_lines(
                b"".join(b"," + r + b"\n" for r in records),
                [len(r) for r in records],
                list(range(1, len(records) + 1)),
                b"".join(leaf_hash(r) for r in records),
            )
        else:
            for seq, r in enumerate(records, start=1):
                writer.add(seq, r)
        infos = [c.as_dict() for c in writer.finish()]
        assert writer.merkle.root() == merkle_root([leaf_hash(r) for r in records])
        assert writer.total_records == len(records)
    finally:
        writer.close()
    for info in infos:
        data = (directory / info["file"]).read_bytes()
        assert len(data) == info["bytes"]
        assert hashlib.sha256(data).hexdigest() == info["sha256"]
    return infos


@pytest.mark.parametrize("lines", [False, True], ids=["add", "add_lines"])
def test_a_chunk_may_reach_the_limit_exactly(tmp_path: Path, lines: bool) -> None:
    records = [record(i, 100 + i) for i in range(5)]
    limit = chunk_size(records[:3])
    (tmp_path / "a").mkdir()
    infos = write(tmp_path / "a", limit, records, lines=lines)
    assert [i["record_count"] for i in infos] == [3, 2]
    assert infos[0]["bytes"] == limit
    (tmp_path / "b").mkdir()
    infos = write(tmp_path / "b", limit - 1, records, lines=lines)
    assert [i["record_count"] for i in infos] == [2, 2, 1]
    assert all(i["bytes"] <= limit - 1 for i in infos)


@pytest.mark.parametrize("lines", [False, True], ids=["add", "add_lines"])
def test_a_record_larger_than_the_limit_gets_a_chunk_of_its_own(
    tmp_path: Path, lines: bool
) -> None:
    records = [record(0, 50), record(1, 500), record(2, 50), record(3, 50)]
    infos = write(tmp_path, 200, records, lines=lines)
    assert [i["record_count"] for i in infos] == [1, 1, 2]
    assert [(i["first_seq"], i["last_seq"]) for i in infos] == [(1, 1), (2, 2), (3, 4)]
    assert infos[1]["bytes"] == chunk_size([records[1]]) > 200


@pytest.mark.parametrize("lines", [False, True], ids=["add", "add_lines"])
def test_unchunked_export_is_one_file(tmp_path: Path, lines: bool) -> None:
    records = [record(i, 80) for i in range(30)]
    infos = write(tmp_path, None, records, lines=lines)
    assert [i["file"] for i in infos] == ["audit_trail.json"]
    data = (tmp_path / "audit_trail.json").read_bytes()
    assert json.loads(data) == [json.loads(r) for r in records]
    assert data.count(b"\n") == len(records) + 2


def test_add_lines_refuses_mismatched_leaves_or_seqs(tmp_path: Path) -> None:
    writer = ChunkWriter(tmp_path / "audit_trail", 1000)
    try:
        r = record(0, 20)
        with pytest.raises(ValueError, match="one seq and one 32-byte leaf"):
            writer.add_lines(b"," + r + b"\n", [len(r)], [1], b"\0" * 31)
        with pytest.raises(ValueError, match="one seq and one 32-byte leaf"):
            writer.add_lines(b"," + r + b"\n", [len(r)], [1, 2], leaf_hash(r))
    finally:
        writer.close()


def test_chunk_names() -> None:
    assert chunk_name("audit_trail", 7, False) == "audit_trail.007.json"
    assert chunk_name("audit_trail", 1234, False) == "audit_trail.1234.json"
    assert chunk_name("audit_trail", 0, True) == "audit_trail.json"


# -- reading records back ------------------------------------------------------------------------


@pytest.mark.parametrize("block", [1, 2, 3, 7, 64, 1 << 20])
def test_records_are_read_whole_whatever_the_block(tmp_path: Path, block: int) -> None:
    records = [record(i, 30 + 7 * i) for i in range(12)]
    write(tmp_path, 400, records, lines=False)
    got = [
        line
        for path in sorted(tmp_path.glob("audit_trail.*.json"))
        for line in iter_chunk_records(path, block)
    ]
    assert got == records


# -- checkpoints ------------------------------------------------------------------------------


def checkpointed(directory: Path) -> tuple[dict[str, Any], list[bytes]]:
    """A writer with two closed chunks and a current one, snapshotted, then written on."""
    records = [record(i, 120) for i in range(12)]
    directory.mkdir(parents=True, exist_ok=True)
    writer = ChunkWriter(directory / "audit_trail", 600)
    try:
        for seq, r in enumerate(records[:10], start=1):
            writer.add(seq, r)
        snap = json.loads(json.dumps(writer.snapshot()))
        assert len(snap["closed"]) == 2 and snap["current"]["record_count"] >= 1
        for seq, r in enumerate(records[10:], start=11):
            writer.add(seq, r)  # written after the checkpoint: to be cut
        writer.finish()
    finally:
        writer.close()
    return snap, records


def resume(directory: Path, snap: dict[str, Any], records: list[bytes]) -> bool:
    writer = ChunkWriter(directory / "audit_trail", 600)
    try:
        if not writer.restore(snap):
            return False
        for seq, r in enumerate(records[10:], start=11):
            writer.add(seq, r)
        writer.finish()
        assert writer.merkle.root() == merkle_root([leaf_hash(r) for r in records])
    finally:
        writer.close()
    return True


def test_a_checkpoint_restores_onto_its_own_files(tmp_path: Path) -> None:
    snap, records = checkpointed(tmp_path / "a")
    want = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    (tmp_path / "a" / "audit_trail.009.json").write_bytes(b"[\n")  # a later chunk: removed
    assert resume(tmp_path / "a", snap, records)
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == want


def damage_closed_size(directory: Path, snap: dict[str, Any]) -> None:
    path = directory / snap["closed"][0]["file"]
    path.write_bytes(path.read_bytes() + b" ")


def damage_closed_missing(directory: Path, snap: dict[str, Any]) -> None:
    (directory / snap["closed"][1]["file"]).unlink()


def damage_current_short(directory: Path, snap: dict[str, Any]) -> None:
    path = directory / snap["current"]["file"]
    os.truncate(path, snap["current"]["bytes"] - 1)


def damage_current_bytes(directory: Path, snap: dict[str, Any]) -> None:
    path = directory / snap["current"]["file"]
    data = bytearray(path.read_bytes())
    data[5] ^= 1  # same size, other content
    path.write_bytes(bytes(data))


def damage_current_missing(directory: Path, snap: dict[str, Any]) -> None:
    (directory / snap["current"]["file"]).unlink()


@pytest.mark.parametrize(
    "damage",
    [
        damage_closed_size,
        damage_closed_missing,
        damage_current_short,
        damage_current_bytes,
        damage_current_missing,
    ],
)
def test_a_checkpoint_is_refused_on_files_it_does_not_describe(tmp_path: Path, damage: Any) -> None:
    snap, records = checkpointed(tmp_path)
    damage(tmp_path, snap)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert not resume(tmp_path, snap, records)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing cut


def test_a_checkpoint_before_any_chunk_restores_to_nothing(tmp_path: Path) -> None:
    writer = ChunkWriter(tmp_path / "audit_trail", 600)
    try:
        snap = json.loads(json.dumps(writer.snapshot()))
        writer.add(1, record(0, 100))
        writer.finish()
    finally:
        writer.close()
    writer = ChunkWriter(tmp_path / "audit_trail", 600)
    try:
        assert writer.restore(snap)
        assert list(tmp_path.glob("audit_trail*.json")) == []
        writer.add(1, record(0, 100))
        assert [c.record_count for c in writer.finish()] == [1]
    finally:
        writer.close()


# -- write failures ---------------------------------------------------------------------------


def test_a_failed_chunk_write_is_reported_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.write
    calls = []

    def full(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    writer = ChunkWriter(tmp_path / "audit_trail", 10_000)
    try:
        monkeypatch.setattr(os, "write", full)
        writer.add(1, record(0, 100))
        writer.flush()
        with pytest.raises(StorageError, match="cannot write export chunk"):
            writer.sync()
        writer.sync()  # reported once
        assert calls == [len(record(0, 100)) + 3]
    finally:
        monkeypatch.undo()
        writer.close()
    assert (tmp_path / "audit_trail.000.json").read_bytes() == b""


def test_blocks_queued_behind_a_failed_write_are_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later block must not land after a lost one (the chunk would have a hole)."""
    import threading
    import time

    real = os.write
    calls: list[int] = []
    second_queued = threading.Event()

    def full(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            second_queued.wait(10)  # fail only once the next block waits behind this one
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    writer = ChunkWriter(tmp_path / "audit_trail", 10_000)
    try:
        monkeypatch.setattr(os, "write", full)
        writer.add(1, record(0, 100))
        writer.flush()
        time.sleep(0.05)
        writer.add(2, record(1, 100))
        writer.flush()  # queued behind the first block
        second_queued.set()
        with pytest.raises(StorageError, match="cannot write export chunk"):
            writer.sync()
        assert calls == [len(record(0, 100)) + 3]
    finally:
        monkeypatch.undo()
        writer.close()
    assert (tmp_path / "audit_trail.000.json").read_bytes() == b""


def test_every_chunk_is_fsynced_once_by_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    records = [record(i, 120) for i in range(12)]
    writer = ChunkWriter(tmp_path / "audit_trail", 600)
    try:
        for seq, r in enumerate(records, start=1):
            writer.add(seq, r)
        infos = writer.finish()
    finally:
        writer.close()
    assert sorted(synced) == sorted(i.file for i in infos)
    synced.clear()
    snap, records = checkpointed(tmp_path / "resumed")
    synced.clear()
    assert resume(tmp_path / "resumed", snap, records)
    files = sorted(p.name for p in (tmp_path / "resumed").glob("audit_trail.*.json"))
    assert sorted(synced) == files  # restored chunks too, each once


def test_a_write_failure_is_raised_by_the_next_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    writer = ChunkWriter(tmp_path / "audit_trail", 10_000)
    try:
        monkeypatch.setattr(os, "write", full)
        writer.add(1, record(0, 100))
        writer.flush()
        deadline = time.monotonic() + 10
        while writer._io.error is None:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        writer.add(2, record(1, 100))
        with pytest.raises(StorageError, match="cannot write export chunk"):
            writer.flush()
    finally:
        monkeypatch.undo()
        writer.close()


def test_at_most_two_blocks_wait_for_the_io_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fast producer waits instead of piling up memory (the parallel replay)."""
    import threading
    import time

    real = os.write
    release = threading.Event()

    def slow(fd: int, data: bytes) -> int:
        release.wait(10)
        return real(fd, data)

    writer = ChunkWriter(tmp_path / "audit_trail", 100_000)
    flushed: list[int] = []

    def produce() -> None:
        for i in range(5):
            writer.add(i + 1, record(i, 100))
            writer.flush()
            flushed.append(i)

    try:
        monkeypatch.setattr(os, "write", slow)
        producer = threading.Thread(target=produce)
        producer.start()
        time.sleep(0.3)
        # block 0 is being written (held) and block 1 waits behind it: two unhandled
        # blocks, so the third flush waits
        assert len(flushed) == 2 and writer._io._pending == 2
        release.set()
        producer.join(10)
        assert len(flushed) == 5
        writer.finish()
    finally:
        release.set()
        monkeypatch.undo()
        writer.close()


# -- files, threads and errors of a writer's life ------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def chunk_threads() -> int:
    import threading

    return sum(
        t.name.startswith("auditjournal-chunk") and t.is_alive() for t in threading.enumerate()
    )


def test_a_writer_releases_its_files_and_threads(tmp_path: Path) -> None:
    fds, threads = open_fds(), chunk_threads()
    writer = ChunkWriter(tmp_path / "audit_trail", 600)
    for seq in range(1, 13):  # several chunks: the sync thread starts
        writer.add(seq, record(seq, 120))
    writer.finish()
    writer.close()
    assert (open_fds(), chunk_threads()) == (fds, threads)


def test_close_writes_what_was_flushed(tmp_path: Path) -> None:
    fds = open_fds()
    writer = ChunkWriter(tmp_path / "audit_trail", 10_000)
    writer.add(1, record(0, 100))
    writer.flush()
    writer.close()  # not finished: the chunk stays open-ended, but holds the record
    assert (tmp_path / "audit_trail.000.json").read_bytes() == b"[\n" + record(0, 100) + b"\n"
    assert open_fds() == fds


def test_finish_without_records_and_twice(tmp_path: Path) -> None:
    writer = ChunkWriter(tmp_path / "audit_trail", 600)
    try:
        assert writer.finish() == []
        writer.add(1, record(0, 100))
        first = [c.as_dict() for c in writer.finish()]
        assert [c.as_dict() for c in writer.finish()] == first
    finally:
        writer.close()


def test_remove_all_removes_this_prefix_chunks_only(tmp_path: Path) -> None:
    names = [
        "audit_trail.000.json",
        "audit_trail.001.json",
        "audit_trail.1000.json",
        "audit_trail.json",
        "audit_trail.x.json",
        "audit_trail.manifest.json",
        "other.000.json",
    ]
    for name in names:
        (tmp_path / name).write_text("[\n]\n")
    writer = ChunkWriter(tmp_path / "audit_trail", 600)
    try:
        writer.remove_all()
    finally:
        writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "audit_trail.manifest.json",
        "audit_trail.x.json",
        "other.000.json",
    ]


def test_a_restore_removes_later_chunks_only(tmp_path: Path) -> None:
    snap, records = checkpointed(tmp_path)
    index = snap["index"]
    for name in (f"audit_trail.{index + 1:03d}.json", "audit_trail.1000.json"):
        (tmp_path / name).write_text("[\n]\n")
    (tmp_path / "audit_trail.json").write_text("[\n]\n")  # unchunked: another export's
    (tmp_path / "audit_trail.x.json").write_text("[\n]\n")
    assert resume(tmp_path, snap, records)
    names = {p.name for p in tmp_path.iterdir()}
    assert "audit_trail.1000.json" not in names
    assert {"audit_trail.json", "audit_trail.x.json"} <= names


def test_a_snapshot_after_finish_restores_every_chunk(tmp_path: Path) -> None:
    writer = ChunkWriter(tmp_path / "audit_trail", 600)
    try:
        for seq in range(1, 13):
            writer.add(seq, record(seq, 120))
        infos = [c.as_dict() for c in writer.finish()]
        snap = json.loads(json.dumps(writer.snapshot()))
    finally:
        writer.close()
    assert snap["current"] is None and snap["closed"]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    again = ChunkWriter(tmp_path / "audit_trail", 600)
    try:
        assert again.restore(snap)
        assert [c.as_dict() for c in again.finish()] == infos
    finally:
        again.close()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_snapshot_of_a_first_chunk_restores_it(tmp_path: Path) -> None:
    writer = ChunkWriter(tmp_path / "audit_trail", 100_000)
    try:
        writer.add(1, record(0, 100))
        snap = json.loads(json.dumps(writer.snapshot()))
    finally:
        writer.close()
    assert snap["closed"] == [] and snap["current"]["record_count"] == 1
    again = ChunkWriter(tmp_path / "audit_trail", 100_000)
    try:
        assert again.restore(snap)
        again.add(2, record(1, 100))
        (info,) = again.finish()
    finally:
        again.close()
    data = (tmp_path / "audit_trail.000.json").read_bytes()
    assert data == b"[\n" + record(0, 100) + b"\n," + record(1, 100) + b"\n]\n"
    assert info.record_count == 2


def test_the_same_writer_restoring_fsyncs_the_restored_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fds = open_fds()
    writer = ChunkWriter(tmp_path / "audit_trail", 600)
    try:
        for seq in range(1, 11):
            writer.add(seq, record(seq, 120))
        snap = json.loads(json.dumps(writer.snapshot()))
        for seq in range(11, 13):
            writer.add(seq, record(seq, 120))
        assert writer.restore(snap)
        if writer._syncer is not None:
            writer._syncer.drain()  # fsyncs of chunks closed before the restore are done
        synced: list[str] = []
        real = os.fsync

        def fsync(fd: int) -> None:
            synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        infos = writer.finish()
        assert sorted(synced) == sorted(i.file for i in infos)
    finally:
        writer.close()
    assert open_fds() == fds


def test_a_failed_chunk_fsync_is_reported_and_leaks_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    fds, threads = open_fds(), chunk_threads()

    def fail(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fail)
    writer = ChunkWriter(tmp_path / "audit_trail", 600)
    try:
        with pytest.raises(StorageError, match="cannot fsync export chunk"):
            for seq in range(1, 40):
                writer.add(seq, record(seq, 120))
                time.sleep(0.01)  # the sync thread fails before the next chunk closes
            writer.finish()
    finally:
        writer.close()
    monkeypatch.undo()
    assert (open_fds(), chunk_threads()) == (fds, threads)


def test_files_that_cannot_be_opened_or_fsynced_are_storage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def refuse(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(".001.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, *args, **kwargs)

    writer = ChunkWriter(tmp_path / "audit_trail", 600)
    try:
        monkeypatch.setattr(os, "open", refuse)
        with pytest.raises(StorageError, match=r"cannot open .*audit_trail\.001\.json"):
            for seq in range(1, 13):
                writer.add(seq, record(seq, 120))
    finally:
        monkeypatch.undo()
        writer.close()
    again = tmp_path / "again"
    again.mkdir()
    writer = ChunkWriter(again / "audit_trail", 600)
    try:
        for seq in range(1, 13):
            writer.add(seq, record(seq, 120))
        writer.finish()
        snap = json.loads(json.dumps(writer.snapshot()))
    finally:
        writer.close()

    def fail(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fail)
    restored = ChunkWriter(again / "audit_trail", 600)
    try:
        assert restored.restore(snap)  # closed before this writer: fsynced by finish()
        with pytest.raises(StorageError, match=r"cannot fsync .*audit_trail\.000\.json"):
            restored.finish()
    finally:
        monkeypatch.undo()
        restored.close()


def test_an_unchunked_export_is_resumed_onto_its_one_file(tmp_path: Path) -> None:
    """Unchunked, the current chunk is audit_trail.json (index 0): a restore keeps it."""
    records = [record(i, 100) for i in range(4)]
    writer = ChunkWriter(tmp_path / "audit_trail", None)
    try:
        for seq, r in enumerate(records[:2], start=1):
            writer.add(seq, r)
        snap = json.loads(json.dumps(writer.snapshot()))
    finally:
        writer.close()
    again = ChunkWriter(tmp_path / "audit_trail", None)
    try:
        assert again.restore(snap)
        for seq, r in enumerate(records[2:], start=3):
            again.add(seq, r)
        (info,) = again.finish()
    finally:
        again.close()
    data = (tmp_path / "audit_trail.json").read_bytes()
    assert data == b"[\n" + b"\n,".join(records) + b"\n]\n"
    assert (info.file, info.record_count, info.bytes) == ("audit_trail.json", 4, len(data))


def test_a_checkpoint_is_refused_on_a_link_to_a_copy_of_its_chunk(tmp_path: Path) -> None:
    """The closed chunk replaced by a link to an identical copy elsewhere, whose path is
    exactly as long as the chunk (the size lstat gives a link): refused, not followed."""
    snap, records = checkpointed(tmp_path / "export")
    info = snap["closed"][0]
    path = tmp_path / "export" / info["file"]
    target = tmp_path / "outside"
    while info["bytes"] - len(str(target)) - 1 > 200:
        target /= "d" * min(200, info["bytes"] - len(str(target)) - 2 - 1)
    target.mkdir(parents=True)
    target /= "f" * (info["bytes"] - len(str(target)) - 1)
    target.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(target)
    assert path.lstat().st_size == info["bytes"] == path.stat().st_size
    assert not resume(tmp_path / "export", snap, records)
    assert path.is_symlink() and target.read_bytes() == path.read_bytes()
