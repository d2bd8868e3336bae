"""The run's journal in PostgreSQL, written by several processes on several hosts.

Tables (created on first use, versioned like the SQL audit tables)::

    auditjournal_journal_schema  (name, version)
    auditjournal_runs      run_id | seq (the head) | chain (its chain value) | completed
    auditjournal_events    run_id | seq | writer_id | line
    auditjournal_batches   batch_id (unique) | run_id | last_seq
    auditjournal_claims    run_id | claim (unique per run: ``kind:value``)
    auditjournal_payloads  ref (sha256) | data (canonical JSON bytes)

``line`` is exactly the file journal's line (:mod:`.lines`): the event's JSON
object with ``"chain"`` appended, so a journal read out of PostgreSQL verifies,
replays and exports byte for byte like one written to files.

Appending (:meth:`PgJournal.flush`) is one transaction per batch, in two round
trips on the writer's own connection: insert the payloads the events refer to,
lock the run's head row (``SELECT ... FOR UPDATE``: runs never wait for each
other), ask which of the batch's claims (the recorder's :data:`Claims` hook: ids
made, states / tokens / operations / the run completed) are taken already and
reject the events that hold them (or any but export events once the run has
completed), give the others the next seqs and chain them, insert them and their
claims, move the head, ``pg_notify``. No writer reads the other writers' events
at a flush; it does (:meth:`PgJournal.refresh`) only when the recorder meets an
id it does not know. Commit order is seq order and a rollback leaves no
gap (the head moves only with the rows). Every batch carries a client-made
``batch_id`` (writer id + a counter) under a unique constraint, in the same
transaction: after a commit whose outcome is unknown (the connection died in
``COMMIT``), the writer looks the id up and sends the batch again only if it is
absent, so nothing is recorded twice (an id per batch, not per event: one index
entry per flush instead of one per event).

Thread-safety: ``PgJournal`` as the file journal (the recorder gives it its ``lock`` and holds it
while it validates and appends; flushes serialize on their own lock, which also guards the
writer's flush connection).
``PgDatabase`` may be shared by threads (SQLAlchemy's pool).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

from ..errors import (
    AuditJournalError,
    CorruptJournalError,
    JournalClosedError,
    JournalUnavailableError,
    RunAlreadyCompletedError,
)
from ..fs.storage import Durability, Flusher
from ..model.events import (
    EXPORT_EVENT_TYPES,
    BaseEvent,
    Event,
    RunCompleted,
    decode_event,
    encode_event,
)
from .base import JournalHead, JournalWriter
from .files import DEFAULT_FLUSH_INTERVAL
from .lines import seal
from .pgpayloads import PgPayloads
from .pgschema import (
    NOTIFY_CHANNEL,
    RECONNECT_SECONDS,
    FlushConnection,
    Listener,
    PgDatabase,
    RunLease,
    WriterId,
    unavailable,
)

__all__ = ["Absorb", "Claims", "Conflict", "PgJournal"]

_MAX_BUFFER: Final = 20_000  # events buffered before a call writes behind

# one statement per table and batch, the arrays sent in binary (%b): a flush is a handful of
# round trips whatever its size, and little Python per event (the flusher shares the GIL
# with the recording threads)
_INSERT_PAYLOADS: Final = (
    "INSERT INTO auditjournal_payloads (ref, data) SELECT * FROM unnest(%b::bytea[], "
    "%b::bytea[]) ON CONFLICT DO NOTHING"
)
_INSERT_EVENTS: Final = (
    "INSERT INTO auditjournal_events (run_id, seq, writer_id, line) "
    "SELECT %s, %s + n, %s, convert_to(l || E'\\n', 'UTF8') "
    "FROM string_to_table(convert_from(%b, 'UTF8'), E'\\n') WITH ORDINALITY AS t(l, n) "
    "WHERE l <> ''"
)
"""The batch's lines sent as one value, split by the server: a JSON line holds no raw
newline, and one parameter costs the client no work per line (an array would)."""
_INSERT_BATCH: Final = (
    "INSERT INTO auditjournal_batches (batch_id, run_id, last_seq) VALUES (%s, %s, %s)"
)
_LOCK_HEAD: Final = (
    "SELECT seq, chain, completed FROM auditjournal_runs WHERE run_id = %s FOR UPDATE"
)
# claims sent space-separated (an id holds no space), split by the server; added after
# every one asked was found free under the lock, so a conflict here is a mark already made
_TAKEN_CLAIMS: Final = (
    "SELECT claim FROM auditjournal_claims "
    "WHERE run_id = %s AND claim = ANY(string_to_array(%s, ' '))"
)
_INSERT_CLAIMS: Final = (
    "INSERT INTO auditjournal_claims (run_id, claim) "
    "SELECT %s, string_to_table(%s, ' ') ON CONFLICT DO NOTHING"
)
_FIND_BATCH: Final = "SELECT last_seq FROM auditjournal_batches WHERE batch_id = %s"
_MOVE_HEAD: Final = (
    "WITH moved AS (UPDATE auditjournal_runs SET seq = %s, chain = %b, completed = %s "
    "WHERE run_id = %s RETURNING run_id) SELECT pg_notify(%s, %s) FROM moved"
)


Absorb = Callable[[list[Event], list[BaseEvent]], dict[int, AuditJournalError]]
"""The recorder's lifecycle hook: apply other writers' events (in seq order) to the run's
state and return the own pending events (by index) they make invalid, with the error."""
Claims = Callable[[BaseEvent], Sequence[str]]
"""What an event takes that no other event of the run may take again (``kind:value``):
each key is asked for under the head-row lock (taken: the event is rejected) and added;
``?key`` is only asked, ``+key`` only added (a mark that may be there already)."""
Conflict = Callable[[str], AuditJournalError]
"""The error for an event whose claim another writer's event took first."""


