"""One journal read for several projectors (the projector process's export and SQL tables).

Reading and decoding the journal is about a quarter of what the projector process
spends per event; done once per part it was paid twice. :class:`SharedReads` reads
the run's journal with ONE cursor and hands every decoded batch to each part's
:class:`SharedCursor` (a :class:`~auditjournal.journal.base.JournalCursor`), so each
projector keeps its own position, checkpoints and restart semantics unchanged:

* the parts may stand at different seqs (after a restart each resumes from its own
  checkpoint): the one cursor starts at the lowest position and a part that is ahead
  skips what it already holds; the chain value its own position names is checked
  against the shared stream when that entry passes (a checkpoint that does not fit the
  journal fails as with a cursor of its own: :class:`CorruptJournalError`);
* batches are kept until every part has taken them, at most ``MAX_HELD`` events: a
  part far ahead of the other waits for it (its poll returns nothing new) instead of
  the buffer growing without bound;
* a part whose cursor is opened again behind what was already let go (the SQL tables
  re-reading their checkpoint after a conflict) gets a cursor of its own.

A part's poll returns whole batches (a position is known only at a batch's end); the
batches are read no bigger than the smallest ``limit`` the parts ask for, so each gets
at most its ``limit`` (a part that asks for less than before may get one bigger batch).

One thread drives all the cursors (the projector process's main loop).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..errors import CorruptJournalError
from ..journal.base import JournalCursor, JournalPosition, RunJournal, genesis_chain
from ..journal.filebackend import FileJournalBackend, FileRunJournal
from ..model.events import Event

__all__ = ["MAX_HELD", "SharedCursor", "SharedFileJournal", "SharedReads", "shared_journal"]

MAX_HELD: Final = 8192  # events read but not yet taken by every part


@dataclass(frozen=True, slots=True)
class _Batch:
    events: list[Event]
    chains: list[bytes]
    end: JournalPosition  # the cursor's position after the batch

    @property
    def first_seq(self) -> int:
        return self.events[0].seq

    @property
    def last_seq(self) -> int:
        return self.events[-1].seq


class SharedReads:
    """One cursor over a run's journal, shared by the :class:`SharedCursor` s it opens."""

    def __init__(self, journal: RunJournal) -> None:
        self._journal = journal
        self.run_id = journal.run_id
        self._reader: JournalCursor | None = None  # opened at the first poll
        self._batches: deque[_Batch] = deque()
        self._first = 0  # the index of _batches[0] among every batch read
        self._base: JournalPosition | None = None  # the position before _batches[0]
        self._held = 0  # events in _batches
        self._cursors: list[SharedCursor] = []

    def cursor(self, position: JournalPosition | None = None) -> JournalCursor:
        """A cursor from ``position`` (the start of the journal if None)."""
        if position is None:
            position = JournalPosition(1, 1, 0, genesis_chain(self._journal.run_id))
        if self._base is not None:  # already reading: join where the buffer allows
            if position.next_seq < self._base.next_seq:
                return self._journal.cursor(position)  # let go already: its own cursor
            index = self._first
            for batch in self._batches:
                if batch.last_seq >= position.next_seq:
                    break
                index += 1
            cursor = SharedCursor(self, position, index)
            if position.next_seq == self._base.next_seq:
                cursor.check_base(self._base)
        else:
            cursor = SharedCursor(self, position, 0)
        self._cursors.append(cursor)
        return cursor

    def _start(self) -> None:
        start = min((c.at for c in self._cursors), key=lambda p: p.next_seq)
        self._reader = self._journal.cursor(start)
        self._base = start
        for cursor in self._cursors:
            cursor.check_base(start)

    def _read(self, limit: int) -> bool:
        """Read the next batch (at most ``limit`` events); False if nothing is new."""
        if self._reader is None:
            self._start()
        reader = self._reader
        assert reader is not None
        chains: list[bytes] = []
        events = reader.poll(limit=limit, chains=chains)
        if not events:
            return False
        self._batches.append(_Batch(events, chains, reader.position))
        self._held += len(events)
        return True

    def take(self, cursor: SharedCursor, limit: int, chains: list[bytes] | None) -> list[Event]:
        """``cursor``'s next events: the batches it has not taken, reading more if it has
        taken them all (whole batches, up to ``limit`` events unless one is bigger)."""
        out: list[Event] = []
        while True:
            i = cursor.index - self._first
            if i >= len(self._batches):
                if len(out) >= limit or self._held >= MAX_HELD:
                    break  # enough, or the other part must take what is held first
                # in steps no bigger than any part asks for: a part with a small live step
                # (the export's 256 events) gets batches of that size, as from its own cursor
                step = min(limit - len(out), *(c.step for c in self._cursors))
                if not self._read(step):
                    break
                continue
            batch = self._batches[i]
            if out and len(out) + len(batch.events) > limit:
                break
            cursor.index += 1
            start = cursor.at.next_seq - batch.first_seq
            if start > 0:
                cursor.check(batch, start)
                if start > len(batch.events) - 1:
                    continue  # it holds all of this batch already
                out.extend(batch.events[start:])
                if chains is not None:
                    chains.extend(batch.chains[start:])
            else:
                out.extend(batch.events)
                if chains is not None:
                    chains.extend(batch.chains)
            cursor.at = batch.end
        self._let_go()
        return out

    def _let_go(self) -> None:
        """Drop the batches every cursor has taken."""
        if not self._cursors:
            return
        taken = min(c.index for c in self._cursors)
        while self._batches and self._first < taken:
            batch = self._batches.popleft()
            self._held -= len(batch.events)
            self._base = batch.end
            self._first += 1

    def closed(self, cursor: SharedCursor) -> None:
        self._cursors.remove(cursor)
        self._let_go()
        if not self._cursors:  # nobody reads any more
            self._batches.clear()
            self._held = 0
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            self._base = None
            self._first = 0


