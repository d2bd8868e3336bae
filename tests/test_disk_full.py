"""A full disk while recording (SPEC §9, docs/durability.md "Disk full").

The promise under test: a recorder call that raises :class:`DiskFullError` with
``recorded_event is None`` recorded nothing (a retry records it once); one whose
``recorded_event`` is set recorded exactly that event, written once there is
room (under ``always``; and ``complete()``, which is then called again). No call
is acknowledged while the journal knows it cannot write. ``complete()`` can be
retried until the export is sealed.

Most tests run on a real tmpfs of a few MiB that fills up (root only; skipped
otherwise); one pins the same rules with injected write failures everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditjournal import AuditStore, DiskFullError, ExportSettings, RunAlreadyCompletedError
from auditjournal.evidence.verify import verify_export
from auditjournal.model.events import ExportSealed, RowCreated, RunCompleted
from auditjournal.recording.recorder import RunRecorder
from faults import SmallFilesystem, fail_writes, small_filesystem, wait_stopped

PAD = "x" * 500


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[SmallFilesystem]:
    # room, once freed, for all a test recorded while the disk was full: the live
    # export (payloads inlined) of what the recorder had buffered comes on top of it
    with small_filesystem(tmp_path / "fs", size="8m") as mounted:
        yield mounted


def row_indexes(store: AuditStore, run_id: str) -> list[int]:
    return [e.row_index for e in store.read_journal(run_id) if isinstance(e, RowCreated)]


def count(store: AuditStore, run_id: str, kind: type) -> int:
    return sum(isinstance(e, kind) for e in store.read_journal(run_id))


def record_until_full(run: RunRecorder, src: str, more: int) -> tuple[list[int], list[int]]:
    """Create rows until a call fails, then ``more`` calls: (failed, acknowledged after)."""
    failed: list[int] = []
    acknowledged_after: list[int] = []
    index = 0
    while len(failed) < 1 + more:
        assert index < 200_000, "the disk never ran full"
        try:
            run.create_row(source_node_id=src, row_index=index, data={"i": index, "pad": PAD})
        except DiskFullError as exc:
            assert exc.recorded_event is None, "refused calls record nothing"
            assert "recorded nothing" in str(exc)
            failed.append(index)
        else:
            if failed:
                acknowledged_after.append(index)
        index += 1
    return failed, acknowledged_after


def assert_sealed_once(store: AuditStore, run_id: str) -> None:
    assert count(store, run_id, RunCompleted) == 1
    assert count(store, run_id, ExportSealed) == 1
    report = verify_export(
        store.export_dir(run_id), journal=(store.journal_dir(run_id), store.payloads)
    )
    assert report.ok, report.summary()


# -- batch: a refused call records nothing; nothing is acknowledged while full ----------------


def test_batch_with_live_export_refuses_calls_while_full_and_records_none_of_them(
    fs: SmallFilesystem,
) -> None:
    """The live export's backpressure writes the journal every 64 calls: a failure there
    used to raise for a call already recorded (a retry recorded the row twice), and the
    63 calls after it were acknowledged while the disk was full."""
    root = fs.path / "audit"
    with AuditStore.open(root, durability="batch") as store:
        run = store.start_run(
            run_id="r1", export=ExportSettings(chunk_size_bytes=100_000), sql=False
        )
        src = run.register_node(plugin_name="csv", node_type="source")
        fs.fill(leave=300_000)
        failed, acknowledged_after = record_until_full(run, src, more=200)
        assert acknowledged_after == [], "calls were acknowledged while the disk was full"
        fs.free()
        for index in failed:  # the caller retries what was refused
            run.create_row(source_node_id=src, row_index=index, data={"i": index, "pad": PAD})
        run.complete()
        run.close()
        indexes = row_indexes(store, "r1")
        assert sorted(indexes) == list(range(max(failed) + 1)), "every row exactly once"
        assert_sealed_once(store, "r1")


def test_injected_write_failures_refuse_without_recording(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same rules without a real full disk (runs everywhere): every write of the
    journal and payloads fails until the failure is lifted. (With the live export as a
    thread, its backpressure writes the journal every few hundred calls, so a failure
    is met within the 300 calls whatever the flusher's timing.)"""
    with AuditStore.open(tmp_path / "audit", durability="batch", projection="thread") as store:
        run = store.start_run(run_id="r1", export=ExportSettings(), sql=False)
        src = run.register_node(plugin_name="csv", node_type="source")
        for index in range(100):
            run.create_row(source_node_id=src, row_index=index, data={"i": index})
        fail_writes(monkeypatch, "/runs/r1/journal/", times=10**9)
        failed: list[int] = []
        for index in range(100, 400):
            try:
                run.create_row(source_node_id=src, row_index=index, data={"i": index})
            except DiskFullError as exc:
                assert exc.recorded_event is None
                failed.append(index)
            else:
                assert not failed, f"row {index} acknowledged after a refusal"
        assert failed, "no write failed"
        monkeypatch.undo()
        for index in failed:
            run.create_row(source_node_id=src, row_index=index, data={"i": index})
        run.complete()
        run.close()
        assert sorted(row_indexes(store, "r1")) == list(range(400))
        assert_sealed_once(store, "r1")


