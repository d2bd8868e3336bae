"""The SQL projector's rows made ahead (``gather``) and written a slice at a time
(``begin_write`` / ``write_some``), as the projector process does beside a live export
(issue 13: a whole batch at once held the export back ~20 ms and the recorder waited).

The tables must end as a plain replay leaves them; nothing shows before the commit (the
checkpoint moves in the same transaction); a projector closed in the middle leaves the
tables as they were, and the next one resumes from the checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from auditjournal import SqlDatabase, replay_sql
from auditjournal.sql import projector as projector_module
from auditjournal.sql.projector import SqlProjector
from auditjournal.sql.schema import checkpoints
from test_sqlproj import BACKENDS, Backend, open_backend, record_rich_run

ROWS = 30


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with open_backend(request.param, tmp_path) as backend:
        yield backend


def _reference(env: Backend, run_id: str) -> dict[str, Any]:
    """The tables as one plain replay leaves them (then emptied again)."""
    replay_sql(database=env.database, journal_dir=env.store.journal_dir(run_id), run_id=run_id)
    tables = env.dump(run_id)
    env.database.delete_run(run_id)
    return tables


def _recorded(env: Backend, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, Any]]:
    """A run recorded and its tables as a plain replay leaves them (then emptied), with
    slices of 16 rows (many slices for the 30-row run)."""
    monkeypatch.setattr(projector_module, "WRITE_SLICE_ROWS", 16)
    run_id = env.new_run_id("sliced")
    record_rich_run(env.store, run_id, rows=ROWS)
    return run_id, _reference(env, run_id)


def _checkpoint(database: SqlDatabase, run_id: str) -> int | None:
    """The checkpoint as another connection sees it (committed state only)."""
    with database.engine.connect() as conn:
        query = sa.select(checkpoints.c.last_seq).where(checkpoints.c.run_id == run_id)
        last: int | None = conn.execute(query).scalar()
    return last


def _projector(env: Backend, run_id: str) -> SqlProjector:
    return SqlProjector(
        database=env.database, journal_dir=env.store.journal_dir(run_id), run_id=run_id
    )


def test_gathered_rows_are_written_by_the_next_step_in_slices(
    env: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, expected = _recorded(env, monkeypatch)
    last_seq = expected[checkpoints.name][0]["last_seq"]

    projector = _projector(env, run_id)
    try:
        assert projector.gather(40) == 40
        assert projector.gather(25) == 25
        assert projector.gathered == 65 and projector.applied_seq == 0
        assert _checkpoint(env.database, run_id) is None  # gathered: nothing written

        assert projector.begin_write() == last_seq  # the gathered and the rest, one batch
        assert projector.writing and projector.gathered == 0
        slices = 0
        while (applied := projector.write_some()) is None:
            slices += 1
            assert _checkpoint(env.database, run_id) is None  # not before the commit
        assert slices > 3, slices
        assert applied == last_seq == projector.applied_seq
        assert not projector.writing
        assert projector.step() == 0  # nothing new
    finally:
        projector.close()
    assert env.dump(run_id) == expected


def test_a_projector_closed_in_the_middle_of_a_write_leaves_the_tables_as_they_were(
    env: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, expected = _recorded(env, monkeypatch)

    first = _projector(env, run_id)
    try:
        assert first.step(limit=50) == 50  # a batch committed the plain way
        assert first.begin_write(limit=200) == 200
        assert first.write_some() is None
        assert first.write_some() is None
        assert first.gather(30) == 30  # rows for the batch after the one being written
    finally:
        first.close()  # rolled back: the checkpoint stays at 50
    assert not first.writing and first.gathered == 0
    assert _checkpoint(env.database, run_id) == 50

    second = _projector(env, run_id)
    try:
        assert second.applied_seq == 50
        second.run()
    finally:
        second.close()
    assert env.dump(run_id) == expected


def test_only_one_write_at_a_time(env: Backend) -> None:
    run_id = env.new_run_id("sliced")
    record_rich_run(env.store, run_id, rows=3)
    projector = _projector(env, run_id)
    try:
        with pytest.raises(RuntimeError, match="no write under way"):
            projector.write_some()
        assert projector.begin_write() > 0
        with pytest.raises(RuntimeError, match="a write is under way"):
            projector.begin_write()
        assert projector.step() > 0  # finishes the write under way
        assert not projector.writing
    finally:
        projector.close()