class SharedCursor(JournalCursor):
    """One projector's cursor over :class:`SharedReads` (see the module's docstring)."""

    def __init__(self, reads: SharedReads, position: JournalPosition, index: int) -> None:
        self.run_id = reads.run_id
        self._reads: SharedReads | None = reads
        self.at = position
        """Where its next poll starts (SharedReads moves it as it hands batches over)."""
        self.index = index
        self.step = MAX_HELD  # the limit of its last poll
        self._unchecked = True  # its position's chain is not yet matched to the stream
        self._error: CorruptJournalError | None = None  # raised at its own next poll

    @property
    def position(self) -> JournalPosition:
        return self.at

    def check_base(self, start: JournalPosition) -> None:
        """The shared cursor starts at ``start``: a position at the same seq must match."""
        if self.at.next_seq == start.next_seq:
            try:
                self._match(start.chain)
            except CorruptJournalError as exc:
                self._error = exc  # its own poll raises it, not the other part's

    def check(self, batch: _Batch, start: int) -> None:
        """``batch`` holds the entry before this cursor's position (``start`` - 1)."""
        if self._unchecked and start <= len(batch.events):
            self._match(batch.chains[start - 1])

    def _match(self, chain: bytes) -> None:
        self._unchecked = False
        if chain != self.at.chain:
            raise CorruptJournalError(
                f"journal of run {self.run_id!r}: the entry before seq "
                f"{self.at.next_seq} does not have the chain value the position names"
            )

    def poll(self, limit: int | None = None, chains: list[bytes] | None = None) -> list[Event]:
        if self._reads is None:
            raise ValueError("poll() on a closed cursor")
        if self._error is not None:
            raise self._error
        self.step = limit or MAX_HELD
        return self._reads.take(self, self.step, chains)

    def close(self) -> None:
        reads, self._reads = self._reads, None
        if reads is not None:
            reads.closed(self)


class SharedFileJournal(FileRunJournal):
    """A run's file journal whose cursors share one read (:class:`SharedReads`)."""

    def __init__(self, journal: FileRunJournal) -> None:
        super().__init__(journal.directory, journal.run_id, segment_bytes=journal.segment_bytes)
        self.reads = SharedReads(journal)

    def cursor(self, position: JournalPosition | None = None) -> JournalCursor:  # type: ignore[override]
        return self.reads.cursor(position)


def shared_journal(root: Path, run_id: str, segment_bytes: int) -> SharedFileJournal:
    """The file journal of ``run_id`` in the store at ``root``, its cursors sharing one read."""
    return SharedFileJournal(FileJournalBackend(root, segment_bytes=segment_bytes).journal(run_id))
