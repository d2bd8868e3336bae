"""The journal backend seam: what every journal backend provides.

In the style of the ``eventsourcing`` library's recorders, three abstract types:

* :class:`JournalBackend` -- where a store's journals live (one per store): which
  runs have one, and the :class:`RunJournal` of a run.
* :class:`RunJournal` -- one run's journal in that backend: its head, reading
  from a seq or a position (:class:`JournalCursor`), the writer lease, opening
  the writer (:class:`JournalWriter`), and the split points a parallel replay
  uses. Everything outside the ``journal`` package reaches a journal through
  these; none of them names a file.
* :class:`JournalWriter` -- the one writer of a run (it holds the writer lease):
  appends events, single or a batch, makes them durable per the durability policy,
  and reports what opening it repaired (:class:`Recovery`).

Every backend stores the same events with the same chain
(``sha256(previous chain || event bytes)`` from :func:`genesis_chain`, the event
bytes as :func:`~auditjournal.model.events.encode_event` writes them), so its
readers return the same events and chain values, and an export projected from any
backend is byte-identical. The file backend is :mod:`.files` (writer),
:mod:`.reader` (cursor) and :mod:`.filebackend`; the contract every backend passes
is ``tests/journal_contract.py``.

Thread-safety: a :class:`JournalWriter` may be called from several threads (see its
methods); a :class:`JournalCursor` is for one thread; :class:`RunJournal` and
:class:`JournalBackend` methods may be called from any thread.
"""

from __future__ import annotations

import hashlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from ..fs.storage import Durability
from ..model.events import BaseEvent, Event

__all__ = [
    "JournalBackend",
    "JournalCursor",
    "JournalHead",
    "JournalPosition",
    "JournalWriter",
    "Recovery",
    "RunJournal",
    "genesis_chain",
]


def genesis_chain(run_id: str) -> bytes:
    """The chain value before the first entry; it ties a journal to its run."""
    return hashlib.sha256(b"auditjournal/v1 genesis " + run_id.encode()).digest()


@dataclass(frozen=True)
class Recovery:
    """What opening a journal for appending repaired after a crash."""

    segment: str
    bytes_dropped: int
    last_seq: int


@dataclass(frozen=True)
class JournalPosition:
    """Where a reader is: the next seq to read, the segment and offset it starts at,
    and the chain value of the entry before it. Projectors checkpoint this.

    ``segment_first_seq`` and ``offset`` are the backend's own coordinates (the file
    backend: a segment and a byte offset in it); a backend without segments keeps
    ``segment_first_seq == next_seq`` and ``offset == 0``.
    """

    next_seq: int
    segment_first_seq: int
    offset: int
    chain: bytes


@dataclass(frozen=True)
class JournalHead:
    """The last entry of a journal: its seq (0 when empty) and its chain value (the
    genesis chain when empty)."""

    seq: int
    chain: bytes


