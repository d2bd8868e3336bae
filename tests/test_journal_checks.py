"""One crafted journal per check of journal.py (see tools/mutate.py).

A hand-made entry is *chained correctly* (``seal`` over the right previous
chain), so the chain check passes and only the check under test can catch
it: an entry of another run, a seq out of order, segments that do not join,
an unchained line, an incomplete line where none may be. Each is tried on the
reader and on the writer's recovery scan (opening the journal to append).
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from auditjournal import AuditStore
from auditjournal.errors import (
    CorruptJournalError,
    DiskFullError,
    DuplicateMemberError,
    InvalidSettingsError,
    JournalClosedError,
    StorageError,
)
from auditjournal.journal.filebackend import position_exists
from auditjournal.journal.files import (
    Journal,
    JournalPosition,
    JournalReader,
    genesis_chain,
    last_entry,
    seal,
    segment_name,
)
from auditjournal.journal.lines import SUFFIX_LEN, decode_line, read_entry
from auditjournal.model.events import BaseEvent, RowCreated, TokenCreated, encode_event
from faults import fail_writes

RUN = "run-1"
T0 = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
REF = hashlib.sha256(b"payload").hexdigest()


def row(seq: int, run_id: str = RUN) -> RowCreated:
    return RowCreated(
        run_id=run_id,
        seq=seq,
        ts=T0 + dt.timedelta(milliseconds=seq),
        row_id=f"row-{seq}",
        source_node_id="src",
        row_index=seq - 1,
        source_data_hash=REF,
        source_data_ref=REF,
    )


def chained(events: list[BaseEvent], chain: bytes | None = None) -> tuple[bytes, bytes]:
    """The journal lines for ``events`` chained from ``chain`` (genesis of RUN by default)."""
    chain = genesis_chain(RUN) if chain is None else chain
    out = []
    for event in events:
        line, chain = seal(encode_event(event), chain)
        out.append(line)
    return b"".join(out), chain


def write_segment(directory: Path, first_seq: int, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / segment_name(first_seq)
    path.write_bytes(data)
    return path


def read_all(directory: Path) -> list[BaseEvent]:
    reader = JournalReader(directory, RUN)
    try:
        return list(reader)
    finally:
        reader.close()


def open_for_append(directory: Path) -> Journal:
    return Journal(directory, RUN, durability="always")


@pytest.fixture
def jdir(tmp_path: Path) -> Path:
    return tmp_path / "journal"


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl"))


def test_a_hand_chained_journal_is_read_and_continued(jdir: Path) -> None:
    """The crafting helper itself is right: its lines are what the writer would write."""
    data, _ = chained([row(1), row(2), row(3)])
    write_segment(jdir, 1, data)
    assert read_all(jdir) == [row(1), row(2), row(3)]
    journal = open_for_append(jdir)
    try:
        assert journal.recovery is None and journal.next_seq == 4
    finally:
        journal.close()


# -- entries chained correctly but out of place ---------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "reader_says", "recovery_says"),
    [
        (row(3, "run-2"), "seq 3 of run 'run-2' out of place", "entry belongs to run 'run-2'"),
        (row(4), "seq 4 of run 'run-1' out of place", "seq 4 where 3 was expected"),
        (row(2), "seq 2 of run 'run-1' out of place", "seq 2 where 3 was expected"),
    ],
    ids=["another run", "seq skips", "seq repeats"],
)
@pytest.mark.parametrize("where", ["middle", "last"])
def test_an_entry_out_of_place_is_refused(
    jdir: Path, bad: RowCreated, reader_says: str, recovery_says: str, where: str
) -> None:
    events: list[BaseEvent] = [row(1), row(2), bad]
    if where == "middle":
        events.append(row(bad.seq + 1, bad.run_id))
    data, _ = chained(events)
    write_segment(jdir, 1, data)
    offset = len(chained([row(1), row(2)])[0])
    with pytest.raises(CorruptJournalError, match=f"bad entry at offset {offset}: {reader_says}"):
        read_all(jdir)
    with pytest.raises(CorruptJournalError, match=f"bad entry at offset {offset}: {recovery_says}"):
        open_for_append(jdir)
    assert (jdir / segment_name(1)).read_bytes() == data  # nothing "recovered" away


def test_the_first_entry_must_have_seq_one(jdir: Path) -> None:
    data, _ = chained([row(2), row(3)])
    write_segment(jdir, 1, data)
    with pytest.raises(CorruptJournalError, match="seq 2 of run 'run-1' out of place"):
        read_all(jdir)
    with pytest.raises(CorruptJournalError, match="seq 2 where 1 was expected"):
        open_for_append(jdir)


def test_a_journal_of_another_run_is_refused_by_its_genesis(jdir: Path) -> None:
    data, _ = chained([row(1, "run-2")], genesis_chain("run-2"))
    write_segment(jdir, 1, data)
    with pytest.raises(CorruptJournalError, match="chain hash does not match"):
        read_all(jdir)


# -- lines that are not chained entries -----------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"row_created"}\n',  # no chain at all
        b'{"type":"row_created","chain":"' + b"0" * 64 + b'"]\n',  # wrong line end
        b'{"type":"row_created","chaim":"' + b"0" * 64 + b'"}\n',  # wrong member name
        b',"chain":"' + b"0" * 64 + b'"}\n',  # the suffix alone
        b'{,"chain":"' + b"0" * 64 + b'"}\n',  # one byte of event
    ],
    ids=["no chain", "line end", "member", "suffix only", "one byte"],
)
def test_read_entry_refuses_what_is_not_a_chained_line(line: bytes) -> None:
    with pytest.raises(ValueError, match="entry is not a chained journal line"):
        read_entry(line, genesis_chain(RUN), bytearray())


def test_read_entry_returns_the_event_and_the_next_chain() -> None:
    line, chain = seal(encode_event(row(1)), genesis_chain(RUN))
    assert read_entry(line, genesis_chain(RUN), bytearray()) == (row(1), chain)
    assert read_entry(memoryview(line), genesis_chain(RUN), bytearray())[1] == chain
    with pytest.raises(ValueError, match="chain hash does not match"):
        read_entry(line, chain, bytearray())


def test_read_entry_takes_an_event_of_two_bytes_for_an_event() -> None:
    """The shortest line that may hold an event: it is read as one (and is not one)."""
    line, _ = seal(b"{x}", genesis_chain(RUN))
    assert len(line) == SUFFIX_LEN + 2
    with pytest.raises(ValueError, match="undecodable event"):
        read_entry(line, genesis_chain(RUN), bytearray())


def test_an_edited_line_that_no_longer_decodes_is_reported_as_edited() -> None:
    line, _ = seal(encode_event(row(1)), genesis_chain(RUN))
    edited = line.replace(b'"seq":1,', b'"seq":"1",')
    with pytest.raises(ValueError, match="chain hash does not match"):
        read_entry(edited, genesis_chain(RUN), bytearray())


def token(seq: int) -> TokenCreated:
    return TokenCreated(run_id=RUN, seq=seq, ts=T0, token_id=f"tok-{seq}", row_id="row-1")


def with_suffix(event_bytes: bytes) -> bytes:
    return seal(event_bytes, genesis_chain(RUN))[0]


def test_decode_line_refuses_a_member_named_twice_at_the_end() -> None:
    """The repeat follows the last member: the line starts with the event's own encoding
    and only its length tells it apart."""
    encoded = encode_event(token(1))
    assert encoded.endswith(b',"step_in_pipeline":null}')
    line = with_suffix(encoded[:-1] + b',"step_in_pipeline":null}')
    with pytest.raises(DuplicateMemberError, match="'step_in_pipeline' twice"):
        decode_line(line)


def test_decode_line_refuses_a_member_named_twice_in_a_line_of_the_right_length() -> None:
    """A repeat (``token_id``) paid for by a member left out (``expand_group_id``, which
    has a default): the line is exactly as long as the event's encoding, and differs."""
    encoded = encode_event(token(1))
    dropped = encoded.replace(b',"expand_group_id":null', b"")
    padding = len(encoded) - len(dropped) - len(b'"token_id":"",')
    forged = dropped.replace(b'"token_id":', b'"token_id":"' + b"x" * padding + b'","token_id":')
    assert len(forged) == len(encoded) and forged != encoded
    with pytest.raises(DuplicateMemberError, match="'token_id' twice"):
        decode_line(with_suffix(forged))
    assert decode_line(with_suffix(dropped)) == token(1)  # no repeat: read, as it says
    assert decode_line(with_suffix(encoded)) == token(1)


