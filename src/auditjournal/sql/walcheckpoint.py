"""A SQLite database's write-ahead log checkpointed on a thread of its own.

SQLite checkpoints the log in the commit that takes it past ``wal_autocheckpoint`` pages
(1,000 by default): that commit copies the pages into the database file and fsyncs it,
several to tens of milliseconds. In the projector process the SQL tables and the live
export take turns in one thread, so such a commit holds the export back, and the
export's lag bound then stops the recorder (docs/decisions.md, issue 13). With a
:class:`WalCheckpointer` the writer's connections run with automatic checkpoints off,
and a thread with a connection of its own checkpoints the log (``PASSIVE``: it neither
waits for the writer nor makes it wait) when the writer says it committed, at most every
``every`` seconds. SQLite's module lets the GIL go while it works, so the copy and the
fsync overlap the projector's other work. The writer starts the log over at its first
commit after a checkpoint that took all of it; a checkpoint that keeps overlapping the
commits could leave the log growing, so past ``log_limit`` bytes the thread checkpoints
with ``TRUNCATE`` (it waits for the writer's transaction, then empties the log). Should
the thread fail, the writer's connections get SQLite's automatic checkpoints back: the
log never grows without bound.

Thread-safety: :meth:`WalCheckpointer.poke` and :meth:`WalCheckpointer.close` from the
writer's thread, between its transactions.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from typing import Any, Final

import sqlalchemy as sa

__all__ = ["EVERY", "LOG_LIMIT", "WalCheckpointer", "file_of"]

_log = logging.getLogger(__name__)  # under the "auditjournal" logger

EVERY: Final = 0.25  # seconds between checkpoints at most (a log of ~1-5 MB at full speed)
LOG_LIMIT: Final = 64 << 20  # bytes of log past which the thread empties it (TRUNCATE)
_JOIN_TIMEOUT: Final = 30.0  # seconds close() waits for a checkpoint under way


def file_of(engine: sa.Engine) -> str | None:
    """The path of ``engine``'s SQLite database if it is a plain file, else None (a
    URL with options, e.g. a ``file:`` URI, keeps SQLite's own checkpoints: the thread
    opens the database by its path)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.query:
        return None
    return None if url.database in (None, "", ":memory:") else url.database


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


class WalCheckpointer:
    """Checkpoints the log of ``engine``'s SQLite file database on its own thread."""

    def __init__(
        self, engine: sa.Engine, *, every: float = EVERY, log_limit: int = LOG_LIMIT
    ) -> None:
        database = file_of(engine)
        if database is None:
            raise ValueError("a WalCheckpointer needs a SQLite database in a file")
        self._engine = engine
        self._path = database
        self._every = every
        self._log_limit = log_limit
        self._due = threading.Event()
        self._stopping = False
        self.checkpoints = 0
        """How many checkpoints the thread made (for tests and figures)."""
        self.truncations = 0
        """How many times the log passed ``log_limit`` and was emptied."""
        self.error: BaseException | None = None
        """Why the thread stopped checkpointing, if it did (then SQLite's own are back)."""
        self._fallen_back = False
        sa.event.listen(engine, "connect", _no_autocheckpoint)
        engine.dispose()  # pooled connections are opened again, without autocheckpoints
        self._thread = threading.Thread(
            target=self._run, name="auditjournal-wal-checkpoint", daemon=True
        )
        self._thread.start()

    def poke(self) -> None:
        """The writer committed: checkpoint soon (or, if the thread failed, let SQLite)."""
        if self.error is not None and not self._fallen_back:
            self._fall_back()
        self._due.set()

    def close(self) -> None:
        """Stop the thread (after a checkpoint under way); the log's last frames are
        checkpointed by SQLite when the database's last connection closes."""
        self._stopping = True
        self._due.set()
        self._thread.join(_JOIN_TIMEOUT)
        if not self._fallen_back:
            sa.event.remove(self._engine, "connect", _no_autocheckpoint)

    def _fall_back(self) -> None:
        self._fallen_back = True
        _log.warning("SQL tables: background WAL checkpoints stopped (%s)", self.error)
        sa.event.remove(self._engine, "connect", _no_autocheckpoint)
        self._engine.dispose()  # connections opened again, with SQLite's checkpoints

    def _log_bytes(self) -> int:
        try:
            return os.stat(f"{self._path}-wal").st_size
        except FileNotFoundError:
            return 0

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, timeout=30.0)
        except sqlite3.Error as exc:
            self.error = exc
            return
        try:
            while True:
                self._due.wait()
                if self._stopping:
                    return
                self._due.clear()
                started = time.monotonic()
                # every row fetched: a statement left unfinished would hold a read of the
                # log, and the writer could not start it over (it would only grow)
                ((busy, _frames, _done),) = conn.execute(
                    "PRAGMA wal_checkpoint(PASSIVE)"
                ).fetchall()
                if not busy:
                    self.checkpoints += 1
                if self._log_bytes() > self._log_limit:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                    self.truncations += 1
                rest = self._every - (time.monotonic() - started)
                if rest > 0 and not self._stopping:
                    time.sleep(rest)  # the pokes meanwhile make one checkpoint
        except sqlite3.Error as exc:
            self.error = exc
        finally:
            conn.close()
