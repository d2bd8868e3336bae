"""The PostgreSQL journal behind the journal seam (:mod:`.base`): backend, run journal,
cursor. The writer is :class:`~.postgres.PgJournal`; the tables are in :mod:`.pgschema`.

This is the PostgreSQL backend's public module, as :mod:`.filebackend` is the file
backend's: code outside ``journal/`` imports the backend from here only. Beyond the seam
it offers what several writers of one run need (the recorder's side: :class:`PgDatabase`,
:class:`WriterId`, the shared :class:`PgJournal` and its :class:`PgPayloads` buffer) and
the ``LISTEN`` side (:class:`Listener`) for readers that follow the journal.

A position has no segments here: ``segment_first_seq == next_seq`` and ``offset == 0``.
Every entry a cursor reads is verified against the chain before it (the line format of
:mod:`.lines`), so a row edited in the database is :class:`CorruptJournalError`.

Thread-safety: :class:`PgRunJournal` and :class:`PgBackend` may be used from any thread;
a :class:`PgCursor` by one thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

import sqlalchemy as sa

from ..errors import CorruptJournalError, RunNotFoundError
from ..fs.storage import Durability, validate_id
from ..model.events import Event
from .base import (
    JournalBackend,
    JournalCursor,
    JournalHead,
    JournalPosition,
    RunJournal,
    genesis_chain,
)
from .files import DEFAULT_FLUSH_INTERVAL
from .lines import decode_line, read_entry
from .pgpayloads import PgPayloads
from .pgschema import Listener, PgDatabase, RunLease, WriterId, events
from .postgres import PgJournal

__all__ = [
    "Listener",
    "PgBackend",
    "PgCursor",
    "PgDatabase",
    "PgJournal",
    "PgPayloads",
    "PgRunJournal",
    "WriterId",
]

_READ_BATCH: Final = 4096
_NO_PAYLOAD_LIMIT: Final = 1 << 62  # a contract writer stores no payloads of its own


def _stored_chain(line: bytes) -> bytes:
    return bytes.fromhex(line[-67:-3].decode("ascii"))


class PgCursor(JournalCursor):
    """Reads a run's entries in seq order from PostgreSQL, verifying the chain."""

    def __init__(self, db: PgDatabase, run_id: str, position: JournalPosition) -> None:
        self._db = db
        self.run_id = run_id
        self._next = position.next_seq
        self._chain = position.chain
        self._scratch = bytearray()

    @property
    def position(self) -> JournalPosition:
        return JournalPosition(self._next, self._next, 0, self._chain)

    def poll(self, limit: int | None = None, chains: list[bytes] | None = None) -> list[Event]:
        out: list[Event] = []
        while limit is None or len(out) < limit:
            want = _READ_BATCH if limit is None else min(_READ_BATCH, limit - len(out))
            rows = self._db.lines(self.run_id, self._next - 1, want)
            for seq, _writer, line in rows:
                try:
                    event, chain = read_entry(line, self._chain, self._scratch)
                    if event.seq != seq or seq != self._next or event.run_id != self.run_id:
                        raise ValueError(f"seq {event.seq} of run {event.run_id!r} out of place")
                except ValueError as exc:
                    raise CorruptJournalError(
                        f"{self._db.url} run {self.run_id!r}: bad entry at seq {seq}: {exc}"
                    ) from None
                out.append(event)
                if chains is not None:
                    chains.append(chain)
                self._chain = chain
                self._next += 1
            if len(rows) < want:
                break
        return out

    def close(self) -> None:
        pass


