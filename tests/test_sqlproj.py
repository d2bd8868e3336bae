"""The SQL projector (SPEC §1, §6): audit tables, exactly-once batches, checkpoints, schema.

One contract test class runs against every backend: SQLite always, PostgreSQL
when ``AUDITJOURNAL_TEST_DATABASE_URL`` names one (e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Every test uses its
own run ids and deletes their rows afterwards, so a shared PostgreSQL database
stays usable by parallel test sessions. Expected table contents are derived
here from the journal's events, not from the projector's own mapping.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from auditjournal import (
    AuditStore,
    DatabaseError,
    ExportSettings,
    RunExistsError,
    SchemaVersionError,
    SqlDatabase,
    SqlProjector,
    replay_sql,
)
from auditjournal.model.events import NodeStateCompleted, NodeStateStarted, RunCompleted
from auditjournal.projection.service import ProjectionService
from auditjournal.sql.projector import table_rows
from auditjournal.sql.schema import SCHEMA_VERSION

PG_ENV = "AUDITJOURNAL_TEST_DATABASE_URL"
PG_SKIP = (
    f"PostgreSQL contract tests need {PG_ENV} "
    "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
)


# -- backends ----------------------------------------------------------------------------


def backend_url(name: str, tmp_path: Path) -> str:
    """The database URL of a backend (skips the test when PostgreSQL is not configured)."""
    if name == "sqlite":
        return f"sqlite:///{tmp_path / 'landscape-test.db'}"
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(PG_SKIP)
    return url


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@dataclass
class Backend:
    """A store whose SQL tables live in the backend under test, with cleanup of its runs."""

    name: str
    url: str
    store: AuditStore
    database: SqlDatabase
    run_ids: list[str]

    def new_run_id(self, label: str = "run") -> str:
        run_id = f"{label}-{uuid.uuid4().hex[:12]}"
        self.run_ids.append(run_id)
        return run_id

    def dump(self, run_id: str, database: SqlDatabase | None = None) -> dict[str, Any]:
        return dump_tables(database or self.database, run_id)


@contextlib.contextmanager
def open_backend(name: str, tmp_path: Path) -> Iterator[Backend]:
    """A store on the backend ``name``; the runs it made are deleted at the end."""
    url = backend_url(name, tmp_path)
    store = AuditStore.open(tmp_path / "root", database_url=url)
    database = SqlDatabase(url)
    env = Backend(name, url, store, database, [])
    try:
        yield env
    finally:
        store.close()
        for run_id in env.run_ids:
            database.delete_run(run_id)
        database.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with open_backend(request.param, tmp_path) as env:
        yield env


def dump_tables(database: SqlDatabase, run_id: str) -> dict[str, Any]:
    """Every table's rows of a run, comparable across backends (datetimes as UTC)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            return value.isoformat()
        return value

    return {
        name: [{k: plain(v) for k, v in row.items()} for row in rows]
        for name, rows in table_rows(database, run_id)
    }


# -- a run with every kind of entity -----------------------------------------------------

ROWS = 12


