"""The PostgreSQL journal's tables and connection: schema (created on first use,
versioned like the SQL audit tables), writer ids, the run's advisory lock (the writer
lease), and the ``LISTEN`` connection that wakes followers. See :mod:`.postgres`.

Thread-safety: :class:`PgDatabase` may be shared by threads (SQLAlchemy's pool); a
:class:`RunLease` or :class:`Listener` belongs to one owner.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import select
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine

from ..errors import (
    AuditJournalError,
    InvalidSettingsError,
    JournalLockedError,
    JournalUnavailableError,
    MissingExtraError,
    RunExistsError,
    RunNotFoundError,
    SchemaVersionError,
)
from .base import genesis_chain

__all__ = [
    "CONNECTION_ERRORS",
    "NOTIFY_CHANNEL",
    "RECONNECT_SECONDS",
    "SCHEMA_VERSION",
    "FlushConnection",
    "Head",
    "Listener",
    "PgDatabase",
    "RunLease",
    "WriterId",
    "unavailable",
]

SCHEMA_VERSION: Final = 3
"""2: ``auditjournal_claims`` (the lifecycle rules across writers, checked by the server);
3: the store ledger's tables (``auditjournal_ledger*``; a version-2 database is upgraded
in place by adding them)."""
_SCHEMA_NAME: Final = "auditjournal-journal"
NOTIFY_CHANNEL: Final = "auditjournal_journal"
RECONNECT_SECONDS: Final = 30.0
"""How long a writer keeps trying to reach a restarting server before a call fails."""

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
claims = sa.Table(
    "auditjournal_claims",
    metadata,
    sa.Column("run_id", sa.String(128), primary_key=True),
    sa.Column("claim", sa.Text, primary_key=True),
)
"""What the run's events took that no other event may take again (an id, a state's
completion, a token's terminal outcome: ``kind:value``), inserted with the events."""
payloads = sa.Table(
    "auditjournal_payloads",
    metadata,
    sa.Column("ref", sa.LargeBinary, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

ledger_meta = sa.Table(
    "auditjournal_ledger_meta",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
"""The store ledger's origin (``name = 'origin'``), written once."""
ledger_lines = sa.Table(
    "auditjournal_ledger",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True),
    sa.Column("line", sa.LargeBinary, nullable=False),
)
"""The store ledger's entry lines: ``size`` is the tree size with the line (1, 2, ...)."""
ledger_checkpoints = sa.Table(
    "auditjournal_ledger_checkpoints",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True),
    sa.Column("note", sa.LargeBinary, nullable=False),
)
"""Every checkpoint of the store ledger (the latest is the largest size)."""
LedgerStep = tuple[bytes | None, bytes]
"""What a ledger append adds: the entry line (None: nothing) and the new checkpoint note."""
_LINES: Final = sa.select(ledger_lines.c.line).order_by(ledger_lines.c.size)
LEDGER_TABLES: Final = (ledger_meta, ledger_lines, ledger_checkpoints)
_LEDGER_LOCK: Final = 72657303  # one ledger per database: appends take turns

CONNECTION_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError)


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


def unavailable(exc: BaseException, url: str, action: str) -> JournalUnavailableError:
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return JournalUnavailableError(f"cannot {action} (PostgreSQL journal {url}): {first}")


