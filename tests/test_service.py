"""The projectors as their own process (`auditjournal project`): seal, record, never twice."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from auditjournal import AuditStore, ExportSettings, ProjectionService, replay_export
from auditjournal.cli import cli
from auditjournal.events import ExportSealed

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
    from auditjournal.export import LIVE_STEP_EVENTS, ExportProjector

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