def record_rich_run(
    store: AuditStore,
    run_id: str,
    *,
    export: ExportSettings | None = None,
    sql: bool = False,
    rows: int = ROWS,
    leave_open: bool = True,
) -> None:
    """Forks with parent tokens, a failed state, quarantine, retried calls, an operation
    call, routing with reasons, artifacts, and (``leave_open``) a state still open at the end.
    """
    with store.start_run(
        run_id=run_id, config={"rows": rows, "name": "rich"}, export=export, sql=sql
    ) as run:
        src = run.register_node(
            plugin_name="csv",
            node_type="source",
            plugin_version="1.0",
            config={"path": "in.csv"},
            output_schema={"type": "object"},
        )
        clean = run.register_node(plugin_name="clean", node_type="transform")
        llm = run.register_node(
            plugin_name="classify", node_type="transform", determinism="external_call"
        )
        gate = run.register_node(plugin_name="route", node_type="gate")
        sink = run.register_node(plugin_name="out", node_type="sink")
        run.register_edge(from_node_id=src, to_node_id=clean, label="continue")
        run.register_edge(from_node_id=clean, to_node_id=llm, label="continue")
        run.register_edge(from_node_id=llm, to_node_id=gate, label="continue")
        high = run.register_edge(from_node_id=gate, to_node_id=sink, label="high")
        low = run.register_edge(from_node_id=gate, to_node_id=sink, label="low", mode="copy")
        run.begin_operation(node_id=src, operation_type="source_load", operation_id="op-setup")
        run.record_call(
            operation_id="op-setup",
            call_type="http",
            status="success",
            request={"url": "https://example.org/schema"},
            response={"ok": True},
            latency_ms=1.25,
        )
        for i in range(rows):
            data = {"i": i, "text": f"row {i} " + "lorem " * (i % 5), "v": i * 0.25}
            row = run.create_row(source_node_id=src, row_index=i, data=data, row_id=f"r{i}")
            tok = run.create_token(row_id=row)
            st = run.begin_node_state(token_id=tok, node_id=clean, step_index=1, input_data=data)
            if i % 6 == 5:
                run.complete_node_state(
                    st, status="failed", error={"type": "ValueError", "message": f"bad {i}"}
                )
                run.record_token_outcome(token_id=tok, outcome="failed")
                continue
            if i % 6 == 4:
                run.complete_node_state(st, status="completed", output_data=data)
                run.record_token_outcome(token_id=tok, outcome="quarantined", context={"why": i})
                continue
            run.complete_node_state(
                st, status="completed", output_data={**data, "clean": True}, duration_ms=0.5
            )
            tokens = [tok]
            if i % 4 == 1:  # fork into two branches
                run.record_token_outcome(token_id=tok, outcome="forked")
                tokens = [
                    run.create_token(
                        row_id=row, parent_token_ids=[tok], branch_name=b, fork_group_id=f"fg{i}"
                    )
                    for b in ("a", "b")
                ]
            for child in tokens:
                st = run.begin_node_state(
                    token_id=child, node_id=llm, step_index=2, input_data={"i": i}
                )
                if i % 3 == 0:
                    run.record_call(
                        state_id=st,
                        call_type="llm",
                        status="error",
                        request={"prompt": f"classify {i}"},
                        error={"type": "Timeout"},
                        latency_ms=30.0,
                    )
                run.record_call(
                    state_id=st,
                    call_type="llm",
                    status="success",
                    request={"prompt": f"classify {i}"},
                    response={"label": i % 3, "score": 0.5 + i / 100},
                    latency_ms=3.0,
                )
                run.complete_node_state(
                    st,
                    status="completed",
                    output_data={"label": i % 3},
                    success_reason={"model": "m1"},
                )
                st = run.begin_node_state(
                    token_id=child, node_id=gate, step_index=3, input_data={"label": i % 3}
                )
                edge = high if i % 2 else low
                run.record_routing_event(
                    state_id=st,
                    edge_id=edge,
                    mode="move" if edge == high else "copy",
                    reason={"rule": "label", "label": i % 3},
                )
                run.complete_node_state(st, status="completed", output_data={"label": i % 3})
                st = run.begin_node_state(
                    token_id=child, node_id=sink, step_index=4, input_data={"i": i}
                )
                run.complete_node_state(st, status="completed", duration_ms=0.125)
                if i % 5 == 0:
                    run.record_artifact(
                        state_id=st,
                        sink_node_id=sink,
                        artifact_type="file",
                        path_or_uri=f"out-{i}.csv",
                        content_hash="ab" * 32,
                        size_bytes=1000 + i,
                        sink_input=[{"i": i}],
                    )
                run.record_token_outcome(token_id=child, outcome="completed", sink_name="out")
        if leave_open:
            last = run.create_row(source_node_id=src, row_index=rows, data={"i": rows})
            tok = run.create_token(row_id=last)
            run.begin_node_state(token_id=tok, node_id=clean, step_index=1, input_data={"x": 1})


