"""The projectors as their own process (`auditjournal project`): seal, record, never twice."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditjournal import AuditStore, ExportSettings, ProjectionService, replay_export
from auditjournal.cli import cli
from auditjournal.evidence.verify import verify_export
from auditjournal.model.events import ExportSealed

SETTINGS = ExportSettings(chunk_size_bytes=5_000)


def record(run: Any, rows: int) -> None:
    src = run.register_node(plugin_name="csv", node_type="source")
    for i in range(rows):
        row = run.create_row(source_node_id=src, row_index=i, data={"i": i, "pad": "x" * 80})
        run.create_token(row_id=row)


def export_files(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in sorted(directory.iterdir()) if not p.name.startswith(".")
    }


def seals(store: AuditStore, run_id: str) -> list[ExportSealed]:
    return [e for e in store.read_journal(run_id) if isinstance(e, ExportSealed)]


def test_project_seals_a_finished_run_once(tmp_path: Path) -> None:
    with AuditStore.open(tmp_path / "audit") as store:
        with store.start_run(export=None, sql=False, run_id="r1", settings={}) as run:
            record(run, 120)
        sealed: list[str] = []
        service = ProjectionService(
            store,
            run_ids=["r1"],
            settings=SETTINGS,
            sql=False,
            on_sealed=lambda rid, result: sealed.append(rid),
        )
        assert service.run(follow=False) == 1
        assert sealed == ["r1"]
        (only,) = seals(store, "r1")
        manifest = store.export_prefix("r1", SETTINGS).with_name("audit_trail.manifest.json")
        assert (
            only.manifest_sha256 == __import__("hashlib").sha256(manifest.read_bytes()).hexdigest()
        )
        replay = replay_export(
            journal_dir=store.journal_dir("r1"),
            run_id="r1",
            payloads=store.payloads,
            settings=SETTINGS,
            prefix=tmp_path / "replay" / "audit_trail",
        )
        assert replay is not None
        assert export_files(store.export_dir("r1")) == export_files(tmp_path / "replay")
        # a second pass finds the export sealed and recorded: nothing new, no second event
        assert (
            ProjectionService(store, run_ids=["r1"], settings=SETTINGS, sql=False).run(follow=False)
            == 0
        )
        assert len(seals(store, "r1")) == 1


def test_project_follows_a_run_while_it_is_recorded(tmp_path: Path) -> None:
    with AuditStore.open(tmp_path / "audit") as store:
        run = store.start_run(export=None, sql=False, run_id="r2")
        stop = threading.Event()
        service = ProjectionService(store, run_ids=["r2"], settings=SETTINGS, sql=False)
        result: list[int] = []
        worker = threading.Thread(
            target=lambda: result.append(service.run(follow=True, stop=stop, idle_wait=0.01))
        )
        worker.start()
        record(run, 80)
        run.complete()
        run.close()  # releases the journal, so the service can append export_sealed
        for _ in range(500):
            if seals(store, "r2"):
                break
            threading.Event().wait(0.01)
        stop.set()
        worker.join(timeout=30)
        assert result == [1]
        assert len(seals(store, "r2")) == 1


def test_following_projects_in_small_steps(tmp_path: Path, monkeypatch: Any) -> None:
    """Records become readable at the end of a step: a follower that fell behind must
    not work through 4,096 events before a tail sees any (the live-export lag)."""
    from auditjournal.export.projector import LIVE_STEP_EVENTS, ExportProjector

    limits: list[int] = []
    real_step = ExportProjector.step

    def step(self: ExportProjector, limit: int = 4096) -> int:
        limits.append(limit)
        return real_step(self, limit)

    monkeypatch.setattr(ExportProjector, "step", step)
    with AuditStore.open(tmp_path / "audit") as store:
        with store.start_run(export=None, sql=False, run_id="r3") as run:
            record(run, 400)  # 800+ events already waiting when the follower starts
        projector = store.export_projector("r3", SETTINGS)
        try:
            assert projector.run(follow=True) is not None
        finally:
            projector.close()
        assert limits and set(limits) == {LIVE_STEP_EVENTS}
        limits.clear()
        with store.start_run(export=None, sql=False, run_id="r4") as run:
            record(run, 400)
        service = ProjectionService(store, run_ids=["r4"], settings=SETTINGS, sql=False)
        stop = threading.Event()
        service.on_sealed = lambda rid, result: stop.set()
        assert service.run(follow=True, stop=stop, idle_wait=0.01) == 1
        assert limits and set(limits) == {LIVE_STEP_EVENTS}
        limits.clear()
        with store.start_run(export=None, sql=False, run_id="r5") as run:
            record(run, 400)
        service = ProjectionService(store, run_ids=["r5"], settings=SETTINGS, sql=False)
        assert service.run(follow=False) == 1
        assert limits and set(limits) == {4096}  # without --follow: big steps


def test_cli_project_prints_what_it_sealed(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    with (
        AuditStore.open(root) as store,
        store.start_run(export=None, sql=False, run_id="r3") as run,
    ):
        record(run, 5)
    result = CliRunner().invoke(cli, ["project", str(root), "--no-sql"])
    assert result.exit_code == 0, result.output
    assert "sealed r3:" in result.stdout
    assert "1 export(s) sealed" in result.stderr


# -- runs starting, broken runs (issue 10, item 3) ---------------------------------------------


def test_a_reader_sees_a_journal_created_while_it_looks(tmp_path: Path) -> None:
    """A run's journal/ directory appears a moment before its first segment: a reader that
    looks in between (open fails, then the listing finds the new segment) must wait for
    the entries, not call the segment missing. Real threads, tight loops; each attempt
    hits the window often enough that 30 of them all but always do."""
    from auditjournal.errors import CorruptJournalError
    from auditjournal.journal.files import Journal, JournalReader

    failures: list[Exception] = []
    for attempt in range(30):
        directory = tmp_path / f"r{attempt}" / "journal"
        stop = threading.Event()

        def look(
            directory: Path = directory, run_id: str = f"r{attempt}", stop: Any = stop
        ) -> None:
            while not stop.is_set():
                reader = JournalReader(directory, run_id)
                try:
                    reader.poll()
                except CorruptJournalError as exc:
                    failures.append(exc)
                    return
                finally:
                    reader.close()

        reader_thread = threading.Thread(target=look)
        reader_thread.start()
        time.sleep(0.0005)
        journal = Journal(directory, f"r{attempt}", durability="none")
        time.sleep(0.0005)
        stop.set()
        reader_thread.join()
        journal.close()
    assert failures == []


def test_project_follow_survives_runs_starting(tmp_path: Path) -> None:
    """`project --follow` in its own process while this process starts runs, with and
    without a live export: no run start fails (the service must not take a starting
    run's export), the service stays up, and every run is sealed exactly once."""
    root = tmp_path / "audit"
    AuditStore.open(root).close()
    service = subprocess.Popen(
        [sys.executable, "-m", "auditjournal", "project", str(root), "--follow", "--no-sql"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)  # the service is up and watching runs/
        run_ids = [f"r{k:02d}" for k in range(24)]
        with AuditStore.open(root) as store:
            for k, run_id in enumerate(run_ids):
                live = {} if k % 2 else {"export": None}
                with store.start_run(run_id=run_id, sql=False, **live) as run:  # type: ignore[arg-type]
                    record(run, 3)
                time.sleep(0.01)
                assert service.poll() is None, service.communicate()[1]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if all(seals(store, run_id) for run_id in run_ids):
                    break
                assert service.poll() is None, service.communicate()[1]
                time.sleep(0.05)
            for run_id in run_ids:
                assert len(seals(store, run_id)) == 1, run_id
                assert verify_export(store.export_dir(run_id)).ok, run_id
    finally:
        service.terminate()
        _, err = service.communicate(timeout=30)
    assert "segment is missing" not in err
    assert "Traceback" not in err


def _corrupt_first_entry(store: AuditStore, run_id: str) -> None:
    segment = next(store.journal_dir(run_id).glob("*.jsonl"))
    data = bytearray(segment.read_bytes())
    data[40] ^= 0x01  # inside the first entry: its chain no longer matches
    segment.write_bytes(bytes(data))


def test_project_seals_healthy_runs_beside_a_broken_one(tmp_path: Path) -> None:
    """A damaged journal (r1) between two healthy runs: `project` (its own process) seals
    r0 and r2, names r1 and exits 1; `runs` lists all three, r1 with its problem."""
    root = tmp_path / "audit"
    with AuditStore.open(root) as store:
        for run_id in ("r0", "r1", "r2"):
            with store.start_run(export=None, sql=False, run_id=run_id) as run:
                record(run, 5)
        _corrupt_first_entry(store, "r1")
    project = subprocess.run(
        [sys.executable, "-m", "auditjournal", "project", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert project.returncode == 1, project.stderr
    assert "sealed r0:" in project.stdout and "sealed r2:" in project.stdout
    assert "r1" in project.stderr and "chain hash does not match" in project.stderr
    assert "Traceback" not in project.stderr
    with AuditStore.open(root) as store:
        assert len(seals(store, "r0")) == len(seals(store, "r2")) == 1
    listing = subprocess.run(
        [sys.executable, "-m", "auditjournal", "runs", str(root), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listing.returncode == 1, listing.stderr
    runs = {r["run_id"]: r for r in json.loads(listing.stdout)}
    assert set(runs) == {"r0", "r1", "r2"}
    assert runs["r0"]["problem"] is None and runs["r2"]["problem"] is None
    assert runs["r0"]["status"] == runs["r2"]["status"] == "completed"
    assert runs["r0"]["export"]["state"] == "sealed"
    assert "chain hash does not match" in runs["r1"]["problem"]
    assert runs["r1"]["status"] == "unreadable"
    table = subprocess.run(
        [sys.executable, "-m", "auditjournal", "runs", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert table.returncode == 1
    assert "r1: " in table.stdout and "chain hash does not match" in table.stdout
    assert "Traceback" not in table.stderr


def test_follow_sets_a_broken_run_aside_and_tries_it_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Following: r1's export directory is deleted while it is projected. The failure is
    logged on the "auditjournal" logger and kept in `problems`; r2 is sealed meanwhile;
    r1 is tried again later, rebuilt and sealed."""
    caplog.set_level(logging.WARNING, logger="auditjournal")
    with AuditStore.open(tmp_path / "audit") as store:
        run1 = store.start_run(export=None, sql=False, run_id="r1")
        record(run1, 50)
        service = ProjectionService(store, settings=SETTINGS, sql=False, retry_interval=0.2)
        stop = threading.Event()
        sealed: list[str] = []
        service.on_sealed = lambda rid, result: sealed.append(rid)
        worker = threading.Thread(
            target=service.run, kwargs={"follow": True, "stop": stop, "idle_wait": 0.01}
        )
        worker.start()
        try:
            deadline = time.monotonic() + 30
            while not list(store.export_dir("r1").glob("audit_trail.*.json")):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            # deleted under the running projector (renamed away first: one atomic step)
            store.export_dir("r1").rename(tmp_path / "deleted")
            shutil.rmtree(tmp_path / "deleted", ignore_errors=True)
            run1.complete()
            run1.close()
            while "r1" not in service.problems:
                assert time.monotonic() < deadline, "the deleted directory went unnoticed"
                time.sleep(0.01)
            with store.start_run(export=None, sql=False, run_id="r2") as run2:
                record(run2, 5)
            while set(sealed) != {"r1", "r2"}:
                assert time.monotonic() < deadline, (sealed, service.problems)
                time.sleep(0.01)
        finally:
            stop.set()
            worker.join(timeout=30)
        assert service.problems == {}
        assert len(seals(store, "r1")) == len(seals(store, "r2")) == 1
        report = verify_export(
            store.export_dir("r1"), journal=(store.journal_dir("r1"), store.payloads)
        )
        assert report.ok, report.summary()
    warnings = [r for r in caplog.records if r.name.startswith("auditjournal")]
    assert any("r1" in r.getMessage() and "other runs go on" in r.getMessage() for r in warnings)