class JournalCursor(ABC):
    """Reads one run's journal in seq order, verifying the chain, and follows it as it
    grows. One thread at a time."""

    run_id: str

    @property
    @abstractmethod
    def position(self) -> JournalPosition:
        """Where the next :meth:`poll` starts (a projector checkpoints this)."""

    @abstractmethod
    def poll(self, limit: int | None = None, chains: list[bytes] | None = None) -> list[Event]:
        """Entries appended since the last poll (at most ``limit``), in seq order; an
        entry still being written is left for a later poll. With ``chains`` given, each
        returned entry's chain value is appended to it. A damaged, reordered or foreign
        entry raises :class:`~auditjournal.errors.CorruptJournalError`."""

    @abstractmethod
    def close(self) -> None:
        """Let go of what the cursor holds open (it may not be polled again)."""

    def __iter__(self) -> Iterator[Event]:
        """Everything complete now, then stop (use :meth:`follow` to wait for more)."""
        while True:
            batch = self.poll(limit=4096)
            if not batch:
                return
            yield from batch

    def follow(
        self,
        *,
        until: Callable[[Event], bool] | None = None,
        poll_interval: float = 0.005,
        timeout: float | None = None,
    ) -> Iterator[Event]:
        """Yield entries as they are appended; stop after one for which ``until`` is true."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = self.poll(limit=4096)
            for event in batch:
                yield event
                if until is not None and until(event):
                    return
            if not batch:
                if deadline is not None and time.monotonic() > deadline:
                    return
                time.sleep(poll_interval)


class JournalWriter(ABC):
    """The writer of one run's journal; it holds the run's writer lease until
    :meth:`close` (or :meth:`abandon`).

    Appends are made by one caller at a time, which assigns each event's ``seq``
    (:attr:`next_seq`) and validates it against the run's state first (the recorder,
    under its own lock); :meth:`flush`, :meth:`commit` and :meth:`write_behind` may run
    concurrently with appends, from any thread.
    """

    run_id: str
    durability: Durability
    recovery: Recovery | None
    """What opening the journal repaired (a torn tail dropped), or None."""
    durable_seq: int
    """The last seq known to be durable per the policy."""

    next_seq: int
    """The seq the next appended event must carry."""

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    @property
    @abstractmethod
    def head(self) -> JournalHead:
        """The last appended entry (durable or not) and its chain value."""

    @property
    def head_chain(self) -> str:
        return self.head.chain.hex()

    @abstractmethod
    def append(self, event: BaseEvent) -> None:
        """Append ``event`` (its ``seq`` must be :attr:`next_seq`, else ValueError).

        Under ``always`` the caller then calls :meth:`commit` with the seq. After a
        failed write an append first retries what is buffered and is refused (a
        :class:`~auditjournal.errors.StorageError`, nothing appended) while that fails;
        a closed writer raises :class:`~auditjournal.errors.JournalClosedError`.
        """

    def append_batch(self, events: Sequence[BaseEvent]) -> JournalHead:
        """Append ``events`` in order (seqs :attr:`next_seq`, +1, ...); return the head.
        A refused event leaves the ones before it appended."""
        for event in events:
            self.append(event)
        return self.head

    @property
    @abstractmethod
    def needs_flush(self) -> bool:
        """True when the caller should flush (always mode, or the buffer grew too big)."""

    @property
    @abstractmethod
    def write_failed(self) -> bool:
        """True while the last write failed (appends are refused until one succeeds)."""

    @abstractmethod
    def commit(self, seq: int) -> None:
        """Make entries up to ``seq`` durable per the policy; a failure raises and keeps
        them buffered for the next flush that succeeds."""

    @abstractmethod
    def flush(self, *, fsync: bool) -> None:
        """Write buffered entries (after the payloads they refer to), optionally fsync."""

    @abstractmethod
    def write_behind(self, *, wait: bool = True) -> None:
        """Hand buffered entries on now without waiting for durability; a failure is kept
        for the next :meth:`append` to report. ``wait=False``: not if another thread is
        writing (a flush in progress, maybe waiting for its fsync) -- do nothing then."""

    @abstractmethod
    def close(self) -> None:
        """Write and make durable what is buffered, release the lease. A write that fails
        raises and keeps the writer open with everything buffered (close again)."""

    @abstractmethod
    def abandon(self) -> None:
        """Release the lease without writing what is buffered (a failed start)."""


class RunJournal(ABC):
    """One run's journal in a backend (it need not exist yet)."""

    run_id: str

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the journal lives, for messages (a directory, a URL and run id)."""

    @abstractmethod
    def exists(self) -> bool:
        """True if the run has a place in the backend (readers of a journal that does not
        exist raise :class:`~auditjournal.errors.RunNotFoundError`)."""

    @abstractmethod
    def created(self) -> bool:
        """True once a writer created the journal (it may hold no entry yet): a new run
        must not reuse it."""

    @abstractmethod
    def open_writer(
        self,
        *,
        create: bool,
        durability: Durability = "batch",
        flush_interval: float = 0.010,
        before_flush: Callable[[bool], None] | None = None,
        lock: threading.Lock | None = None,
    ) -> JournalWriter:
        """Take the writer lease and open the journal for appending, repairing what a
        crash left (reported in the writer's ``recovery``).

        ``create``: make the journal if it does not exist (else
        :class:`~auditjournal.errors.RunNotFoundError`). ``before_flush(fsync)`` is
        called before entries are written (the payloads they refer to go first).
        ``lock``: the caller's own lock, which it holds around every append (it validates
        and assigns seqs under it, as the recorder does); the writer then takes it only to
        take what is buffered, and appends take no second lock. Without it, each append
        locks by itself. Another writer holding the lease:
        :class:`~auditjournal.errors.JournalLockedError`.
        """

    @abstractmethod
    def lease(self) -> AbstractContextManager[None]:
        """Hold the writer lease without writing (JournalLockedError if it is held): no
        writer can start while it is held."""

    @abstractmethod
    def writer_active(self) -> bool:
        """True while a writer holds the lease (a process is recording the run now, this
        one or another). Asking takes nothing away from a writer and needs no write access
        (it works on a read-only store)."""

    @abstractmethod
    def cursor(self, position: JournalPosition | None = None) -> JournalCursor:
        """A cursor from the start (or from ``position``, a checkpoint's)."""

    @abstractmethod
    def cursor_at_seq(self, seq: int) -> JournalCursor:
        """A cursor whose next entry is ``seq`` (the chain verified up to it, at least from
        the start of the backend's unit of storage holding it); at the end if ``seq`` is
        beyond it."""

    def read(self, from_seq: int = 1) -> Iterator[Event]:
        """Every complete entry from ``from_seq``, in seq order, chain-verified."""
        cursor = self.cursor() if from_seq <= 1 else self.cursor_at_seq(from_seq)
        try:
            yield from cursor
        finally:
            cursor.close()

    @abstractmethod
    def head(self) -> JournalHead:
        """The last complete entry stored now (seq 0 and the genesis chain when empty).
        Its chain is as stored; verifying the entries is the cursor's job."""

    @abstractmethod
    def last_event(self) -> Event | None:
        """The last complete entry stored now, decoded but not chain-verified (reading it
        with a cursor verifies it), or None when there is none. Cheap: it does not read the
        journal from its start. A damaged last entry raises
        :class:`~auditjournal.errors.CorruptJournalError`."""

    @abstractmethod
    def position_exists(self, position: JournalPosition) -> bool:
        """True if a cursor of this journal can stand at ``position``: the entry before it
        has seq ``next_seq - 1`` and chain ``position.chain`` (a checkpoint still fits)."""

    @abstractmethod
    def size_bytes(self) -> int:
        """How much the journal holds, in bytes of its line format (for progress and for
        choosing a parallel replay); an estimate is allowed for backends without lines."""

    @abstractmethod
    def bytes_before(self, position: JournalPosition) -> int:
        """Bytes of the journal before ``position`` (progress: compare with
        :meth:`size_bytes` taken when reading started)."""

    @abstractmethod
    def split(self, range_bytes: int) -> list[JournalPosition]:
        """Positions that cut the journal into ranges of about ``range_bytes`` each, in
        order, the first at seq 1 (a parallel replay reads each range in a worker).
        Raises :class:`~auditjournal.errors.CorruptJournalError` when the stored journal
        does not fit together."""

    @abstractmethod
    def incomplete_tail(self, position: JournalPosition) -> str:
        """For a cursor that read everything complete and stopped at ``position``: why
        the journal does not end there (an entry cut or edited at its end), or ''."""

    @abstractmethod
    def where(self, position: JournalPosition | None = None) -> str:
        """Where in the journal ``position`` is (or its end), for messages."""


class JournalBackend(ABC):
    """Where a store's run journals live."""

    @abstractmethod
    def journal(self, run_id: str) -> RunJournal:
        """The journal of ``run_id`` (validated; it need not exist yet)."""

    @abstractmethod
    def run_ids(self) -> list[str]:
        """Every run with a journal, sorted."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing
        """Let go of connections the backend holds (journals must be closed first)."""
