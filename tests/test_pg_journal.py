"""The PostgreSQL journal backend (issue 12): one run, several writers, one chain.

Every test has a database of its own on the server of ``AUDITJOURNAL_TEST_DATABASE_URL``
(tests/pgtools.py); PostgreSQL is never mocked. Writers in other processes each have
their own root directory: nothing is shared but the URL.
"""

from __future__ import annotations

import datetime as dt
import filecmp
import hashlib
import itertools
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from auditjournal import (
    AuditStore,
    DuplicateIdError,
    ExportSettings,
    InvalidSettingsError,
    LifecycleError,
    RunAlreadyCompletedError,
    RunExistsError,
    RunNotFoundError,
    StateAlreadyCompletedError,
    UnknownIdError,
)
from auditjournal.errors import (
    JournalUnavailableError,
    OperationAlreadyCompletedError,
    PayloadNotFoundError,
    SchemaVersionError,
)
from auditjournal.evidence.verify import verify_export
from auditjournal.export.replay import replay_export
from auditjournal.journal.files import JournalReader
from auditjournal.journal.pgschema import PgDatabase, RunLease
from auditjournal.model.canonical import canonical_json
from auditjournal.model.events import RunCompleted, decode_event

pytestmark = pytest.mark.postgres

HERE = Path(__file__).parent


def pg_lines(url: str, run_id: str) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT seq, writer_id, line FROM auditjournal_events "
                        "WHERE run_id = :r ORDER BY seq"
                    ),
                    {"r": run_id},
                )
            )
    finally:
        engine.dispose()


