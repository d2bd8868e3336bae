"""Symbolic links planted in a store are never followed (issue 10, item 5).

A link where ``runs/<id>``, its ``journal/`` or ``export/``, ``payloads/``, a lock file,
a journal segment or a payload pack belongs would send the run's data outside the
root. Each is refused with :class:`UnsafePathError` before anything is written through
it, and what the link points at is left exactly as it was.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from auditjournal import AuditStore, ExportSettings
from auditjournal.errors import UnsafePathError

RUN = "run-1"


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (what the planted link points at)."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the store, with a file in it that must stay as it is."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "keep.txt").write_text("untouched")
    return path


def record_a_run(store: AuditStore, **kwargs: object) -> None:
    with store.start_run(run_id=RUN, sql=False, **kwargs) as run:  # type: ignore[arg-type]
        src = run.register_node(plugin_name="src", node_type="source")
        run.create_row(source_node_id=src, row_index=0, data={"a": 1})


def test_a_linked_run_directory_is_refused(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "audit"
    (root / "runs").mkdir(parents=True)
    (root / "runs" / RUN).symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    with AuditStore.open(root) as store:
        with pytest.raises(UnsafePathError, match="not a directory"):
            record_a_run(store)
        with pytest.raises(UnsafePathError):
            list(store.read_journal(RUN))
    assert snapshot(outside) == before


@pytest.mark.parametrize("part", ["journal", "export"])
def test_a_linked_journal_or_export_directory_is_refused(
    tmp_path: Path, outside: Path, part: str
) -> None:
    root = tmp_path / "audit"
    (root / "runs" / RUN).mkdir(parents=True)
    (root / "runs" / RUN / part).symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    with AuditStore.open(root) as store, pytest.raises(UnsafePathError, match=part):
        record_a_run(store, export=ExportSettings())
    assert snapshot(outside) == before
    if part == "export":  # refused before the run's journal was even created
        assert not (root / "runs" / RUN / "journal").exists()


def test_a_linked_payload_directory_is_refused(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "audit"
    root.mkdir()
    (root / "payloads").symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    with pytest.raises(UnsafePathError, match="payloads"):
        AuditStore.open(root)
    assert snapshot(outside) == before
    done = subprocess.run(
        [sys.executable, "-m", "auditjournal", "demo", "--root", str(root), "--rows", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("auditjournal: error: "), done.stderr
    assert "payloads is a symbolic link" in errors[0]
    assert snapshot(outside) == before


@pytest.mark.parametrize(
    "lock",
    [
        "runs/run-1/journal/.lock",
        "runs/run-1/export.state/audit_trail.lock",
        "runs/run-1/export/.audit_trail.lock",  # where exports before issue 15 had it
    ],
)
def test_a_linked_lock_file_is_refused(tmp_path: Path, outside: Path, lock: str) -> None:
    root = tmp_path / "audit"
    link = root / lock
    link.parent.mkdir(parents=True)
    target = outside / "created-through-the-link"
    link.symlink_to(target)
    with AuditStore.open(root) as store, pytest.raises(UnsafePathError, match="lock"):
        record_a_run(store, export=ExportSettings())
    assert not target.exists()


def test_resume_does_not_append_to_a_linked_segment(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "audit"
    with AuditStore.open(root) as store:
        run = store.start_run(run_id=RUN, export=None, sql=False)
        run.register_node(plugin_name="src", node_type="source")
        run.close()
    journal = root / "runs" / RUN / "journal"
    (segment,) = journal.glob("*.jsonl")
    moved = outside / segment.name
    segment.rename(moved)
    segment.symlink_to(moved)
    before = snapshot(outside)
    with AuditStore.open(root) as store:
        with pytest.raises(UnsafePathError):
            store.resume_run(RUN)
        with pytest.raises(UnsafePathError):
            list(store.read_journal(RUN))
    assert snapshot(outside) == before


def test_payloads_are_not_appended_to_a_linked_pack(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "audit"
    (root / "payloads").mkdir(parents=True)
    (outside / "pack-000001.dat").write_bytes(b"")
    (root / "payloads" / "pack-000001.dat").symlink_to(outside / "pack-000001.dat")
    before = snapshot(outside)
    with pytest.raises(UnsafePathError), AuditStore.open(root) as store:
        record_a_run(store, export=None)
    assert snapshot(outside) == before


def test_a_linked_chunk_file_in_the_export_is_not_written_through(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "audit"
    export = root / "runs" / RUN / "export"
    export.mkdir(parents=True)
    (export / "audit_trail.000.json").symlink_to(outside / "keep.txt")
    before = snapshot(outside)
    with AuditStore.open(root) as store:
        record_a_run(store, export=ExportSettings())
    assert snapshot(outside) == before
    assert not (export / "audit_trail.000.json").is_symlink()


def test_a_store_reached_through_a_linked_root_still_works(tmp_path: Path) -> None:
    """The root itself is the caller's choice (a link to the real data directory is common)."""
    real = tmp_path / "real"
    real.mkdir()
    root = tmp_path / "audit"
    root.symlink_to(real, target_is_directory=True)
    with AuditStore.open(root) as store:
        record_a_run(store, export=ExportSettings())
    assert (real / "runs" / RUN / "export" / "audit_trail.manifest.json").is_file()
    assert os.path.samefile(root / "runs", real / "runs")


def fifo_or_link_segments(tmp_path: Path) -> list[tuple[str, Path]]:
    """Roots whose run's second segment is a FIFO, or a dangling link."""
    roots = []
    for kind in ("fifo", "dangling"):
        root = tmp_path / kind
        with (
            AuditStore.open(root, segment_bytes=4096) as store,
            store.start_run(run_id=RUN, export=None, sql=False) as run,
        ):
            src = run.register_node(plugin_name="src", node_type="source")
            for i in range(40):
                run.create_row(source_node_id=src, row_index=i, data={"i": i, "t": "x" * 50})
        segments = sorted((root / "runs" / RUN / "journal").glob("*.jsonl"))
        assert len(segments) > 2
        segments[1].unlink()
        if kind == "fifo":
            os.mkfifo(segments[1])
        else:
            segments[1].symlink_to(tmp_path / "nowhere.jsonl")
        roots.append((kind, root))
    return roots


def test_replay_and_csv_export_refuse_a_fifo_or_linked_segment(tmp_path: Path) -> None:
    from auditjournal import export_csv, replay_export
    from hostile import within

    for _kind, root in fifo_or_link_segments(tmp_path):
        fifo = root / "runs" / RUN / "journal"
        fifos = tuple(p for p in fifo.glob("*.jsonl") if p.is_fifo())
        with AuditStore.open(root) as store:
            for workers in (1, 2):  # one process, and the parallel replay's range cutting
                with pytest.raises(UnsafePathError):
                    within(
                        30,
                        lambda w=workers, s=store: replay_export(
                            journal_dir=s.journal_dir(RUN),
                            run_id=RUN,
                            payloads=s.payloads,
                            settings=ExportSettings(),
                            prefix=tmp_path / "replayed" / "audit_trail",
                            workers=w,
                            range_bytes=1024,
                        ),
                        fifos=fifos,
                    )
            with pytest.raises(UnsafePathError):
                within(30, lambda s=store: export_csv(s, RUN, tmp_path / "csv"), fifos=fifos)
