"""Tests for the content-addressed payload store (SPEC §2 "Canonical JSON and hashes", §3, §9)."""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditjournal.errors import (
    DiskFullError,
    InvalidRefError,
    PayloadIntegrityError,
    PayloadNotFoundError,
    PayloadTooLargeError,
    StorageError,
)
from auditjournal.fs.storage import AppendFile
from auditjournal.model.canonical import canonical_json
from auditjournal.payloads.store import PackRecovery, PayloadStore
from faults import fail_writes

HEADER = 4 + 32 + 8  # b"AJP1" | sha256 digest | u64 length
ENTRY = 32 + 8 + 8  # digest | data offset | length


def ref_of(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


def pack_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("pack-*.dat"))


def total_pack_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in pack_files(directory))


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def parse_pack(path: Path) -> list[tuple[bytes, int, int]]:
    """Independent reader of the pack format: (digest, data offset, length) per record."""
    data = path.read_bytes()
    records = []
    cursor = 0
    while cursor < len(data):
        magic, digest, size = struct.unpack_from("<4s32sQ", data, cursor)
        assert magic == b"AJP1"
        records.append((digest, cursor + HEADER, size))
        cursor += HEADER + size
    assert cursor == len(data)
    return records


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "payloads"


@pytest.fixture
def store(directory: Path) -> Iterator[PayloadStore]:
    s = PayloadStore(directory)
    yield s
    s.close()


# -- round trip and dedup ---------------------------------------------------------------


def test_put_get_round_trip(store: PayloadStore) -> None:
    value = {"name": "Ada", "n": 3, "nested": {"list": [1, 2.5, None, True]}, "é": "ü"}
    ref = store.put(value)
    assert ref == ref_of(value)
    assert len(ref) == 64
    assert store.get(ref) == canonical_json(value)
    assert (
        store.get(ref)
        == b'{"n":3,"name":"Ada","nested":{"list":[1,2.5,null,true]},"\xc3\xa9":"\xc3\xbc"}'
    )
    assert store.get_json(ref) == value
    assert ref in store
    assert list(store.refs()) == [ref]


def test_put_canonical_stores_the_given_bytes(store: PayloadStore) -> None:
    data = b'{"a":1}'
    ref = store.put_canonical(data)
    assert ref == hashlib.sha256(data).hexdigest()
    assert store.get(ref) == data


def test_same_content_same_ref_stored_once(store: PayloadStore, directory: Path) -> None:
    first = store.put({"b": 2, "a": 1})
    store.flush(fsync=False)
    size = total_pack_bytes(directory)
    assert size == HEADER + len(b'{"a":1,"b":2}')
    second = store.put({"a": 1, "b": 2})  # same content, other key order
    store.flush(fsync=False)
    assert second == first
    assert total_pack_bytes(directory) == size
    assert list(store.refs()) == [first]


def test_dedup_survives_reopen(directory: Path) -> None:
    with_store = PayloadStore(directory)
    ref = with_store.put([1, 2, 3])
    with_store.close()
    size = total_pack_bytes(directory)
    again = PayloadStore(directory)
    try:
        assert again.put([1, 2, 3]) == ref
        again.flush(fsync=True)
        assert total_pack_bytes(directory) == size
    finally:
        again.close()


def test_distinct_content_distinct_refs(store: PayloadStore) -> None:
    refs = {store.put({"i": i}) for i in range(100)}
    assert len(refs) == 100
    for i in range(100):
        assert store.get_json(ref_of({"i": i})) == {"i": i}


# -- integrity ------------------------------------------------------------------------


