"""The SQL projector's bulk inserts (sql/bulkinsert.py, sql/rowbuild.py, issue 13): COPY
on PostgreSQL, a raw ``executemany`` of pre-processed tuples on SQLite, must leave exactly
the rows SQLAlchemy's own ``executemany`` of :func:`rowmap.row_values` leaves -- on SQLite
and on PostgreSQL, for a run with every kind of entity (including the Landscape tables)
and for random values (Hypothesis)."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect

from auditjournal import AuditStore, SqlDatabase, replay_sql
from auditjournal.sql import bulkinsert, rowbuild
from auditjournal.sql import projector as sqlprojector
from auditjournal.sql.tables import checkpoints, node_states
from landscape_run import record_landscape
from test_sqlproj import BACKENDS, backend_url, dump_tables, record_rich_run

PG_ENV = "AUDITJOURNAL_TEST_DATABASE_URL"


def _record(root: Path) -> tuple[AuditStore, list[str]]:
    store = AuditStore.open(root)
    rich = f"rich-{uuid.uuid4().hex[:8]}"
    record_rich_run(store, rich)
    landscape = f"landscape-{uuid.uuid4().hex[:8]}"
    with store.start_run(run_id=landscape, config={"n": 1}, export=None, sql=False) as run:
        record_landscape(run)
    return store, [rich, landscape]


@pytest.mark.parametrize("name", BACKENDS)
def test_bulk_inserts_leave_the_rows_sqlalchemy_leaves(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = backend_url(name, tmp_path)
    store, run_ids = _record(tmp_path / "root")
    database = SqlDatabase(url)
    try:
        dumps: dict[str, list[dict[str, Any]]] = {}
        makers = {"fast": rowbuild.row_makers, "reference": lambda _: rowbuild.reference_makers()}
        for kind, make in makers.items():
            monkeypatch.setattr(sqlprojector, "_row_makers", make)
            for run_id in run_ids:
                # small batches: states completed in a later batch take the UPDATE path too
                replay_sql(
                    database=database,
                    journal_dir=store.journal_dir(run_id),
                    run_id=run_id,
                    batch_size=7,
                )
            dumps[kind] = [dump_tables(database, r) for r in run_ids]
        fast, generic = dumps["fast"], dumps["reference"]
        assert fast == generic
        assert all(sum(len(rows) for rows in d.values()) > 20 for d in fast)
    finally:
        for run_id in run_ids:
            database.delete_run(run_id)
        database.close()
        store.close()


# PostgreSQL text holds no NUL; no journal holds a lone surrogate (UTF-8 cannot carry one)
_chars = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
_text = st.text(_chars, min_size=1, max_size=8)
_texts = st.one_of(st.none(), st.text(_chars, max_size=12))
_times = st.one_of(
    st.none(),
    st.datetimes(
        min_value=dt.datetime(1, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-3, minutes=-30))]),
    ),
)
_state = st.fixed_dictionaries(
    {
        "state_id": st.uuids().map(str),
        "token_id": _text,
        "row_id": _text,
        "node_id": _text,
        "step_index": st.integers(-(2**40), 2**40),
        "attempt": st.integers(0, 9),
        "status": st.sampled_from(["open", "completed", "failed"]),
        "input_hash": _texts,
        "duration_ms": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
        "started_at": _times,
        "completed_at": _times,
        "input_data_retained": st.one_of(st.none(), st.booleans()),
        "started_seq": st.integers(1, 2**40),
        "seq": st.one_of(st.none(), st.integers(1, 2**40)),
        "error_json": _texts,
    }
)


def _fast_insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """The fast path as the row builders use it: each value through its column's
    processor, None as the path's NULL, then the path's insert."""
    path = bulkinsert.fast_path(conn.dialect)
    assert path is not None
    columns = tuple(rows[0])
    processors = [path.processor(table, c) for c in columns]
    tuples = []
    for row in rows:
        pairs = zip(columns, processors, strict=True)
        values = (row[c] if p is None else p(row[c]) for c, p in pairs)
        tuples.append(tuple(path.null if v is None else v for v in values))
    path.insert(conn, table, columns, tuples)


def _dump(database: SqlDatabase, run_id: str) -> list[dict[str, Any]]:
    with database.engine.connect() as conn:
        query = sa.select(node_states).where(node_states.c.run_id == run_id)
        return [dict(r._mapping) for r in conn.execute(query.order_by(node_states.c.state_id))]


@pytest.mark.parametrize("name", BACKENDS)
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(states=st.lists(_state, min_size=1, max_size=6, unique_by=lambda s: s["state_id"]))
def test_random_rows_are_stored_as_sqlalchemy_stores_them(
    name: str, tmp_path: Path, states: list[dict[str, Any]]
) -> None:
    url = backend_url(name, tmp_path)
    database = SqlDatabase(url)
    runs = {"fast": f"hf-{uuid.uuid4().hex[:10]}", "generic": f"hg-{uuid.uuid4().hex[:10]}"}
    try:
        for kind, run_id in runs.items():
            rows = [{"run_id": run_id, **s} for s in states]
            insert = _fast_insert if kind == "fast" else bulkinsert.insert_rows_generic
            with database.engine.begin() as conn:
                insert(conn, node_states, rows)
        fast, generic = (_dump(database, run_id) for run_id in runs.values())
        for row in (*fast, *generic):
            del row["run_id"]
        assert fast == generic
    finally:
        with database.engine.begin() as conn:
            for run_id in runs.values():
                conn.execute(sa.delete(node_states).where(node_states.c.run_id == run_id))
        database.close()


@given(
    st.datetimes(
        min_value=dt.datetime(1, 1, 1),
        timezones=st.one_of(st.none(), st.timezones()),
    )
)
def test_sqlite_datetime_text_is_sqlalchemys(value: dt.datetime) -> None:
    dialect = sqlite_dialect.dialect()
    process = sa.DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    fast = bulkinsert._faster(process)
    assert fast is not process  # the fast formatter was chosen
    assert fast(value) == process(value)
    assert fast(None) is None


def test_a_processor_that_is_not_sqlites_datetime_is_kept() -> None:
    def upper(value: Any) -> Any:
        return str(value).upper()

    assert bulkinsert._faster(upper) is upper


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="needs PostgreSQL")
def test_postgresql_rows_go_through_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The PostgreSQL path is COPY (the generic one is never called)."""
    copied: list[str] = []
    real = bulkinsert._copy_rows

    def spy(conn: Any, table: sa.Table, columns: Any, rows: Any) -> None:
        copied.append(table.name)
        real(conn, table, columns, rows)

    monkeypatch.setattr(bulkinsert, "_copy_rows", spy)
    monkeypatch.setattr(rowbuild, "_CACHE", {})  # makers built now take the spy
    store, run_ids = _record(tmp_path / "root")
    database = SqlDatabase(os.environ[PG_ENV])
    try:
        replay_sql(database=database, journal_dir=store.journal_dir(run_ids[0]), run_id=run_ids[0])
        assert {"rows", "tokens", "node_states", "calls"} <= set(copied)
    finally:
        database.delete_run(run_ids[0])
        database.close()
        store.close()


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="needs PostgreSQL")
def test_a_refused_copy_is_reported_as_sqlalchemy_reports_driver_errors() -> None:
    """The projector turns SQLAlchemy errors into DatabaseError: COPY's must be one too."""
    database = SqlDatabase(os.environ[PG_ENV])
    row = {"run_id": "nul-run", "state_id": "s\x00", "token_id": "t", "row_id": "r"}
    row.update(node_id="n", step_index=1, attempt=0, status="open", started_seq=1)
    try:
        with pytest.raises(sa.exc.DBAPIError), database.engine.begin() as conn:
            _fast_insert(conn, node_states, [row])
    finally:
        database.close()


