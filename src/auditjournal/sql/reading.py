"""The audit tables a read command answers from, without writing to the evidence.

``runs``, ``show`` and ``explain`` read; they must work on a read-only copy of a
store and never change one (issue 15 item 6). The store's own SQLite file
(``<root>/landscape.db``) is therefore opened read-only: ``immutable=1`` when no
connection has it open (no ``-wal`` file beside it: ``mode=ro`` would create one
and a ``-shm``) or on a read-only filesystem, else ``mode=ro`` (a writer is at
work; its files exist already). When the file already holds
everything the runs' journals hold, the query reads it as it is. When a journal
has more (a run still being recorded without SQL, a store copied before its
tables caught up), the file is copied into an in-memory database with SQLite's
backup API and the missing events are projected there: the answer is complete,
and the store's file is untouched. A file of an older schema version (1 or 2,
before issue 14's tables and columns, or before run_interruptions) is likewise
upgraded in the copy only.

A database the caller names (``--db URL``) is theirs, not evidence: it is used
and brought up to date as before.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from ..errors import AuditJournalError, DatabaseError
from ..journal.base import RunJournal
from .schema import _SCHEMA_NAME, SCHEMA_VERSION, SqlDatabase

__all__ = ["open_read_only", "tables_current"]


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _connect_read_only(path: Path) -> sqlite3.Connection:
    # No -wal file: no connection has the database open (SQLite removes it when the last
    # one closes), and opening it even read-only in WAL mode would create -wal and -shm
    # beside it; immutable reads the one file as it is. Else a writer may be at work:
    # read-only mode, which reads its -wal (the files exist already).
    idle = not path.with_name(path.name + "-wal").exists()
    mode = "immutable=1" if idle or _read_only_fs(path.parent) else "mode=ro"
    try:
        return sqlite3.connect(f"file:{path.resolve()}?{mode}", uri=True, check_same_thread=False)
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open {path} read-only: {exc}") from None


def _sqlite_engine(connect: sqlite3.Connection) -> sa.Engine:
    return sa.create_engine("sqlite://", creator=lambda: connect, poolclass=StaticPool)


def _older_schema(source: sqlite3.Connection) -> bool:
    """Whether the file holds audit tables of a version before this one (an upgrade,
    which writes, is needed before they can be queried)."""
    try:
        row = source.execute(
            "SELECT version FROM schema_version WHERE name = ?", (_SCHEMA_NAME,)
        ).fetchone()
    except sqlite3.Error:
        return False  # no tables yet (or not ours): SqlDatabase says which
    return row is not None and isinstance(row[0], int) and row[0] < SCHEMA_VERSION


def open_read_only(path: Path, journals: Sequence[RunJournal]) -> tuple[SqlDatabase, bool]:
    """The tables of the SQLite file ``path``, read-only, for the runs of ``journals``:
    ``(database, refresh)``. ``refresh`` is False when the
    file is current for every run (query it as it is); else the database is an
    in-memory copy that the caller brings up to date (``refresh_tables``)."""
    memory = sqlite3.connect(":memory:", check_same_thread=False)
    if path.is_file():
        source = _connect_read_only(path)
        database = None
        if not _older_schema(source):
            database = SqlDatabase("sqlite://", engine=_sqlite_engine(source))
            if all(tables_current(database, journal) for journal in journals):
                memory.close()
                return database, False
        try:
            source.backup(memory)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot read {path}: {exc}") from None
        finally:
            if database is not None:
                database.engine.dispose()
            source.close()
    return SqlDatabase("sqlite://", engine=_sqlite_engine(memory)), True


def tables_current(database: SqlDatabase, journal: RunJournal) -> bool:
    """Whether the tables hold every complete and incomplete byte of the run's journal:
    its checkpoint stands at the journal's end."""
    try:
        checkpoint = database.checkpoint(journal.run_id)
    except AuditJournalError:
        return False
    if checkpoint is None:
        return not journal.exists()  # a run the database alone knows: nothing to add
    try:
        return journal.bytes_before(checkpoint.position) == journal.size_bytes()
    except (AuditJournalError, OSError):
        return False
