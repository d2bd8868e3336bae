"""The run's journal in PostgreSQL, written by several processes on several hosts.

Tables (created on first use, versioned like the SQL audit tables)::

    auditjournal_journal_schema  (name, version)
    auditjournal_runs      run_id | seq (the head) | chain (its chain value) | completed
    auditjournal_events    run_id | seq | writer_id | line
    auditjournal_batches   batch_id (unique) | run_id | last_seq
    auditjournal_payloads  ref (sha256) | data (canonical JSON bytes)

``line`` is exactly the file journal's line (:mod:`.lines`): the event's JSON
object with ``"chain"`` appended, so a journal read out of PostgreSQL verifies,
replays and exports byte for byte like one written to files.

Appending (:meth:`PgJournal.flush`) is one transaction per batch: lock the run's
head row (``SELECT ... FOR UPDATE``: runs never wait for each other), read what
other writers committed since this writer last looked (the recorder's lifecycle
hook applies it and rejects own events that now conflict), insert the payloads
the events refer to, give the events the next seqs and chain them, insert them,
move the head, ``pg_notify``. Commit order is seq order and a rollback leaves no
gap (the head moves only with the rows). Every batch carries a client-made
``batch_id`` (writer id + a counter) under a unique constraint, in the same
transaction: after a commit whose outcome is unknown (the connection died in
``COMMIT``), the writer looks the id up and sends the batch again only if it is
absent, so nothing is recorded twice (an id per batch, not per event: one index
entry per flush instead of one per event).

Thread-safety: ``PgJournal`` as the file journal (``lock`` held by the recorder
while it validates and appends; flushes serialize on their own lock).
``PgDatabase`` may be shared by threads (SQLAlchemy's pool).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine

from ..errors import (
    AuditJournalError,
    CanonicalizationError,
    InvalidSettingsError,
    JournalClosedError,
    JournalUnavailableError,
    MissingExtraError,
    PayloadTooLargeError,
    RunAlreadyCompletedError,
    RunExistsError,
    RunNotFoundError,
    SchemaVersionError,
)
from ..fs.storage import Durability, Flusher
from ..model.canonical import MAX_VALUE_DEPTH, canonical_json
from ..model.events import BaseEvent, Event, RunCompleted, encode_event
from .files import DEFAULT_FLUSH_INTERVAL, genesis_chain
from .lines import decode_line, seal

__all__ = [
    "NOTIFY_CHANNEL",
    "RECONNECT_SECONDS",
    "SCHEMA_VERSION",
    "Absorb",
    "Head",
    "Listener",
    "PgDatabase",
    "PgJournal",
    "PgPayloads",
    "WriterId",
]

SCHEMA_VERSION: Final = 1
_SCHEMA_NAME: Final = "auditjournal-journal"
NOTIFY_CHANNEL: Final = "auditjournal_journal"
RECONNECT_SECONDS: Final = 30.0
"""How long a writer keeps trying to reach a restarting server before a call fails."""
_MAX_BUFFER: Final = 20_000  # events buffered before a call writes behind

metadata = sa.MetaData()
schema_version = sa.Table(
    "auditjournal_journal_schema",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)
runs = sa.Table(
    "auditjournal_runs",
    metadata,
    sa.Column("run_id", sa.String(128), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("chain", sa.LargeBinary, nullable=False),
    sa.Column("completed", sa.Boolean, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
)
events = sa.Table(
    "auditjournal_events",
    metadata,
    sa.Column("run_id", sa.String(128), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("writer_id", sa.Text, nullable=False),
    sa.Column("line", sa.LargeBinary, nullable=False),
)
batches = sa.Table(
    "auditjournal_batches",
    metadata,
    sa.Column("batch_id", sa.String(200), primary_key=True),
    sa.Column("run_id", sa.String(128), nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
)
payloads = sa.Table(
    "auditjournal_payloads",
    metadata,
    sa.Column("ref", sa.LargeBinary, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

_CONNECTION_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError)

# one statement per table and batch, the arrays sent in binary (%b): a flush is a handful of
# round trips whatever its size, and little Python per event (the flusher shares the GIL
# with the recording threads)
_INSERT_PAYLOADS: Final = (
    "INSERT INTO auditjournal_payloads (ref, data) SELECT * FROM unnest(%b::bytea[], "
    "%b::bytea[]) ON CONFLICT DO NOTHING"
)
_INSERT_EVENTS: Final = (
    "INSERT INTO auditjournal_events (run_id, seq, writer_id, line) "
    "SELECT %s, s, %s, l FROM unnest(%b::bigint[], %b::bytea[]) AS t(s, l)"
)
_INSERT_BATCH: Final = (
    "INSERT INTO auditjournal_batches (batch_id, run_id, last_seq) VALUES (%s, %s, %s)"
)
_MOVE_HEAD: Final = (
    "WITH moved AS (UPDATE auditjournal_runs SET seq = %s, chain = %b, completed = %s "
    "WHERE run_id = %s RETURNING run_id) SELECT pg_notify(%s, %s) FROM moved"
)


@dataclass(frozen=True)
class WriterId:
    """Who appended an event: host, process and a random part (a process may join twice)."""

    host: str
    pid: int
    nonce: str

    @classmethod
    def new(cls) -> WriterId:
        return cls(socket.gethostname()[:64], os.getpid(), secrets.token_hex(4))

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.nonce}"


@dataclass(frozen=True)
class Head:
    """A run's head row: the last seq, its chain value, and whether it has completed."""

    seq: int
    chain: bytes
    completed: bool