# -- contract ----------------------------------------------------------------------------


class TestSqlProjectionContract:
    """What every backend must do. Runs once per backend (``backend`` fixture)."""

    def project(self, env: Backend, run_id: str, batch_size: int = 4096) -> int:
        projector = SqlProjector(
            database=env.database,
            journal_dir=env.store.journal_dir(run_id),
            run_id=run_id,
            batch_size=batch_size,
        )
        try:
            return projector.run()
        finally:
            projector.close()

    def test_tables_hold_every_entity_of_the_journal(self, backend: Backend) -> None:
        run_id = backend.new_run_id()
        record_rich_run(backend.store, run_id)
        events = list(backend.store.read_journal(run_id))
        assert self.project(backend, run_id) == events[-1].seq
        tables = backend.dump(run_id)

        def ids(table: str, key: str) -> list[str]:
            return sorted(r[key] for r in tables[table])

        def of(kind: str, key: str) -> list[str]:
            return sorted(getattr(e, key) for e in events if e.__struct_config__.tag == kind)

        assert ids("nodes", "node_id") == of("node_registered", "node_id")
        assert ids("edges", "edge_id") == of("edge_registered", "edge_id")
        assert ids("rows", "row_id") == of("row_created", "row_id")
        assert ids("tokens", "token_id") == of("token_created", "token_id")
        assert ids("node_states", "state_id") == of("node_state_started", "state_id")
        assert ids("routing_events", "routing_event_id") == of(
            "routing_event_recorded", "routing_event_id"
        )
        assert ids("calls", "call_id") == of("call_recorded", "call_id")
        assert ids("artifacts", "artifact_id") == of("artifact_recorded", "artifact_id")
        assert ids("token_outcomes", "outcome_id") == of("token_outcome_recorded", "outcome_id")
        parents = [
            (e.token_id, i, p)
            for e in events
            if e.__struct_config__.tag == "token_created"
            for i, p in enumerate(e.parent_token_ids)
        ]
        assert sorted(
            (r["token_id"], r["ordinal"], r["parent_token_id"]) for r in tables["token_parents"]
        ) == sorted(parents)
        assert parents, "the rich run forks tokens"

        # node states: the started event's fields, then the completion's (or open at the end)
        completed = {e.state_id: e for e in events if isinstance(e, NodeStateCompleted)}
        end = next(e for e in events if isinstance(e, RunCompleted))
        states = {r["state_id"]: r for r in tables["node_states"]}
        for started in (e for e in events if isinstance(e, NodeStateStarted)):
            row = states[started.state_id]
            assert (row["token_id"], row["row_id"], row["node_id"]) == (
                started.token_id,
                started.row_id,
                started.node_id,
            )
            assert row["input_data_ref"] == started.input_data_ref
            assert row["started_seq"] == started.seq
            done = completed.get(started.state_id)
            if done is None:
                assert row["status"] == "open"
                assert row["seq"] == end.seq
                assert row["completed_at"] is None
            else:
                assert row["status"] == done.status
                assert row["seq"] == done.seq
                assert row["output_data_ref"] == done.output_data_ref
                assert row["duration_ms"] == done.duration_ms
        assert any(r["status"] == "open" for r in states.values())
        assert any(r["status"] == "failed" for r in states.values())

        (run,) = tables["runs"]
        assert run["status"] == "completed"
        assert run["seq"] == end.seq
        assert run["started_seq"] == 1
        (checkpoint,) = tables["projection_checkpoints"]
        assert checkpoint["last_seq"] == events[-1].seq
        operation_call = next(r for r in tables["calls"] if r["operation_id"] == "op-setup")
        assert operation_call["state_id"] is None and operation_call["row_id"] is None

    def test_any_batching_gives_the_same_tables(self, backend: Backend) -> None:
        run_id = backend.new_run_id()
        record_rich_run(backend.store, run_id)
        self.project(backend, run_id)
        want = backend.dump(run_id)
        for batch_size in (1, 7, 64):
            backend.database.delete_run(run_id)
            self.project(backend, run_id, batch_size=batch_size)
            assert backend.dump(run_id) == want, f"batch size {batch_size}"

    def test_resumes_from_its_checkpoint(self, backend: Backend) -> None:
        run_id = backend.new_run_id()
        record_rich_run(backend.store, run_id)
        self.project(backend, run_id)
        want = backend.dump(run_id)
        backend.database.delete_run(run_id)
        journal_dir = backend.store.journal_dir(run_id)
        applied = 0
        while True:  # a new projector (a restart) for every few events
            projector = SqlProjector(
                database=backend.database, journal_dir=journal_dir, run_id=run_id
            )
            assert projector.applied_seq == applied
            moved = projector.step(limit=13)
            projector.close()
            if not moved:
                break
            applied += moved
        assert backend.dump(run_id) == want

    def test_racing_projectors_apply_each_event_once(self, backend: Backend) -> None:
        run_id = backend.new_run_id()
        record_rich_run(backend.store, run_id, rows=40)
        self.project(backend, run_id)
        want = backend.dump(run_id)
        backend.database.delete_run(run_id)
        errors: list[BaseException] = []

        def work(batch: int) -> None:
            try:
                projector = SqlProjector(
                    database=backend.database,
                    journal_dir=backend.store.journal_dir(run_id),
                    run_id=run_id,
                    batch_size=batch,
                )
                projector.run()
                projector.close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(b,)) for b in (5, 11, 17)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert backend.dump(run_id) == want

    def test_replay_rebuilds_damaged_tables(self, backend: Backend) -> None:
        run_id = backend.new_run_id()
        record_rich_run(backend.store, run_id)
        self.project(backend, run_id)
        want = backend.dump(run_id)
        from auditjournal.sql.schema import calls, node_states

        with backend.database.engine.begin() as conn:
            conn.execute(sa.delete(calls).where(calls.c.run_id == run_id))
            conn.execute(
                sa.update(node_states).where(node_states.c.run_id == run_id).values(status="x")
            )
        assert backend.dump(run_id) != want
        last = replay_sql(
            database=backend.database,
            journal_dir=backend.store.journal_dir(run_id),
            run_id=run_id,
        )
        assert last == want["projection_checkpoints"][0]["last_seq"]
        assert backend.dump(run_id) == want

    def test_live_tables_are_current_when_the_run_completes(self, backend: Backend) -> None:
        run_id = backend.new_run_id()
        record_rich_run(
            backend.store, run_id, export=ExportSettings(chunk_size_bytes=2048), sql=True
        )
        events = list(backend.store.read_journal(run_id))
        assert events[-1].__struct_config__.tag == "export_sealed"
        tables = backend.dump(run_id)
        (run,) = tables["runs"]
        assert run["status"] == "completed"
        assert run["export_status"] == "sealed"
        assert run["manifest_sha256"] == events[-1].manifest_sha256  # type: ignore[attr-defined]
        assert tables["projection_checkpoints"][0]["last_seq"] == events[-1].seq
        # the live tables equal a rebuild from the journal
        live = tables
        replay_sql(
            database=backend.database,
            journal_dir=backend.store.journal_dir(run_id),
            run_id=run_id,
        )
        assert backend.dump(run_id) == live

    def test_run_without_sql_leaves_no_tables(self, backend: Backend) -> None:
        run_id = backend.new_run_id()
        record_rich_run(backend.store, run_id, sql=False, rows=2)
        assert backend.database.checkpoint(run_id) is None
        assert all(not rows for rows in backend.dump(run_id).values())

    def test_a_run_id_already_in_the_tables_is_refused(self, backend: Backend) -> None:
        run_id = backend.new_run_id()
        record_rich_run(backend.store, run_id, sql=True, rows=2)
        other = AuditStore.open(backend.store.root.parent / "other", database_url=backend.url)
        try:
            with pytest.raises(RunExistsError, match="already has audit tables"):
                other.start_run(run_id=run_id, export=None)
            assert not other.journal_dir(run_id).exists(), "refused before creating the run"
        finally:
            other.close()

    def test_projection_service_keeps_tables_current(self, backend: Backend) -> None:
        run_ids = [backend.new_run_id() for _ in range(2)]
        for run_id in run_ids:
            record_rich_run(backend.store, run_id, rows=3)  # no export, no SQL while recording
        service = ProjectionService(backend.store, run_ids=run_ids, settings=ExportSettings())
        assert service.run(follow=False) == 2
        for run_id in run_ids:
            events = list(backend.store.read_journal(run_id))
            assert events[-1].__struct_config__.tag == "export_sealed"
            (run,) = backend.dump(run_id)["runs"]
            assert run["export_status"] == "sealed"
            assert backend.database.checkpoint(run_id).last_seq == events[-1].seq  # type: ignore[union-attr]

    def test_unfinished_run_is_projected_as_far_as_recorded(self, backend: Backend) -> None:
        run_id = backend.new_run_id()
        run = backend.store.start_run(run_id=run_id, export=None)
        src = run.register_node(plugin_name="csv", node_type="source")
        row = run.create_row(source_node_id=src, row_index=0, data={"a": 1})
        tok = run.create_token(row_id=row)
        run.begin_node_state(token_id=tok, node_id=src, step_index=0, input_data={"a": 1})
        last = run.last_seq
        run.close()  # stops following: the tables hold what the live thread applied
        SqlProjector(
            database=backend.database, journal_dir=backend.store.journal_dir(run_id), run_id=run_id
        ).run()
        tables = backend.dump(run_id)
        assert tables["runs"][0]["status"] == "running"
        assert tables["node_states"][0]["status"] == "open"
        assert tables["node_states"][0]["seq"] is None
        assert tables["projection_checkpoints"][0]["last_seq"] == last


