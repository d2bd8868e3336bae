"""The live projectors in their own process (projection/process.py, the default mode).

The crash tests (tests/crash/test_crash_projector_process.py) kill it at random
moments; these tests pin each behaviour once: the setting, a restart after the process
died, the loud failure when it keeps dying, relative paths, and the journal's bytes
(the recorder appends the export events in both modes)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditjournal import (
    AuditStore,
    ExportError,
    ExportSettings,
    InvalidSettingsError,
    ProjectorProcessError,
)
from auditjournal.model.events import ExportFailed, ExportSealed
from auditjournal.projection import process as process_module
from auditjournal.projection.process import ProcessExport, ProcessSql
from auditjournal.recording.liveprojectors import PROJECTION_ENV
from auditjournal.recording.recorder import RunRecorder
from faults import kill_and_wait, wait_stopped

SETTINGS = ExportSettings(chunk_size_bytes=8_000)


def record_rows(run: RunRecorder, rows: int, start: int = 0) -> None:
    src = run.register_node(plugin_name="csv", node_type="source")
    for i in range(start, start + rows):
        run.create_row(source_node_id=src, row_index=i, data={"i": i, "t": "é" * (i % 9)})


def export_handle(run: RunRecorder) -> ProcessExport:
    live = run.live.export
    assert isinstance(live, ProcessExport)
    return live


def test_the_default_is_a_projector_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PROJECTION_ENV, raising=False)
    with AuditStore.open(tmp_path / "audit") as store:
        assert store.projection == "process"
        with store.start_run(run_id="r") as run:
            assert isinstance(run.live.export, ProcessExport)
            assert isinstance(run.live.sql, ProcessSql)
            assert export_handle(run).host.pid not in (0, os.getpid())
            record_rows(run, 50)
        assert run.export_result is not None and run.export_result.record_count == 52
        assert store.sql_database().checkpoint("r") is not None


def test_an_idle_projector_gets_what_is_buffered_without_waiting_for_the_group_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A projector process that took in everything written waits on its pipe; the
    recorder's next backpressure check hands it what is buffered (a write without fsync),
    not the next group commit (an hour away here): else the two sides take turns waiting."""
    import time

    from auditjournal.projection.live import THROTTLE_EVERY

    # not the time bound either (a projector trailing by over MAX_LAG is written for too)
    monkeypatch.setattr(process_module, "MAX_LAG", 3600.0)
    with (
        AuditStore.open(tmp_path / "audit", flush_interval=3600, projection="process") as store,
        store.start_run(run_id="r", export=SETTINGS, sql=False) as run,
    ):
        handle = export_handle(run)
        deadline = time.monotonic() + 30

        def until_idle() -> None:  # it took in all that was written and waits
            while not handle.needs_wake() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert handle.needs_wake()

        record_rows(run, 5)
        until_idle()
        before = handle.done_seq()
        for batch in range(3):  # each batch: at least one backpressure check
            record_rows(run, THROTTLE_EVERY, start=5 + batch * THROTTLE_EVERY)
            if handle.done_seq() < before + THROTTLE_EVERY:
                until_idle()
        # batch 2's first check found it idle and handed it all of batch 1 at least
        while handle.done_seq() <= before + THROTTLE_EVERY and time.monotonic() < deadline:
            time.sleep(0.01)
        assert handle.done_seq() > before + THROTTLE_EVERY


def test_the_setting_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidSettingsError, match="projection must be one of"):
        AuditStore.open(tmp_path / "a", projection="fork")  # type: ignore[arg-type]
    monkeypatch.setenv(PROJECTION_ENV, "threads")
    with pytest.raises(InvalidSettingsError, match=f"from \\${PROJECTION_ENV}"):
        AuditStore.open(tmp_path / "b")
    monkeypatch.setenv(PROJECTION_ENV, "thread")
    with AuditStore.open(tmp_path / "c") as store:
        assert store.projection == "thread"


