"""One crafted journal per check of the file backend (journal/filebackend.py and
journal/segments.py; see tools/mutate.py): lines are chained correctly, so only the
check under test can catch what is wrong with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditjournal.errors import CorruptJournalError, RunNotFoundError, UnsafePathError
from auditjournal.journal.base import JournalPosition
from auditjournal.journal.filebackend import FileJournalBackend, FileRunJournal
from auditjournal.journal.files import genesis_chain, last_entry, segment_name
from auditjournal.model.events import BaseEvent
from test_journal_checks import RUN, chained, row, write_segment


def padded(seq: int, length: int) -> BaseEvent:
    """Row ``seq`` whose journal line is exactly ``length`` bytes (chained from anything)."""
    base = len(chained([row(seq)])[0])
    event = row(seq)
    return type(event)(**{**_fields(event), "row_id": "r" * (len(event.row_id) + length - base)})


def _fields(event: BaseEvent) -> dict[str, object]:
    return {name: getattr(event, name) for name in event.__struct_fields__}


@pytest.fixture
def jdir(tmp_path: Path) -> Path:
    return tmp_path / "journal"


def test_padded_rows_have_the_length_asked(jdir: Path) -> None:
    assert len(chained([padded(1, 4000)])[0]) == 4000


# -- exists / created ----------------------------------------------------------------------------


def test_exists_and_created_follow_the_directory_and_its_segments(jdir: Path) -> None:
    journal = FileRunJournal(jdir, RUN)
    assert (journal.exists(), journal.created()) == (False, False)
    jdir.mkdir()
    assert (journal.exists(), journal.created()) == (True, False)  # no segment yet
    write_segment(jdir, 1, b"")
    assert (journal.exists(), journal.created()) == (True, True)  # an empty segment counts


# -- open_writer ---------------------------------------------------------------------------------


def test_open_writer_without_create_refuses_a_missing_journal(jdir: Path) -> None:
    with pytest.raises(RunNotFoundError, match=f"no journal for run '{RUN}' at "):
        FileRunJournal(jdir, RUN).open_writer(create=False)
    assert not jdir.exists()


def test_open_writer_creates_then_reopens_a_journal(jdir: Path) -> None:
    writer = FileRunJournal(jdir, RUN).open_writer(create=True, durability="always")
    writer.close()
    assert jdir.is_dir()
    FileRunJournal(jdir, RUN).open_writer(create=False, durability="always").close()


def test_a_backend_journal_missing_is_no_run(tmp_path: Path) -> None:
    backend = FileJournalBackend(tmp_path / "store")
    with pytest.raises(RunNotFoundError, match=f"no run 'r1' in {tmp_path / 'store'}$"):
        backend.journal("r1").open_writer(create=False)


def test_a_backend_journal_is_never_created_through_a_link(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    backend = FileJournalBackend(tmp_path / "store")
    (tmp_path / "store" / "runs").symlink_to(elsewhere)
    with pytest.raises(UnsafePathError, match="never followed"):
        backend.journal("r1").open_writer(create=True)
    assert list(elsewhere.iterdir()) == []


# -- head ----------------------------------------------------------------------------------------


def test_head_reads_a_segment_whose_only_newline_is_its_first_byte(jdir: Path) -> None:
    write_segment(jdir, 1, b"\n")
    with pytest.raises(CorruptJournalError):
        FileRunJournal(jdir, RUN).head()


# -- split ---------------------------------------------------------------------------------------


def test_split_refuses_a_journal_without_segments(jdir: Path) -> None:
    jdir.mkdir()
    with pytest.raises(CorruptJournalError, match="does not start at seq 1"):
        FileRunJournal(jdir, RUN).split(4096)


def test_split_refuses_a_journal_not_starting_at_seq_1(jdir: Path) -> None:
    data, _ = chained([row(2), row(3)], genesis_chain(RUN))
    write_segment(jdir, 2, data)
    with pytest.raises(CorruptJournalError, match="does not start at seq 1"):
        FileRunJournal(jdir, RUN).split(4096)


def test_split_refuses_a_segment_not_following_the_previous(jdir: Path) -> None:
    data, chain = chained([row(1), row(2)])
    write_segment(jdir, 1, data)
    write_segment(jdir, 4, chained([row(4)], chain)[0])
    with pytest.raises(CorruptJournalError, match=f"{segment_name(4)} does not follow"):
        FileRunJournal(jdir, RUN).split(4096)


@pytest.mark.parametrize("bad", [2, 3], ids=["below", "repeated"])
def test_split_refuses_an_entry_not_after_its_segments_first_seq(jdir: Path, bad: int) -> None:
    """A cut is past a segment's first entry: the entry there has a higher seq."""
    data, chain = chained([row(1), row(2)])
    write_segment(jdir, 1, data)
    second, _ = chained([padded(3, 4096), row(bad), row(bad + 1)], chain)
    write_segment(jdir, 3, second)
    with pytest.raises(CorruptJournalError, match=f"seq {bad} at offset 4096"):
        FileRunJournal(jdir, RUN).split(4096)