def test_a_closed_segment_whose_last_line_names_a_member_twice(jdir: Path) -> None:
    good, chain = chained([row(1)])
    encoded = encode_event(row(2))
    last, _ = seal(encoded[:-1] + b',"row_id":"row-2"}', chain)
    path = write_segment(jdir, 1, good + last)
    with pytest.raises(CorruptJournalError, match=r"bad last entry: .*'row_id' twice"):
        last_entry(path, RUN)


def test_a_chained_line_that_is_not_an_event(jdir: Path) -> None:
    good, chain = chained([row(1)])
    line, _ = seal(b'{"type":"no_such_event","run_id":"run-1","seq":2}', chain)
    write_segment(jdir, 1, good + line)
    with pytest.raises(CorruptJournalError, match=f"bad entry at offset {len(good)}: undecodable"):
        read_all(jdir)
    with pytest.raises(CorruptJournalError, match=f"bad entry at offset {len(good)}: undecodable"):
        open_for_append(jdir)


# -- torn and incomplete lines ------------------------------------------------------------------


@pytest.mark.parametrize(
    "tail",
    [b'{"type":"row_cre', b"\0" * 40, b'{"type":"row_cre\0\0\0', b'{"type":"row_cre' + b"\0" * 9],
    ids=["torn", "zeros", "torn then zeros", "torn then more zeros"],
)
def test_recovery_drops_a_torn_tail_only(jdir: Path, tail: bytes) -> None:
    data, _ = chained([row(1), row(2)])
    write_segment(jdir, 1, data + tail)
    journal = open_for_append(jdir)
    try:
        assert journal.recovery is not None
        assert (journal.recovery.bytes_dropped, journal.recovery.last_seq) == (len(tail), 2)
        assert journal.next_seq == 3
    finally:
        journal.close()
    assert (jdir / segment_name(1)).read_bytes() == data


def test_a_damaged_line_before_the_torn_tail_is_not_dropped(jdir: Path) -> None:
    """Only the tail may be torn: a complete line that fails its check, followed by more
    bytes with a newline, is corruption, never silently cut."""
    data, _ = chained([row(1), row(2), row(3)])
    first = len(chained([row(1)])[0])
    damaged = data[: first + 30] + b"X" + data[first + 31 :]
    write_segment(jdir, 1, damaged + b'{"type":"row_cre')
    with pytest.raises(CorruptJournalError, match=f"bad entry at offset {first}"):
        open_for_append(jdir)
    assert (jdir / segment_name(1)).read_bytes().startswith(damaged)


def test_a_damaged_last_line_with_its_newline_is_not_dropped(jdir: Path) -> None:
    data, _ = chained([row(1), row(2)])
    flipped = b"1" if data[-10:-9] == b"0" else b"0"  # a different hex digit
    damaged = data[:-10] + flipped + data[-9:]
    write_segment(jdir, 1, damaged)
    with pytest.raises(CorruptJournalError, match="chain hash does not match"):
        open_for_append(jdir)


def test_a_damaged_last_line_without_its_newline_is_a_torn_tail(jdir: Path) -> None:
    data, _ = chained([row(1), row(2)])
    one = len(chained([row(1)])[0])
    write_segment(jdir, 1, data[:-1])
    journal = open_for_append(jdir)
    try:
        assert (
            journal.recovery is not None and journal.recovery.bytes_dropped == len(data) - 1 - one
        )
        assert journal.next_seq == 2
    finally:
        journal.close()


def test_the_reader_waits_for_an_incomplete_last_line(jdir: Path) -> None:
    data, _ = chained([row(1), row(2)])
    path = write_segment(jdir, 1, data[:-5])
    reader = JournalReader(jdir, RUN)
    try:
        assert reader.poll() == [row(1)]
        assert reader.poll() == []
        with open(path, "ab") as fh:
            fh.write(data[-5:])
        assert reader.poll() == [row(2)]
        assert reader.position.next_seq == 3 and reader.position.offset == len(data)
    finally:
        reader.close()


# -- segments that must join ---------------------------------------------------------------------


def two_segments(jdir: Path, second_first_seq: int, second: list[BaseEvent]) -> None:
    data, chain = chained([row(1), row(2), row(3)])
    write_segment(jdir, 1, data)
    more, _ = chained(second, chain)
    write_segment(jdir, second_first_seq, more)


def test_joined_segments_are_read_and_continued(jdir: Path) -> None:
    two_segments(jdir, 4, [row(4), row(5)])
    assert read_all(jdir) == [row(s) for s in range(1, 6)]
    reader = JournalReader.at_seq(jdir, RUN, 5)
    try:
        assert reader.poll() == [row(5)]
    finally:
        reader.close()
    journal = open_for_append(jdir)
    try:
        assert journal.next_seq == 6
    finally:
        journal.close()


def test_a_segment_named_after_a_gap_is_refused(jdir: Path) -> None:
    """Segment 1 ends at seq 3, the next is named 5: an entry (and a file) is missing."""
    two_segments(jdir, 5, [row(5), row(6)])
    with pytest.raises(CorruptJournalError, match="segment starts at seq 5 but the previous"):
        open_for_append(jdir)
    with pytest.raises(CorruptJournalError, match="segment starts at seq 5 but the previous"):
        JournalReader.at_seq(jdir, RUN, 6)
    with pytest.raises(CorruptJournalError, match="entries from seq 4 are missing"):
        read_all(jdir)


def test_a_segment_named_before_the_end_of_the_previous_is_refused(jdir: Path) -> None:
    two_segments(jdir, 3, [row(3), row(4)])
    with pytest.raises(CorruptJournalError, match="segment starts at seq 3 but the previous"):
        open_for_append(jdir)
    with pytest.raises(CorruptJournalError, match="segment starts at seq 3 but the previous"):
        JournalReader.at_seq(jdir, RUN, 4)