class PgDatabase:
    """An engine on the journal tables of one PostgreSQL database; schema made on first use."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        """``create=False`` (a reader such as ``verify-store``): never create or upgrade
        tables; a database without the journal schema is :class:`JournalUnavailableError`."""
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
        self.ensure_schema(create=create)

    @property
    def conninfo(self) -> str:
        """A libpq connection string (for the LISTEN connection)."""
        return self._conninfo

    def ensure_schema(self, *, create: bool = True) -> None:
        """Create the tables if none exist; refuse another version (SchemaVersionError).
        ``create=False``: only check; no journal schema is JournalUnavailableError."""
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
                    if found == 2 and create:  # 2 -> 3 only adds the ledger's tables
                        metadata.create_all(conn, tables=list(LEDGER_TABLES))
                        conn.execute(
                            schema_version.update()
                            .where(schema_version.c.name == _SCHEMA_NAME)
                            .values(version=SCHEMA_VERSION)
                        )
                        return
                    if found != SCHEMA_VERSION:
                        raise SchemaVersionError(
                            f"{self.url} holds journal tables of schema version {found}; this "
                            f"auditjournal uses version {SCHEMA_VERSION} (use another database)"
                        )
                    return
                if not create:
                    raise JournalUnavailableError(
                        f"{self.url} holds no auditjournal journal (no journal tables)"
                    )
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
            raise unavailable(exc, self.url, "prepare the journal tables") from None

    # -- runs --------------------------------------------------------------------------

    def create_run(self, run_id: str, writer: WriterId, *, exist_ok: bool = False) -> None:
        """The run's head row (seq 0, the genesis chain); RunExistsError if it has one
        (unless ``exist_ok``)."""
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
            raise unavailable(exc, self.url, f"create run {run_id!r}") from None
        if made is None and not exist_ok:
            raise RunExistsError(f"run {run_id!r} already exists in the journal at {self.url}")

    def reserve_tag(self, run_id: str, tag: str) -> bool:
        """Take the namespace of a joining writer's generated ids (claim ``ns:<tag>``),
        unless another writer holds it or a caller gave an id in it (``given:<tag>``).
        Under the head-row lock, as the flushes that add those marks."""
        keys = [f"ns:{tag}", f"given:{tag}"]
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.select(runs.c.run_id).where(runs.c.run_id == run_id).with_for_update()
                )
                taken = conn.execute(
                    sa.select(claims.c.claim).where(
                        claims.c.run_id == run_id, claims.c.claim.in_(keys)
                    )
                ).first()
                if taken is not None:
                    return False
                conn.execute(claims.insert(), {"run_id": run_id, "claim": keys[0]})
                return True
        except sa.exc.SQLAlchemyError as exc:
            raise unavailable(exc, self.url, f"join run {run_id!r}") from None

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

    def lines(
        self, run_id: str, after: int, limit: int = 4096, *, not_by: str | None = None
    ) -> list[tuple[int, str, bytes]]:
        """(seq, writer id, line) of the run's entries after seq ``after``, in seq order
        (``not_by``: leaving out those of that writer)."""
        query = (
            sa.select(events.c.seq, events.c.writer_id, events.c.line)
            .where(events.c.run_id == run_id, events.c.seq > after)
            .order_by(events.c.seq)
            .limit(limit)
        )
        if not_by is not None:
            query = query.where(events.c.writer_id != not_by)
        found: list[tuple[int, str, bytes]] = self._read(
            lambda conn: [(r.seq, r.writer_id, bytes(r.line)) for r in conn.execute(query)],
            f"read the journal of run {run_id!r}",
        )
        return found

    def lease_held(self, run_id: str) -> bool:
        """Whether any session holds the run's writer lease now (asked of ``pg_locks``:
        taking the lock to see would refuse a writer starting at that moment)."""
        key = lock_key(run_id) & 0xFFFFFFFFFFFFFFFF  # a bigint key is (classid, objid), objsubid 1
        query = sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1"
        )
        params = {"hi": key >> 32, "lo": key & 0xFFFFFFFF}
        found = self._read(
            lambda conn: conn.execute(query, params).scalar(),
            f"ask for the writer of run {run_id!r}",
        )
        return bool(found)

    def payloads(self, refs: Iterable[str]) -> dict[str, bytes]:
        """The stored payloads among ``refs`` (ref -> canonical JSON bytes)."""
        digests = [bytes.fromhex(r) for r in set(refs)]
        if not digests:
            return {}
        query = sa.select(payloads.c.ref, payloads.c.data).where(payloads.c.ref.in_(digests))
        rows = self._read(lambda conn: list(conn.execute(query)), "read payloads")
        return {bytes(r.ref).hex(): bytes(r.data) for r in rows}

    # -- the store ledger ---------------------------------------------------------------

    def ledger_append(self, origin: str, step: Callable[[str, list[bytes]], LedgerStep]) -> bool:
        """One append to the store ledger, in one transaction under the ledger's advisory
        lock (writers on several hosts take turns, so the log never forks): the origin
        (``origin`` is written if there is none yet), then ``step(origin, lines)`` says the
        line to add (or None) and the checkpoint note of the resulting tree; line and
        checkpoint commit together. True if a line was added."""

        def work(conn: Connection) -> bool:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LEDGER_LOCK})
            conn.execute(
                pg_insert(ledger_meta)
                .values(name="origin", value=origin)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            found = conn.execute(
                sa.select(ledger_meta.c.value).where(ledger_meta.c.name == "origin")
            ).scalar_one()
            lines = [bytes(r[0]) for r in conn.execute(_LINES)]
            line, note = step(found, lines)
            if line is not None:
                lines.append(line)
                conn.execute(ledger_lines.insert(), {"size": len(lines), "line": line})
            conn.execute(
                pg_insert(ledger_checkpoints)
                .values(size=len(lines), note=note)
                .on_conflict_do_nothing(index_elements=["size"])
            )
            return line is not None

        try:
            with self.engine.begin() as conn:
                return work(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise unavailable(exc, self.url, "append to the store ledger") from None

    def ledger_read(self) -> tuple[str, list[bytes], list[tuple[int, bytes]]] | None:
        """The store ledger: origin, entry lines in order, checkpoints ``(size, note)`` by
        size; None if nothing was ever appended. Read in one snapshot."""

        def work(conn: Connection) -> Any:
            conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            origin = conn.execute(
                sa.select(ledger_meta.c.value).where(ledger_meta.c.name == "origin")
            ).scalar()
            if origin is None:
                return None
            lines = [bytes(r[0]) for r in conn.execute(_LINES)]
            query = sa.select(ledger_checkpoints.c.size, ledger_checkpoints.c.note)
            notes = [(int(r[0]), bytes(r[1])) for r in conn.execute(query.order_by("size"))]
            return origin, lines, notes

        try:
            with self.engine.begin() as conn:
                found: tuple[str, list[bytes], list[tuple[int, bytes]]] | None = work(conn)
                return found
        except sa.exc.SQLAlchemyError as exc:
            raise unavailable(exc, self.url, "read the store ledger") from None

    def _read(self, work: Callable[[Connection], Any], action: str) -> Any:
        try:
            with self.engine.connect() as conn:
                return work(conn)
        except CONNECTION_ERRORS as exc:
            raise unavailable(exc, self.url, action) from None
        except sa.exc.SQLAlchemyError as exc:
            raise unavailable(exc, self.url, action) from None

    def close(self) -> None:
        self.engine.dispose()


class FlushConnection:
    """The writer's own connection for its flushes (one at a time: no pool, no ping per
    flush; a connection found broken is dropped and made again by the next attempt)."""

    def __init__(self, db: PgDatabase) -> None:
        import psycopg

        self._psycopg = psycopg
        self.lost = (psycopg.OperationalError, psycopg.InterfaceError)
        self.failed = psycopg.Error
        self._conninfo = db.conninfo
        self._conn: Any = None

    def connect(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = self._psycopg.connect(self._conninfo, connect_timeout=10)
        return self._conn

    def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


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


def lock_key(run_id: str) -> int:
    """The run's advisory lock key (64 bits of a hash of its id)."""
    digest = hashlib.sha256(b"auditjournal run " + run_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class RunLease:
    """The run's writer lease: a session advisory lock on a connection of its own, held
    exclusively by the one writer (or a lease holder) of the contract, or shared by the
    writers of a run recorded by several processes. Released by :meth:`release`, or by
    the server when the process dies (its connection closes); a writer whose session the
    server ended while it lives (a restart, ``pg_terminate_backend``) takes the lease
    again at its next flush (:meth:`ensure`)."""

    def __init__(self, db: PgDatabase, run_id: str, *, shared: bool) -> None:
        import psycopg

        self._psycopg = psycopg
        self._conninfo = db.conninfo
        self._url = db.url
        self._run_id = run_id
        self._function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        self._conn: Any = None
        self._released = False
        try:
            self._take()
        except psycopg.Error as exc:
            raise unavailable(exc, db.url, f"take the writer lease of run {run_id!r}") from None

    def _take(self) -> None:
        """Connect and lock (psycopg's errors as they are: a caller may retry them)."""
        conn = self._psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)
        try:
            query = f"SELECT {self._function}(%s)"
            got = conn.execute(query, (lock_key(self._run_id),)).fetchone()
        except BaseException:
            conn.close()
            raise
        if not got or not got[0]:
            conn.close()  # nothing was locked
            raise JournalLockedError(
                f"journal of run {self._run_id!r} is in use by another writer ({self._url})"
            )
        self._conn = conn

    def ensure(self) -> None:
        """Take the lease again if the server ended its session. Costs no round trip
        while it holds: an idle session's socket has something to read only when the
        server has ended it (or sent a notice, answered by a ``SELECT 1``). Raises
        psycopg's error while the server is away, :class:`JournalLockedError` if an
        exclusive holder got in meanwhile."""
        if self._released:
            return
        conn = self._conn
        if conn is not None:
            try:
                ready = bool(select.select([conn.fileno()], [], [], 0)[0])
            except (OSError, ValueError, self._psycopg.Error):
                ready = True  # closed
            if not ready:
                return
            with contextlib.suppress(self._psycopg.Error):
                conn.execute("SELECT 1")
                return
            with contextlib.suppress(Exception):
                conn.close()
            self._conn = None
        self._take()  # also after an attempt that found the server away

    def release(self) -> None:
        """Unlock, then close: the server ends a closed session's locks only when it gets
        to it, so a lease taken right after a bare close could still find it held."""
        self._released = True
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a lost connection: the server unlocks
                conn.execute("SELECT pg_advisory_unlock_all()")
            with contextlib.suppress(Exception):
                conn.close()
