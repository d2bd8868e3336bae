"""The journal backend contract: what every backend of :mod:`auditjournal.journal.base`
must do, whatever stores the entries.

A backend's test module subclasses :class:`JournalContract` (named ``Test...``) and
provides :meth:`~JournalContract.create_backend` and
:meth:`~JournalContract.tamper`; pytest then runs every test here against it (as
``eventsourcing``'s recorder test cases are subclassed per recorder). The file
backend's is ``tests/test_journal_contract.py``.

Every test goes through the interface only: the chain values a backend stores are
checked against the line format's formula (:func:`auditjournal.journal.lines.seal`),
so every backend's journal verifies, replays and exports to the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditjournal.errors import (
    CorruptJournalError,
    JournalClosedError,
    JournalLockedError,
    RunNotFoundError,
)
from auditjournal.journal.base import (
    JournalBackend,
    JournalHead,
    JournalPosition,
    JournalWriter,
    RunJournal,
    genesis_chain,
)
from auditjournal.journal.lines import seal
from auditjournal.model.events import (
    BaseEvent,
    NodeRegistered,
    RowCreated,
    RunCompleted,
    RunStarted,
    encode_event,
)

T0 = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
REF = hashlib.sha256(b"payload").hexdigest()


def event(run_id: str, seq: int) -> BaseEvent:
    """Events of a few types: run_started first, then a node, then rows."""
    ts = T0 + dt.timedelta(milliseconds=seq)
    if seq == 1:
        return RunStarted(run_id=run_id, seq=1, ts=ts, config={"a": [1, 2]}, config_hash=REF)
    if seq == 2:
        return NodeRegistered(
            run_id=run_id,
            seq=2,
            ts=ts,
            node_id="src",
            plugin_name="csv",
            plugin_version="1.0",
            node_type="source",
            config={"path": "in.csv"},
        )
    return RowCreated(
        run_id=run_id,
        seq=seq,
        ts=ts,
        row_id=f"row-{seq}",
        source_node_id="src",
        row_index=seq - 3,
        source_data_hash=REF,
        source_data_ref=REF,
    )


def events(run_id: str, first: int, last: int) -> list[BaseEvent]:
    return [event(run_id, seq) for seq in range(first, last + 1)]


def chains(run_id: str, recorded: list[BaseEvent]) -> list[bytes]:
    """The chain value after each event, by the line format's formula."""
    chain = genesis_chain(run_id)
    out = []
    for item in recorded:
        chain = seal(encode_event(item), chain)[1]
        out.append(chain)
    return out


