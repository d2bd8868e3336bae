"""One journal read for both projectors of the projector process (projection/shared.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.journal_contract import events

from auditjournal.errors import CorruptJournalError
from auditjournal.journal.base import JournalCursor, JournalPosition
from auditjournal.journal.filebackend import FileJournalBackend, FileRunJournal
from auditjournal.projection import shared
from auditjournal.projection.shared import SharedReads, shared_journal

RUN = "run-1"
COUNT = 300


def _journal(root: Path, count: int = COUNT) -> FileRunJournal:
    journal = FileJournalBackend(root, segment_bytes=4096).journal(RUN)  # many segments
    writer = journal.open_writer(create=True, durability="batch", flush_interval=3600)
    try:
        writer.append_batch(events(RUN, 1, count))
        writer.flush(fsync=True)
    finally:
        writer.close()
    return journal


def _position_after(journal: FileRunJournal, seq: int) -> JournalPosition:
    cursor = journal.cursor()
    try:
        while cursor.position.next_seq <= seq:
            cursor.poll(limit=seq - cursor.position.next_seq + 1)
        return cursor.position
    finally:
        cursor.close()


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> FileRunJournal:
    return _journal(tmp_path_factory.mktemp("shared"))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    starts=st.tuples(st.integers(0, COUNT), st.integers(0, COUNT)),
    steps=st.lists(st.tuples(st.booleans(), st.integers(1, 80)), min_size=1, max_size=60),
    held=st.sampled_from([16, 100, 8192]),
)
def test_each_cursor_reads_what_its_own_cursor_would(
    journal: FileRunJournal,
    starts: tuple[int, int],
    steps: list[tuple[bool, int]],
    held: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two cursors from their own positions, polled in any order with any limits, read
    exactly the entries (and chains) from their position on, and stand at the positions
    a cursor of their own would stand at after the same entries."""
    monkeypatch.setattr(shared, "MAX_HELD", held)
    reads = SharedReads(journal)
    positions = [None if s == 0 else _position_after(journal, s) for s in starts]
    cursors = [reads.cursor(p) for p in positions]
    seen: list[list[int]] = [[], []]
    got_chains: list[list[bytes]] = [[], []]
    plan = steps + [(b, COUNT + 10) for b in (False, True) * 40]  # then read to the end
    for second, limit in plan:
        which = int(second)
        chains: list[bytes] = []
        batch = cursors[which].poll(limit=limit, chains=chains)
        assert len(chains) == len(batch)
        seen[which].extend(e.seq for e in batch)
        got_chains[which].extend(chains)
        if seen[which]:
            assert cursors[which].position == _position_after(journal, seen[which][-1])
    for which in (0, 1):
        assert seen[which] == list(range(starts[which] + 1, COUNT + 1))
        own = journal.cursor(positions[which])
        expected: list[bytes] = []
        own.poll(chains=expected)
        own.close()
        assert got_chains[which] == expected
        cursors[which].close()


def test_a_position_whose_chain_does_not_fit_fails_only_its_own_cursor(
    journal: FileRunJournal,
) -> None:
    reads = SharedReads(journal)
    good = reads.cursor(_position_after(journal, 10))
    real = _position_after(journal, 50)
    bad = reads.cursor(
        JournalPosition(real.next_seq, real.segment_first_seq, real.offset, b"x" * 32)
    )
    assert good.poll(limit=100)[0].seq == 11
    with pytest.raises(CorruptJournalError):
        bad.poll(limit=100)
    good.close()
    bad.close()


def test_a_cursor_opened_behind_what_was_let_go_gets_its_own(journal: FileRunJournal) -> None:
    reads = SharedReads(journal)
    first = reads.cursor()
    assert [e.seq for e in first.poll(limit=100)] == list(range(1, 101))  # let go: nobody else
    late = reads.cursor(_position_after(journal, 20))
    assert not isinstance(late, shared.SharedCursor)
    assert late.poll(limit=5)[0].seq == 21
    joined = reads.cursor(_position_after(journal, 100))
    assert isinstance(joined, shared.SharedCursor)
    assert joined.poll(limit=5)[0].seq == 101
    assert first.poll(limit=5)[0].seq == 101
    for cursor in (first, late, joined):
        cursor.close()


def test_the_journal_is_read_once_for_two_cursors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = shared_journal(tmp_path, RUN, 4096)
    _journal(tmp_path)
    polls: list[int] = []
    real_poll = type(journal.reads._journal.cursor()).poll

    def counting(self: JournalCursor, limit: int | None = None, chains: list[bytes] | None = None):  # type: ignore[no-untyped-def]
        out = real_poll(self, limit, chains)  # type: ignore[arg-type]
        polls.extend(e.seq for e in out)
        return out

    monkeypatch.setattr(type(journal.reads._journal.cursor()), "poll", counting)
    a, b = journal.cursor(), journal.cursor()
    while a.poll(limit=64) or b.poll(limit=64):
        pass
    assert polls == list(range(1, COUNT + 1))  # each entry decoded once
    a.close()
    b.close()


def test_a_part_with_a_small_step_gets_batches_of_its_size(journal: FileRunJournal) -> None:
    """The export's live step (256 events) stays its batch size although the SQL part
    asks for 4096 at a time: batches are read in the smaller step."""
    reads = SharedReads(journal)
    small, big = reads.cursor(), reads.cursor()
    small_sizes: list[int] = []
    big_sizes: list[int] = []
    while True:
        a = small.poll(limit=16)
        b = big.poll(limit=100)
        small_sizes.append(len(a))
        big_sizes.append(len(b))
        if not a and not b:
            break
    assert max(small_sizes) == 16
    assert max(big_sizes) == 100  # several small batches make one big poll
    assert sum(small_sizes) == sum(big_sizes) == COUNT
    small.close()
    big.close()