@pytest.mark.parametrize("bad", [b"garbage\n", b"\n"], ids=["garbage", "empty line"])
def test_split_refuses_an_undecodable_entry_at_a_cut(jdir: Path, bad: bytes) -> None:
    data, chain = chained([padded(1, 4096)])  # the cut is exactly at its end
    rest, _ = chained([row(2), row(3)], chain)
    write_segment(jdir, 1, data + bad + rest)
    with pytest.raises(CorruptJournalError, match="undecodable entry at 4096"):
        FileRunJournal(jdir, RUN).split(4096)


def test_split_cuts_after_a_line_longer_than_the_read_window(jdir: Path) -> None:
    """The cut falls just after a line's end, in a line longer than 64 KiB: the cut is
    the boundary after that long line."""
    first, chain = chained([padded(1, 4086)])  # ends 10 bytes before the cut at 4096
    long, chain2 = chained([padded(2, 70_000)], chain)
    third, chain3 = chained([row(3)], chain2)
    fourth, _ = chained([row(4)], chain3)
    write_segment(jdir, 1, first + long + third + fourth)
    starts = FileRunJournal(jdir, RUN).split(4096)
    assert starts == [
        JournalPosition(1, 1, 0, genesis_chain(RUN)),
        JournalPosition(3, 1, len(first) + len(long), chain2),
        # the next cut is at least a line on: the boundary after row 3
        JournalPosition(4, 1, len(first) + len(long) + len(third), chain3),
    ]


# -- incomplete_tail / where -------------------------------------------------------------------


def test_incomplete_tail_only_for_a_segment_longer_than_the_position(jdir: Path) -> None:
    data, chain = chained([row(1), row(2)])
    write_segment(jdir, 1, data)
    journal = FileRunJournal(jdir, RUN)
    assert journal.incomplete_tail(JournalPosition(3, 1, len(data), chain)) == ""
    said = journal.incomplete_tail(JournalPosition(2, 1, len(data) - 5, chain))
    assert said == (
        f"{jdir / segment_name(1)}: ends with an incomplete entry at offset {len(data) - 5} "
        "(truncated or edited)"
    )
    assert journal.incomplete_tail(JournalPosition(3, 3, 0, chain)) == ""  # no such segment


def test_where_names_the_positions_segment_or_the_last(jdir: Path) -> None:
    journal = FileRunJournal(jdir, RUN)
    assert journal.where() == str(jdir)
    data, chain = chained([row(1)])
    write_segment(jdir, 1, data)
    write_segment(jdir, 2, chained([row(2)], chain)[0])
    assert journal.where() == str(jdir / segment_name(2))
    assert journal.where(JournalPosition(2, 1, len(data), chain)) == str(jdir / segment_name(1))


# -- segments.last_entry -------------------------------------------------------------------------


def test_last_entry_refuses_an_end_beyond_the_segment(jdir: Path) -> None:
    data, chain = chained([row(1), row(2)])
    path = write_segment(jdir, 1, data)
    assert last_entry(path, RUN, len(data)) == (2, chain)
    with pytest.raises(CorruptJournalError, match="ends with an incomplete entry"):
        last_entry(path, RUN, len(data) + 10)