# -- schema and errors (per backend where it matters) --------------------------------------


def test_schema_is_created_once_and_version_checked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    SqlDatabase(url).close()
    SqlDatabase(url).close()  # second open: schema found, version matches
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE schema_version SET version = 99"))
    engine.dispose()
    with pytest.raises(SchemaVersionError, match="schema version 99"):
        SqlDatabase(url)


def test_foreign_tables_without_schema_version_are_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE runs (run_id TEXT PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(SchemaVersionError, match="no schema_version"):
        SqlDatabase(url)


def test_a_creator_that_wins_between_the_check_and_the_create(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tables are created without a second look per table: when another process
    creates them after our check, our CREATE fails and the second attempt finds them."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    listed = sa.Inspector.get_table_names
    raced: list[bool] = []

    def stale(self: sa.Inspector, *args: Any, **kwargs: Any) -> list[str]:
        names = listed(self, *args, **kwargs)
        if not raced:  # the first look: empty; then the other creator wins
            raced.append(True)
            SqlDatabase(url).close()
        return names

    monkeypatch.setattr(sa.Inspector, "get_table_names", stale)
    database = SqlDatabase(url)
    with database.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name, version FROM schema_version")).all() == [
            ("auditjournal-landscape", SCHEMA_VERSION)
        ]
    database.close()
    assert raced


def test_the_fork_server_preloads_the_sqlite_row_builders() -> None:
    """Projector processes are forked with SQLite's row builders built (a fresh
    interpreter: what the fork server imports, and nothing else, builds them)."""
    code = (
        "from auditjournal.sql import rowbuild\n"
        "from auditjournal.fs.processes import SERVER_PRELOAD\n"
        "import importlib\n"
        "assert not rowbuild._CACHE\n"
        "for name in SERVER_PRELOAD: importlib.import_module(name)\n"
        "print(sorted(rowbuild._CACHE))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[('sqlite', 'pysqlite', 'qmark')]"


def test_the_preload_never_stops_the_fork_server() -> None:
    """Without a usable SQLite (here: creating its engine fails) the preload is skipped:
    importing it raises nothing, and nothing is built."""
    code = (
        "import sqlalchemy as sa\n"
        "def broken(*args, **kwargs): raise ImportError('no sqlite3 here')\n"
        "sa.create_engine = broken\n"
        "import auditjournal.sql.preload\n"
        "from auditjournal.sql import rowbuild\n"
        "print(len(rowbuild._CACHE))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_store_with_wrong_schema_fails_before_the_run_exists(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    SqlDatabase(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE schema_version SET version = 4"))  # a newer one
    engine.dispose()
    with AuditStore.open(tmp_path / "root", database_url=url) as store:
        with pytest.raises(SchemaVersionError):
            store.start_run(run_id="r1", export=None)
        assert not store.journal_dir("r1").exists()
        store.start_run(run_id="r2", export=None, sql=False).complete()  # no SQL: unaffected


@pytest.mark.postgres
def test_postgresql_schema_version_mismatch() -> None:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(PG_SKIP)
    schema = f"aj_version_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    scoped = sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        SqlDatabase(scoped.render_as_string(hide_password=False)).close()
        with admin.begin() as conn:
            conn.execute(sa.text(f'UPDATE "{schema}".schema_version SET version = 7'))
        with pytest.raises(SchemaVersionError, match="schema version 7"):
            SqlDatabase(scoped.render_as_string(hide_password=False))
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_default_database_is_sqlite_in_wal_mode(tmp_path: Path) -> None:
    with AuditStore.open(tmp_path / "root") as store:
        record_rich_run(store, "r1", rows=2, sql=True)
        assert (tmp_path / "root" / "landscape.db").is_file()
        with store.sql_database().engine.connect() as conn:
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"


def test_unreachable_database_is_one_clear_line_without_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg://auditor:s3cret-pw@127.0.0.1:9/nowhere?connect_timeout=2"
    with pytest.raises(DatabaseError) as caught:
        SqlDatabase(url)
    message = str(caught.value)
    assert "s3cret-pw" not in message
    assert "\n" not in message
    with pytest.raises(DatabaseError) as caught:
        SqlDatabase("not a url :// s3cret-pw")
    assert "s3cret-pw" not in str(caught.value)


def test_live_projection_failure_surfaces_at_complete_and_is_repairable(tmp_path: Path) -> None:
    """The journal and export are complete even when the tables fail; a rebuild repairs them."""
    store = AuditStore.open(tmp_path / "root")
    database = store.sql_database()
    with database.engine.begin() as conn:  # break the tables under the live projector
        conn.execute(sa.text("ALTER TABLE calls RENAME TO calls_away"))
    run = store.start_run(run_id="r1", export=ExportSettings())
    src = run.register_node(plugin_name="csv", node_type="source")
    row = run.create_row(source_node_id=src, row_index=0, data={"a": 1})
    tok = run.create_token(row_id=row)
    st = run.begin_node_state(token_id=tok, node_id=src, step_index=0, input_data={"a": 1})
    run.record_call(state_id=st, call_type="http", status="success", request={"u": 1})
    with pytest.raises(DatabaseError, match="SQL projection of run 'r1' failed"):
        run.complete()
    run.close()
    events = list(store.read_journal("r1"))
    assert [e.__struct_config__.tag for e in events[-2:]] == ["run_completed", "export_sealed"]
    with database.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE calls_away RENAME TO calls"))
    projector = store.sql_projector("r1")
    assert projector.run() == events[-1].seq  # resumes from its last good checkpoint
    projector.close()
    got = dump_tables(database, "r1")
    replay_sql(database=database, journal_dir=store.journal_dir("r1"), run_id="r1")
    assert dump_tables(database, "r1") == got
    store.close()


def test_every_event_field_has_a_column() -> None:
    """A new event field must get a column (and a schema version), not vanish silently."""
    from auditjournal.model.events import TokenCreated
    from auditjournal.sql.rowmap import DROPPED

    assert {kind: fields for kind, fields in DROPPED.items() if fields} == {
        TokenCreated: ("parent_token_ids",)  # its own table, token_parents
    }