def _unavailable(exc: BaseException, url: str, action: str) -> JournalUnavailableError:
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return JournalUnavailableError(f"cannot {action} (PostgreSQL journal {url}): {first}")


class PgDatabase:
    """An engine on the journal tables of one PostgreSQL database; schema made on first use."""

    def __init__(self, url: str) -> None:
        if type(url) is not str or not url:
            raise InvalidSettingsError(f"journal_url must be a URL, got {url!r}")
        try:
            parsed = sa.make_url(url)
        except sa.exc.ArgumentError:
            raise InvalidSettingsError(
                "cannot parse journal_url (expected postgresql+psycopg://user@host/database)"
            ) from None
        if parsed.get_backend_name() != "postgresql":
            raise InvalidSettingsError(
                f"journal_url must name a PostgreSQL database (postgresql+psycopg://...), "
                f"got a {parsed.get_backend_name()!r} URL"
            )
        self.url = parsed.render_as_string(hide_password=True)
        try:
            import psycopg  # noqa: F401 - the driver of the extra
        except ImportError:
            raise MissingExtraError(
                "the PostgreSQL journal needs its driver: pip install 'auditjournal[postgres]'"
            ) from None
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        self._conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            self.engine: Engine = sa.create_engine(
                parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10}
            )
        except (sa.exc.SQLAlchemyError, ImportError) as exc:
            raise InvalidSettingsError(f"cannot use journal_url {self.url}: {exc}") from None
        self.ensure_schema()

    @property
    def conninfo(self) -> str:
        """A libpq connection string (for the LISTEN connection)."""
        return self._conninfo

    def ensure_schema(self) -> None:
        """Create the tables if none exist; refuse another version (SchemaVersionError)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(72657302)"))
                inspector = sa.inspect(conn)
                if inspector.has_table(schema_version.name):
                    found = conn.execute(
                        sa.select(schema_version.c.version).where(
                            schema_version.c.name == _SCHEMA_NAME
                        )
                    ).scalar()
                    if found != SCHEMA_VERSION:
                        raise SchemaVersionError(
                            f"{self.url} holds journal tables of schema version {found}; this "
                            f"auditjournal uses version {SCHEMA_VERSION} (use another database)"
                        )
                    return
                clashing = sorted(
                    t.name for t in metadata.sorted_tables if inspector.has_table(t.name)
                )
                if clashing:
                    raise SchemaVersionError(
                        f"{self.url} has tables {', '.join(clashing)} but no journal schema "
                        "version: not an auditjournal journal database"
                    )
                metadata.create_all(conn)
                conn.execute(
                    schema_version.insert(), {"name": _SCHEMA_NAME, "version": SCHEMA_VERSION}
                )
        except AuditJournalError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            raise _unavailable(exc, self.url, "prepare the journal tables") from None

    # -- runs --------------------------------------------------------------------------

    def create_run(self, run_id: str, writer: WriterId) -> None:
        """The run's head row (seq 0, the genesis chain); RunExistsError if it has one."""
        row = {
            "run_id": run_id,
            "seq": 0,
            "chain": genesis_chain(run_id),
            "completed": False,
            "created_by": str(writer),
        }
        try:
            with self.engine.begin() as conn:
                made = conn.execute(
                    pg_insert(runs).values(row).on_conflict_do_nothing().returning(runs.c.run_id)
                ).first()
        except sa.exc.SQLAlchemyError as exc:
            raise _unavailable(exc, self.url, f"create run {run_id!r}") from None
        if made is None:
            raise RunExistsError(f"run {run_id!r} already exists in the journal at {self.url}")

    def head(self, run_id: str) -> Head:
        """The run's head (RunNotFoundError if the journal has no such run)."""
        query = sa.select(runs.c.seq, runs.c.chain, runs.c.completed).where(runs.c.run_id == run_id)
        found = self._read(lambda conn: conn.execute(query).first(), f"read run {run_id!r}")
        if found is None:
            raise RunNotFoundError(f"no run {run_id!r} in the journal at {self.url}")
        return Head(found.seq, bytes(found.chain), found.completed)

    def run_ids(self) -> list[str]:
        query = sa.select(runs.c.run_id).order_by(runs.c.run_id)
        found: list[str] = self._read(
            lambda conn: list(conn.execute(query).scalars()), "list the runs"
        )
        return found

    def lines(self, run_id: str, after: int, limit: int = 4096) -> list[tuple[int, str, bytes]]:
        """(seq, writer id, line) of the run's entries after seq ``after``, in seq order."""
        query = (
            sa.select(events.c.seq, events.c.writer_id, events.c.line)
            .where(events.c.run_id == run_id, events.c.seq > after)
            .order_by(events.c.seq)
            .limit(limit)
        )
        found: list[tuple[int, str, bytes]] = self._read(
            lambda conn: [(r.seq, r.writer_id, bytes(r.line)) for r in conn.execute(query)],
            f"read the journal of run {run_id!r}",
        )
        return found

    def payloads(self, refs: Iterable[str]) -> dict[str, bytes]:
        """The stored payloads among ``refs`` (ref -> canonical JSON bytes)."""
        digests = [bytes.fromhex(r) for r in set(refs)]
        if not digests:
            return {}
        query = sa.select(payloads.c.ref, payloads.c.data).where(payloads.c.ref.in_(digests))
        rows = self._read(lambda conn: list(conn.execute(query)), "read payloads")
        return {bytes(r.ref).hex(): bytes(r.data) for r in rows}

    def _read(self, work: Callable[[Connection], Any], action: str) -> Any:
        try:
            with self.engine.connect() as conn:
                return work(conn)
        except _CONNECTION_ERRORS as exc:
            raise _unavailable(exc, self.url, action) from None
        except sa.exc.SQLAlchemyError as exc:
            raise _unavailable(exc, self.url, action) from None

    def close(self) -> None:
        self.engine.dispose()