# -- always: the failing call is recorded, not yet durable; the next ones are refused ---------


def test_always_says_which_call_is_recorded_but_not_yet_durable(fs: SmallFilesystem) -> None:
    root = fs.path / "audit"
    with AuditStore.open(root, durability="always") as store:
        run = store.start_run(run_id="r1", export=None, sql=False)
        src = run.register_node(plugin_name="csv", node_type="source")
        fs.fill(leave=0)
        recorded: list[Any] = []
        refused = 0
        for index in range(20):
            try:
                run.create_row(source_node_id=src, row_index=index, data={"i": index})
            except DiskFullError as exc:
                if exc.recorded_event is None:
                    refused += 1
                else:
                    assert "recorded but not yet durable" in str(exc)
                    recorded.append(exc.recorded_event)
            else:
                pytest.fail(f"row {index} acknowledged on a full disk")
        assert len(recorded) == 1 and refused == 19, "only the first call took a seq"
        (event,) = recorded
        assert isinstance(event, RowCreated) and event.row_index == 0
        fs.free()
        run.create_row(source_node_id=src, row_index=1, data={"i": 1})
        run.complete()
        run.close()
        assert row_indexes(store, "r1") == [0, 1]
        first = next(e for e in store.read_journal("r1") if isinstance(e, RowCreated))
        assert first.seq == event.seq


# -- complete() can be called again until the export is sealed -----------------------------------


def test_complete_that_failed_after_run_completed_can_be_called_again(
    fs: SmallFilesystem,
) -> None:
    """run_completed is appended, then its write fails: complete() raises DiskFullError
    naming the recorded run_completed; called again (first while still full, then with
    room) it writes it, seals the live export and records export_sealed, once each."""
    root = fs.path / "audit"
    # the flusher never runs by itself: what is recorded stays buffered until complete()
    with AuditStore.open(root, durability="batch", flush_interval=3600) as store:
        run = store.start_run(
            run_id="r1", export=ExportSettings(chunk_size_bytes=20_000), sql=False
        )
        src = run.register_node(plugin_name="csv", node_type="source")
        for index in range(40):
            run.create_row(source_node_id=src, row_index=index, data={"i": index, "pad": PAD})
        fs.fill(leave=0)
        for _ in range(2):
            with pytest.raises(DiskFullError, match=r"call complete\('completed'\) again") as info:
                run.complete()
            assert isinstance(info.value.recorded_event, RunCompleted)
        with pytest.raises(RunAlreadyCompletedError, match="status 'completed'"):
            run.complete("failed")  # a retry finishes the same run_completed, no other
        fs.free()
        run.complete()
        assert run.export_result is not None
        with pytest.raises(RunAlreadyCompletedError):
            run.complete()  # finished now
        run.close()
        assert row_indexes(store, "r1") == list(range(40))
        assert_sealed_once(store, "r1")


def test_with_block_keeps_a_recorder_whose_completion_failed_open(fs: SmallFilesystem) -> None:
    root = fs.path / "audit"
    with AuditStore.open(root, durability="batch", flush_interval=3600) as store:
        with (
            pytest.raises(DiskFullError),  # raised where the block is left
            store.start_run(run_id="r1", sql=False) as run,
        ):
            src = run.register_node(plugin_name="csv", node_type="source")
            for index in range(20):
                run.create_row(source_node_id=src, row_index=index, data={"i": index})
            fs.fill(leave=0)
        fs.free()
        run.complete()  # the recorder stayed open: finish, then close
        run.close()
        assert row_indexes(store, "r1") == list(range(20))
        assert_sealed_once(store, "r1")


