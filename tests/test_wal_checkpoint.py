"""The SQL tables' write-ahead log checkpointed off the writer's thread (sql/walcheckpoint.py)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from auditjournal.sql import walcheckpoint
from auditjournal.sql.schema import SqlDatabase
from auditjournal.sql.walcheckpoint import WalCheckpointer

ROWS = sa.table("t", sa.column("n"), sa.column("pad"))


def _database(tmp_path: Path) -> SqlDatabase:
    database = SqlDatabase(f"sqlite:///{tmp_path / 'tables.db'}")
    with database.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (n INTEGER PRIMARY KEY, pad TEXT)"))
    return database


def _commit_rows(database: SqlDatabase, start: int, count: int = 200, pad: int = 400) -> None:
    with database.engine.begin() as conn:
        conn.execute(ROWS.insert(), [{"n": start + i, "pad": "x" * pad} for i in range(count)])


def _autocheckpoint(database: SqlDatabase) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(sa.text("PRAGMA wal_autocheckpoint")).scalar_one())


def _wait_for(condition: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def test_the_writer_commits_without_checkpoints_and_the_thread_makes_them(
    tmp_path: Path,
) -> None:
    database = _database(tmp_path)
    assert _autocheckpoint(database) == 1000  # SQLite's default
    checkpointer = WalCheckpointer(database.engine, every=0.0)
    try:
        assert _autocheckpoint(database) == 0
        for batch in range(40):  # ~3.5 MB of rows: past 1,000 pages
            _commit_rows(database, 200 * batch)
            checkpointer.poke()
        _wait_for(lambda: checkpointer.checkpoints > 0)
        assert checkpointer.checkpoints > 0 and checkpointer.error is None
        # what the thread checkpointed is in the database file itself
        with sqlite3.connect(tmp_path / "tables.db") as raw:
            raw.execute("PRAGMA wal_checkpoint(PASSIVE)")
            assert raw.execute("SELECT count(*) FROM t").fetchone() == (8000,)
    finally:
        checkpointer.close()
        database.close()


def _rows(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "tables.db") as raw:
        return int(raw.execute("SELECT count(*) FROM t").fetchone()[0])


def test_the_log_stays_bounded_with_the_thread(tmp_path: Path) -> None:
    """Without it (autocheckpoint off) the log would hold every commit's pages: ~26 MB
    here; with a checkpoint between commits the writer starts it over each time."""
    database = _database(tmp_path)
    checkpointer = WalCheckpointer(database.engine, every=0.0)
    try:
        for batch in range(60):
            _commit_rows(database, 200 * batch, pad=2000)
            checkpointer.poke()
            _wait_for(lambda b=batch: checkpointer.checkpoints > b)
        log = (tmp_path / "tables.db-wal").stat().st_size
    finally:
        checkpointer.close()
        database.close()
    assert log < 2 << 20  # one commit's pages, about
    assert _rows(tmp_path) == 12000


def test_a_log_past_its_limit_is_emptied(tmp_path: Path) -> None:
    """Checkpoints overlapping the commits can keep the writer from starting the log
    over; past ``log_limit`` (here: any log at all) the thread empties it."""
    database = _database(tmp_path)
    checkpointer = WalCheckpointer(database.engine, every=0.0, log_limit=1)
    try:
        for batch in range(60):
            _commit_rows(database, 200 * batch, pad=2000)
            checkpointer.poke()
        _wait_for(lambda: checkpointer.truncations > 0)
        assert checkpointer.truncations > 0
        _wait_for(lambda: not checkpointer._due.is_set())
        time.sleep(0.05)  # the last checkpoint under way
        assert (tmp_path / "tables.db-wal").stat().st_size < 2 << 20
    finally:
        checkpointer.close()
        database.close()
    assert _rows(tmp_path) == 12000


def test_a_failed_thread_gives_sqlite_its_own_checkpoints_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    database = _database(tmp_path)

    def broken(*_args: object, **_kwargs: object) -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(walcheckpoint.sqlite3, "connect", broken)
    checkpointer = WalCheckpointer(database.engine, every=0.0)
    try:
        _wait_for(lambda: checkpointer.error is not None)
        assert isinstance(checkpointer.error, sqlite3.OperationalError)
        checkpointer.poke()
        assert _autocheckpoint(database) == 1000
        assert "background WAL checkpoints stopped" in caplog.text
    finally:
        checkpointer.close()
        database.close()


def test_close_gives_new_connections_sqlites_checkpoints_back(tmp_path: Path) -> None:
    database = _database(tmp_path)
    checkpointer = WalCheckpointer(database.engine)
    checkpointer.close()
    database.engine.dispose()
    try:
        assert _autocheckpoint(database) == 1000
    finally:
        database.close()


def test_only_a_sqlite_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SQLite database in a file"):
        WalCheckpointer(sa.create_engine("sqlite://"))