def test_a_closed_segment_ending_in_an_incomplete_entry(jdir: Path) -> None:
    data, chain = chained([row(1), row(2), row(3)])
    write_segment(jdir, 1, data + b'{"type":"row_cre')
    more, _ = chained([row(4)], chain)
    write_segment(jdir, 4, more)
    with pytest.raises(CorruptJournalError, match="closed segment ends with an incomplete entry"):
        read_all(jdir)
    with pytest.raises(CorruptJournalError, match="closed segment ends with an incomplete entry"):
        open_for_append(jdir)


def test_last_entry_checks_the_closed_segment(jdir: Path) -> None:
    data, chain = chained([row(1), row(2)])
    path = write_segment(jdir, 1, data)
    assert last_entry(path, RUN) == (2, chain)
    with pytest.raises(CorruptJournalError, match="not a chained entry of run 'run-9'"):
        last_entry(path, "run-9")
    path.write_bytes(data + b"{}\n")
    with pytest.raises(CorruptJournalError, match="bad last entry"):
        last_entry(path, RUN)
    short = b'{"type":"run_completed"}\n'
    path.write_bytes(short)
    with pytest.raises(CorruptJournalError):
        last_entry(path, RUN)


def test_last_entry_reads_only_the_tail_of_a_big_segment(jdir: Path) -> None:
    events: list[BaseEvent] = [row(s) for s in range(1, 4001)]  # > 1 MiB of lines
    data, chain = chained(events)
    assert len(data) > 1 << 20
    path = write_segment(jdir, 1, data)
    assert last_entry(path, RUN) == (4000, chain)


# -- the writer: flush failures and retries -------------------------------------------------------