def test_a_refused_sqlite_insert_is_reported_as_sqlalchemy_reports_driver_errors(
    tmp_path: Path,
) -> None:
    """The SQLite path runs the driver's executemany itself: its errors must still be
    SQLAlchemy's (the projector turns those into DatabaseError), and roll back."""
    database = SqlDatabase(f"sqlite:///{tmp_path / 'refused.db'}")
    row = {"run_id": "r", "state_id": "s", "token_id": "t", "row_id": "r", "node_id": "n"}
    row.update(step_index=1, attempt=0, status=None, started_seq=1)  # status: NOT NULL
    try:
        refused = pytest.raises(sa.exc.IntegrityError, match="NOT NULL")
        with refused, database.engine.begin() as conn:
            _fast_insert(conn, node_states, [{**row, "state_id": "ok", "status": "open"}, row])
        with database.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(node_states)).scalar() == 0
    finally:
        database.close()


def test_the_checkpoint_update_runs_on_the_sqlite_driver(tmp_path: Path) -> None:
    """The projector's guarded checkpoint UPDATE on SQLite's own cursor: the rows it
    matched (0 when another projector moved the checkpoint first), the values stored as
    SQLAlchemy stores them; other dialects, and statements with processed types, keep
    SQLAlchemy's execute."""
    move = sqlprojector._MOVE_CHECKPOINT
    assert bulkinsert.driver_update(postgresql.psycopg.dialect(), move) is None
    database = SqlDatabase(f"sqlite:///{tmp_path / 'move.db'}")
    try:
        update = bulkinsert.driver_update(database.engine.dialect, move)
        assert update is not None
        stored = {"run_id": "r", "last_seq": 5, "segment_first_seq": 1, "segment_offset": 10}
        moved = {"last_seq": 9, "segment_first_seq": 2, "segment_offset": 20, "chain": "cd"}
        with database.engine.begin() as conn:
            conn.execute(checkpoints.insert(), {**stored, "chain": "ab"})
            assert update(conn, {**moved, "b_run_id": "r", "b_applied": 4}) == 0
            assert update(conn, {**moved, "b_run_id": "other", "b_applied": 5}) == 0
            assert update(conn, {**moved, "b_run_id": "r", "b_applied": 5}) == 1
        with database.engine.connect() as conn:
            row = conn.execute(sa.select(checkpoints)).one()
        assert dict(row._mapping) == {"run_id": "r", **moved}
        processed = sa.update(node_states).values(started_at=sa.bindparam("t"))
        assert bulkinsert.driver_update(database.engine.dialect, processed) is None
    finally:
        database.close()