def test_both_modes_write_the_same_journal_and_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorder appends export_sealed itself in both modes: with the clock fixed, the
    journal and the export are the same bytes whichever mode projected them."""
    import datetime as dt
    import importlib
    import pkgutil

    import auditjournal.recording

    fixed = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    for info in pkgutil.iter_modules(auditjournal.recording.__path__):
        module = importlib.import_module(f"auditjournal.recording.{info.name}")
        if hasattr(module, "_now"):
            monkeypatch.setattr(module, "_now", lambda tz=None: fixed)
    outputs = {}
    for mode in ("process", "thread"):
        (tmp_path / mode).mkdir()
        monkeypatch.chdir(tmp_path / mode)  # the same (relative) paths in the journal
        with AuditStore.open("audit", projection=mode) as store:  # type: ignore[arg-type]
            with store.start_run(run_id="r", export=SETTINGS, sql=False) as run:
                record_rows(run, 300)
            assert run.export_result is not None
            journal = b"".join(p.read_bytes() for p in sorted(store.journal_dir("r").iterdir()))
            chunks = {
                p.name: p.read_bytes() for p in sorted(store.export_dir("r").glob("*.0*.json"))
            }
            outputs[mode] = (journal, chunks)
    assert outputs["process"] == outputs["thread"]
    assert outputs["process"][0].count(b'"export_sealed"') == 1


def test_a_killed_projector_process_is_started_again_from_its_checkpoint(
    tmp_path: Path,
) -> None:
    with AuditStore.open(tmp_path / "audit", projection="process") as store:
        with store.start_run(run_id="r", export=SETTINGS) as run:
            record_rows(run, 400)
            first = export_handle(run).host.pid
            kill_and_wait(first)
            # the throttle notices (its wake finds the pipe closed, or it trails by more
            # than MAX_LAG) and starts it again; how soon depends on the timing
            rows = 400
            while export_handle(run).host.pid == first and rows < 40_000:
                record_rows(run, 400, start=rows)
                rows += 400
            assert export_handle(run).host.pid != first
        assert run.export_result is not None
        # a source node per record_rows call (two or more, as soon as the restart came),
        # the rows, the run
        assert run.export_result.record_count == rows // 400 + rows + 1
        events = list(store.read_journal("r"))
        assert sum(type(e) is ExportSealed for e in events) == 1
        checkpoint = store.sql_database().checkpoint("r")
        assert checkpoint is not None and checkpoint.last_seq == events[-1].seq


def test_a_projector_process_that_keeps_dying_fails_the_export_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process_module, "RESTARTS", 0)
    with AuditStore.open(tmp_path / "audit", projection="process") as store:
        run = store.start_run(run_id="r", export=SETTINGS, sql=False)
        record_rows(run, 100)
        live = export_handle(run)
        kill_and_wait(live.host.pid)
        wait_stopped(live)  # never hangs: it is seen dead, and not started again
        with pytest.raises(ExportError, match="died") as raised:
            run.complete()
        assert isinstance(raised.value.__cause__, ProjectorProcessError)
        run.close()
        failed = [e for e in store.read_journal("r") if type(e) is ExportFailed]
        assert len(failed) == 1 and "projector process" in failed[0].error


def test_relative_paths_mean_the_recorders_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The projector process starts in the recorder's working directory of that moment,
    not in the one its fork server was started in."""
    monkeypatch.chdir(tmp_path)
    with AuditStore.open("audit", projection="process") as store:
        with store.start_run(run_id="r", export=SETTINGS) as run:
            record_rows(run, 20)
        assert run.export_result is not None
    assert (tmp_path / "audit" / "runs" / "r" / "export" / "audit_trail.manifest.json").exists()