@dataclass
class _Pending:
    ticket: int
    event: BaseEvent


class PgJournal(JournalWriter):
    """One writer of a run's journal in PostgreSQL.

    ``shared`` (the recorder's writers: a coordinator and any joined writers) -- several
    at once, each holding the run's advisory lock in shared mode; ``next_seq`` is then
    provisional (the seq this writer expects its next event to get); the real seq is
    given under the head-row lock at flush (with one writer they agree). Otherwise the
    one writer of the run, as the journal contract has it: the advisory lock in exclusive
    mode (:class:`JournalLockedError` while any other writer or a lease holds it), and
    ``next_seq`` exact.
    """

    recovery = None

    def __init__(
        self,
        db: PgDatabase,
        run_id: str,
        writer: WriterId,
        payload_buffer: PgPayloads,
        *,
        durability: Durability = "batch",
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        reconnect_seconds: float = RECONNECT_SECONDS,
        shared: bool = True,
        before_flush: Callable[[bool], None] | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        self.db = db
        self.run_id = run_id
        self.writer = writer
        self._writer_text = str(writer)
        self.durability: Durability = durability
        self.payload_buffer = payload_buffer
        self.reconnect_seconds = reconnect_seconds
        self.lock = threading.Lock() if lock is None else lock
        """Held while appending and while a flush takes what is buffered or applies other
        writers' events (``lock``: the caller's, held by it around each append)."""
        self._caller_locks = lock is not None
        self._io_lock = threading.Lock()
        self.absorb: Absorb | None = None
        """Applies other writers' events to the recorder's state (:meth:`refresh`)."""
        self.claims: Claims | None = None
        """What each event claims (checked by the server at the flush; None: nothing,
        for the one writer of the journal contract, which no other writer meets)."""
        self.conflict: Conflict | None = None
        self._before_flush = before_flush
        self._link = FlushConnection(db)
        head = db.head(run_id)  # RunNotFoundError
        self._lease = RunLease(db, run_id, shared=shared)  # JournalLockedError
        # shared: every other writer's entry up to _seen is applied to the recorder's
        # state (refresh); the last committed entry this writer knows of is _head_*
        self._seen = 0 if shared else head.seq
        self._head_seq = head.seq
        self._head_chain = head.chain
        self.next_seq = head.seq + 1
        self.durable_seq = head.seq
        self._ticket = 0
        self._batches = 0
        self._attempt: str | None = None
        self._local = threading.local()
        self._buffer: list[_Pending] = []
        self._inflight: list[_Pending] = []
        self._rejected: dict[int, AuditJournalError] = {}
        self._durable_ticket = 0
        self._closed = False
        self._write_error: Exception | None = None
        self.completed_elsewhere = False
        """Another writer (the coordinator) completed the run: appends are refused."""
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._flusher: Flusher[PgJournal] | None = None
        if durability != "always":
            self._flusher = Flusher(self, PgJournal._background_flush, flush_interval)

    # -- the recorder's side ----------------------------------------------------------

    @property
    def head(self) -> JournalHead:
        """The last entry this writer appended or knows of, and its chain value (for
        events still buffered: as they will be chained if no other writer commits first)."""
        with self.lock:
            seq, chain = self._head_seq, self._head_chain
            pending = [p.event for p in (*self._inflight, *self._buffer)]
        for event in pending:
            seq += 1
            if event.seq != seq:
                event = msgspec.structs.replace(event, seq=seq)
            chain = seal(encode_event(event), chain)[1]
        return JournalHead(seq, chain)

    @property
    def needs_flush(self) -> bool:
        return self.durability == "always" or len(self._buffer) > _MAX_BUFFER

    @property
    def write_failed(self) -> bool:
        return self._write_error is not None

    def append(self, event: BaseEvent) -> None:
        """Buffer ``event`` (its seq is :attr:`next_seq`), holding the ``lock`` the caller
        gave the writer (if it gave none, the writer takes its own).

        Refused (nothing appended) while the server is unreachable, or -- outside
        ``always`` -- when an earlier event of this writer was rejected at its flush
        (a conflict with another writer): that error is raised here, once.
        """
        if self._caller_locks:
            self._append(event)
        else:
            with self.lock:
                self._append(event)

    def _append(self, event: BaseEvent) -> None:
        if self._closed:
            raise JournalClosedError(f"journal of run {self.run_id!r} is closed")
        if event.seq != self.next_seq:
            raise ValueError(f"event seq {event.seq} is not the next seq {self.next_seq}")
        if self._rejected and self.durability != "always":
            raise self._take_rejection()
        if self.completed_elsewhere:
            raise RunAlreadyCompletedError(
                f"run {self.run_id!r} has completed; only export events may follow"
            )
        if self._write_error is not None:
            error = self._write_error
            refused = type(error)(f"{error} (this call was refused and recorded nothing)")
            raise refused
        self._ticket += 1
        self._buffer.append(_Pending(self._ticket, event))
        self._local.ticket = self._ticket
        self.next_seq += 1

    def commit(self, seq: int) -> None:
        """Make the event this thread appended last durable (``always``: committed before
        returning). A conflict with another writer found at the flush raises its error."""
        del seq  # provisional; the thread's ticket names the event
        ticket: int = self._local.ticket
        if self._durable_ticket < ticket:
            self.flush(fsync=True)
        with self.lock:
            error = self._rejected.pop(ticket, None)
        if error is not None:
            raise error

    def write_behind(self, *, wait: bool = True) -> None:
        if not wait and self._io_lock.locked():
            return  # a commit is under way; what it did not take waits for the next
        with contextlib.suppress(JournalUnavailableError):  # kept: the next append says it
            self.flush(fsync=False)

    def refresh(self) -> bool:
        """Apply what other writers committed since we last looked (caller holds
        :attr:`lock`); True if anything new came in.

        Called when the recorder meets an id it does not know (and when a writer opens),
        never per flush: a flush leaves the lifecycle rules across writers to the server
        (the claims), so no writer decodes every other writer's events."""
        rows = self.db.lines(self.run_id, self._seen, limit=1 << 30, not_by=self._writer_text)
        foreign: list[Event] = []
        for seq, _writer, line in rows:
            if seq <= self._seen:
                continue
            self._seen = seq
            # for the lifecycle state only: readers verify the chain (PgCursor)
            try:
                foreign.append(decode_event(line))
            except Exception as exc:
                raise CorruptJournalError(
                    f"{self.db.url} run {self.run_id!r}: bad entry at seq {seq}: {exc}"
                ) from None
        if not foreign:
            return False
        pending = [*self._inflight, *self._buffer]
        if self.absorb is not None:
            rejected = self.absorb(foreign, [p.event for p in pending])
            if rejected:
                for index, error in rejected.items():
                    self._rejected[pending[index].ticket] = error
                gone = {pending[i].ticket for i in rejected}
                self._inflight = [p for p in self._inflight if p.ticket not in gone]
                self._buffer = [p for p in self._buffer if p.ticket not in gone]
        known = max(self._seen, self._head_seq)
        self.next_seq = max(self.next_seq, known + 1 + len(self._buffer))
        return True

    def _take_rejection(self) -> AuditJournalError:
        ticket = min(self._rejected)
        error = self._rejected.pop(ticket)
        self._rejected.clear()
        return type(error)(
            f"{error} (an earlier call of this writer was rejected when it was committed: "
            "another writer got there first; it appended nothing, nor did this call)"
        )

    def watch_completion(self, poll_interval: float = 0.5) -> None:
        """For a joined writer: notice the coordinator's ``run_completed`` (woken by
        ``NOTIFY``, polling as a fallback) so that the next call is refused at once,
        not only at its commit."""
        self._watcher = threading.Thread(
            target=self._watch, args=(poll_interval,), name="auditjournal-watch", daemon=True
        )
        self._watcher.start()

    def _watch(self, poll_interval: float) -> None:
        listener = Listener(self.db)
        try:
            while not self._watch_stop.is_set():
                with contextlib.suppress(JournalUnavailableError):
                    if self.db.head(self.run_id).completed:
                        self.completed_elsewhere = True
                        return
                listener.wait(poll_interval)
        finally:
            listener.close()

    # -- flushing ---------------------------------------------------------------------

    def flush(self, *, fsync: bool = True) -> None:
        """Commit what is buffered: one transaction under the run's head-row lock."""
        del fsync  # every commit is durable per the server; `none` turns synchronous_commit off
        with self._io_lock:
            with self.lock:
                batch = self._inflight = self._buffer
                self._buffer = []
            taken = self.payload_buffer.take()
            if not batch and not taken:
                return
            try:
                self._commit_batch(taken)
            except BaseException as exc:
                with self.lock:  # the next flush sends them again, in order
                    self._buffer[0:0] = self._inflight
                    self._inflight = []
                self.payload_buffer.give_back(taken)
                if isinstance(exc, Exception):
                    self._write_error = exc
                raise
            self._write_error = None
            self.payload_buffer.sent(taken)

    def _commit_batch(self, taken: dict[bytes, bytes]) -> None:
        """Commit the batch, retrying a lost connection for :attr:`reconnect_seconds`.

        An attempt that lost its connection after sending ``COMMIT`` may have committed.
        The next attempt settles that *under the head-row lock*: the lost transaction held
        that lock until it committed or was rolled back, so once the lock is ours its
        batch id is either in ``auditjournal_batches`` (it committed: nothing is sent
        again) or never will be (it is sent again). Asking before taking the lock could
        see the lost transaction still in flight and send the batch twice.
        """
        deadline = time.monotonic() + self.reconnect_seconds
        unknown: str | None = None  # the batch id of an attempt whose COMMIT got no answer
        while True:
            self._attempt = None
            try:
                self._transaction(taken, unknown)
                return
            except self._link.lost as exc:
                self._link.drop()
                if self._attempt is not None:
                    unknown = self._attempt
                if time.monotonic() >= deadline:
                    raise unavailable(exc, self.db.url, "append to the journal") from None
                time.sleep(0.2)
            except self._link.failed as exc:
                self._link.drop()
                raise unavailable(exc, self.db.url, "append to the journal") from None
            except BaseException:
                self._link.drop()  # whatever the transaction was in, it is rolled back
                raise

    def _transaction(self, taken: dict[bytes, bytes], unknown: str | None) -> None:
        """One attempt, in two round trips (psycopg's pipeline mode): (1) the payloads,
        the head-row lock, the batch's claims already taken (asked after the lock, so
        every earlier batch's claims are in view); (2) the events, their claims, the
        batch id, the head, ``COMMIT``."""
        if self._before_flush is not None:
            self._before_flush(True)
        with self.lock:
            batch = list(self._inflight)
        held = self._claims_of(batch)
        asked = [key.removeprefix("?") for keys in held for key in keys if key[0] != "+"]
        self._lease.ensure()  # a session the server ended (restart): the lease again
        conn = self._link.connect()
        with conn.pipeline():
            cur, head_cur, claim_cur, batch_cur = (conn.cursor() for _ in range(4))
            if self.durability == "none":
                cur.execute("SET LOCAL synchronous_commit = off")
            if taken:
                cur.execute(_INSERT_PAYLOADS, (list(taken), list(taken.values())))
            head_cur.execute(_LOCK_HEAD, (self.run_id,))
            if asked:
                claim_cur.execute(_TAKEN_CLAIMS, (self.run_id, " ".join(asked)))
            if unknown is not None:
                batch_cur.execute(_FIND_BATCH, (unknown,))
            found = head_cur.fetchone()
            if found is None:
                raise CorruptJournalError(f"{self.db.url}: run {self.run_id!r} has no head row")
            head_seq, head_chain, completed = found[0], bytes(found[1]), found[2]
            if unknown is not None and batch and batch_cur.fetchone() is not None:
                conn.commit()  # the lost COMMIT did commit: it holds the batch already
                self._committed(batch, head_seq, head_chain)
                return
            taken_keys = {row[0] for row in claim_cur.fetchall()} if asked else set()
            rejected = self._conflicts(batch, held, taken_keys, completed)
            if rejected:
                self._drop(batch, rejected)
                batch = [p for i, p in enumerate(batch) if i not in rejected]
                held = [keys for i, keys in enumerate(held) if i not in rejected]
            if not batch:
                conn.commit()  # the payloads
                return
            seq, chain = head_seq, head_chain
            lines = []
            replace = msgspec.structs.replace
            done = completed
            for pending in batch:
                seq += 1
                event = pending.event
                if event.seq != seq:
                    event = replace(event, seq=seq)
                line, chain = seal(encode_event(event), chain)
                lines.append(line)
                done = done or type(event) is RunCompleted
            added = [key.removeprefix("+") for keys in held for key in keys if key[0] != "?"]
            if added:
                cur.execute(_INSERT_CLAIMS, (self.run_id, " ".join(added)))
            self._batches += 1
            attempt = f"{self._writer_text}/{self._batches}"
            first = head_seq  # the lines get first + 1, first + 2, ...
            cur.execute(_INSERT_EVENTS, (self.run_id, first, self._writer_text, b"".join(lines)))
            cur.execute(_INSERT_BATCH, (attempt, self.run_id, seq))
            cur.execute(_MOVE_HEAD, (seq, chain, done, self.run_id, NOTIFY_CHANNEL, self.run_id))
            self._attempt = attempt  # from here on the COMMIT's outcome may be unknown
            conn.commit()
        self._committed(batch, seq, chain)

    def _claims_of(self, batch: list[_Pending]) -> list[Sequence[str]]:
        """Each event's claims (none for the one writer of the journal contract)."""
        claims = self.claims
        return [] if claims is None else [claims(pending.event) for pending in batch]

    def _conflicts(
        self,
        batch: list[_Pending],
        held: list[Sequence[str]],
        taken: set[str],
        completed: bool,
    ) -> dict[int, AuditJournalError]:
        """The batch's events (by index) another writer got there first for: the run
        completed (all but export events), or a claim already taken."""
        rejected: dict[int, AuditJournalError] = {}
        if completed:
            for index, pending in enumerate(batch):
                if type(pending.event) not in EXPORT_EVENT_TYPES:
                    self.completed_elsewhere = True
                    rejected[index] = RunAlreadyCompletedError(
                        f"run {self.run_id!r} has completed; only export events may follow"
                    )
        if taken and self.conflict is not None:
            for index, keys in enumerate(held):
                if index in rejected:
                    continue
                for key in keys:
                    key = key.removeprefix("?")
                    if key in taken:
                        rejected[index] = self.conflict(key)
                        break
        return rejected

    def _drop(self, batch: list[_Pending], rejected: dict[int, AuditJournalError]) -> None:
        """Keep the errors of the rejected events (by ticket) and take them out of flight."""
        gone = {batch[i].ticket for i in rejected}
        with self.lock:
            for index, error in rejected.items():
                self._rejected[batch[index].ticket] = error
            self._inflight = [p for p in self._inflight if p.ticket not in gone]

    def _committed(self, batch: list[_Pending], seq: int, chain: bytes) -> None:
        """The batch (ending at ``seq``, chain ``chain``) is committed."""
        with self.lock:
            self._head_seq = seq
            self._head_chain = chain
            self.durable_seq = seq
            self._inflight = []
            if batch:
                self._durable_ticket = max(self._durable_ticket, batch[-1].ticket)
            self.next_seq = max(self.next_seq, seq + 1 + len(self._buffer))

    def _background_flush(self) -> None:
        self.flush(fsync=self.durability == "batch")

    # -- lifetime ---------------------------------------------------------------------

    def close(self) -> None:
        """Commit everything buffered and stop the flusher (the run stays as it is).
        A rejection not reported yet is raised here, so no conflict goes unnoticed."""
        if self._closed:
            return
        if self._flusher is not None:
            self._flusher.stop()
        try:
            self.flush()
        except BaseException:
            if self._flusher is not None:
                self._flusher = Flusher(self, PgJournal._background_flush, 0.01)
            raise
        self._closed = True
        self._stop_watching()
        self._link.drop()
        self._lease.release()
        with self.lock:
            if self._rejected:
                raise self._take_rejection()

    def _stop_watching(self) -> None:
        self._watch_stop.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None

    def abandon(self) -> None:
        """Let go without committing what is buffered (a failed start)."""
        self._stop_watching()
        self._closed = True
        if self._flusher is not None:
            self._flusher.stop()
        with self.lock:
            self._buffer = []
        self._link.drop()
        self._lease.release()
