"""Tests for the hash-chained, segmented run journal (SPEC §3 "Journal", §9)."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import re
import threading
import time
from pathlib import Path

import msgspec
import pytest

from auditjournal.errors import (
    CorruptJournalError,
    DiskFullError,
    JournalClosedError,
    JournalLockedError,
)
from auditjournal.journal.files import Journal, JournalReader
from auditjournal.model.events import (
    BaseEvent,
    EdgeRegistered,
    NodeRegistered,
    NodeStateCompleted,
    RowCreated,
    RunCompleted,
    RunStarted,
    TokenCreated,
    decode_event,
)
from faults import fail_writes

RUN = "run-1"
T0 = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
REF = hashlib.sha256(b"payload").hexdigest()
CHAIN_RE = re.compile(rb'(.*),"chain":"([0-9a-f]{64})"\}\n', re.DOTALL)


# -- helpers ----------------------------------------------------------------------------


def genesis(run_id: str) -> bytes:
    return hashlib.sha256(b"auditjournal/v1 genesis " + run_id.encode()).digest()


def row(seq: int, run_id: str = RUN, pad: int = 0) -> RowCreated:
    return RowCreated(
        run_id=run_id,
        seq=seq,
        ts=T0 + dt.timedelta(milliseconds=seq),
        row_id=f"row-{seq}" + "x" * pad,
        source_node_id="src",
        row_index=seq - 1,
        source_data_hash=REF,
        source_data_ref=REF,
    )


def mixed(run_id: str = RUN) -> list[BaseEvent]:
    """One event of several types, seqs 1..n."""
    ts = T0
    events: list[BaseEvent] = [
        RunStarted(run_id=run_id, seq=1, ts=ts, config={"a": [1, 2]}, config_hash=REF),
        NodeRegistered(
            run_id=run_id,
            seq=2,
            ts=ts,
            node_id="src",
            plugin_name="csv",
            plugin_version="1.0",
            node_type="source",
            config={"path": "in.csv"},
            output_schema={"type": "object"},
        ),
        EdgeRegistered(
            run_id=run_id,
            seq=3,
            ts=ts,
            edge_id="e1",
            from_node_id="src",
            to_node_id="t1",
            label="continue",
            mode="move",
        ),
        row(4, run_id),
        TokenCreated(
            run_id=run_id, seq=5, ts=ts, token_id="t1", row_id="row-4", parent_token_ids=("p",)
        ),
        NodeStateCompleted(
            run_id=run_id,
            seq=6,
            ts=ts,
            state_id="st1",
            status="failed",
            duration_ms=1.5,
            error={"msg": "ünïcode"},
        ),
        RunCompleted(run_id=run_id, seq=7, ts=ts, status="completed"),
    ]
    return events


def append(journal: Journal, event: BaseEvent) -> None:
    journal.append(event)
    journal.commit(event.seq)


def write_journal(
    directory: Path, n: int, *, run_id: str = RUN, segment_bytes: int = 64 << 20, pad: int = 0
) -> list[BaseEvent]:
    journal = Journal(directory, run_id, durability="always", segment_bytes=segment_bytes)
    events: list[BaseEvent] = [row(seq, run_id, pad) for seq in range(1, n + 1)]
    for event in events:
        append(journal, event)
    journal.close()
    return events


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl"))


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def read_all(directory: Path, run_id: str = RUN) -> list[BaseEvent]:
    return list(JournalReader(directory, run_id))


def expected_line(event: BaseEvent, prev_chain: bytes) -> tuple[bytes, bytes]:
    """The line the journal must write for ``event``, computed from the documented format."""
    body = msgspec.json.encode(event)
    chain = hashlib.sha256(prev_chain + body).digest()
    return body[:-1] + b',"chain":"' + chain.hex().encode() + b'"}\n', chain


def chain_of(line: bytes) -> bytes:
    match = CHAIN_RE.fullmatch(line)
    assert match is not None, line
    return bytes.fromhex(match[2].decode())


@pytest.fixture
def jdir(tmp_path: Path) -> Path:
    return tmp_path / "journal"


# -- append / read ----------------------------------------------------------------------


def test_append_read_round_trip(jdir: Path) -> None:
    journal = Journal(jdir, RUN, durability="always")
    events = mixed()
    for event in events:
        append(journal, event)
    assert journal.last_seq == 7 and journal.next_seq == 8
    journal.close()
    back = read_all(jdir)
    assert back == events
    assert [type(e) for e in back] == [type(e) for e in events]
    assert all(e.ts.utcoffset() == dt.timedelta(0) for e in back)


def test_lines_are_plain_json_objects_with_chain_last(jdir: Path) -> None:
    events = write_journal(jdir, 3)
    for line, event in zip(lines_of(segments(jdir)[0]), events, strict=True):
        decoded = msgspec.json.decode(line)
        assert list(decoded)[-1] == "chain"
        assert decoded["type"] == "row_created"
        assert decoded["seq"] == event.seq
        del decoded["chain"]
        assert decoded == msgspec.json.decode(msgspec.json.encode(event))


def test_seq_must_be_next_and_is_gapless(jdir: Path) -> None:
    journal = Journal(jdir, RUN, durability="always")
    append(journal, row(1))
    for wrong in (1, 3, 0):
        with pytest.raises(ValueError, match="not the next seq 2"):
            journal.append(row(wrong))
    append(journal, row(2))
    journal.close()
    assert [e.seq for e in read_all(jdir)] == [1, 2]


def test_append_after_close_is_refused(jdir: Path) -> None:
    journal = Journal(jdir, RUN, durability="always")
    append(journal, row(1))
    journal.close()
    with pytest.raises(JournalClosedError):
        journal.append(row(2))
    assert [e.seq for e in read_all(jdir)] == [1]


def test_chain_values_follow_the_documented_formula(jdir: Path) -> None:
    journal = Journal(jdir, RUN, durability="always")
    events = mixed()
    for event in events:
        append(journal, event)
    head = journal.head_chain
    journal.close()

    prev = genesis(RUN)
    raw = lines_of(segments(jdir)[0])
    assert len(raw) == len(events)
    for line, event in zip(raw, events, strict=True):
        match = CHAIN_RE.fullmatch(line)
        assert match is not None
        event_bytes = match[1] + b"}"
        assert event_bytes == msgspec.json.encode(event)
        chain = hashlib.sha256(prev + event_bytes).digest()
        assert match[2].decode() == chain.hex()
        assert line == expected_line(event, prev)[0]
        prev = chain
    assert head == prev.hex()


def test_genesis_ties_the_chain_to_the_run(jdir: Path, tmp_path: Path) -> None:
    write_journal(jdir, 1, run_id="run-a")
    write_journal(tmp_path / "other", 1, run_id="run-b")
    first_a = lines_of(segments(jdir)[0])[0]
    first_b = lines_of(segments(tmp_path / "other")[0])[0]
    body_a = msgspec.json.encode(row(1, "run-a"))
    assert chain_of(first_a) == hashlib.sha256(genesis("run-a") + body_a).digest()
    assert genesis("run-a") != genesis("run-b")
    assert chain_of(first_a) != chain_of(first_b)


# -- segments -----------------------------------------------------------------------------


def test_segment_rollover_names_and_reading_across(jdir: Path) -> None:
    segment_bytes = 1000
    events = write_journal(jdir, 40, segment_bytes=segment_bytes)
    files = segments(jdir)
    assert len(files) >= 5
    seen = []
    for index, path in enumerate(files):
        raw = lines_of(path)
        assert raw, f"{path.name} is empty"
        seqs = [msgspec.json.decode(line)["seq"] for line in raw]
        assert path.name == f"{seqs[0]:020d}.jsonl"
        assert len(path.stem) == 20
        seen.extend(seqs)
        size = path.stat().st_size
        if index < len(files) - 1:  # rolled only once the segment reached segment_bytes
            assert size >= segment_bytes
            assert size - len(raw[-1]) < segment_bytes
    assert seen == list(range(1, 41))
    assert read_all(jdir) == events


def test_reopen_continues_after_rollover(jdir: Path) -> None:
    events = write_journal(jdir, 25, segment_bytes=800)
    journal = Journal(jdir, RUN, durability="always", segment_bytes=800)
    assert journal.recovery is None
    assert journal.next_seq == 26
    more = [row(seq) for seq in range(26, 36)]
    for event in more:
        append(journal, event)
    journal.close()
    assert read_all(jdir) == events + more


def test_reader_poll_follows_a_writer(jdir: Path) -> None:
    total = 300
    journal = Journal(jdir, RUN, durability="always", segment_bytes=3000)
    events = [row(seq, pad=seq % 13) for seq in range(1, total + 1)]
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for event in events:
                append(journal, event)
                if event.seq % 50 == 0:
                    time.sleep(0.005)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    writer = threading.Thread(target=write)
    reader = JournalReader(jdir, RUN)
    got: list[BaseEvent] = []
    writer.start()
    deadline = time.monotonic() + 20
    polls = 0
    while len(got) < total and time.monotonic() < deadline:
        batch = reader.poll()
        polls += 1
        got.extend(batch)
    writer.join()
    journal.close()
    assert not errors
    assert got == events
    assert polls > 1
    assert reader.poll() == []
    assert reader.position.next_seq == total + 1
    assert len(segments(jdir)) > 3


def test_poll_leaves_an_incomplete_line_until_it_is_complete(jdir: Path) -> None:
    write_journal(jdir, 3)
    path = segments(jdir)[0]
    prev = chain_of(lines_of(path)[-1])
    line, _ = expected_line(row(4), prev)
    reader = JournalReader(jdir, RUN)
    assert [e.seq for e in reader.poll()] == [1, 2, 3]

    with open(path, "ab") as fh:
        fh.write(line[:40])
    assert reader.poll() == []
    with open(path, "ab") as fh:
        fh.write(line[40:-1])  # everything but the newline
    assert reader.poll() == []
    with open(path, "ab") as fh:
        fh.write(line[-1:])
    assert reader.poll() == [row(4)]
    assert reader.poll() == []

    journal = Journal(jdir, RUN, durability="always")  # the hand-made line is accepted
    assert journal.recovery is None and journal.next_seq == 5
    journal.close()


def test_poll_limit(jdir: Path) -> None:
    events = write_journal(jdir, 10, segment_bytes=500)
    reader = JournalReader(jdir, RUN)
    assert reader.poll(limit=3) == events[:3]
    assert reader.poll(limit=4) == events[3:7]
    assert reader.poll() == events[7:]


@pytest.mark.parametrize(
    "segment_bytes", [64 << 20, 700, 1], ids=["one", "several", "one-per-line"]
)
def test_at_seq(jdir: Path, segment_bytes: int) -> None:
    events = write_journal(jdir, 30, segment_bytes=segment_bytes)
    firsts = [int(p.stem) for p in segments(jdir)]
    targets = {
        1,
        2,
        15,
        29,
        30,
        *firsts,
        *(f - 1 for f in firsts if f > 1),
        *(f + 1 for f in firsts),
    }
    for seq in sorted(t for t in targets if 1 <= t <= 30):
        reader = JournalReader.at_seq(jdir, RUN, seq)
        assert reader.position.next_seq == seq
        assert reader.poll() == events[seq - 1 :], f"at_seq({seq})"
    assert JournalReader.at_seq(jdir, RUN, 31).poll() == []


# -- torn tail recovery ---------------------------------------------------------------------


@pytest.mark.parametrize("segment_bytes", [64 << 20, 600], ids=["one-segment", "rolled"])
@pytest.mark.parametrize("tail_kind", ["prefix", "no-newline", "zeros", "prefix-then-zeros"])
def test_torn_tail_is_truncated_and_reported(
    jdir: Path, segment_bytes: int, tail_kind: str
) -> None:
    events = write_journal(jdir, 12, segment_bytes=segment_bytes)
    last = segments(jdir)[-1]
    good = last.read_bytes()
    line, _ = expected_line(row(13), chain_of(lines_of(last)[-1]))
    tail = {
        "prefix": line[:37],
        "no-newline": line[:-1],
        "zeros": b"\0" * 300,
        "prefix-then-zeros": line[:50] + b"\0" * 100,
    }[tail_kind]
    with open(last, "ab") as fh:
        fh.write(tail)

    assert [e.seq for e in read_all(jdir)] == list(range(1, 13))  # readers stop before it

    journal = Journal(jdir, RUN, durability="always", segment_bytes=segment_bytes)
    assert journal.recovery is not None
    assert journal.recovery.bytes_dropped == len(tail)
    assert journal.recovery.segment == last.name
    assert journal.recovery.last_seq == 12
    assert journal.next_seq == 13
    assert last.read_bytes() == good
    append(journal, row(13))
    journal.close()
    assert read_all(jdir) == [*events, row(13)]
    again = Journal(jdir, RUN, durability="always")
    assert again.recovery is None
    again.close()


def test_no_recovery_on_clean_reopen(jdir: Path) -> None:
    write_journal(jdir, 3)
    journal = Journal(jdir, RUN)
    try:
        assert journal.recovery is None
        assert journal.next_seq == 4
    finally:
        journal.close()


# -- corruption -----------------------------------------------------------------------------


def _flip(lines: list[bytes], index: int) -> int:
    line = bytearray(lines[index])
    line[len(line) // 3] ^= 0x01
    lines[index] = bytes(line)
    return index


def _remove(lines: list[bytes], index: int) -> int:
    del lines[index]
    return index


def _swap(lines: list[bytes], index: int) -> int:
    lines[index], lines[index + 1] = lines[index + 1], lines[index]
    return index


def _rechained_edit(lines: list[bytes], index: int) -> int:
    """Edit one entry and fix its own chain: the *next* entry no longer fits."""
    prev = chain_of(lines[index - 1])
    edited = msgspec.structs.replace(decode_event(lines[index]), row_index=999)
    lines[index] = expected_line(edited, prev)[0]
    return index + 1


MUTATIONS = {"flip": _flip, "remove": _remove, "swap": _swap, "rechained-edit": _rechained_edit}


def _foreign_line(tmp_path: Path, index: int) -> bytes:
    other = tmp_path / "other-run"
    write_journal(other, 10, run_id="run-2")
    return lines_of(segments(other)[0])[index]


LAST_SEGMENT_CASES = [
    *((m, 3) for m in [*MUTATIONS, "foreign"]),
    ("flip", 9),  # a complete last line that is damaged is not a torn tail
    ("foreign", 9),
    ("swap", 8),
    ("rechained-edit", 8),
    ("remove", 8),
]


@pytest.mark.parametrize(("mutation", "where"), LAST_SEGMENT_CASES)
def test_corruption_in_last_segment_is_a_hard_error(
    jdir: Path, tmp_path: Path, mutation: str, where: int
) -> None:
    write_journal(jdir, 10)
    path = segments(jdir)[0]
    lines = lines_of(path)
    if mutation == "foreign":
        lines[where] = _foreign_line(tmp_path, where)
        bad = where
    else:
        bad = MUTATIONS[mutation](lines, where)
    path.write_bytes(b"".join(lines))
    offset = sum(len(line) for line in lines[:bad])

    for _ in range(2):  # the failed open releases the writer lock
        with pytest.raises(CorruptJournalError) as info:
            Journal(jdir, RUN, durability="always")
        assert str(path) in str(info.value)
        assert f"offset {offset}" in str(info.value)
    with pytest.raises(CorruptJournalError) as info:
        read_all(jdir)
    assert str(path) in str(info.value)
    assert f"offset {offset}" in str(info.value)
    assert path.read_bytes() == b"".join(lines)  # nothing was truncated away


@pytest.mark.parametrize("mutation", [*MUTATIONS, "foreign"])
def test_corruption_in_an_earlier_segment_fails_reading(
    jdir: Path, tmp_path: Path, mutation: str
) -> None:
    write_journal(jdir, 30, segment_bytes=1600)  # events carry occurred_at since issue 14
    files = segments(jdir)
    assert len(files) >= 3
    path = files[1]
    lines = lines_of(path)
    assert len(lines) >= 4
    if mutation == "foreign":
        first = int(path.stem)
        other = tmp_path / "other-run"
        write_journal(other, 30, run_id="run-2", segment_bytes=1600)
        lines[1] = lines_of(next(p for p in segments(other) if int(p.stem) == first))[1]
        bad = 1
    else:
        bad = MUTATIONS[mutation](lines, 1)
    path.write_bytes(b"".join(lines))
    offset = sum(len(line) for line in lines[:bad])
    with pytest.raises(CorruptJournalError) as info:
        read_all(jdir)
    assert str(path) in str(info.value)
    assert f"offset {offset}" in str(info.value)


def test_last_line_of_a_closed_segment_removed_fails_reading(jdir: Path) -> None:
    events = write_journal(jdir, 30, segment_bytes=1200)
    files = segments(jdir)
    lines = lines_of(files[0])
    files[0].write_bytes(b"".join(lines[:-1]))
    reader = JournalReader(jdir, RUN)
    with pytest.raises(CorruptJournalError, match=re.escape(files[0].name)):
        got = list(reader)
        pytest.fail(f"read {len(got)} of {len(events)} events without an error")


def test_missing_segment_fails_reading(jdir: Path) -> None:
    write_journal(jdir, 30, segment_bytes=1200)
    files = segments(jdir)
    assert len(files) >= 3
    files[1].unlink()
    with pytest.raises(CorruptJournalError):
        read_all(jdir)
    files[0].unlink()
    with pytest.raises(CorruptJournalError):
        read_all(jdir)


def test_reader_of_a_journal_not_created_yet_returns_nothing(jdir: Path) -> None:
    jdir.mkdir()
    assert read_all(jdir) == []


# -- one writer -----------------------------------------------------------------------------


def test_second_writer_is_locked_out(jdir: Path) -> None:
    first = Journal(jdir, RUN, durability="always")
    append(first, row(1))
    with pytest.raises(JournalLockedError, match=RUN):
        Journal(jdir, RUN, durability="always")
    append(first, row(2))
    first.close()
    second = Journal(jdir, RUN, durability="always")
    assert second.next_seq == 3
    append(second, row(3))
    second.close()
    assert [e.seq for e in read_all(jdir)] == [1, 2, 3]


# -- durability -------------------------------------------------------------------------------


def test_always_writes_and_fsyncs_before_append_returns(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(jdir, RUN, durability="always")
    path = segments(jdir)[0]
    real_fsync = os.fsync
    synced: list[int] = []

    def spy(fd: int) -> None:
        synced.append(os.fstat(fd).st_size if os.path.samestat(os.fstat(fd), path.stat()) else -1)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    try:
        for seq in range(1, 4):
            append(journal, row(seq))
            with open(path, "rb") as fh:
                raw = fh.read()
            assert [msgspec.json.decode(line)["seq"] for line in raw.splitlines()] == list(
                range(1, seq + 1)
            )
            assert synced and synced[-1] == len(raw), "file not fsynced after the append"
        assert journal.durable_seq == 3
    finally:
        journal.close()


def test_batch_data_reaches_disk_without_close(jdir: Path) -> None:
    journal = Journal(jdir, RUN, durability="batch", flush_interval=0.01)
    try:
        journal.append(row(1))
        journal.append(row(2))
        path = segments(jdir)[0]
        deadline = time.monotonic() + 5
        while path.stat().st_size == 0 and time.monotonic() < deadline:
            time.sleep(0.002)
        assert len(path.read_bytes().splitlines()) == 2
        deadline = time.monotonic() + 5
        while journal.durable_seq < 2 and time.monotonic() < deadline:
            time.sleep(0.002)
        assert journal.durable_seq == 2
    finally:
        journal.close()


@pytest.mark.parametrize("durability", ["batch", "none"])
def test_close_flushes_buffered_entries(jdir: Path, durability: str) -> None:
    journal = Journal(jdir, RUN, durability=durability, flush_interval=3600)  # type: ignore[arg-type]
    events = [row(seq) for seq in range(1, 6)]
    for event in events:
        journal.append(event)
    path = segments(jdir)[0]
    assert path.stat().st_size == 0  # still buffered: the flusher has not run
    journal.close()
    assert read_all(jdir) == events


def test_explicit_flush_writes_buffered_entries(jdir: Path) -> None:
    journal = Journal(jdir, RUN, durability="none", flush_interval=3600)
    try:
        journal.append(row(1))
        journal.flush(fsync=False)
        assert read_all(jdir) == [row(1)]
    finally:
        journal.close()


# -- failures -------------------------------------------------------------------------------


def test_append_during_failed_roll_raises_disk_full_and_keeps_chain(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import auditjournal.journal.files as journal_module

    journal = Journal(jdir, RUN, durability="always", segment_bytes=1000)
    append(journal, row(1))
    append(journal, row(2))
    append(journal, row(3))
    assert segments(jdir)[-1].stat().st_size >= 1000  # the next append must roll
    real = journal_module.AppendFile

    def full(path: Path, size: int) -> object:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module, "AppendFile", full)
    with pytest.raises(DiskFullError):
        journal.append(row(4))
    assert journal.next_seq == 4
    monkeypatch.setattr(journal_module, "AppendFile", real)
    append(journal, row(4))
    append(journal, row(5))
    journal.close()
    assert read_all(jdir) == [row(s) for s in range(1, 6)]
    assert [p.name for p in segments(jdir)] == [f"{1:020d}.jsonl", f"{4:020d}.jsonl"]


@pytest.mark.parametrize("failing_segment", [1, 4, 7])
def test_failed_write_across_rollovers_keeps_every_entry(
    jdir: Path, monkeypatch: pytest.MonkeyPatch, failing_segment: int
) -> None:
    journal = Journal(jdir, RUN, durability="none", flush_interval=3600, segment_bytes=1000)
    events = [row(seq) for seq in range(1, 9)]  # three 383-byte lines per segment
    for event in events:
        journal.append(event)
    assert [int(p.stem) for p in segments(jdir)] == [1, 4, 7]  # created, still empty
    failed = fail_writes(monkeypatch, segment_name_of(failing_segment))
    with pytest.raises(DiskFullError):
        journal.flush(fsync=False)
    assert failed
    monkeypatch.undo()
    journal.flush(fsync=True)  # the retry writes everything the failed flush took
    journal.close()
    assert read_all(jdir) == events


def segment_name_of(first_seq: int) -> str:
    return f"{first_seq:020d}.jsonl"


def test_failed_payload_flush_keeps_the_entry(jdir: Path) -> None:
    failures = [DiskFullError("cannot write payloads: No space left on device")]

    def before_flush(fsync: bool) -> None:
        if failures:
            raise failures.pop()

    journal = Journal(jdir, RUN, durability="always", before_flush=before_flush)
    with pytest.raises(DiskFullError):
        append(journal, row(1))  # appended, but commit failed: not acknowledged
    assert segments(jdir)[0].stat().st_size == 0  # payloads first, so nothing written yet
    append(journal, row(2))
    journal.close()
    assert read_all(jdir) == [row(1), row(2)]


# -- a crash right after a rollover ------------------------------------------------------------


@pytest.mark.parametrize("torn", [b"", b'{"type":"row_created","run_id":"run-1","se'])
def test_empty_segment_left_by_a_crash_after_roll_is_removed(jdir: Path, torn: bytes) -> None:
    """Seqs 6 and 7 were buffered for segment 1 when the roll for seq 8 created its file."""
    events = write_journal(jdir, 5)
    with open(segments(jdir)[0], "ab") as fh:
        fh.write(torn)  # maybe part of seq 6 reached the disk
    (jdir / segment_name_of(8)).touch()

    journal = Journal(jdir, RUN, durability="always", segment_bytes=1000)
    assert journal.recovery is not None
    assert journal.recovery.bytes_dropped == len(torn)
    assert journal.recovery.last_seq == 5
    assert journal.recovery.segment == (segment_name_of(1) if torn else segment_name_of(8))
    assert journal.next_seq == 6
    assert [p.name for p in segments(jdir)] == [segment_name_of(1)]
    more = [row(seq) for seq in range(6, 10)]
    for event in more:
        append(journal, event)
    journal.close()
    assert read_all(jdir) == events + more


def test_correctly_named_empty_last_segment_is_harmless(jdir: Path) -> None:
    events = write_journal(jdir, 3)
    (jdir / segment_name_of(4)).touch()  # the roll for seq 4 made it; seq 4 never written
    assert read_all(jdir) == events
    journal = Journal(jdir, RUN, durability="always")
    assert journal.next_seq == 4
    append(journal, row(4))
    journal.close()
    assert read_all(jdir) == [*events, row(4)]