def test_a_projector_process_trailing_for_too_long_is_late(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Backpressure by time as well as by events: the recorder marks (last seq, when) at
    each throttle; the projector is late once the oldest entry it has not taken in was
    appended more than MAX_LAG ago, however few entries that is."""
    clock = [100.0]
    done = [0]

    class Host:
        run_id = "r"

        def done(self, slot: object) -> int:
            return done[0]

    monkeypatch.setattr(process_module.time, "monotonic", lambda: clock[0])
    handle = ProcessExport(Host(), process_module._Part())  # type: ignore[arg-type]
    assert not handle.late(10)  # seqs 1-10 appended now
    clock[0] += process_module.MAX_LAG / 2
    assert not handle.late(20)
    clock[0] += process_module.MAX_LAG * 0.8  # seq 10's mark is 1.3 x MAX_LAG old, 20's 0.8
    assert handle.late(30)
    done[0] = 10  # it took in up to 10: the oldest it lacks was marked at 20
    assert not handle.late(40)
    done[0] = 40
    assert not handle.late(40)  # caught up between the caller's look and this one


def test_the_projector_gets_the_recorders_environment_of_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fork server was started earlier (by another run), with the environment of then;
    a signing key set since must still reach the projector it forks for this run."""
    monkeypatch.delenv("AUDITJOURNAL_SIGNING_KEY", raising=False)
    with AuditStore.open(tmp_path / "audit", projection="process") as store:
        with store.start_run(run_id="before", sql=False) as run:
            record_rows(run, 3)  # the fork server runs from here on
        monkeypatch.setenv("AUDITJOURNAL_SIGNING_KEY", "k" * 32)
        signed = ExportSettings(sign="hmac-sha256")
        with store.start_run(run_id="after", export=signed, sql=False) as run:
            record_rows(run, 3)
        assert run.export_result is not None
        manifest = (store.export_dir("after") / "audit_trail.manifest.json").read_text()
        assert "hmac-sha256" in manifest


def test_a_pipe_let_go_by_another_thread_while_reaping_kills_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leaving the run reaps the projector process; another recording thread's pump may
    see the pipe end meanwhile and let go of it. That is a child that exited, not one that
    "did not stop" (it used to be reported so, and its pid sent SIGKILL)."""
    caplog.set_level("WARNING")
    with AuditStore.open(tmp_path / "audit", projection="process") as store:
        with store.start_run(run_id="r", export=SETTINGS) as run:
            host = export_handle(run).host
            record_rows(run, 30)
            receive = host._receive

            def released_meanwhile(timeout: float | None) -> tuple[object, ...] | None:
                message = receive(timeout)
                if message is None:  # the end: as if another thread's pump saw it first
                    host._release()
                    return ()
                return message

            monkeypatch.setattr(host, "_receive", released_meanwhile)
        assert run.export_result is not None
    assert "did not stop" not in caplog.text


def test_the_projector_process_collects_garbage_less_often() -> None:
    """What the projector process opened is frozen out of the cyclic collector's walks,
    and its young generation is collected less often (a fresh interpreter: it changes
    the process's collector)."""
    code = (
        "import gc\n"
        "from auditjournal.projection import child\n"
        "before = gc.get_threshold()\n"
        "child._collect_less()\n"
        "assert gc.get_freeze_count() > 0, 'nothing frozen'\n"
        "assert gc.get_threshold() == (child.GC_YOUNG_THRESHOLD, *before[1:]), gc.get_threshold()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _spec_of_a_recorded_run(tmp_path: Path, database: Path) -> Any:
    """A finished run of 20 rows and what a projector process needs to project it (its
    export, and SQL tables in ``database``): for tests of the child's loop in this process."""
    from auditjournal.projection.child import ProjectorSpec

    with AuditStore.open(tmp_path / "audit") as store:
        with store.start_run(run_id="r", export=None, sql=False) as run:
            record_rows(run, 20)
        prefix = store.export_prefix("r", SETTINGS)
    return ProjectorSpec(
        cwd=os.getcwd(),
        root=str(tmp_path / "audit"),
        run_id="r",
        segment_bytes=store.segment_bytes,
        max_payload_bytes=store.payloads.max_payload_bytes,
        ledger_key=None,
        idle_look=0.01,
        export=SETTINGS,
        export_prefix=str(prefix),
        database_url=f"sqlite:///{database}",
    )


@contextlib.contextmanager
def _child_in_this_process(tmp_path: Path) -> Iterator[Any]:
    """The projector process's loop (``child._Child``) in this process, its SQL tables
    open, over the finished run of :func:`_spec_of_a_recorded_run`; closed at the end."""
    from multiprocessing.connection import Connection

    from auditjournal.projection import child
    from auditjournal.projection.child import PROGRESS_BYTES, Slot

    spec = _spec_of_a_recorded_run(tmp_path, tmp_path / "landscape.db")
    events_r, events_w = os.pipe()
    shared = memoryview(bytearray(PROGRESS_BYTES)).cast("q")
    shared[Slot.SQL_TARGET] = -1
    events = Connection(events_w, readable=False)
    part = child._Child(spec, shared, events)
    try:
        part.open_sql()
        yield part
    finally:
        part.export = None
        part.close()
        events.close()
        os.close(events_r)


def test_the_projector_says_ready_before_it_opens_the_sql_tables(tmp_path: Path) -> None:
    """The recorder waits for the export's lock only: the child says "ready" and then
    opens the SQL tables (most of the start with the defaults). Tables it cannot open
    are the tables' failure (``sql_failed``), not the run's start's; the export goes on
    and seals. (The child's loop in this process, over a finished journal, the wake
    pipe's writer closed: as when the recorder is gone.)"""
    import contextlib
    import gc
    from multiprocessing.connection import Connection

    from auditjournal.projection import child
    from auditjournal.projection.child import PROGRESS_BYTES

    spec = _spec_of_a_recorded_run(tmp_path, tmp_path / "no such directory" / "landscape.db")
    wake_r, wake_w = os.pipe()
    os.close(wake_w)
    events_r, events_w = os.pipe()
    shared = memoryview(bytearray(PROGRESS_BYTES)).cast("q")
    threshold = gc.get_threshold()
    events = Connection(events_w, readable=False)
    try:
        child._serve(spec, wake_r, events, shared)
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        os.close(wake_r)
        events.close()
    received = Connection(events_r, writable=False)
    messages = []
    with contextlib.suppress(EOFError):
        while True:
            messages.append(received.recv())
    received.close()
    kinds = [m[0] for m in messages]
    assert kinds[:2] == ["ready", "sql_failed"], kinds
    assert "sealed" in kinds and messages[kinds.index("sealed")][1].record_count == 22


def test_beside_the_export_the_sql_tables_take_in_bigger_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: a SQL transaction costs ~0.6 ms, so beside a live export the child steps
    the tables only when SQL_EVERY_EVENTS wait for them, SQL_EVERY_SECONDS passed, the
    recorder waits, or the run ends (SQL_TARGET); meanwhile it sleeps no longer than
    until they are due. The recorder does not wake it on their account."""
    from auditjournal.projection import child
    from auditjournal.projection.child import Slot

    clock = [1000.0]
    monkeypatch.setattr(child.time, "monotonic", lambda: clock[0])
    with _child_in_this_process(tmp_path) as part:
        shared = part.shared
        assert part.sql is not None
        assert part.step()  # the export takes in the run; the tables are due at first
        applied = part.sql.applied_seq
        assert applied == shared[Slot.EXPORT_DONE] > 0
        assert part.export is None  # sealed (a finished run): as if it still followed one
        part.export = following = object()  # type: ignore[assignment]
        # the export is ahead by a few events (as a live run's): the tables wait
        shared[Slot.EXPORT_DONE] = applied + 10
        assert not part._sql_now()
        assert 0 < part.idle_for(10.0) <= child.SQL_EVERY_SECONDS
        shared[Slot.WAITING] = child.WAIT_EXPORT
        assert not part._sql_now()  # it waits for the export: a batch would hold it back
        shared[Slot.WAITING] = child.WAIT_SQL
        assert part._sql_now()  # the recorder waits for the tables: no waiting here
        shared[Slot.WAITING] = 0
        shared[Slot.SQL_TARGET] = applied + 10
        assert part._sql_now()  # the run ended: the tables catch up at once
        shared[Slot.SQL_TARGET] = -1
        shared[Slot.EXPORT_DONE] = applied + child.SQL_EVERY_EVENTS
        assert part._sql_now()  # enough for a batch
        shared[Slot.EXPORT_DONE] = applied + 10
        clock[0] += child.SQL_EVERY_SECONDS
        assert part._sql_now()  # time is up
        assert part.idle_for(10.0) == 0.0
        shared[Slot.EXPORT_DONE] = applied  # nothing for them: the export's look decides
        assert part.idle_for(10.0) == 10.0
        part.export = None
        assert part._sql_now()  # without an export: at every step, as before
        del following


def test_the_recorder_wakes_the_projector_for_its_sql_tables_only_without_an_export() -> None:
    idle = [True]

    class Host:
        run_id = "r"
        _export_part: object = process_module._Part()

        def idle(self) -> bool:
            return idle[0]

    host = Host()
    handle = ProcessSql(host, process_module._Part())  # type: ignore[arg-type]
    assert not handle.needs_wake()  # the export runs: the child steps the tables itself
    host._export_part.stopped = True  # type: ignore[attr-defined]
    assert handle.needs_wake()
    host._export_part = None
    assert handle.needs_wake()
    idle[0] = False
    assert not handle.needs_wake()


def test_beside_the_export_sqlite_checkpoints_on_a_thread(tmp_path: Path) -> None:
    """A commit that checkpoints the SQLite log would hold the export back: beside a live
    export the child's tables commit without checkpoints and a thread makes them (after
    a commit that moved them); without an export, or with a URL it cannot open by path,
    SQLite keeps its own."""
    import time

    import msgspec
    import sqlalchemy as sa

    from auditjournal.projection import child

    with _child_in_this_process(tmp_path) as part:
        assert part.sql is not None and part.database is not None
        checkpointer = part.checkpointer
        assert checkpointer is not None
        with part.database.engine.connect() as conn:
            assert conn.execute(sa.text("PRAGMA wal_autocheckpoint")).scalar_one() == 0
        assert part.step()
        deadline = time.monotonic() + 10
        while not checkpointer.checkpoints and time.monotonic() < deadline:
            time.sleep(0.01)
        assert checkpointer.checkpoints > 0 and checkpointer.error is None
        part.close()
        for changed in (
            {"export": None},
            {"database_url": f"sqlite:///{tmp_path / 'other.db'}?timeout=20"},
        ):
            spec = msgspec.structs.replace(part.spec, **changed)
            other = child._Child(spec, part.shared, part.events)
            try:
                other.open_sql()
                assert other.sql is not None and other.checkpointer is None
            finally:
                other.close()


def test_an_orphaned_projector_brings_the_sql_tables_to_the_journals_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beside a live export the tables wait for a batch; once the recorder is gone (its
    wake pipe at end of file) the child exits after a step that takes in nothing, so
    the tables must step then whatever their batch: else they stay behind the journal."""
    from auditjournal.projection import child
    from auditjournal.projection.child import Slot

    clock = [1000.0]
    monkeypatch.setattr(child.time, "monotonic", lambda: clock[0])
    with _child_in_this_process(tmp_path) as part:
        shared = part.shared
        assert part.sql is not None
        assert part.step()
        part.export = following = object()  # type: ignore[assignment]
        shared[Slot.EXPORT_DONE] = part.sql.applied_seq + 10  # a few events, not due
        assert not part._sql_now()
        part.orphaned = True
        assert part._sql_now()
        del following


def test_beside_the_export_the_sql_tables_write_a_slice_between_export_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: a batch's transaction held the export back ~20 ms, and the recorder
    waited for the export meanwhile. Beside a live export the child makes the rows of
    what the export took in as it goes and writes them a slice at a time, the export
    stepping between slices; the tables' progress moves at the commit. Awaited by the
    recorder, the batch goes in at once."""
    from auditjournal.projection import child
    from auditjournal.projection.child import Slot
    from auditjournal.sql import projector as sql_projector

    class Following:  # an export that follows the run and finds nothing new
        result = None

        def __init__(self) -> None:
            self.steps = 0
            self.position = sql_projector.JournalPosition(1, 1, 0, b"")

        def step(self, limit: int) -> int:
            self.steps += 1
            return 0

        def close(self) -> None:
            pass

    monkeypatch.setattr(sql_projector, "WRITE_SLICE_ROWS", 4)
    with _child_in_this_process(tmp_path) as part:
        shared = part.shared
        assert part.sql is not None
        part.export.close()  # type: ignore[union-attr]
        part.export = following = Following()  # type: ignore[assignment]
        shared[Slot.EXPORT_DONE] = 10**6  # a batch is due
        shared[Slot.WAITING] = child.WAIT_EXPORT  # (waiting for the export changes nothing)
        assert part.step()
        assert part.sql.writing and shared[Slot.SQL_DONE] == 0
        slices = 1
        while part.sql.writing:
            assert part.step()
            slices += 1
        assert slices > 3 and following.steps == slices  # one export step per slice
        last = part.sql.applied_seq
        assert last > 20 and shared[Slot.SQL_DONE] == last
        part.export = following = Following()  # type: ignore[assignment]
        part.sql.close()
        part.sql = None
        part.database.delete_run("r")  # type: ignore[union-attr]
        part.open_sql()  # the tables from the start: with the recorder waiting this time
        shared[Slot.WAITING] = child.WAIT_SQL
        assert part.step()
        assert not part.sql.writing and shared[Slot.SQL_DONE] == last
        assert following.steps == 1


def test_the_recorder_says_which_part_it_waits_for() -> None:
    """The child steps the SQL tables at once when the recorder waits for them, not when
    it waits for the export (a batch would hold the export back further)."""
    from auditjournal.projection.child import PROGRESS_BYTES, WAIT_EXPORT, WAIT_SQL, Slot

    host = process_module.ProjectorProcess.__new__(process_module.ProjectorProcess)
    host._shared = memoryview(bytearray(PROGRESS_BYTES)).cast("q")
    seen: list[int] = []
    host.pump = lambda timeout: seen.append(host._shared[Slot.WAITING])  # type: ignore[method-assign]
    host.wait_progress(Slot.EXPORT_DONE, 0.0, 1234)
    assert host._shared[Slot.WAIT_SEQ] == 1234
    host.wait_progress(Slot.SQL_DONE, 0.0)
    assert seen == [WAIT_EXPORT, WAIT_SQL]
    assert host._shared[Slot.WAITING] == 0


def test_the_child_says_progress_once_the_awaited_seq_is_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A "progress" at every step that moved woke the recorder ~8 times a wait; now it
    comes when the part the recorder waits for reaches the seq it waits for."""
    from auditjournal.projection import child
    from auditjournal.projection.child import WAIT_EXPORT, Slot

    monkeypatch.setattr(child, "LIVE_STEP_EVENTS", 5)
    with _child_in_this_process(tmp_path) as part:
        sent: list[tuple[Any, ...]] = []
        monkeypatch.setattr(part, "send", sent.append)
        shared = part.shared
        shared[Slot.WAITING] = WAIT_EXPORT
        shared[Slot.WAIT_SEQ] = 10**6  # beyond the run's end
        assert part.step() and shared[Slot.EXPORT_DONE] == 5
        assert sent == []  # moved, not far enough
        shared[Slot.WAIT_SEQ] = 10
        assert part.step() and shared[Slot.EXPORT_DONE] == 10
        assert sent == [("progress",)]


def test_the_projector_process_writes_its_export_steps_itself(tmp_path: Path) -> None:
    """Beside a recorder that keeps the other core busy, the child's export writes each
    small step's chunk block in its own thread, as a live export in the recorder's
    process does: no chunk I/O thread (a queue, a wake-up and the GIL handed back and
    forth per step); a replay over a finished journal keeps its thread."""
    import threading

    before = set(threading.enumerate())  # (another test's may still be ending)
    with _child_in_this_process(tmp_path) as part:
        assert part.export is not None
        started = set(threading.enumerate()) - before
        assert "auditjournal-chunk-io" not in {t.name for t in started}
        while part.export.result is None and part.export.step(256):
            pass
        assert part.export.result is not None  # sealed, written inline