def pg_events(url: str, run_id: str) -> list[Any]:
    return [decode_event(bytes(r.line)) for r in pg_lines(url, run_id)]


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Event timestamps from a counter (reset by the returned function), so two
    recordings of the same calls are equal."""
    start = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    ticks = [itertools.count()]

    def now(tz: Any = None) -> dt.datetime:
        return start + dt.timedelta(milliseconds=next(ticks[0]))

    def reset() -> None:
        ticks[0] = itertools.count()

    monkeypatch.setattr("auditjournal.recording.recorder._now", now)
    for module in ("calls", "callbase", "outcomes", "operations", "landscape"):
        # the pipeline calls, in their topic modules
        monkeypatch.setattr(f"auditjournal.recording.{module}._now", now)
    return reset


def record_pipeline(store: AuditStore, run_id: str) -> None:
    """The same calls, through whatever backend ``store`` has: every record type."""
    with store.start_run(run_id=run_id, config={"p": 1}, sql=False) as run:
        src = run.register_node(plugin_name="csv", node_type="source", config={"path": "x"})
        tr = run.register_node(plugin_name="clean", node_type="transform")
        gate = run.register_node(plugin_name="gate", node_type="gate")
        sink = run.register_node(plugin_name="out", node_type="sink")
        e1 = run.register_edge(from_node_id=src, to_node_id=tr, label="continue")
        e2 = run.register_edge(from_node_id=gate, to_node_id=sink, label="keep")
        for i in range(40):
            row = run.create_row(source_node_id=src, row_index=i, data={"i": i, "t": "x" * i})
            tok = run.create_token(row_id=row)
            st = run.begin_node_state(token_id=tok, node_id=tr, step_index=1, input_data={"i": i})
            run.record_call(
                state_id=st, call_type="http", status="success", request={"q": i}, response=[i]
            )
            run.complete_node_state(st, status="completed", output_data={"o": i})
            g = run.begin_node_state(token_id=tok, node_id=gate, step_index=2, input_data={"o": i})
            run.record_routing_event(state_id=g, edge_id=e2 if i % 2 else e1, reason={"i": i})
            run.complete_node_state(g, status="completed", output_data={"o": i})
            run.record_token_outcome(token_id=tok, outcome="completed", sink_name="out")
        run.record_artifact(
            state_id=g,
            sink_node_id=sink,
            artifact_type="file",
            path_or_uri="out.csv",
            content_hash="0" * 64,
            size_bytes=10,
            sink_input=[1, 2],
        )


def until_completed(path_lines: list[bytes]) -> bytes:
    out = []
    for line in path_lines:
        out.append(line)
        if line.startswith(b'{"type":"run_completed"'):
            break
    return b"".join(out)


# -- one writer: the same bytes as the file journal ------------------------------------------


def test_same_calls_give_the_same_journal_and_export_bytes_on_both_backends(
    tmp_path: Path, pg_url: str, fixed_clock: Callable[[], None]
) -> None:
    with AuditStore.open(tmp_path / "files") as files:
        record_pipeline(files, "r1")
        file_lines = b"".join(
            p.read_bytes() for p in sorted(files.journal_dir("r1").glob("*.jsonl"))
        )
        file_export = files.export_dir("r1")
    fixed_clock()
    with AuditStore.open(tmp_path / "pg", journal_url=pg_url) as pg:
        record_pipeline(pg, "r1")
        pg_export = pg.export_dir("r1")
    stored = [bytes(r.line) for r in pg_lines(pg_url, "r1")]
    assert until_completed(stored) == until_completed(file_lines.splitlines(keepends=True))
    assert len(until_completed(stored)) > 10_000
    names = sorted(p.name for p in file_export.iterdir() if not p.name.startswith("."))
    assert names == sorted(p.name for p in pg_export.iterdir() if not p.name.startswith("."))
    assert "audit_trail.manifest.json" in names
    _, mismatch, errors = filecmp.cmpfiles(file_export, pg_export, names, shallow=False)
    assert (mismatch, errors) == ([], [])


def test_an_export_event_follows_the_seal_and_the_local_copy_matches(
    tmp_path: Path, pg_url: str
) -> None:
    with AuditStore.open(tmp_path / "a", journal_url=pg_url) as store:
        record_pipeline(store, "r1")
        events = list(store.read_journal("r1"))
        assert type(events[-2]) is RunCompleted
        assert type(events[-1]).__name__ == "ExportSealed"
        local = b"".join(p.read_bytes() for p in sorted(store.journal_dir("r1").glob("*.jsonl")))
    assert local == b"".join(bytes(r.line) for r in pg_lines(pg_url, "r1"))


def test_a_run_id_is_taken_once_across_stores(tmp_path: Path, pg_url: str) -> None:
    with AuditStore.open(tmp_path / "a", journal_url=pg_url) as a:
        a.start_run(run_id="r1", export=None, sql=False).close()
        with AuditStore.open(tmp_path / "b", journal_url=pg_url) as b:
            with pytest.raises(RunExistsError):
                b.start_run(run_id="r1", export=None, sql=False)
            assert b.run_ids() == ["r1"]


# -- several writers -------------------------------------------------------------------------


@pytest.fixture
def two(tmp_path: Path, pg_url: str) -> Iterator[tuple[Any, Any, AuditStore, AuditStore]]:
    """A coordinator and a joined writer of run r1, each with its own root (always)."""
    a = AuditStore.open(tmp_path / "a", journal_url=pg_url, durability="always")
    b = AuditStore.open(tmp_path / "b", journal_url=pg_url, durability="always")
    coordinator = a.start_run(run_id="r1", export=None, sql=False)
    joined = b.join_run("r1")
    yield coordinator, joined, a, b
    for store in (b, a):
        store.close()


def head(url: str) -> int:
    return len(pg_lines(url, "r1"))


def test_a_writer_refers_to_ids_another_writer_recorded(two: Any, pg_url: str) -> None:
    coordinator, joined, _, _ = two
    src = coordinator.register_node(plugin_name="csv", node_type="source")
    row = joined.create_row(source_node_id=src, row_index=0, data={"a": 1})
    tok = joined.create_token(row_id=row)
    assert row.startswith("row-") and row != "row-1"  # a joined writer's ids carry its tag
    st = coordinator.begin_node_state(token_id=tok, node_id=src, step_index=0, input_data=1)
    joined.complete_node_state(st, status="completed")
    before = head(pg_url)
    with pytest.raises(UnknownIdError):
        joined.create_token(row_id="row-nope")
    assert head(pg_url) == before
    writers = {r.writer_id for r in pg_lines(pg_url, "r1")}
    assert len(writers) == 2
    assert all(w.count(":") == 2 for w in writers)  # host:pid:random


def test_cross_writer_conflicts_are_rejected_and_append_nothing(two: Any, pg_url: str) -> None:
    coordinator, joined, _, _ = two
    src = coordinator.register_node(plugin_name="csv", node_type="source")
    row = coordinator.create_row(source_node_id=src, row_index=0, data={"a": 1})
    tok = coordinator.create_token(row_id=row)
    st = coordinator.begin_node_state(token_id=tok, node_id=src, step_index=0, input_data=1)
    joined.complete_node_state(st, status="completed")  # first: accepted
    before = head(pg_url)
    with pytest.raises(StateAlreadyCompletedError):
        coordinator.complete_node_state(st, status="failed")  # it did not know: rejected
    assert head(pg_url) == before
    joined.record_token_outcome(token_id=tok, outcome="completed")
    with pytest.raises(LifecycleError, match="terminal outcome"):
        coordinator.record_token_outcome(token_id=tok, outcome="failed")
    coordinator.create_row(source_node_id=src, row_index=1, data=2, row_id="given")
    with pytest.raises(DuplicateIdError):
        joined.create_row(source_node_id=src, row_index=1, data=3, row_id="given")
    assert head(pg_url) == before + 2
    # each writer goes on afterwards
    joined.create_row(source_node_id=src, row_index=2, data=4)
    coordinator.create_row(source_node_id=src, row_index=3, data=5)
    assert head(pg_url) == before + 4


def test_generated_id_namespaces_and_operations_across_writers(tmp_path: Path, pg_url: str) -> None:
    with (
        AuditStore.open(tmp_path / "a", journal_url=pg_url, durability="always") as a,
        AuditStore.open(tmp_path / "b", journal_url=pg_url, durability="always") as b,
        AuditStore.open(tmp_path / "c", journal_url=pg_url, durability="always") as c,
    ):
        coordinator = a.start_run(run_id="r1", export=None, sql=False)
        one, other = b.join_run("r1"), c.join_run("r1")
        src = coordinator.register_node(plugin_name="csv", node_type="source")
        row = one.create_row(source_node_id=src, row_index=0, data=1)  # row-<tag>-<n>
        tag = row.split("-")[1]
        before = head(pg_url)
        # an id in another joined writer's namespace: refused, whether made or not yet
        with pytest.raises(DuplicateIdError):
            other.create_row(source_node_id=src, row_index=1, data=2, row_id=row)
        with pytest.raises(DuplicateIdError, match="generated by another writer"):
            other.create_row(source_node_id=src, row_index=1, data=2, row_id=f"row-{tag}-999")
        with pytest.raises(DuplicateIdError, match="generated by another writer"):
            other.create_token(row_id=row, token_id=f"tok-{tag}-1")
        assert head(pg_url) == before
        # a given id of the shape of a writer's namespace nobody holds keeps it from a
        # writer that joins later
        free = "0123abcd"
        coordinator.create_row(source_node_id=src, row_index=2, data=3, row_id=f"row-{free}-1")
        assert not b.pg.reserve_tag("r1", free)  # type: ignore[union-attr]
        assert b.pg.reserve_tag("r1", "4567cdef")  # type: ignore[union-attr]
        # an operation completed by two writers: the second is rejected
        op = coordinator.begin_operation(node_id=src, operation_type="source_load")
        one.complete_operation(op, status="completed")
        before = head(pg_url)
        with pytest.raises(OperationAlreadyCompletedError):
            coordinator.complete_operation(op, status="failed")
        assert head(pg_url) == before
        for run in (one, other, coordinator):
            run.close()


def test_a_writer_refers_to_a_payload_another_writer_stored(two: Any, pg_url: str) -> None:
    coordinator, joined, _, _ = two
    node = coordinator.register_node(plugin_name="llm", node_type="transform")
    row = coordinator.create_row(source_node_id=node, row_index=0, data={"a": 1})
    tok = coordinator.create_token(row_id=row)
    st = coordinator.begin_node_state(token_id=tok, node_id=node, step_index=0, input_data=1)
    coordinator.record_call(state_id=st, call_type="llm", status="success", request={"q": 7})
    ref = hashlib.sha256(canonical_json({"q": 7})).hexdigest()
    call = joined.record_call(state_id=st, call_type="llm", status="success", request_ref=ref)
    before = head(pg_url)
    with pytest.raises(PayloadNotFoundError):  # a ref no writer stored is still unknown
        joined.record_call(state_id=st, call_type="llm", status="success", request_ref="0" * 64)
    assert head(pg_url) == before
    joined.close()
    coordinator.complete()
    coordinator.close()
    calls = [e for e in pg_events(pg_url, "r1") if getattr(e, "call_id", None) == call]
    assert [e.request_ref for e in calls] == [ref]


def test_under_batch_a_conflict_is_reported_by_the_next_call(tmp_path: Path, pg_url: str) -> None:
    with (
        AuditStore.open(tmp_path / "a", journal_url=pg_url, durability="always") as a,
        AuditStore.open(tmp_path / "b", journal_url=pg_url, durability="batch") as b,
    ):
        coordinator = a.start_run(run_id="r1", export=None, sql=False)
        src = coordinator.register_node(plugin_name="csv", node_type="source")
        row = coordinator.create_row(source_node_id=src, row_index=0, data={"a": 1})
        tok = coordinator.create_token(row_id=row)
        st = coordinator.begin_node_state(token_id=tok, node_id=src, step_index=0, input_data=1)
        joined = b.join_run("r1")
        coordinator.complete_node_state(st, status="completed")
        joined.complete_node_state(st, status="failed")  # returns: not committed yet
        joined._journal.flush()  # the group commit finds the conflict
        lines = pg_lines(pg_url, "r1")
        with pytest.raises(StateAlreadyCompletedError, match="earlier call"):
            joined.create_row(source_node_id=src, row_index=1, data=1)
        assert pg_lines(pg_url, "r1") == lines
        joined.create_row(source_node_id=src, row_index=1, data=1)  # then it goes on
        joined.close()
        assert len(pg_lines(pg_url, "r1")) == len(lines) + 1


def test_leaving_a_joined_writer_does_not_complete_the_run(tmp_path: Path, pg_url: str) -> None:
    with (
        AuditStore.open(tmp_path / "a", journal_url=pg_url) as a,
        AuditStore.open(tmp_path / "b", journal_url=pg_url) as b,
    ):
        with a.start_run(run_id="r1", sql=False) as coordinator:
            src = coordinator.register_node(plugin_name="csv", node_type="source")
            coordinator.flush()  # batch: committed now, so the other writer knows the node
            with b.join_run("r1") as joined:
                joined.create_row(source_node_id=src, row_index=0, data=1)
                with pytest.raises(LifecycleError, match="only the process that started it"):
                    joined.complete()
            assert not coordinator.completed
            late = b.join_run("r1")
        assert coordinator.export_result is not None
        with pytest.raises(RunAlreadyCompletedError):
            b.join_run("r1")
        deadline = time.monotonic() + 10  # NOTIFY tells it within moments
        while not late._journal.completed_elsewhere and time.monotonic() < deadline:
            time.sleep(0.01)
        lines = pg_lines(pg_url, "r1")
        with pytest.raises(RunAlreadyCompletedError):  # the next call of a joined writer
            late.create_row(source_node_id=src, row_index=1, data=2)
        late.close()
        assert pg_lines(pg_url, "r1") == lines
        with pytest.raises(RunNotFoundError):
            b.join_run("nope")


def test_join_run_needs_a_journal_url(tmp_path: Path) -> None:
    with AuditStore.open(tmp_path / "a") as store, pytest.raises(InvalidSettingsError):
        store.join_run("r1")


def _start(store: AuditStore, run_id: str) -> tuple[Any, str, str]:
    run = store.start_run(run_id=run_id, sql=False)
    src = run.register_node(plugin_name="csv", node_type="source", node_id="src")
    sink = run.register_node(plugin_name="out", node_type="sink", node_id="sink")
    run.flush()  # committed: the writers refer to them
    return run, src, sink


def test_four_writer_processes_record_one_run(tmp_path: Path, pg_url: str) -> None:
    rows = 150
    with AuditStore.open(tmp_path / "coordinator", journal_url=pg_url) as store:
        run, src, sink = _start(store, "r1")
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "pg_writer_child.py"),
                    pg_url,
                    str(tmp_path / f"w{i}"),
                    "r1",
                    src,
                    sink,
                    f"w{i}",
                    str(rows),
                    "batch",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(4)
        ]
        for proc in procs:
            out, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0
            assert out.endswith("done\n")
        run.complete()
        run.close()
        export = store.export_dir("r1")
        events = list(store.read_journal("r1"))  # chain and seqs checked while read
        report = verify_export(export, journal=(store.journal_dir("r1"), store.payloads))
        assert report.ok, report.summary()
        replay_export(
            journal_dir=store.journal_dir("r1"),
            run_id="r1",
            payloads=store.payloads,
            settings=ExportSettings(),
            prefix=tmp_path / "replay" / "audit_trail",
        )
        names = sorted(p.name for p in export.iterdir() if not p.name.startswith("."))
        _, mismatch, errors = filecmp.cmpfiles(export, tmp_path / "replay", names, shallow=False)
        assert (mismatch, errors) == ([], [])
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    row_ids = [e.row_id for e in events if type(e).__name__ == "RowCreated"]  # type: ignore[attr-defined]
    assert sorted(row_ids) == sorted(f"w{i}-row-{n}" for i in range(4) for n in range(rows))
    assert len(events) == 3 + 4 * rows * 5 + 2  # started, 2 nodes, rows, completed, sealed
    lines = pg_lines(pg_url, "r1")
    assert len({r.writer_id for r in lines}) == 5
    # the writers' events interleave: ordering is the head row's, not one writer after another
    switches = sum(1 for x, y in itertools.pairwise(lines) if x.writer_id != y.writer_id)
    assert switches > 4
    JournalReader(store.journal_dir("r1"), "r1")  # the local copy stays readable after close


# -- bad input and faults --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("sqlite:///x.db", InvalidSettingsError),
        ("not a url", InvalidSettingsError),
        ("postgresql+psycopg://postgres@127.0.0.1:1/none", JournalUnavailableError),
    ],
)
def test_a_wrong_journal_url_is_a_clear_error(tmp_path: Path, url: str, error: type) -> None:
    with pytest.raises(error):
        AuditStore.open(tmp_path / "a", journal_url=url)


def test_a_journal_of_another_schema_version_is_refused(tmp_path: Path, pg_url: str) -> None:
    AuditStore.open(tmp_path / "a", journal_url=pg_url).close()
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE auditjournal_journal_schema SET version = 99"))
    engine.dispose()
    with pytest.raises(SchemaVersionError, match="version 99"):
        AuditStore.open(tmp_path / "b", journal_url=pg_url)


def test_a_released_lease_is_free_at_once(pg_url: str) -> None:
    """release() unlocks before it closes: a bare close leaves the advisory lock to the
    server's session end, which a lease taken right after can still find held."""
    db = PgDatabase(pg_url)
    try:
        for _ in range(200):
            RunLease(db, "run-1", shared=False).release()
    finally:
        db.close()