class PgPayloads:
    """A writer's payloads on their way to PostgreSQL: canonical bytes are kept in memory
    until the flush that inserts the events referring to them (same transaction)."""

    def __init__(self, max_payload_bytes: int) -> None:
        self.max_payload_bytes = max_payload_bytes
        self._lock = threading.Lock()
        self._pending: dict[bytes, bytes] = {}
        self._sent: set[bytes] = set()

    def put(self, obj: Any, what: str = "payload") -> str:
        """Canonicalize ``obj`` and keep it for the next flush; return its ref."""
        try:
            data = canonical_json(obj, max_depth=MAX_VALUE_DEPTH)
        except CanonicalizationError as exc:
            raise CanonicalizationError(f"{what}: {exc}") from None
        if len(data) > self.max_payload_bytes:
            raise PayloadTooLargeError(
                f"payload of {len(data):,} bytes exceeds the limit of "
                f"{self.max_payload_bytes:,} bytes"
            )
        digest = hashlib.sha256(data).digest()
        if digest not in self._sent:
            with self._lock:
                self._pending[digest] = data
        return digest.hex()

    def take(self) -> dict[bytes, bytes]:
        with self._lock:
            taken, self._pending = self._pending, {}
        return taken

    def give_back(self, taken: dict[bytes, bytes]) -> None:
        with self._lock:
            taken.update(self._pending)
            self._pending = taken

    def sent(self, taken: dict[bytes, bytes]) -> None:
        if len(self._sent) > 1_000_000:
            self._sent.clear()
        self._sent.update(taken)


