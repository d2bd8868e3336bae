"""Replay (byte-identical rebuilds from the journal, other settings, unfinished runs) and
the projector resuming from its checkpoint in process."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

import auditjournal
import auditjournal.export.projector as export_module
from auditjournal import (
    AuditStore,
    ExportPaths,
    ExportSettings,
    JournalLockedError,
)
from auditjournal.fs.storage import lock_file
from export_reading import (
    ALL_PAYLOAD_FIELDS,
    PREFIX,
    assert_same_files,
    check_manifest,
    chunk_paths,
    export_files,
    export_records,
    record_lines,
)
from export_runs import (
    CONFIG,
    record_everything,
    replay,
    small_run,
)

# -- replay --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings_",
    [
        ExportSettings(chunk_size_bytes=1200),
        ExportSettings(chunk_size_bytes=None),
        ExportSettings(include_payloads=False, chunk_size_bytes=700),
    ],
    ids=["chunked", "single", "refs-only"],
)
def test_replay_is_byte_identical(
    store: AuditStore, tmp_path: Path, settings_: ExportSettings
) -> None:
    with store.start_run(config=CONFIG, export=settings_) as run:
        record_everything(run)
        small_run(run, rows=10)
    rid = run.run_id
    live = store.export_dir(rid)
    out = tmp_path / "replay" / PREFIX
    result = auditjournal.replay_export(
        journal_dir=store.journal_dir(rid),
        run_id=rid,
        payloads=store.payloads,
        settings=settings_,
        prefix=out,
    )
    assert result is not None
    assert result.manifest_sha256 == run.export_result.manifest_sha256  # type: ignore[union-attr]
    live_files = export_files(live)
    assert len(live_files) >= 3
    assert_same_files(out.parent, live)
    # replaying again over the previous replay gives the same files again
    replay(store, rid, settings_, out)
    assert_same_files(out.parent, live)


def test_replay_with_other_settings_differs_but_is_valid(store: AuditStore, tmp_path: Path) -> None:
    settings_ = ExportSettings(chunk_size_bytes=1500)
    with store.start_run(config=CONFIG, export=settings_) as run:
        record_everything(run)
        small_run(run, rows=10)
    rid = run.run_id
    live = store.export_dir(rid)
    live_records = [r for _, r in export_records(live)]
    live_manifest = json.loads((live / "audit_trail.manifest.json").read_bytes())
    for other in (
        ExportSettings(include_payloads=False, chunk_size_bytes=1500),
        ExportSettings(chunk_size_bytes=4000),
        ExportSettings(chunk_size_bytes=None),
    ):
        out = tmp_path / f"other-{other.include_payloads}-{other.chunk_size_bytes}" / PREFIX
        replay(store, rid, other, out)
        manifest = check_manifest(out.parent, store, rid, other)
        assert export_files(out.parent) != export_files(live)
        records = [r for _, r in export_records(out.parent)]
        assert len(records) == len(live_records)
        if other.include_payloads:
            assert records == live_records
            assert manifest["merkle_root"] == live_manifest["merkle_root"]
            assert manifest["chunk_count"] != live_manifest["chunk_count"]
        else:
            stripped = [{k: v for k, v in r.items() if k not in ALL_PAYLOAD_FIELDS}
                        for r in live_records]  # fmt: skip
            assert records == stripped
            assert manifest["merkle_root"] != live_manifest["merkle_root"]


def test_replay_over_another_export_leaves_no_stale_files(
    store: AuditStore, tmp_path: Path
) -> None:
    with store.start_run(export=None) as run:
        small_run(run, rows=8)
    out = tmp_path / "reused" / PREFIX
    replay(store, run.run_id, ExportSettings(chunk_size_bytes=600), out)
    assert len(chunk_paths(out.parent)) > 5
    replay(store, run.run_id, ExportSettings(chunk_size_bytes=None), out)
    assert sorted(export_files(out.parent)) == [
        "audit_trail.json",
        "audit_trail.manifest.json",
        "audit_trail.sha256",
    ]
    replay(store, run.run_id, ExportSettings(chunk_size_bytes=2000), out)
    fresh = tmp_path / "fresh" / PREFIX
    replay(store, run.run_id, ExportSettings(chunk_size_bytes=2000), fresh)
    assert_same_files(out.parent, fresh.parent)


def test_replay_of_an_unfinished_run_is_unsealed(store: AuditStore, tmp_path: Path) -> None:
    run = store.start_run(export=None)
    small_run(run, rows=3)
    run.close()  # never completed
    out = tmp_path / "unfinished" / PREFIX
    assert replay(store, run.run_id, ExportSettings(chunk_size_bytes=None), out) is None
    data = (out.parent / "audit_trail.json").read_bytes()
    assert not (out.parent / "audit_trail.manifest.json").exists()
    assert not data.endswith(b"]\n")
    assert len(record_lines(data)) == 3 + 3 * 4


# -- resume from a checkpoint (in process) -------------------------------------------------


@pytest.fixture
def finished_run(store: AuditStore) -> str:
    with store.start_run(config=CONFIG, export=None) as run:
        record_everything(run)
        small_run(run, rows=25)
    return run.run_id


RESUME_SETTINGS = ExportSettings(chunk_size_bytes=1500)


def step_to(projector: auditjournal.ExportProjector, seq: int, batch: int = 7) -> None:
    """Project in small batches until the next event to read is ``seq``."""
    while projector.position.next_seq < seq:
        read = projector.step(limit=min(batch, seq - projector.position.next_seq))
        assert read > 0


@pytest.mark.parametrize(
    ("cut", "then_more"),
    [(0.0, 0), (0.1, 2), (0.45, 5), (0.8, 0), (1.0, 0), (1.0, 1)],
)
def test_resume_from_checkpoint_is_byte_identical(
    store: AuditStore,
    finished_run: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cut: float,
    then_more: int,
) -> None:
    rid = finished_run
    clean = tmp_path / "clean" / PREFIX
    replay(store, rid, RESUME_SETTINGS, clean)
    last = sum(1 for _ in store.read_journal(rid))  # run_completed (no live export here)
    # checkpoint somewhere between the first event and just before run_completed
    at = max(2, round(1 + cut * (last - 2)))
    monkeypatch.setattr(export_module, "_CHECKPOINT_EVERY", 1e9)  # only our checkpoint counts
    prefix = tmp_path / "resumed" / PREFIX
    projector = store.export_projector(rid, RESUME_SETTINGS, prefix=prefix)
    try:
        step_to(projector, at)
        projector._write_checkpoint()
        checkpoint = projector.paths.checkpoint
        saved = checkpoint.read_bytes()
        # more is written to the files (with cut=1.0 the export is even sealed), then the
        # process "dies" before any later checkpoint: put the saved one back
        for _ in range(then_more):
            projector.step(limit=7)
        sealed_meanwhile = projector.sealed
    finally:
        projector.close()
    checkpoint.write_bytes(saved)
    assert sealed_meanwhile == (cut == 1.0 and then_more > 0)
    if cut >= 0.45:
        assert len(chunk_paths(prefix.parent)) >= 2
    resumed = store.export_projector(rid, RESUME_SETTINGS, prefix=prefix)
    try:
        assert resumed.position.next_seq == at, "the projector must resume at its checkpoint"
        result = resumed.run(follow=False)
    finally:
        resumed.close()
    assert result is not None
    assert_same_files(prefix.parent, clean.parent)


def test_resume_after_sealing_keeps_the_export(
    store: AuditStore, finished_run: str, tmp_path: Path
) -> None:
    prefix = tmp_path / "sealed" / PREFIX
    first = store.export_projector(finished_run, RESUME_SETTINGS, prefix=prefix)
    try:
        result = first.run(follow=False)
    finally:
        first.close()
    assert result is not None
    files = export_files(prefix.parent)
    again = store.export_projector(finished_run, RESUME_SETTINGS, prefix=prefix)
    try:
        assert again.sealed and again.step() == 0
        assert again.result == result
    finally:
        again.close()
    assert export_files(prefix.parent) == files


def test_resume_after_sealing_with_manifest_lost_reseals(
    store: AuditStore, finished_run: str, tmp_path: Path
) -> None:
    """Regression: a sealed checkpoint whose manifest is gone used to delete the last
    chunk and leave the export unsealed forever."""
    prefix = tmp_path / "lost" / PREFIX
    first = store.export_projector(finished_run, RESUME_SETTINGS, prefix=prefix)
    try:
        assert first.run(follow=False) is not None
    finally:
        first.close()
    files = export_files(prefix.parent)
    (prefix.parent / "audit_trail.manifest.json").unlink()
    again = store.export_projector(finished_run, RESUME_SETTINGS, prefix=prefix)
    try:
        assert again.run(follow=False) is not None
    finally:
        again.close()
    assert export_files(prefix.parent) == files


def test_resume_with_other_settings_rebuilds(
    store: AuditStore, finished_run: str, tmp_path: Path
) -> None:
    prefix = tmp_path / "switch" / PREFIX
    projector = store.export_projector(finished_run, RESUME_SETTINGS, prefix=prefix)
    try:
        for _ in range(5):
            projector.step(limit=9)
        projector._write_checkpoint()
    finally:
        projector.close()
    other = ExportSettings(include_payloads=False, chunk_size_bytes=3000)
    clean = tmp_path / "clean-other" / PREFIX
    replay(store, finished_run, other, clean)
    resumed = store.export_projector(finished_run, other, prefix=prefix)
    try:
        assert resumed.position.next_seq == 1, "a checkpoint of other settings is not used"
        assert resumed.run(follow=False) is not None
    finally:
        resumed.close()
    assert_same_files(prefix.parent, clean.parent)


# -- the projector's own files, kept out of the export (issue 15) ------------------------


def test_the_export_directory_holds_only_the_export(store: AuditStore) -> None:
    with store.start_run(config=CONFIG, export=ExportSettings(chunk_size_bytes=1200)) as run:
        small_run(run, rows=10)
    names = sorted(p.name for p in store.export_dir(run.run_id).iterdir())
    assert names and all(n.startswith(PREFIX + ".") for n in names), names
    state = store.run_dir(run.run_id) / "export.state"
    assert sorted(p.name for p in state.iterdir()) == [
        f"{PREFIX}.checkpoint.json",
        f"{PREFIX}.lock",
    ]


def _to_legacy(paths: ExportPaths) -> None:
    """Put the projector's files where exports written before issue 15 kept them."""
    paths.checkpoint.rename(paths.legacy_checkpoint)
    paths.lock.rename(paths.legacy_lock)
    paths.state_dir.rmdir()