class JournalContract:
    """What every journal backend must do. Subclass it per backend."""

    # -- what a backend's test class provides -----------------------------------------------

    def create_backend(self, tmp_path: Path) -> JournalBackend:
        """A fresh, empty backend (its own directory, database or schema)."""
        raise NotImplementedError

    def tamper(self, journal: RunJournal, seq: int) -> None:
        """Change the stored entry ``seq`` of a closed journal behind the backend's back
        (as an attacker with access to the storage would), keeping it well-formed."""
        raise NotImplementedError

    # -- fixtures and helpers ---------------------------------------------------------------

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[JournalBackend]:
        backend = self.create_backend(tmp_path)
        try:
            yield backend
        finally:
            backend.close()

    def write(
        self, journal: RunJournal, recorded: list[BaseEvent], *, create: bool = True
    ) -> JournalWriter:
        """Open a writer, append ``recorded`` and flush (the writer stays open)."""
        writer = journal.open_writer(create=create, durability="batch", flush_interval=3600)
        try:
            writer.append_batch(recorded)
            writer.flush(fsync=True)
        except BaseException:
            writer.close()
            raise
        return writer

    def record(self, journal: RunJournal, first: int, last: int) -> list[BaseEvent]:
        recorded = events(journal.run_id, first, last)
        self.write(journal, recorded, create=first == 1).close()
        return recorded

    # -- a new journal ----------------------------------------------------------------------

    def test_a_new_journal_is_empty_and_not_created(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-new")
        assert not journal.created()
        assert journal.head() == JournalHead(0, genesis_chain("run-new"))
        assert "run-new" not in backend.run_ids()

    def test_opening_a_missing_journal_without_create_is_run_not_found(
        self, backend: JournalBackend
    ) -> None:
        with pytest.raises(RunNotFoundError):
            backend.journal("run-missing").open_writer(create=False)

    def test_creating_a_journal_lists_its_run(self, backend: JournalBackend) -> None:
        writer = backend.journal("run-b").open_writer(create=True)
        try:
            assert writer.next_seq == 1 and writer.last_seq == 0
            assert writer.head == JournalHead(0, genesis_chain("run-b"))
            assert writer.recovery is None
        finally:
            writer.close()
        journal = backend.journal("run-b")
        assert journal.created() and journal.exists()
        self.record(backend.journal("run-a"), 1, 1)
        assert backend.run_ids() == ["run-a", "run-b"]
        assert list(journal.read()) == []

    # -- appending and reading ----------------------------------------------------------------

    def test_appended_events_read_back_in_order(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        recorded = self.record(journal, 1, 12)
        assert list(journal.read()) == recorded
        assert list(backend.journal("run-1").read()) == recorded

    def test_the_head_is_the_last_seq_and_its_chain(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        recorded = events("run-1", 1, 7)
        writer = self.write(journal, recorded[:4])
        try:
            expected = chains("run-1", recorded)
            assert writer.head == JournalHead(4, expected[3])
            assert writer.head_chain == expected[3].hex()
            assert writer.append_batch(recorded[4:]) == JournalHead(7, expected[6])
            assert writer.next_seq == 8 and writer.last_seq == 7
            writer.flush(fsync=True)
            assert journal.head() == JournalHead(7, expected[6])
        finally:
            writer.close()

    def test_chain_values_follow_the_line_format(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        recorded = self.record(journal, 1, 9)
        cursor = journal.cursor()
        try:
            got: list[bytes] = []
            assert cursor.poll(chains=got) == recorded
            assert got == chains("run-1", recorded)
        finally:
            cursor.close()

    def test_the_chain_ties_a_journal_to_its_run(self, backend: JournalBackend) -> None:
        self.record(backend.journal("run-1"), 1, 3)
        self.record(backend.journal("run-2"), 1, 3)
        one = backend.journal("run-1").head().chain
        two = backend.journal("run-2").head().chain
        assert one != two

    def test_read_from_a_seq(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        recorded = self.record(journal, 1, 30)
        for start in (1, 2, 17, 30):
            assert list(journal.read(start)) == recorded[start - 1 :]
        assert list(journal.read(31)) == []
        cursor = journal.cursor_at_seq(10)
        try:
            assert cursor.position.next_seq == 10
            assert cursor.position.chain == chains("run-1", recorded)[8]
            assert cursor.poll(limit=5) == recorded[9:14]
        finally:
            cursor.close()

    def test_a_seq_out_of_turn_is_refused(self, backend: JournalBackend) -> None:
        writer = backend.journal("run-1").open_writer(create=True)
        try:
            writer.append(event("run-1", 1))
            with pytest.raises(ValueError, match="not the next seq 2"):
                writer.append(event("run-1", 3))
            with pytest.raises(ValueError, match="not the next seq 2"):
                writer.append(event("run-1", 1))
            assert writer.next_seq == 2
        finally:
            writer.close()
        assert [e.seq for e in backend.journal("run-1").read()] == [1]

    def test_a_closed_writer_refuses_appends(self, backend: JournalBackend) -> None:
        writer = backend.journal("run-1").open_writer(create=True)
        writer.close()
        with pytest.raises(JournalClosedError):
            writer.append(event("run-1", 1))
        writer.close()  # closing twice is harmless

    def test_reopening_continues_the_journal(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        first = self.record(journal, 1, 5)
        writer = journal.open_writer(create=False)
        try:
            assert writer.recovery is None
            assert writer.next_seq == 6
            assert writer.head == JournalHead(5, chains("run-1", first)[-1])
            writer.append_batch(events("run-1", 6, 8))
        finally:
            writer.close()
        assert list(journal.read()) == events("run-1", 1, 8)

    def test_appends_under_the_callers_lock(self, backend: JournalBackend) -> None:
        """A writer given the caller's lock takes it only to take what is buffered: threads
        appending under that lock while flushes run keep the chain and every entry."""
        journal = backend.journal("run-1")
        lock = threading.Lock()
        writer = journal.open_writer(
            create=True, durability="batch", flush_interval=0.001, lock=lock
        )
        done: list[int] = []

        def appender() -> None:
            for _ in range(40):
                with lock:
                    seq = writer.next_seq
                    writer.append(event("run-1", seq))
                done.append(seq)
                writer.write_behind()

        threads = [threading.Thread(target=appender) for _ in range(3)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            writer.close()
        assert sorted(done) == list(range(1, 121))
        assert list(journal.read()) == events("run-1", 1, 120)

    # -- durability ---------------------------------------------------------------------------

    @pytest.mark.parametrize("durability", ["always", "batch", "none"])
    def test_close_writes_everything(self, backend: JournalBackend, durability: str) -> None:
        journal = backend.journal("run-1")
        writer = journal.open_writer(create=True, durability=durability, flush_interval=3600)  # type: ignore[arg-type]
        recorded = events("run-1", 1, 6)
        for item in recorded:
            writer.append(item)
            if durability == "always":
                writer.commit(item.seq)
                assert writer.durable_seq == item.seq
        writer.close()
        assert list(journal.read()) == recorded

    def test_committed_entries_are_visible_to_a_new_cursor(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        writer = journal.open_writer(create=True, durability="always")
        try:
            assert writer.needs_flush
            writer.append(event("run-1", 1))
            writer.commit(1)
            assert writer.durable_seq == 1 and not writer.write_failed
            assert [e.seq for e in journal.read()] == [1]
        finally:
            writer.close()

    def test_a_flush_without_fsync_makes_entries_readable(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        writer = journal.open_writer(create=True, durability="batch", flush_interval=3600)
        try:
            writer.append_batch(events("run-1", 1, 3))
            writer.write_behind()
            assert [e.seq for e in journal.read()] == [1, 2, 3]
            writer.append(event("run-1", 4))
            writer.flush(fsync=False)
            assert [e.seq for e in journal.read()] == [1, 2, 3, 4]
        finally:
            writer.close()

    def test_payloads_are_flushed_before_entries(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        seen: list[tuple[bool, int]] = []

        def before_flush(fsync: bool) -> None:
            seen.append((fsync, len(list(journal.read()))))

        writer = journal.open_writer(
            create=True, durability="batch", flush_interval=3600, before_flush=before_flush
        )
        try:
            writer.append_batch(events("run-1", 1, 2))
            writer.flush(fsync=True)
        finally:
            writer.close()
        # the payloads reach the OS before the entries do, and are made durable when the
        # entries are (a file journal fsyncs both after writing: first the payloads)
        assert seen and seen[0][1] == 0  # called before the entries were written
        assert any(fsync for fsync, _ in seen)

    # -- the writer lease ---------------------------------------------------------------------

    def test_the_lease_admits_one_writer(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        writer = journal.open_writer(create=True)
        try:
            with pytest.raises(JournalLockedError):
                journal.open_writer(create=False)
            with pytest.raises(JournalLockedError), journal.lease():
                pass
        finally:
            writer.close()
        with journal.lease(), pytest.raises(JournalLockedError):
            journal.open_writer(create=False)
        journal.open_writer(create=False).close()

    def test_writer_active_while_the_lease_is_held(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        assert not journal.writer_active()  # nothing there yet
        writer = journal.open_writer(create=True)
        try:
            assert journal.writer_active()
            assert backend.journal("run-1").writer_active()  # whoever asks
            assert not backend.journal("run-2").writer_active()
        finally:
            writer.close()
        assert not journal.writer_active()
        with journal.lease():
            assert journal.writer_active()
        writer = journal.open_writer(create=False)
        writer.abandon()
        assert not journal.writer_active()

    def test_abandon_releases_the_lease(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        self.record(journal, 1, 2)
        writer = journal.open_writer(create=False)
        writer.abandon()
        with journal.lease():
            pass
        assert [e.seq for e in journal.read()] == [1, 2]

    # -- the last entry -----------------------------------------------------------------------

    def test_last_event_is_the_last_stored_entry(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        assert journal.last_event() is None  # no journal
        self.write(journal, []).close()
        assert journal.last_event() is None  # created, empty
        recorded = self.record(journal, 1, 1)
        assert journal.last_event() == recorded[0]
        writer = self.write(journal, events("run-1", 2, 30), create=False)
        try:
            assert journal.last_event() == event("run-1", 30)  # the writer still open
            completed = RunCompleted(run_id="run-1", seq=31, ts=T0, status="completed")
            writer.append(completed)
            writer.flush(fsync=False)
            assert journal.last_event() == completed
        finally:
            writer.close()
        assert journal.last_event() == completed
        assert journal.head().seq == 31

    def test_a_tampered_last_entry_is_still_returned_unverified(
        self, backend: JournalBackend
    ) -> None:
        """last_event decodes; verifying the chain is a cursor's job (it refuses it)."""
        journal = backend.journal("run-1")
        self.record(journal, 1, 5)
        self.tamper(journal, 5)
        last = journal.last_event()
        assert last is not None and last.seq == 5 and last != event("run-1", 5)
        with pytest.raises(CorruptJournalError):
            list(journal.read())

    # -- cursors and positions ----------------------------------------------------------------

    def test_a_cursor_follows_a_writer(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        writer = self.write(journal, events("run-1", 1, 3))
        cursor = journal.cursor()
        try:
            assert [e.seq for e in cursor.poll()] == [1, 2, 3]
            assert cursor.poll() == []
            writer.append_batch(events("run-1", 4, 6))
            writer.flush(fsync=False)
            assert [e.seq for e in cursor.poll(limit=2)] == [4, 5]
            assert [e.seq for e in cursor.poll()] == [6]
        finally:
            cursor.close()
            writer.close()

    def test_follow_waits_for_entries_still_to_come(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        writer = self.write(journal, events("run-1", 1, 2))

        def later() -> None:
            writer.append_batch(events("run-1", 3, 5))
            writer.flush(fsync=False)

        timer = threading.Timer(0.05, later)
        cursor = journal.cursor()
        try:
            timer.start()
            seen = [e.seq for e in cursor.follow(until=lambda e: e.seq == 5, timeout=30)]
            assert seen == [1, 2, 3, 4, 5]
        finally:
            timer.join()
            cursor.close()
            writer.close()

    def test_a_cursor_resumes_at_its_position(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        recorded = self.record(journal, 1, 20)
        cursor = journal.cursor()
        try:
            cursor.poll(limit=7)
            position = cursor.position
        finally:
            cursor.close()
        assert position.next_seq == 8
        assert position.chain == chains("run-1", recorded)[6]
        assert journal.position_exists(position)
        resumed = journal.cursor(position)
        try:
            assert resumed.poll() == recorded[7:]
        finally:
            resumed.close()

    def test_positions_that_do_not_fit_do_not_exist(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        self.record(journal, 1, 10)
        start = JournalPosition(1, 1, 0, genesis_chain("run-1"))
        assert journal.position_exists(start)
        cursor = journal.cursor()
        try:
            cursor.poll(limit=4)
            position = cursor.position
        finally:
            cursor.close()
        assert journal.position_exists(position)
        forged = JournalPosition(
            position.next_seq, position.segment_first_seq, position.offset, b"\0" * 32
        )
        assert not journal.position_exists(forged)
        assert not journal.position_exists(JournalPosition(1, 1, 0, genesis_chain("run-2")))

    def test_split_ranges_cover_the_journal(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        recorded = self.record(journal, 1, 120)
        assert journal.size_bytes() > 0
        for range_bytes in (1, 2000, 1 << 30):
            starts = journal.split(range_bytes)
            assert starts[0] == JournalPosition(
                1, starts[0].segment_first_seq, 0, genesis_chain("run-1")
            )
            read: list[BaseEvent] = []
            seqs = [s.next_seq for s in starts] + [len(recorded) + 1]
            for start, end in zip(starts, seqs[1:], strict=True):
                assert start.next_seq < end
                cursor = journal.cursor(start)
                try:
                    read += cursor.poll(limit=end - start.next_seq)
                finally:
                    cursor.close()
            assert read == recorded

    def test_bytes_before_grows_to_the_size(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        self.record(journal, 1, 40)
        cursor = journal.cursor()
        done = [journal.bytes_before(cursor.position)]
        try:
            while cursor.poll(limit=9):
                done.append(journal.bytes_before(cursor.position))
            assert journal.incomplete_tail(cursor.position) == ""
        finally:
            cursor.close()
        assert done[0] == 0 and done == sorted(done) and done[-1] == journal.size_bytes()

    def test_where_names_the_journal(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        self.record(journal, 1, 3)
        assert journal.where() and journal.location
        assert journal.where(JournalPosition(1, 1, 0, genesis_chain("run-1")))

    # -- tampering ----------------------------------------------------------------------------

    @pytest.mark.parametrize("seq", [1, 5, 9])
    def test_a_tampered_entry_fails_reading(self, backend: JournalBackend, seq: int) -> None:
        journal = backend.journal("run-1")
        self.record(journal, 1, 9)
        self.tamper(journal, seq)
        with pytest.raises(CorruptJournalError):
            list(journal.read())

    def test_a_run_completed_journal_reads_to_its_end(self, backend: JournalBackend) -> None:
        journal = backend.journal("run-1")
        recorded = events("run-1", 1, 4)
        recorded.append(RunCompleted(run_id="run-1", seq=5, ts=T0, status="completed"))
        self.write(journal, recorded).close()
        assert list(journal.read()) == recorded
        assert journal.head().seq == 5