class Listener:
    """A ``LISTEN`` connection; ``wait`` returns on a notification or after ``timeout``."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        self._conn: Any = None
        self._next_try = 0.0

    def wait(self, timeout: float) -> None:
        if self._conn is None and time.monotonic() >= self._next_try:
            try:
                import psycopg

                self._conn = psycopg.connect(self._db.conninfo, autocommit=True, connect_timeout=5)
                self._conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            except Exception:  # the server is away: poll, try again later
                self._conn = None
                self._next_try = time.monotonic() + 1.0
        if self._conn is None:
            time.sleep(timeout)
            return
        try:
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                break
        except Exception:
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


Absorb = Callable[[list[Event], list[BaseEvent]], dict[int, AuditJournalError]]
"""The recorder's lifecycle hook: apply other writers' events (in seq order) to the run's
state and return the own pending events (by index) they make invalid, with the error."""


@dataclass
class _Pending:
    ticket: int
    event: BaseEvent


class PgJournal:
    """One writer's handle on a run's journal in PostgreSQL (duck-types the file journal
    for the recorder: ``lock``, ``next_seq``, ``append``, ``commit``, ``flush``, ...).

    ``next_seq`` is provisional: the seq this writer expects its next event to get.
    The real seq is given under the head-row lock at flush; with one writer they agree.
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
    ) -> None:
        self.db = db
        self.run_id = run_id
        self.writer = writer
        self._writer_text = str(writer)
        self.durability: Durability = durability
        self.payload_buffer = payload_buffer
        self.reconnect_seconds = reconnect_seconds
        self.lock = threading.Lock()
        self._io_lock = threading.Lock()
        self.absorb: Absorb | None = None
        head = db.head(run_id)  # RunNotFoundError
        self._seen = 0  # every entry up to here is applied to the recorder's state (refresh)
        self._chain = genesis_chain(run_id)
        self.next_seq = head.seq + 1
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
    def last_seq(self) -> int:
        """The last seq this writer knows to be committed (its own or another's)."""
        return self._seen

    @property
    def head_chain(self) -> str:
        return self._chain.hex()

    @property
    def needs_flush(self) -> bool:
        return self.durability == "always" or len(self._buffer) > _MAX_BUFFER

    @property
    def write_failed(self) -> bool:
        return self._write_error is not None

    def append(self, event: BaseEvent) -> None:
        """Buffer ``event`` (its seq is :attr:`next_seq`); the caller holds :attr:`lock`.

        Refused (nothing appended) while the server is unreachable, or -- outside
        ``always`` -- when an earlier event of this writer was rejected at its flush
        (a conflict with another writer): that error is raised here, once.
        """
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

    def write_behind(self) -> None:
        with contextlib.suppress(JournalUnavailableError):  # kept: the next append says it
            self.flush(fsync=False)

    def refresh(self) -> bool:
        """Apply what other writers committed since we last looked (caller holds
        :attr:`lock`); True if anything new came in."""
        rows = self.db.lines(self.run_id, self._seen, limit=1 << 30)
        return self._absorb_rows(rows)

    def _absorb_rows(self, rows: list[tuple[int, str, bytes]]) -> bool:
        """Caller holds :attr:`lock`. Rows of other writers are applied through the hook;
        own events they now conflict with are rejected (dropped, error kept per ticket)."""
        foreign: list[Event] = []
        for seq, writer, line in rows:
            if seq <= self._seen:
                continue
            self._seen = seq
            self._chain = bytes.fromhex(line[-67:-3].decode("ascii"))
            if writer != self._writer_text:
                foreign.append(decode_line(line))
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
        self.next_seq = max(self.next_seq, self._seen + 1 + len(self._buffer))
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
                self._commit_batch(batch, taken)
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

    def _commit_batch(self, batch: list[_Pending], taken: dict[bytes, bytes]) -> None:
        deadline = time.monotonic() + self.reconnect_seconds
        while True:
            self._attempt = None
            try:
                self._transaction(taken)
                return
            except _CONNECTION_ERRORS as exc:
                # the outcome of the commit is unknown: did our batch id get in?
                try:
                    if self._attempt is not None and self._committed(self._attempt):
                        self._after_unknown_commit()
                        return
                except _CONNECTION_ERRORS:
                    pass
                if time.monotonic() >= deadline:
                    raise _unavailable(exc, self.db.url, "append to the journal") from None
                time.sleep(0.2)
            except sa.exc.SQLAlchemyError as exc:
                raise _unavailable(exc, self.db.url, "append to the journal") from None

    def _committed(self, batch_id: str) -> bool:
        with self.db.engine.connect() as conn:
            query = sa.select(batches.c.last_seq).where(batches.c.batch_id == batch_id)
            return conn.execute(query).first() is not None

    def _after_unknown_commit(self) -> None:
        """The batch did commit although we lost the answer: catch up to it."""
        with self.lock:
            batch = self._inflight
            self._inflight = []
            rows = self.db.lines(self.run_id, self._seen, limit=1 << 30)
            self._absorb_rows(rows)
            if batch:
                self._durable_ticket = max(self._durable_ticket, batch[-1].ticket)

    def _transaction(self, taken: dict[bytes, bytes]) -> None:
        run_id = self.run_id
        with self.db.engine.begin() as conn:
            if self.durability == "none":
                conn.execute(sa.text("SET LOCAL synchronous_commit = off"))
            head = conn.execute(
                sa.select(runs.c.seq, runs.c.chain, runs.c.completed)
                .where(runs.c.run_id == run_id)
                .with_for_update()
            ).one()
            with self.lock:
                if head.seq > self._seen:
                    rows = [
                        (r.seq, r.writer_id, bytes(r.line))
                        for r in conn.execute(
                            sa.select(events.c.seq, events.c.writer_id, events.c.line)
                            .where(events.c.run_id == run_id, events.c.seq > self._seen)
                            .order_by(events.c.seq)
                        )
                    ]
                    self._absorb_rows(rows)
                batch = list(self._inflight)
            driver = conn.connection.driver_connection
            assert driver is not None
            raw = driver.cursor()  # psycopg: arrays sent binary
            if taken:
                raw.execute(_INSERT_PAYLOADS, (list(taken), list(taken.values())))
            if not batch:
                return
            seq, chain = head.seq, bytes(head.chain)
            seqs, lines = [], []
            completed = head.completed
            writer = self._writer_text
            replace = msgspec.structs.replace
            for pending in batch:
                seq += 1
                event = pending.event
                if event.seq != seq:
                    event = replace(event, seq=seq)
                line, chain = seal(encode_event(event), chain)
                seqs.append(seq)
                lines.append(line)
                completed = completed or type(event) is RunCompleted
            self._batches += 1
            attempt = f"{writer}/{self._batches}"
            raw.execute(_INSERT_EVENTS, (run_id, writer, seqs, lines))
            raw.execute(_INSERT_BATCH, (attempt, run_id, seq))
            self._attempt = attempt  # from here on the COMMIT's outcome may be unknown
            raw.execute(_MOVE_HEAD, (seq, chain, completed, run_id, NOTIFY_CHANNEL, run_id))
        with self.lock:
            self._seen = seq
            self._chain = chain
            self._inflight = []
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