def test_an_export_from_before_issue_15_resumes_and_moves_its_state_out(
    store: AuditStore, finished_run: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = tmp_path / "clean" / PREFIX
    replay(store, finished_run, RESUME_SETTINGS, clean)
    monkeypatch.setattr(export_module, "_CHECKPOINT_EVERY", 1e9)  # only our checkpoint counts
    prefix = tmp_path / "old" / PREFIX
    projector = store.export_projector(finished_run, RESUME_SETTINGS, prefix=prefix)
    try:
        step_to(projector, 20)
        projector._write_checkpoint()
    finally:
        projector.close()
    paths = ExportPaths(prefix)
    assert paths.state_dir == tmp_path / "old.state"
    _to_legacy(paths)
    resumed = store.export_projector(finished_run, RESUME_SETTINGS, prefix=prefix)
    try:
        assert resumed.position.next_seq == 20, "the old checkpoint must be resumed from"
        assert resumed.run(follow=False) is not None
    finally:
        resumed.close()
    assert_same_files(prefix.parent, clean.parent)
    assert not [p.name for p in prefix.parent.iterdir() if p.name.startswith(".")]
    assert paths.checkpoint.is_file() and paths.lock.exists()


def test_a_sealed_export_with_the_old_hidden_files_verifies(
    store: AuditStore, finished_run: str, tmp_path: Path
) -> None:
    prefix = tmp_path / "sealed" / PREFIX
    first = store.export_projector(finished_run, RESUME_SETTINGS, prefix=prefix)
    try:
        result = first.run(follow=False)
    finally:
        first.close()
    assert result is not None
    paths = ExportPaths(prefix)
    _to_legacy(paths)
    assert auditjournal.verify_export(paths.manifest).ok
    files = export_files(prefix.parent)
    again = store.export_projector(finished_run, RESUME_SETTINGS, prefix=prefix)
    try:
        assert again.sealed and again.result == result  # resumed from the old checkpoint
    finally:
        again.close()
    assert export_files(prefix.parent) == files
    assert not paths.legacy_checkpoint.exists() and not paths.legacy_lock.exists()


def test_an_older_projector_holding_the_old_lock_keeps_the_export(
    store: AuditStore, finished_run: str, tmp_path: Path
) -> None:
    prefix = tmp_path / "busy" / PREFIX
    prefix.parent.mkdir()
    paths = ExportPaths(prefix)
    held = lock_file(paths.legacy_lock, "an older projector")
    before = set(threading.enumerate())
    try:
        with pytest.raises(JournalLockedError):
            store.export_projector(finished_run, RESUME_SETTINGS, prefix=prefix)
    finally:
        os.close(held)
    # the refused projector's chunk writer is closed: its I/O thread does not linger
    left = {t.name for t in set(threading.enumerate()) - before if t.is_alive()}
    assert "auditjournal-chunk-io" not in left
    store.export_projector(finished_run, RESUME_SETTINGS, prefix=prefix).close()
    assert not paths.legacy_lock.exists()