class PgRunJournal(RunJournal):
    """One run's journal in the PostgreSQL tables."""

    def __init__(self, db: PgDatabase, run_id: str) -> None:
        self.db = db
        self.run_id = validate_id(run_id, "run id")

    @property
    def location(self) -> str:
        return f"{self.db.url} (run {self.run_id})"

    def exists(self) -> bool:
        return self.created()

    def created(self) -> bool:
        try:
            self.db.head(self.run_id)
        except RunNotFoundError:
            return False
        return True

    def open_writer(
        self,
        *,
        create: bool,
        durability: Durability = "batch",
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        before_flush: Callable[[bool], None] | None = None,
        lock: threading.Lock | None = None,
    ) -> PgJournal:
        """The run's one writer (exclusive lease); the recorder's writers share the lease
        instead (``AuditStore.start_run`` / ``join_run``)."""
        writer = WriterId.new()
        if create and not self.created():
            self.db.create_run(self.run_id, writer, exist_ok=True)
        return PgJournal(
            self.db,
            self.run_id,
            writer,
            PgPayloads(_NO_PAYLOAD_LIMIT),
            durability=durability,
            flush_interval=flush_interval,
            shared=False,
            before_flush=before_flush,
            lock=lock,
        )

    @contextmanager
    def lease(self) -> Iterator[None]:
        held = RunLease(self.db, self.run_id, shared=False)
        try:
            yield
        finally:
            held.release()

    def cursor(self, position: JournalPosition | None = None) -> PgCursor:
        if position is None:
            position = JournalPosition(1, 1, 0, genesis_chain(self.run_id))
        return PgCursor(self.db, self.run_id, position)

    def cursor_at_seq(self, seq: int) -> PgCursor:
        head = self.head()
        seq = max(1, min(seq, head.seq + 1))
        if seq == 1:
            return self.cursor()
        rows = self.db.lines(self.run_id, seq - 2, 1)
        if not rows or rows[0][0] != seq - 1:
            raise CorruptJournalError(f"{self.location}: entry {seq - 1} is missing")
        chain = _stored_chain(rows[0][2])
        return self.cursor(JournalPosition(seq, seq, 0, chain))

    def head(self) -> JournalHead:
        try:
            found = self.db.head(self.run_id)
        except RunNotFoundError:
            return JournalHead(0, genesis_chain(self.run_id))
        return JournalHead(found.seq, found.chain)

    def writer_active(self) -> bool:
        return self.db.lease_held(self.run_id)

    def last_event(self) -> Event | None:
        head = self.head()
        if head.seq == 0:
            return None
        rows = self.db.lines(self.run_id, head.seq - 1, 1)
        if not rows:
            raise CorruptJournalError(f"{self.location}: entry {head.seq} is missing")
        try:
            return decode_line(rows[0][2])
        except ValueError as exc:
            raise CorruptJournalError(
                f"{self.location}: bad entry at seq {head.seq}: {exc}"
            ) from None

    def position_exists(self, position: JournalPosition) -> bool:
        if position.segment_first_seq != position.next_seq or position.offset != 0:
            return False
        if position.next_seq == 1:
            return position.chain == genesis_chain(self.run_id)
        rows = self.db.lines(self.run_id, position.next_seq - 2, 1)
        return (
            bool(rows)
            and rows[0][0] == position.next_seq - 1
            and _stored_chain(rows[0][2]) == position.chain
        )

    def _sizes(self) -> list[tuple[int, int, bytes]]:
        """(seq, line length, stored chain) of every entry."""
        query = (
            sa.select(
                events.c.seq,
                sa.func.octet_length(events.c.line),
                sa.func.substring(events.c.line, sa.func.octet_length(events.c.line) - 66, 64),
            )
            .where(events.c.run_id == self.run_id)
            .order_by(events.c.seq)
        )
        with self.db.engine.connect() as conn:
            return [
                (seq, size, bytes.fromhex(bytes(hexed).decode("ascii")))
                for seq, size, hexed in conn.execute(query)
            ]

    def size_bytes(self) -> int:
        return self._sum(None)

    def bytes_before(self, position: JournalPosition) -> int:
        return self._sum(position.next_seq)

    def _sum(self, before: int | None) -> int:
        query = sa.select(sa.func.coalesce(sa.func.sum(sa.func.octet_length(events.c.line)), 0))
        query = query.where(events.c.run_id == self.run_id)
        if before is not None:
            query = query.where(events.c.seq < before)
        with self.db.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def split(self, range_bytes: int) -> list[JournalPosition]:
        starts = [JournalPosition(1, 1, 0, genesis_chain(self.run_id))]
        taken = 0
        expected = 1
        sizes = self._sizes()
        for index, (seq, size, chain) in enumerate(sizes):
            if seq != expected:
                raise CorruptJournalError(f"{self.location}: entry {expected} is missing")
            expected += 1
            taken += size
            if taken >= range_bytes and index + 1 < len(sizes):
                starts.append(JournalPosition(seq + 1, seq + 1, 0, chain))
                taken = 0
        return starts

    def incomplete_tail(self, position: JournalPosition) -> str:
        head = self.head()
        if position.next_seq <= head.seq:
            return f"{self.location}: entries from seq {position.next_seq} were not read"
        return ""

    def where(self, position: JournalPosition | None = None) -> str:
        seq = self.head().seq + 1 if position is None else position.next_seq
        return f"{self.location} at seq {seq}"


class PgBackend(JournalBackend):
    """The run journals of one PostgreSQL database."""

    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    def journal(self, run_id: str) -> PgRunJournal:
        return PgRunJournal(self.db, run_id)

    def run_ids(self) -> list[str]:
        return self.db.run_ids()

    def close(self) -> None:
        self.db.close()