@pytest.mark.parametrize("reopen", [False, True], ids=["open-store", "reopened"])
def test_flipped_byte_in_pack_fails_get(directory: Path, reopen: bool) -> None:
    store = PayloadStore(directory)
    good = store.put({"keep": "me"})
    victim = store.put({"victim": "x" * 50})
    store.flush(fsync=True)
    pack = pack_files(directory)[0]
    records = {digest.hex(): (offset, size) for digest, offset, size in parse_pack(pack)}
    offset, size = records[victim]
    flip_byte(pack, offset + size // 2)
    if reopen:
        store.close()
        store = PayloadStore(directory)
    try:
        with pytest.raises(PayloadIntegrityError, match=victim):
            store.get(victim)
        assert store.get(good) == canonical_json({"keep": "me"})
    finally:
        store.close()


def test_flipped_byte_is_found_in_the_read_ahead_window(directory: Path) -> None:
    """A reopened store serves payloads from a window read ahead of the first ``get``:
    a damaged payload inside that window is still re-hashed and refused."""
    store = PayloadStore(directory)
    refs = [store.put({"i": i, "pad": "p" * 200}) for i in range(20)]
    store.close()
    pack = pack_files(directory)[0]
    records = {digest.hex(): (offset, size) for digest, offset, size in parse_pack(pack)}
    offset, size = records[refs[10]]
    flip_byte(pack, offset + size // 2)
    store = PayloadStore(directory)
    try:
        for i in range(10):  # the first read fills the window with all 20 records
            assert store.get(refs[i]) == canonical_json({"i": i, "pad": "p" * 200})
        with pytest.raises(PayloadIntegrityError, match=refs[10]):
            store.get(refs[10])
        assert store.get(refs[11]) == canonical_json({"i": 11, "pad": "p" * 200})
    finally:
        store.close()


def test_payloads_whose_digests_start_alike_are_told_apart_in_the_window(directory: Path) -> None:
    """The compact index keys on a digest's first 4 bytes: of two payloads that share
    them, the index's first candidate is the wrong one for one of them. A reopened store
    serving both from its read-ahead window checks the record header's whole digest and
    takes the other candidate."""
    twins = (69235, 95303)  # canonical JSON "69235" and "95303": SHA-256 prefixes alike
    digests = [hashlib.sha256(canonical_json(v)).digest() for v in twins]
    assert digests[0][:4] == digests[1][:4] and digests[0] != digests[1]
    store = PayloadStore(directory)
    refs = [store.put({"pad": i}) for i in range(5)] + [store.put(v) for v in twins]
    store.close()
    store = PayloadStore(directory)
    try:
        assert store.get(refs[0]) == canonical_json({"pad": 0})  # fills the window
        for value, ref in zip(twins, refs[5:], strict=True):
            assert store.get(ref) == canonical_json(value)
        assert store.get(refs[5]) == canonical_json(twins[0])
    finally:
        store.close()


def test_truncated_pack_fails_get(directory: Path) -> None:
    store = PayloadStore(directory)
    ref = store.put({"v": "y" * 100})
    store.flush(fsync=True)
    pack = pack_files(directory)[0]
    os.truncate(pack, pack.stat().st_size - 10)
    try:  # the open store still indexes it: the read comes up short
        with pytest.raises(PayloadIntegrityError, match="truncated"):
            store.get(ref)
    finally:
        store.close()
    reader = PayloadStore(directory)  # a reopened store does not index data past the end
    try:
        with pytest.raises(PayloadNotFoundError):
            reader.get(ref)
    finally:
        reader.close()


def test_missing_ref_raises_not_found(store: PayloadStore) -> None:
    store.put({"present": True})
    missing = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(PayloadNotFoundError, match=missing) as info:
        store.get(missing)
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, StorageError)
    assert missing not in store


BAD_REFS: list[object] = [
    "../x",
    "../" + "a" * 61,
    "/etc/passwd",
    "A" * 64,
    "ABCDEF" + "0" * 58,
    "a" * 63,
    "a" * 65,
    "g" * 64,
    " " + "a" * 63,
    "a" * 63 + "\n",
    "a" * 64 + "\n",
    "",
    123,
    None,
    b"a" * 64,
    ["a" * 64],
]


@pytest.mark.parametrize("bad", BAD_REFS, ids=repr)
def test_malformed_ref_rejected_before_disk_access(
    store: PayloadStore, monkeypatch: pytest.MonkeyPatch, bad: object
) -> None:
    def no_disk(*args: object, **kwargs: object) -> None:
        raise AssertionError("disk accessed for a malformed ref")

    for name in ("refresh", "_locate", "_read", "_load_index", "_pack_numbers"):
        monkeypatch.setattr(store, name, no_disk)
    monkeypatch.setattr(os, "open", no_disk)
    monkeypatch.setattr(os, "pread", no_disk)
    with pytest.raises(InvalidRefError):
        store.get(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidRefError):
        store.get_json(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidRefError):
        bad in store  # noqa: B015


def test_payload_over_limit_rejected_and_nothing_written(directory: Path) -> None:
    store = PayloadStore(directory, max_payload_bytes=100)
    try:
        at_limit = "x" * 98  # canonical JSON: 98 characters plus two quotes = 100 bytes
        assert len(canonical_json(at_limit)) == 100
        ref = store.put(at_limit)
        store.flush(fsync=False)
        size = total_pack_bytes(directory)
        with pytest.raises(PayloadTooLargeError, match="101"):
            store.put("x" * 99)
        with pytest.raises(PayloadTooLargeError):
            store.put_canonical(b"[" + b"1," * 200 + b"1]")
        store.flush(fsync=False)
        assert total_pack_bytes(directory) == size
        assert list(store.refs()) == [ref]
    finally:
        store.close()


# -- packs ----------------------------------------------------------------------------


def test_pack_rollover_with_small_pack_bytes(directory: Path) -> None:
    pack_bytes = 1000
    store = PayloadStore(directory, pack_bytes=pack_bytes)
    values = [{"i": i, "pad": "p" * (i % 7 * 20)} for i in range(80)]
    refs = []
    for i, value in enumerate(values):
        refs.append(store.put(value))
        if i % 5 == 0:
            store.flush(fsync=False)
    store.close()

    packs = pack_files(directory)
    assert len(packs) >= 5
    assert [p.name for p in packs] == [f"pack-{n:06d}.dat" for n in range(1, len(packs) + 1)]
    seen: dict[str, str] = {}
    for pack in packs:
        records = parse_pack(pack)
        assert records, f"{pack.name} is empty"
        assert pack.stat().st_size <= pack_bytes, f"{pack.name} passed pack_bytes"
        idx = pack.with_suffix(".idx").read_bytes()
        assert idx == b"".join(d + struct.pack("<QQ", o, s) for d, o, s in records)
        for digest, _, _ in records:
            assert digest.hex() not in seen, "a payload was stored twice"
            seen[digest.hex()] = pack.name
    assert set(seen) == set(refs)

    reopened = PayloadStore(directory, pack_bytes=pack_bytes)
    try:
        for ref, value in zip(refs, values, strict=True):
            assert reopened.get(ref) == canonical_json(value)
        assert set(reopened.refs()) == set(refs)
    finally:
        reopened.close()


def test_payload_larger_than_pack_bytes_gets_its_own_pack(directory: Path) -> None:
    store = PayloadStore(directory, pack_bytes=200)
    small = store.put("s")
    big = store.put("b" * 500)
    store.close()
    reopened = PayloadStore(directory, pack_bytes=200)
    try:
        assert reopened.get(big) == canonical_json("b" * 500)
        assert reopened.get(small) == b'"s"'
        assert len(pack_files(directory)) == 2
    finally:
        reopened.close()


def test_reopen_sees_everything(directory: Path) -> None:
    store = PayloadStore(directory)
    refs = [store.put({"k": k}) for k in range(50)]
    store.close()
    reopened = PayloadStore(directory)
    try:
        assert set(reopened.refs()) == set(refs)
        for k, ref in enumerate(refs):
            assert reopened.get_json(ref) == {"k": k}
        assert reopened.recoveries == []
    finally:
        reopened.close()


def test_get_of_own_unflushed_payload(store: PayloadStore, directory: Path) -> None:
    ref = store.put({"buffered": True})
    assert store.get(ref) == b'{"buffered":true}'  # flushes its own buffer to read it


def test_two_writers_use_different_packs_and_see_each_other(directory: Path) -> None:
    a = PayloadStore(directory)
    b = PayloadStore(directory)
    try:
        ref_a = a.put({"from": "a"})
        ref_b = b.put({"from": "b"})
        a.flush(fsync=False)
        b.flush(fsync=False)
        packs = pack_files(directory)
        assert len(packs) == 2
        owners = {d.hex(): p.name for p in packs for d, _, _ in parse_pack(p)}
        assert owners[ref_a] != owners[ref_b]

        assert b.get(ref_a) == b'{"from":"a"}'  # a miss re-reads the other writer's index
        assert a.get(ref_b) == b'{"from":"b"}'
        assert ref_a in b and ref_b in a

        later = a.put({"from": "a", "n": 2})
        a.flush(fsync=False)
        b.refresh()
        assert later in set(b.refs())
        assert b.get_json(later) == {"from": "a", "n": 2}
    finally:
        a.close()
        b.close()


def test_second_writer_does_not_see_unflushed_payloads(directory: Path) -> None:
    a = PayloadStore(directory)
    b = PayloadStore(directory)
    try:
        ref = a.put({"pending": 1})
        with pytest.raises(PayloadNotFoundError):
            b.get(ref)
        a.flush(fsync=False)
        assert b.get(ref) == b'{"pending":1}'
    finally:
        a.close()
        b.close()


# -- crash repair -----------------------------------------------------------------------


def _partial_record() -> bytes:
    digest = hashlib.sha256(b"x" * 100).digest()
    return b"AJP1" + digest + struct.pack("<Q", 100) + b"x" * 10


@pytest.mark.parametrize(
    "garbage",
    [b"\x00garbage\xff" * 5, _partial_record(), b"AJP1", b"\x00" * 4096],
    ids=["garbage", "partial-record", "partial-header", "zeros"],
)
def test_crash_repair_drops_torn_tail_and_reindexes(directory: Path, garbage: bytes) -> None:
    store = PayloadStore(directory)
    values = [{"n": n, "text": "t" * (n * 10)} for n in range(4)]
    refs = [store.put(v) for v in values]
    store.close()
    pack = pack_files(directory)[0]
    idx = pack.with_suffix(".idx")
    good_size = pack.stat().st_size
    with open(pack, "ab") as fh:
        fh.write(garbage)
    os.truncate(idx, ENTRY + ENTRY // 2)  # one whole entry and half of the next

    reopened = PayloadStore(directory)
    try:
        new = reopened.put({"after": "crash"})
        assert reopened.recoveries == [PackRecovery(pack.name, len(garbage), 3)]
        for ref, value in zip(refs, values, strict=True):
            assert reopened.get(ref) == canonical_json(value)
        assert reopened.get_json(new) == {"after": "crash"}
    finally:
        reopened.close()

    records = parse_pack(pack)  # asserts the pack parses to its end: garbage gone
    assert [d.hex() for d, _, _ in records] == [*refs, new]
    assert pack.stat().st_size == good_size + HEADER + len(b'{"after":"crash"}')
    assert idx.read_bytes() == b"".join(d + struct.pack("<QQ", o, s) for d, o, s in records)

    clean = PayloadStore(directory)
    try:
        assert set(clean.refs()) == {*refs, new}
        clean.put({"one": "more"})
        assert clean.recoveries == []
    finally:
        clean.close()


def test_clean_reopen_reports_no_recovery(directory: Path) -> None:
    store = PayloadStore(directory)
    store.put({"a": 1})
    store.close()
    again = PayloadStore(directory)
    try:
        again.put({"b": 2})
        assert again.recoveries == []
    finally:
        again.close()


def test_iter_records_reports_corrupted_record(directory: Path) -> None:
    store = PayloadStore(directory)
    refs = [store.put({"r": r, "pad": "q" * 30}) for r in range(3)]
    store.flush(fsync=True)
    pack = pack_files(directory)[0]
    records = parse_pack(pack)
    _, offset, _ = records[1]
    flip_byte(pack, offset + 5)
    try:
        scanned = list(store.iter_records())
    finally:
        store.close()
    assert [(name, off, length) for name, off, length, _, _ in scanned] == [
        (pack.name, o, s) for _, o, s in records
    ]
    assert [digest.hex() for _, _, _, digest, _ in scanned] == refs
    assert [intact for *_, intact in scanned] == [True, False, True]


def test_iter_records_reports_torn_tail(directory: Path) -> None:
    store = PayloadStore(directory)
    ref = store.put({"whole": True})
    store.close()
    pack = pack_files(directory)[0]
    with open(pack, "ab") as fh:
        fh.write(_partial_record())
    reader = PayloadStore(directory)
    try:
        scanned = list(reader.iter_records())
    finally:
        reader.close()
    assert len(scanned) == 2
    assert scanned[0][3].hex() == ref and scanned[0][4] is True
    assert scanned[1][1] == pack.stat().st_size - len(_partial_record())
    assert scanned[1][4] is False


# -- write failures (ENOSPC) and concurrent rollover ------------------------------------------


@pytest.mark.parametrize("needle", ["pack-000001.dat", "pack-000001.idx", "pack-000002.dat"])
def test_failed_write_is_retried_in_order(
    directory: Path, monkeypatch: pytest.MonkeyPatch, needle: str
) -> None:
    store = PayloadStore(directory, pack_bytes=400)
    values = [{"n": n, "pad": "z" * 100} for n in range(6)]  # about three packs, all buffered
    refs = [store.put(v) for v in values]
    failed = fail_writes(monkeypatch, needle)
    with pytest.raises(DiskFullError):
        store.flush(fsync=True)
    assert failed
    monkeypatch.undo()
    store.close()  # retries the flush: every byte taken by the failed one is written now

    seen = []
    for pack in pack_files(directory):
        records = parse_pack(pack)
        idx = pack.with_suffix(".idx").read_bytes()
        assert idx == b"".join(d + struct.pack("<QQ", o, s) for d, o, s in records)
        seen.extend(d.hex() for d, _, _ in records)
    assert sorted(seen) == sorted(refs)
    reopened = PayloadStore(directory)
    try:
        for ref, value in zip(refs, values, strict=True):
            assert reopened.get(ref) == canonical_json(value)
        assert reopened.recoveries == []
    finally:
        reopened.close()


def test_pack_retired_during_a_flush_keeps_its_new_bytes(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PayloadStore(directory, pack_bytes=600)
    refs = [store.put("a" * 100)]
    real = AppendFile.write_out
    entered, release = threading.Event(), threading.Event()

    def slow_write_out(self: AppendFile, data: bytes | None = None) -> None:
        if not entered.is_set():
            entered.set()
            release.wait(10)
        real(self, data)

    monkeypatch.setattr(AppendFile, "write_out", slow_write_out)
    flusher = threading.Thread(target=store.flush, kwargs={"fsync": False})
    flusher.start()
    assert entered.wait(10)
    # While that flush writes pack 1, more payloads land in pack 1 and then roll it.
    refs += [store.put(str(n) * 100) for n in range(2, 10)]
    release.set()
    flusher.join()
    monkeypatch.undo()
    store.close()
    assert len(pack_files(directory)) >= 2
    reopened = PayloadStore(directory)
    try:
        assert set(reopened.refs()) == set(refs)
        for ref in refs:
            reopened.get(ref)
    finally:
        reopened.close()


def test_interrupted_repair_never_hides_indexed_payloads(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PayloadStore(directory)
    refs = [store.put({"k": k}) for k in range(4)]
    store.close()
    pack = pack_files(directory)[0]
    os.truncate(pack.with_suffix(".idx"), 2 * ENTRY)  # the last two were never indexed

    class Killed(BaseException):
        """Stands in for SIGKILL in the middle of the repair."""

    def killed(self: AppendFile, data: bytes | None = None) -> None:
        raise Killed

    monkeypatch.setattr(AppendFile, "write_out", killed)
    writer = PayloadStore(directory)
    with pytest.raises(Killed):
        writer.put({"new": 1})  # claims the pack and starts repairing its index
    monkeypatch.undo()

    reader = PayloadStore(directory)
    try:
        assert reader.get_json(refs[0]) == {"k": 0}
        assert reader.get_json(refs[1]) == {"k": 1}
    finally:
        reader.close()
    repaired = PayloadStore(directory)
    try:
        repaired.put({"new": 1})
        assert repaired.recoveries == [PackRecovery(pack.name, 0, 2)]
        for k, ref in enumerate(refs):
            assert repaired.get_json(ref) == {"k": k}
    finally:
        repaired.close()


def test_a_flush_without_fsync_does_not_wait_for_another_flushs_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: the recorder hands payloads (then entries) to its projector process while
    a group commit waits for their fsync: the fsyncs come after the writes, outside the
    lock that orders them."""
    syncing, release = threading.Event(), threading.Event()
    real_sync = AppendFile.sync

    def slow_sync(self: AppendFile) -> None:
        if threading.current_thread().name == "group-commit":
            syncing.set()
            assert release.wait(10)
        real_sync(self)

    monkeypatch.setattr(AppendFile, "sync", slow_sync)
    store = PayloadStore(tmp_path)
    try:
        first = store.put({"n": 1})
        slow = threading.Thread(
            target=store.flush, kwargs={"fsync": True}, name="group-commit", daemon=True
        )
        slow.start()
        assert syncing.wait(10)
        second = store.put({"n": 2})
        handing = threading.Thread(target=store.flush, kwargs={"fsync": False}, daemon=True)
        handing.start()
        handing.join(5)
        assert not handing.is_alive()  # not blocked by the fsync under way
        reader = PayloadStore(tmp_path)  # another process's view: what reached the OS
        try:
            assert reader.get(first) == canonical_json({"n": 1})
            assert reader.get(second) == canonical_json({"n": 2})
        finally:
            reader.close()
    finally:
        release.set()
        slow.join(10)
        store.close()


def test_an_append_file_keeps_what_was_appended_not_a_buffer_changed_later(
    tmp_path: Path,
) -> None:
    # the tail buffer holds the appended pieces until a flush takes them: a bytearray
    # the caller reuses must not change what was appended
    file = AppendFile(tmp_path / "f", 0)
    reused = bytearray(b"abc")
    assert file.append(reused) == 0
    reused[:] = b"XYZ"
    assert file.append_record(b"<h>", b"data") == 6
    assert file.append(memoryview(b"--tail")[2:]) == 10
    assert (file.pending, file.size, file.written) == (14, 14, 0)
    taken = file.take()
    assert taken == b"abc<h>datatail" and file.pending == 0
    file.append(b"+new")
    file.give_back(taken)  # not written after all: ahead of what came since
    assert file.pending == 18
    file.write_out()
    file.close()
    assert (tmp_path / "f").read_bytes() == b"abc<h>datatail+new"
    assert file.written == file.size == 18


def test_put_canonical_stores_the_bytes_given_not_a_buffer_changed_later(
    tmp_path: Path,
) -> None:
    store = PayloadStore(tmp_path / "p")
    data = bytearray(b'{"a":1}')
    ref = store.put_canonical(data)
    data[:] = b'{"a":2}'
    store.flush(fsync=False)
    assert ref == hashlib.sha256(b'{"a":1}').hexdigest()
    assert store.get(ref) == b'{"a":1}'
    store.close()
    reopened = PayloadStore(tmp_path / "p")
    assert reopened.get(ref) == b'{"a":1}'
    reopened.close()