@pytest.mark.parametrize("projection", ["process", "thread"])
def test_live_export_stopped_by_a_full_disk_is_restarted_by_complete(
    tmp_path: Path, fs: SmallFilesystem, projection: str
) -> None:
    """The export (on its own small filesystem) runs out of space while the journal does
    not: recording goes on; complete() restarts the export from its checkpoint, raises
    DiskFullError while there is still no room, and seals it once there is."""
    settings = ExportSettings(chunk_size_bytes=50_000, path_prefix=str(fs.path / "audit_trail"))
    with AuditStore.open(tmp_path / "audit", durability="batch", projection=projection) as store:
        run = store.start_run(run_id="r1", export=settings, sql=False)
        src = run.register_node(plugin_name="csv", node_type="source")
        fs.fill(leave=100_000)
        for index in range(2_000):
            run.create_row(source_node_id=src, row_index=index, data={"i": index, "pad": PAD})
        live = run.live.export
        assert live is not None
        wait_stopped(live)  # it stopped when its disk ran full
        for _ in range(2):
            with pytest.raises(DiskFullError, match="export of run 'r1' could not be written"):
                run.complete()
        assert count(store, "r1", ExportSealed) == 0
        fs.free()
        run.complete()
        run.close()
        assert count(store, "r1", RunCompleted) == count(store, "r1", ExportSealed) == 1
        assert row_indexes(store, "r1") == list(range(2_000))
        report = verify_export(fs.path, journal=(store.journal_dir("r1"), store.payloads))
        assert report.ok, report.summary()


@pytest.mark.parametrize("projection", ["process", "thread"])
def test_an_export_taken_over_by_another_process_is_left_to_it(
    tmp_path: Path, fs: SmallFilesystem, caplog: pytest.LogCaptureFixture, projection: str
) -> None:
    """While the stopped live export's lock is free, `auditjournal project` may take the
    export over; complete() then leaves the seal to it instead of failing."""
    caplog.set_level(logging.WARNING, logger="auditjournal")
    settings = ExportSettings(chunk_size_bytes=50_000, path_prefix=str(fs.path / "audit_trail"))
    with AuditStore.open(tmp_path / "audit", durability="batch", projection=projection) as store:
        run = store.start_run(run_id="r1", export=settings, sql=False)
        src = run.register_node(plugin_name="csv", node_type="source")
        fs.fill(leave=100_000)
        for index in range(2_000):
            run.create_row(source_node_id=src, row_index=index, data={"i": index, "pad": PAD})
        live = run.live.export
        assert live is not None
        wait_stopped(live)
        fs.free()
        other = store.export_projector("r1", settings, prefix=fs.path / "audit_trail")
        try:
            run.complete()
            assert run.export_result is None
            run.close()
            assert other.run(follow=False) is not None  # the other one seals it
        finally:
            other.close()
    assert any("another process now writes it" in r.getMessage() for r in caplog.records)


def test_close_on_a_full_disk_keeps_everything_for_a_later_close(fs: SmallFilesystem) -> None:
    root = fs.path / "audit"
    store = AuditStore.open(root, durability="batch", flush_interval=3600)
    run = store.start_run(run_id="r1", export=None, sql=False)
    src = run.register_node(plugin_name="csv", node_type="source")
    for index in range(30):
        run.create_row(source_node_id=src, row_index=index, data={"i": index, "pad": PAD})
    fs.fill(leave=0)
    with pytest.raises(DiskFullError):
        run.close()
    with pytest.raises(DiskFullError):
        store.close()
    fs.free()
    store.close()
    with AuditStore.open(root) as reopened:
        assert row_indexes(reopened, "r1") == list(range(30))


@pytest.mark.parametrize("projection", ["process", "thread"])
def test_live_sql_tables_stopped_by_a_full_disk_catch_up_at_complete(
    tmp_path: Path, projection: str
) -> None:
    """The SQLite tables live on a disk that runs full (the journal does not): their
    projector stops while the run goes on; once there is room, complete() starts it
    again and the tables hold the whole run."""
    from auditjournal.sql.lineage import show_run

    # room for the empty schema's WAL (about 0.75 MB since schema version 3) and the
    # run's rows once freed; fill() takes whatever is left
    with small_filesystem(tmp_path / "db", size="2m") as fs:
        database_url = f"sqlite:///{fs.path / 'landscape.db'}"
        with AuditStore.open(
            tmp_path / "audit", database_url=database_url, projection=projection
        ) as store:
            run = store.start_run(run_id="r1", export=ExportSettings(chunk_size_bytes=100_000))
            src = run.register_node(plugin_name="csv", node_type="source")
            fs.fill(leave=0)
            for index in range(1_000):
                run.create_row(source_node_id=src, row_index=index, data={"i": index, "pad": PAD})
            sql = run.live.sql
            assert sql is not None
            wait_stopped(sql)  # it stopped when the database could not grow
            fs.free()
            run.complete()
            run.close()
            assert_sealed_once(store, "r1")
            shown = show_run(store, "r1", refresh=False)  # as the live tables left them
            assert shown["counts"]["rows"] == 1_000
            assert shown["run"]["status"] == "completed"
            assert shown["export"]["state"] == "sealed"