def test_a_failed_background_flush_is_retried_by_the_next_append(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(jdir, RUN, durability="batch", flush_interval=0.001)
    try:
        failed = fail_writes(monkeypatch, "journal", times=1)
        journal.append(row(1))
        deadline = time.monotonic() + 10
        while not failed and time.monotonic() < deadline:
            time.sleep(0.001)
        assert failed  # the flusher's write failed; the error waits for the next append
        deadline = time.monotonic() + 10
        while not journal.write_failed:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        journal.append(row(2))  # retries the flush first: now it works
        assert not journal.write_failed
    finally:
        journal.close()
    assert read_all(jdir) == [row(1), row(2)]


def test_an_append_is_refused_while_the_flush_still_fails(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(jdir, RUN, durability="batch", flush_interval=0.001)
    failed = fail_writes(monkeypatch, "journal", times=1_000_000)
    journal.append(row(1))
    deadline = time.monotonic() + 10
    while not journal.write_failed:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    with pytest.raises(DiskFullError, match="recorded nothing") as caught:
        journal.append(row(2))
    assert caught.value.__cause__ is not None  # the background error it retried
    assert caught.value.recorded_event is None
    assert journal.next_seq == 2 and failed
    monkeypatch.undo()
    journal.append(row(2))
    journal.close()
    assert read_all(jdir) == [row(1), row(2)]


def test_commit_skips_what_is_already_durable(jdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(jdir, RUN, durability="always")
    journal.append(row(1))
    journal.commit(1)
    assert journal.durable_seq == 1
    fail_writes(monkeypatch, "journal", times=1_000_000)
    journal.commit(1)  # nothing to do: no write is tried
    monkeypatch.undo()
    journal.close()


def test_append_checks_state_and_seq(jdir: Path) -> None:
    journal = Journal(jdir, RUN, durability="always")
    with pytest.raises(ValueError, match="event seq 2 is not the next seq 1"):
        journal.append(row(2))
    journal.close()
    journal.close()  # twice is harmless
    with pytest.raises(JournalClosedError):
        journal.append(row(1))


def test_needs_flush_when_the_buffer_is_big(jdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import auditjournal.journal.files as journal_module

    journal = Journal(jdir, RUN, durability="none", flush_interval=3600)
    try:
        monkeypatch.setattr(journal_module, "_MAX_BUFFER", 600)
        journal.append(row(1))
        pending = journal._file.pending
        assert 0 < pending <= 600 and not journal.needs_flush
        journal.append(row(2))
        assert journal.needs_flush
        monkeypatch.setattr(journal_module, "_MAX_BUFFER", journal._file.pending)
        assert not journal.needs_flush  # more than the limit, not as much
    finally:
        journal.close()


def test_a_failed_write_of_a_rolled_segment_is_put_back(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(jdir, RUN, durability="none", flush_interval=3600, segment_bytes=600)
    for seq in range(1, 5):
        journal.append(row(seq))
    fail_writes(monkeypatch, segment_name(1), times=1)
    with pytest.raises(DiskFullError):
        journal.flush(fsync=True)
    monkeypatch.undo()
    journal.flush(fsync=True)
    assert journal.durable_seq == 4
    journal.close()
    assert read_all(jdir) == [row(s) for s in range(1, 5)]


def test_a_failed_roll_leaves_the_writer_usable(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def refuse(path: str, *args: object, **kwargs: object) -> int:
        if str(path).endswith(segment_name(3)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    journal = Journal(jdir, RUN, durability="always", segment_bytes=600)
    for seq in (1, 2):
        journal.append(row(seq))
    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(DiskFullError):
        journal.append(row(3))
    monkeypatch.undo()
    journal.append(row(3))
    journal.commit(3)
    journal.close()
    assert read_all(jdir) == [row(s) for s in range(1, 4)]


def test_follow_stops_at_until_or_timeout(jdir: Path) -> None:
    data, _ = chained([row(1), row(2), row(3)])
    write_segment(jdir, 1, data)
    reader = JournalReader(jdir, RUN)
    try:
        seen = list(reader.follow(until=lambda e: e.seq == 2, poll_interval=0.001))
        assert [e.seq for e in seen] == [1, 2]
    finally:
        reader.close()
    reader = JournalReader(jdir, RUN)
    try:
        started = time.monotonic()
        everything = list(reader.follow(poll_interval=0.001, timeout=0.05))
        assert [e.seq for e in everything] == [1, 2, 3] and time.monotonic() - started < 5
    finally:
        reader.close()


def test_poll_with_chains_reports_each_entry_chain(jdir: Path) -> None:
    events: list[BaseEvent] = [row(1), row(2)]
    data, last = chained(events)
    write_segment(jdir, 1, data)
    reader = JournalReader(jdir, RUN)
    chains: list[bytes] = []
    try:
        assert reader.poll(limit=1, chains=chains) == [row(1)]
        assert reader.poll(chains=chains) == [row(2)]
    finally:
        reader.close()
    assert chains == [chained([row(1)])[1], last]


def test_concurrent_appends_keep_the_chain(jdir: Path) -> None:
    journal = Journal(jdir, RUN, durability="always")

    appender = threading.Lock()  # the caller's (the recorder's): it assigns the seqs

    def worker() -> None:
        for _ in range(25):
            with appender:
                seq = journal.next_seq
                journal.append(row(seq))
            journal.commit(seq)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    journal.close()
    assert [e.seq for e in read_all(jdir)] == list(range(1, 101))


# -- opening, positions and resources ----------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def flusher_threads() -> int:
    return sum(t.name == "auditjournal-flusher" and t.is_alive() for t in threading.enumerate())


def test_stray_files_in_the_journal_directory_are_ignored(jdir: Path) -> None:
    data, _ = chained([row(1), row(2)])
    write_segment(jdir, 1, data)
    (jdir / "notes.jsonl").write_text("not a segment\n")
    (jdir / "00000000000000000009.txt").write_text("not a segment\n")
    assert read_all(jdir) == [row(1), row(2)]
    journal = open_for_append(jdir)
    try:
        assert (journal.next_seq, journal.durable_seq, journal.last_seq) == (3, 2, 2)
    finally:
        journal.close()


def test_a_missing_journal_is_created_only_when_asked(jdir: Path) -> None:
    jdir.mkdir()
    with pytest.raises(CorruptJournalError, match="holds no journal segment"):
        Journal(jdir, RUN, durability="always", create=False)
    assert list(jdir.glob("*.jsonl")) == []


def test_an_empty_first_segment_is_kept(jdir: Path) -> None:
    """A crash right after creating the first segment: it stays (never the first is
    removed), and the journal starts at seq 1."""
    write_segment(jdir, 1, b"")
    journal = open_for_append(jdir)
    try:
        assert journal.next_seq == 1 and journal.recovery is None
        journal.append(row(1))
        journal.commit(1)
    finally:
        journal.close()
    assert read_all(jdir) == [row(1)]


@pytest.mark.parametrize("opener", ["reader", "recovery"])
def test_a_segment_starting_with_an_empty_line_is_corrupt(jdir: Path, opener: str) -> None:
    data, _ = chained([row(1), row(2)])
    write_segment(jdir, 1, b"\n" + data)
    with pytest.raises(CorruptJournalError, match="bad entry at offset 0"):
        if opener == "reader":
            read_all(jdir)
        else:
            open_for_append(jdir)
    assert (jdir / segment_name(1)).read_bytes() == b"\n" + data


def test_the_writer_releases_every_file_and_thread(jdir: Path) -> None:
    fds, threads = open_fds(), flusher_threads()
    journal = Journal(jdir, RUN, durability="batch", segment_bytes=600)
    assert flusher_threads() == threads + 1
    for seq in range(1, 8):  # several rolls
        journal.append(row(seq))
    journal.flush(fsync=True)
    journal.append(row(8))
    journal.close()
    assert open_fds() == fds and flusher_threads() == threads
    always = Journal(jdir, RUN, durability="always")
    assert flusher_threads() == threads  # appends flush themselves: no background thread
    always.close()
    reader = JournalReader(jdir, RUN)
    assert len(list(reader)) == 8
    reader.close()
    assert open_fds() == fds


def test_durable_seq_follows_the_policy(jdir: Path) -> None:
    journal = Journal(jdir, RUN, durability="none", flush_interval=3600)
    try:
        journal.append(row(1))
        journal.flush(fsync=False)
        assert journal.durable_seq == 0  # written, not fsynced
        journal.flush(fsync=True)
        assert journal.durable_seq == 1
    finally:
        journal.close()
    journal = Journal(jdir, RUN, durability="always")
    try:
        assert journal.durable_seq == 1 and journal.needs_flush  # always: every append
    finally:
        journal.close()


def test_commit_and_flush_skip_what_there_is_nothing_to_do_for(jdir: Path) -> None:
    flushes: list[bool] = []
    journal = Journal(jdir, RUN, durability="always", before_flush=flushes.append)
    try:
        journal.append(row(1))
        journal.commit(1)
        assert flushes == [False, True]  # the payloads written before the entry, then synced
        journal.commit(1)  # already durable
        journal.commit(0)
        journal.flush(fsync=False)  # nothing buffered, no fsync asked: nothing to do
        assert flushes == [False, True]
        journal.flush(fsync=True)  # an fsync asked for is done (nothing to write first)
        assert flushes == [False, True, True]
    finally:
        journal.close()


def test_a_failed_payload_flush_after_a_roll_keeps_every_entry(jdir: Path) -> None:
    failures = [OSError(errno.ENOSPC, "No space left on device")]

    def before_flush(fsync: bool) -> None:
        if failures:
            raise failures.pop()

    journal = Journal(
        jdir,
        RUN,
        durability="none",
        flush_interval=3600,
        segment_bytes=600,
        before_flush=before_flush,
    )
    for seq in range(1, 8):
        journal.append(row(seq))
    with pytest.raises(OSError):
        journal.flush(fsync=True)
    journal.flush(fsync=True)
    journal.close()
    assert read_all(jdir) == [row(s) for s in range(1, 8)]


def test_a_segment_exactly_at_its_size_rolls(jdir: Path) -> None:
    line_size = len(chained([row(1)])[0])
    journal = Journal(jdir, RUN, durability="always", segment_bytes=2 * line_size)
    for seq in range(1, 4):
        journal.append(row(seq))
        journal.commit(seq)
    journal.close()
    assert [p.name for p in sorted(jdir.glob("*.jsonl"))] == [segment_name(1), segment_name(3)]


def test_failures_to_repair_are_storage_errors(jdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from auditjournal.errors import StorageError

    data, _ = chained([row(1), row(2)])
    write_segment(jdir, 1, data + b'{"torn')

    def refuse(*args: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "ftruncate", refuse)
    with pytest.raises(StorageError, match="cannot truncate torn tail"):
        open_for_append(jdir)
    monkeypatch.undo()
    (jdir / segment_name(1)).write_bytes(data)
    write_segment(jdir, 3, b"")  # empty after a roll: removed on opening
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: refuse())
    with pytest.raises(StorageError, match="cannot remove empty segment"):
        open_for_append(jdir)


def test_a_reader_resumes_at_its_position(jdir: Path) -> None:
    data, _ = chained([row(1), row(2), row(3)])
    write_segment(jdir, 1, data)
    first = JournalReader(jdir, RUN)
    assert first.poll(limit=2) == [row(1), row(2)]
    position = first.position
    first.close()
    resumed = JournalReader(jdir, RUN, position)
    try:
        assert resumed.poll() == [row(3)]
    finally:
        resumed.close()


@pytest.mark.parametrize(
    "position",
    [(5, 5, 0), (1, 1, 100)],
    ids=["later segment", "later offset"],
)
def test_a_position_in_a_journal_that_is_gone_is_an_error(
    jdir: Path, position: tuple[int, int, int]
) -> None:
    """Only a reader at the very start may find no journal yet (it is being created)."""
    from auditjournal.journal.files import JournalPosition

    jdir.mkdir()
    reader = JournalReader(jdir, RUN, JournalPosition(*position, genesis_chain(RUN)))
    with pytest.raises(CorruptJournalError, match="segment is missing"):
        reader.poll()
    assert JournalReader(jdir, RUN).poll() == []


def test_at_seq_beyond_the_end_stops_there(jdir: Path) -> None:
    data, _ = chained([row(1), row(2), row(3)])
    write_segment(jdir, 1, data)
    reader = JournalReader.at_seq(jdir, RUN, 100)
    try:
        assert reader.position.next_seq == 4
    finally:
        reader.close()


def test_at_seq_without_the_first_segment_is_an_error(jdir: Path) -> None:
    _, chain = chained([row(1), row(2), row(3)])
    more, _ = chained([row(4), row(5)], chain)
    write_segment(jdir, 4, more)
    with pytest.raises(CorruptJournalError, match="segment is missing"):
        JournalReader.at_seq(jdir, RUN, 5).poll()


def test_an_empty_later_segment_is_not_missing_entries(jdir: Path) -> None:
    """A writer creates the next segment before it fills it: a reader at the live end
    waits; only a later segment that holds bytes means entries are missing."""
    data, _ = chained([row(1), row(2), row(3)])
    write_segment(jdir, 1, data)
    write_segment(jdir, 5, b"")
    reader = JournalReader(jdir, RUN)
    try:
        assert [e.seq for e in reader.poll()] == [1, 2, 3]
        assert reader.poll() == []
        (jdir / segment_name(5)).write_bytes(b"x")
        with pytest.raises(CorruptJournalError, match="entries from seq 4 are missing"):
            reader.poll()
    finally:
        reader.close()


def test_follow_reads_past_a_full_batch_with_a_zero_timeout(jdir: Path) -> None:
    events: list[BaseEvent] = [row(s) for s in range(1, 4100)]
    write_segment(jdir, 1, chained(events)[0])
    reader = JournalReader(jdir, RUN)
    try:
        assert sum(1 for _ in reader.follow(timeout=0)) == len(events)
    finally:
        reader.close()


@pytest.mark.parametrize("timeout", [None, 30.0])
def test_follow_waits_for_entries_still_to_come(jdir: Path, timeout: float | None) -> None:
    journal = Journal(jdir, RUN, durability="always")
    journal.append(row(1))
    journal.commit(1)

    def later() -> None:
        time.sleep(0.05)
        journal.append(row(2))
        journal.commit(2)

    writer = threading.Thread(target=later)
    writer.start()
    reader = JournalReader(jdir, RUN)
    try:
        seen = [
            e.seq
            for e in reader.follow(until=lambda e: e.seq == 2, poll_interval=0.001, timeout=timeout)
        ]
    finally:
        reader.close()
        writer.join()
        journal.close()
    assert seen == [1, 2]


# -- the fsync protocol (what survives a power cut) ---------------------------------------------


class Syncs:
    """Records which files and directories get fsynced (the calls, not their effect:
    only a power cut shows the effect, and no test here can cut the power)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import auditjournal.journal.files as journal_module
        from auditjournal.fs.storage import AppendFile

        self.files: list[str] = []
        self.dirs: list[str] = []
        real_sync = AppendFile.sync

        def sync(file: AppendFile) -> None:
            self.files.append(file.path.name)
            real_sync(file)

        real_dir = journal_module.fsync_dir

        def sync_dir(path: Path) -> None:
            self.dirs.append(path.name)
            real_dir(path)

        monkeypatch.setattr(AppendFile, "sync", sync)
        monkeypatch.setattr(journal_module, "fsync_dir", sync_dir)

    def clear(self) -> None:
        self.files.clear()
        self.dirs.clear()


def test_always_fsyncs_each_commit_and_the_directory_after_a_roll(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = Syncs(monkeypatch)
    journal = Journal(jdir, RUN, durability="always", segment_bytes=600)
    assert syncs.dirs == ["journal"]  # the first segment's directory entry
    syncs.clear()
    journal.append(row(1))
    journal.commit(1)
    assert (syncs.files, syncs.dirs) == ([segment_name(1)], [])
    syncs.clear()
    for seq in (2, 3):
        journal.append(row(seq))
        journal.commit(seq)
    assert syncs.dirs == ["journal"]  # the roll's new segment, once
    assert segment_name(3) in syncs.files and segment_name(1) in syncs.files
    journal.close()


def test_a_flush_without_fsync_syncs_nothing(jdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs = Syncs(monkeypatch)
    journal = Journal(jdir, RUN, durability="none", flush_interval=3600)
    syncs.clear()
    journal.append(row(1))
    journal.flush(fsync=False)
    assert (syncs.files, syncs.dirs) == ([], [])
    journal.close()
    assert (syncs.files, syncs.dirs) == ([], [])  # none: not even at close


def test_batch_fsyncs_at_close(jdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs = Syncs(monkeypatch)
    journal = Journal(jdir, RUN, durability="batch", flush_interval=3600)
    journal.append(row(1))
    syncs.clear()
    journal.close()
    assert syncs.files == [segment_name(1)]


def test_a_failed_flush_keeps_the_directory_fsync_for_the_retry(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = [OSError(errno.ENOSPC, "No space left on device")]

    def before_flush(fsync: bool) -> None:
        if failures:
            raise failures.pop()

    syncs = Syncs(monkeypatch)
    journal = Journal(
        jdir,
        RUN,
        durability="none",
        flush_interval=3600,
        segment_bytes=600,
        before_flush=before_flush,
    )
    for seq in (1, 2, 3):  # rolls to a new segment
        journal.append(row(seq))
    syncs.clear()
    with pytest.raises(OSError):
        journal.flush(fsync=True)
    journal.flush(fsync=True)
    assert syncs.dirs == ["journal"]
    syncs.clear()
    journal.flush(fsync=True)
    assert syncs.dirs == []  # done: not again
    journal.close()


def test_a_retried_background_flush_fsyncs_under_batch(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(jdir, RUN, durability="batch", flush_interval=0.001)
    syncs = Syncs(monkeypatch)
    real_write = os.write
    try:
        # writes keep failing until the flusher is stopped: a background retry that
        # succeeded in between would leave nothing for the append below to retry
        failed = fail_writes(monkeypatch, "journal", times=10**9)
        journal.append(row(1))
        deadline = time.monotonic() + 10
        while not journal.write_failed:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert failed and journal._flusher is not None
        journal._flusher.stop()  # no background flush from here on: only the retry
        monkeypatch.setattr(os, "write", real_write)  # the disk has room again
        assert journal.write_failed
        syncs.clear()
        journal.append(row(2))  # retries the failed flush first, fsyncing as batch does
        assert syncs.files == [segment_name(1)]
        assert journal.durable_seq == 1
    finally:
        journal.close()


def test_removing_empty_tail_segments_fsyncs_the_directory_once(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = chained([row(1), row(2)])
    write_segment(jdir, 1, data)
    syncs = Syncs(monkeypatch)
    open_for_append(jdir).close()
    assert syncs.dirs == []  # nothing removed: no directory fsync
    write_segment(jdir, 3, b"")
    journal = open_for_append(jdir)
    journal.close()
    assert syncs.dirs == ["journal"]
    assert journal.recovery is not None and journal.recovery.segment == segment_name(3)


def test_entries_rolled_while_a_flush_fails_stay_in_order(jdir: Path) -> None:
    """A flush takes the buffers, then fails; meanwhile appends roll to new segments.
    The failed flush's files go back before them, and the retry writes it all in order."""
    journal: Journal | None = None
    failures = [OSError(errno.ENOSPC, "No space left on device")]

    def before_flush(fsync: bool) -> None:
        assert journal is not None
        if failures:
            for seq in range(journal.next_seq, journal.next_seq + 3):  # rolls meanwhile
                journal.append(row(seq))
            raise failures.pop()

    journal = Journal(
        jdir,
        RUN,
        durability="none",
        flush_interval=3600,
        segment_bytes=600,
        before_flush=before_flush,
    )
    for seq in (1, 2, 3):
        journal.append(row(seq))
    with pytest.raises(OSError):
        journal.flush(fsync=True)
    journal.flush(fsync=True)
    journal.close()
    assert read_all(jdir) == [row(s) for s in range(1, 7)]


def test_a_close_that_cannot_write_keeps_everything_until_a_later_close(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() on a full disk raises and stays open with the entries buffered (they were
    acknowledged); a later close writes them and releases the files. abandon() releases
    them without writing, as a crash would."""
    fds = open_fds()
    journal = Journal(jdir, RUN, durability="none", flush_interval=3600, segment_bytes=600)
    for seq in range(1, 6):
        journal.append(row(seq))
    fail_writes(monkeypatch, "journal", times=10**6)
    with pytest.raises(DiskFullError):
        journal.close()
    assert open_fds() != fds  # still open: nothing dropped
    monkeypatch.undo()
    journal.close()
    assert open_fds() == fds
    assert read_all(jdir) == [row(seq) for seq in range(1, 6)]

    other = jdir.parent / "abandoned"
    journal = Journal(other, RUN, durability="none", flush_interval=3600)
    journal.append(row(1))
    journal.abandon()
    journal.abandon()  # twice is harmless
    assert open_fds() == fds
    assert read_all(other) == []


# -- a failed write is remembered until one succeeds (issue 10, item 7) ---------------------------


def test_write_behind_keeps_its_failure_for_the_next_append(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """write_behind() writes now (no fsync) and never raises; its failure refuses the next
    append (before that append takes a seq) until a write succeeds."""
    journal = Journal(jdir, RUN, durability="batch", flush_interval=3600)
    journal.append(row(1))
    journal.write_behind()
    assert segments(jdir)[0].stat().st_size > 0 and not journal.write_failed  # written
    journal.append(row(2))
    fail_writes(monkeypatch, "journal", times=10**6)
    journal.write_behind()  # no exception: row 2 was accepted already
    assert journal.write_failed
    with pytest.raises(DiskFullError, match="recorded nothing") as caught:
        journal.append(row(3))
    assert caught.value.recorded_event is None and journal.next_seq == 3
    monkeypatch.undo()
    journal.append(row(3))  # the retry writes row 2, then row 3 is taken
    assert not journal.write_failed
    journal.close()
    assert read_all(jdir) == [row(1), row(2), row(3)]


def test_write_behind_without_waiting_leaves_a_busy_writer_alone(jdir: Path) -> None:
    """write_behind(wait=False) (the backpressure's hand-over to an idle projector) does
    nothing while a flush holds the writer (it may be waiting for its fsync), and writes
    like write_behind() otherwise."""
    journal = Journal(jdir, RUN, durability="batch", flush_interval=3600)
    journal.append(row(1))
    with journal._io_lock:  # a flush under way in another thread
        journal.write_behind(wait=False)  # returns at once (with wait=True: a deadlock)
        assert segments(jdir)[0].stat().st_size == 0
    journal.write_behind(wait=False)
    assert segments(jdir)[0].stat().st_size > 0
    journal.close()
    assert read_all(jdir) == [row(1)]


def test_a_failed_payload_flush_counts_as_a_failed_write(jdir: Path) -> None:
    failures = [DiskFullError("cannot write payloads: No space left on device")]

    def before_flush(fsync: bool) -> None:
        if failures:
            raise failures.pop()

    journal = Journal(jdir, RUN, durability="batch", flush_interval=3600, before_flush=before_flush)
    journal.append(row(1))
    journal.write_behind()
    assert journal.write_failed
    journal.append(row(2))  # the retry succeeds now
    journal.close()
    assert read_all(jdir) == [row(1), row(2)]


def test_an_interrupt_during_a_flush_is_not_a_write_failure(jdir: Path) -> None:
    interrupts = [KeyboardInterrupt()]

    def before_flush(fsync: bool) -> None:
        if interrupts:
            raise interrupts.pop()

    journal = Journal(jdir, RUN, durability="batch", flush_interval=3600, before_flush=before_flush)
    journal.append(row(1))
    with pytest.raises(KeyboardInterrupt):
        journal.flush(fsync=True)
    assert not journal.write_failed  # the disk is fine: the next append goes straight on
    journal.close()
    assert read_all(jdir) == [row(1)]


def test_a_roll_written_behind_gets_its_directory_fsync_later(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write without fsync must not use up the 'new segment' mark: the next fsyncing
    flush still fsyncs the directory, so the rolled segment survives a power cut."""
    journal = Journal(jdir, RUN, durability="batch", flush_interval=3600, segment_bytes=600)
    syncs = Syncs(monkeypatch)
    journal.append(row(1))
    journal.write_behind()
    journal.flush(fsync=True)
    assert syncs.dirs == []  # no new segment: no directory fsync
    for seq in range(2, 5):
        journal.append(row(seq))
    assert len(segments(jdir)) == 2
    journal.write_behind()
    assert syncs.dirs == []
    journal.flush(fsync=True)
    assert syncs.dirs == ["journal"]
    syncs.clear()
    journal.flush(fsync=True)
    assert syncs.dirs == []  # once
    journal.close()


def test_a_directory_fsync_that_fails_is_a_storage_error(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import auditjournal.journal.files as journal_module

    journal = Journal(jdir, RUN, durability="always", segment_bytes=600)
    for seq in (1, 2):
        journal.append(row(seq))
        journal.commit(seq)

    def broken(path: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(journal_module, "fsync_dir", broken)
    journal.append(row(3))  # rolls to a new segment
    with pytest.raises(StorageError, match="cannot fsync"):
        journal.commit(3)
    assert journal.write_failed
    monkeypatch.undo()
    journal.commit(3)  # the mark was kept: this time the directory is fsynced
    assert journal.durable_seq == 3 and not journal.write_failed
    journal.close()


def test_close_writes_and_fsyncs_what_was_only_written_behind(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(jdir, RUN, durability="batch", flush_interval=3600)
    journal.append(row(1))
    journal.write_behind()
    syncs = Syncs(monkeypatch)
    journal.close()
    assert syncs.files == [segment_name(1)]
    with pytest.raises(JournalClosedError):
        journal.append(row(2))


def test_a_flush_with_nothing_new_does_not_fsync(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flusher runs every 10 ms: an idle journal must not cost an fsync each time."""
    journal = Journal(jdir, RUN, durability="batch", flush_interval=3600)
    syncs = Syncs(monkeypatch)
    journal.append(row(1))
    journal.flush(fsync=True)
    assert syncs.files == [segment_name(1)]
    syncs.clear()
    journal.flush(fsync=True)
    assert syncs.files == []
    journal.close()


def test_abandon_lets_go_of_everything_without_writing(jdir: Path) -> None:
    fds, threads = open_fds(), flusher_threads()
    journal = Journal(jdir, RUN, durability="batch", flush_interval=3600, segment_bytes=600)
    for seq in range(1, 5):
        journal.append(row(seq))  # two segments, nothing written
    assert flusher_threads() == threads + 1
    journal.abandon()
    assert (open_fds(), flusher_threads()) == (fds, threads)
    assert read_all(jdir) == []
    Journal(jdir, RUN, durability="batch").close()  # the lock was released too
    always = Journal(jdir.parent / "always", RUN, durability="always")  # no flusher thread
    always.abandon()
    assert open_fds() == fds


def test_an_append_whose_seq_was_taken_while_it_waited_is_refused(jdir: Path) -> None:
    """The retry of a failed write runs without the journal's lock; if another append
    gets in meanwhile, the waiting one (built for the old next seq, checked against the
    old state) must be refused, not appended out of place."""
    journal: Journal | None = None
    state = {"fail": True, "sneak": False}

    def before_flush(fsync: bool) -> None:
        assert journal is not None
        if state["fail"]:
            state["fail"] = False
            raise DiskFullError("No space left on device")
        if state["sneak"]:  # the retry's flush, lock released: another append gets in
            state["sneak"] = False
            journal._write_error = None  # as the flush about to succeed will leave it
            journal.append(row(2))

    journal = Journal(jdir, RUN, durability="batch", flush_interval=3600, before_flush=before_flush)
    journal.append(row(1))
    journal.write_behind()
    assert journal.write_failed
    state["sneak"] = True
    with pytest.raises(StorageError, match="written while this call waited"):
        journal.append(row(2))
    assert journal.next_seq == 3
    journal.close()
    assert read_all(jdir) == [row(1), row(2)]


def test_a_flush_fsyncs_the_segments_retired_since_the_last_one(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal_lock = threading.Lock()  # held around appends, as the recorder does
    journal = Journal(
        jdir, RUN, durability="batch", flush_interval=3600, segment_bytes=1, lock=journal_lock
    )
    with journal_lock:
        for seq in (1, 2, 3):  # one event per segment: two retired, one current
            journal.append(row(seq))
    syncs = Syncs(monkeypatch)
    journal.flush(fsync=True)
    assert sorted(syncs.files) == [segment_name(1), segment_name(2), segment_name(3)]
    journal.close()


def test_segments_retired_while_a_failed_flush_ran_are_written_by_the_next(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flush fails (after taking segment 1's and 2's bytes) while appends retire
    segments 2 and 3: the next flushes write all four segments, in order (a write that
    fails on segment 1 leaves every later segment unwritten)."""
    failing = [True]
    journal_lock = threading.Lock()  # held around appends, as the recorder does

    def before_flush(fsync: bool) -> None:
        if failing[0]:
            failing[0] = False
            with journal_lock:
                journal.append(row(3))
                journal.append(row(4))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    journal = Journal(
        jdir,
        RUN,
        durability="batch",
        flush_interval=3600,
        segment_bytes=1,
        before_flush=before_flush,
        lock=journal_lock,
    )
    with journal_lock:
        journal.append(row(1))
        journal.append(row(2))
    with pytest.raises(OSError):
        journal.flush(fsync=True)
    failed = fail_writes(monkeypatch, segment_name(1))
    with pytest.raises(DiskFullError):
        journal.flush(fsync=True)
    assert failed and [p.stat().st_size for p in segments(jdir)] == [0, 0, 0, 0]
    monkeypatch.undo()
    journal.flush(fsync=True)
    journal.close()
    assert [p.name for p in segments(jdir)] == [segment_name(s) for s in (1, 2, 3, 4)]
    assert read_all(jdir) == [row(s) for s in (1, 2, 3, 4)]


def test_close_refuses_appends_while_it_writes(jdir: Path) -> None:
    refused: list[bool] = []
    closing = [False]
    journal_lock = threading.Lock()  # held around appends, as the recorder does

    def before_flush(fsync: bool) -> None:
        if closing[0]:
            with journal_lock:
                try:
                    journal.append(row(2))
                    refused.append(False)
                except JournalClosedError:
                    refused.append(True)

    journal = Journal(
        jdir,
        RUN,
        durability="batch",
        flush_interval=3600,
        before_flush=before_flush,
        lock=journal_lock,
    )
    with journal_lock:
        journal.append(row(1))
    closing[0] = True
    journal.close()
    assert refused and all(refused)  # (the payloads' write, then their fsync: both refused)
    assert read_all(jdir) == [row(1)]


def test_the_smallest_segment_size_is_one_page(tmp_path: Path) -> None:
    AuditStore.open(tmp_path / "a", segment_bytes=4096).close()
    with pytest.raises(InvalidSettingsError, match="segment_bytes must be an int >= 4096"):
        AuditStore.open(tmp_path / "b", segment_bytes=4095)


def test_a_closed_segment_whose_last_chain_is_not_64_hex_digits(jdir: Path) -> None:
    """bytes.fromhex skips spaces: a chain of 64 characters with spaces in it gives
    fewer than 32 bytes, and is no chain value."""
    good, chain = chained([row(1)])
    last, _ = seal(encode_event(row(2)), chain)
    spaced = last[:-67] + b" " + b"00" * 31 + b" " + last[-3:]
    assert len(spaced) == len(last)
    path = write_segment(jdir, 1, good + spaced)
    with pytest.raises(CorruptJournalError, match="last entry is not a chained entry"):
        last_entry(path, RUN)


def test_a_reader_may_be_closed_twice(jdir: Path) -> None:
    data, _ = chained([row(1)])
    write_segment(jdir, 1, data)
    reader = JournalReader(jdir, RUN)
    assert list(reader) == [row(1)]
    reader.close()
    reader.close()


def test_position_exists_only_where_a_reader_can_stand(jdir: Path) -> None:
    """Segments 1 (seqs 1-2) and 3 (seqs 3-4): each field of a checkpoint's position
    must match the journal."""
    first, chain2 = chained([row(1), row(2)])
    second, _ = chained([row(3), row(4)], chain2)
    write_segment(jdir, 1, first)
    write_segment(jdir, 3, second)
    line1, chain1 = seal(encode_event(row(1)), genesis_chain(RUN))
    genesis = genesis_chain(RUN)

    def exists(next_seq: int, segment: int, offset: int, chain: bytes) -> bool:
        return position_exists(jdir, RUN, JournalPosition(next_seq, segment, offset, chain))

    # before the first entry: only segment 1, offset 0, the genesis chain
    assert exists(1, 1, 0, genesis)
    assert not exists(1, 3, 0, genesis)
    assert not exists(1, 1, len(line1), genesis)
    assert not exists(1, 1, 0, chain1)
    # inside a segment: the entry ending at the offset has seq next_seq - 1 and the chain
    assert exists(2, 1, len(line1), chain1)
    assert not exists(2, 1, len(line1), chain2)
    assert not exists(3, 1, len(line1), chain1)
    assert not exists(2, 1, 5, chain1)  # not at the end of an entry
    # at the start of a segment: the entry that ends the segment before
    assert exists(3, 3, 0, chain2)
    assert not exists(3, 3, 0, chain1)
    assert not exists(4, 3, 0, chain2)  # a segment starts with its own first seq
    assert not exists(3, 1, 0, chain2)  # no segment before the first
    assert not exists(3, 2, 0, chain2)  # segment 1 ends at seq 2, but no segment 2 starts there
    (jdir / segment_name(1)).unlink()
    assert not exists(3, 3, 0, chain2)  # the segment before is gone


def test_a_reader_reads_on_when_the_writer_fills_a_segment_after_starting_the_next(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader is at the end of segment 1 and segment 3 already holds entries: the
    writer's last append to segment 1 lands just then, and is read, not refused."""
    first, chain1 = chained([row(1)])
    second, chain2 = chained([row(2)], chain1)
    third, _ = chained([row(3)], chain2)
    write_segment(jdir, 1, first)
    write_segment(jdir, 3, third)
    reader = JournalReader(jdir, RUN)

    def append() -> None:
        with open(jdir / segment_name(1), "ab") as fh:
            fh.write(second)

    appended = _before_the_listing(reader, append, monkeypatch)
    assert reader.poll() == [row(1), row(2), row(3)]
    assert appended == [True]
    reader.close()


def _before_the_listing(
    reader: JournalReader, writer: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> list[bool]:
    """Run ``writer`` once, just before the reader first lists the directory for later
    segments (as a writer in the same process may, between the reader's looks); the
    list gets ``True`` when it ran."""
    real = reader._later_segment_has_data
    ran: list[bool] = []

    def later() -> bool:
        if not ran:
            ran.append(True)
            writer()
        return real()

    monkeypatch.setattr(reader, "_later_segment_has_data", later)
    return ran


def test_a_reader_follows_a_writer_that_rolled_over_twice_while_it_looked(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader is at the end of a full segment and the next does not exist yet; before
    it lists the directory the writer makes the next segment, fills it and starts a later
    one. A later segment holds entries, but none is missing: the reader goes on (it called
    entries missing when a writer in the same process ran between its looks)."""
    first, chain1 = chained([row(1), row(2)])
    second, chain2 = chained([row(3), row(4)], chain1)
    third, _ = chained([row(5)], chain2)
    write_segment(jdir, 1, first)
    reader = JournalReader(jdir, RUN)

    def roll_over_twice() -> None:
        write_segment(jdir, 3, second)
        write_segment(jdir, 5, third)

    rolled = _before_the_listing(reader, roll_over_twice, monkeypatch)
    assert reader.poll() == [row(1), row(2), row(3), row(4), row(5)]
    assert rolled == [True]
    reader.close()


def test_a_write_without_fsync_does_not_wait_for_a_flush_fsyncing(jdir: Path) -> None:
    """Issue 13: the recorder hands entries to its projector process (a write without
    fsync) while the group commit waits for its fsync: the fsync comes after the writes,
    outside the lock that orders them. The entries a slow fsync is making durable, and
    those appended since, are readable before it ends."""
    syncing, release = threading.Event(), threading.Event()

    def before_flush(fsync: bool) -> None:
        if fsync:  # the payloads' fsync: a slow disk
            syncing.set()
            assert release.wait(10)

    journal = Journal(jdir, RUN, durability="batch", flush_interval=3600, before_flush=before_flush)
    try:
        journal.append(row(1))
        slow = threading.Thread(target=journal.flush, kwargs={"fsync": True})
        slow.start()
        assert syncing.wait(10)
        assert [e.seq for e in read_all(jdir)] == [1]  # written before the fsync began
        journal.append(row(2))
        journal.write_behind(wait=False)  # not skipped, not blocked by the fsync
        assert [e.seq for e in read_all(jdir)] == [1, 2]
        assert journal.durable_seq == 0  # nothing is durable until the fsync returns
        release.set()
        slow.join(10)
        assert journal.durable_seq == 1  # what that flush wrote (2 came after its take)
    finally:
        release.set()
        journal.close()
    assert journal.durable_seq == 2


def _count_listings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How often readers list a journal directory from now on (``[count]``)."""
    from auditjournal.journal import reader as reader_module

    listings = [0]
    real = reader_module.journal_segments

    def counted(directory: Path) -> list[tuple[int, Path]]:
        listings[0] += 1
        return real(directory)

    monkeypatch.setattr(reader_module, "journal_segments", counted)
    return listings


def test_a_live_reader_lists_the_directory_again_only_when_it_changed(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the live end a reader looks for a later segment holding data (entries missing)
    at every poll; it lists the directory only when its mtime moved since a listing that
    found none (an old enough mtime: a newer one may share its clock tick with a file made
    after the listing). A segment made later still stops the reader."""
    data, _ = chained([row(1), row(2)])
    write_segment(jdir, 1, data)
    old = time.time() - 60
    os.utime(jdir, (old, old))
    listings = _count_listings(monkeypatch)
    reader = JournalReader(jdir, RUN)
    try:
        assert [e.seq for e in reader.poll()] == [1, 2]
        for _ in range(5):
            assert reader.poll() == []
        assert listings[0] == 1  # once, then the unchanged mtime says nothing was made
        later, _ = chained([row(9)])
        write_segment(jdir, 9, later)  # entries 3..8 are missing
        with pytest.raises(CorruptJournalError, match="entries from seq 3 are missing"):
            reader.poll()
    finally:
        reader.close()


def test_a_live_reader_at_the_end_makes_one_stat_while_the_listing_holds(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: each poll at the live end also asked whether the next segment exists (an
    lstat); while the directory is as a trusted listing that found no later segment
    left it, no segment can have been made, so one stat of the directory answers both.
    The writer's next segment, made later, is still followed."""
    from auditjournal.journal import reader as reader_module

    data, chain = chained([row(1), row(2)])
    write_segment(jdir, 1, data)
    old = time.time() - 60
    os.utime(jdir, (old, old))
    looks: list[str] = []
    real = reader_module.os.path.lexists
    monkeypatch.setattr(reader_module.os.path, "lexists", lambda p: looks.append(p) or real(p))
    reader = JournalReader(jdir, RUN)
    try:
        assert [e.seq for e in reader.poll()] == [1, 2]
        first = len(looks)
        for _ in range(5):
            assert reader.poll() == []
        assert len(looks) == first  # no lstat while the listing holds
        later, _ = chained([row(3), row(4)], chain)
        write_segment(jdir, 3, later)  # the writer rolled over
        assert [e.seq for e in reader.poll()] == [3, 4]
    finally:
        reader.close()


def test_a_fresh_directory_mtime_is_not_trusted(
    jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = chained([row(1)])
    write_segment(jdir, 1, data)
    now = time.time()
    os.utime(jdir, (now, now))  # as new as the listings: a file could share its tick
    listings = _count_listings(monkeypatch)
    reader = JournalReader(jdir, RUN)
    try:
        reader.poll()
        reader.poll()
        reader.poll()
        assert listings[0] == 3
    finally:
        reader.close()
