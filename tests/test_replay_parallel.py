"""The parallel replay (worker processes over journal ranges, replay.py) writes exactly
the bytes of the single-process replay and of the live export, wherever the ranges
are cut: node states open across ranges, several journal segments, failed runs with
open states, runs that never completed, damaged journals."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditjournal import AuditStore, CorruptJournalError, ExportSettings, replay_export
from auditjournal.export import replay as replay_module
from auditjournal.recording.recorder import RunRecorder

SETTINGS = ExportSettings(chunk_size_bytes=6_000)


def record(run: RunRecorder, rows: int, leave_open: bool = False) -> None:
    """Rows whose node states stay open across many later entries (so across ranges)."""
    src = run.register_node(plugin_name="csv", node_type="source")
    xf = run.register_node(plugin_name="upper", node_type="transform")
    sink = run.register_node(plugin_name="sink", node_type="sink")
    run.register_edge(from_node_id=src, to_node_id=xf, label="continue")
    long_open = []
    for i in range(rows):
        row = run.create_row(source_node_id=src, row_index=i, data={"i": i, "text": "é" * (i % 40)})
        token = run.create_token(row_id=row)
        state = run.begin_node_state(
            token_id=token, node_id=xf, step_index=1, input_data={"i": i, "pad": "x" * 60}
        )
        if i % 7 == 0:
            long_open.append((state, i))  # completed much later
        else:
            run.record_call(state_id=state, call_type="http", status="success",
                            request={"q": i}, response={"a": i * 0.5})  # fmt: skip
            run.complete_node_state(state, status="completed", output_data={"i": i, "y": 1.25})
        if i % 25 == 24:
            for st_id, j in long_open:
                run.complete_node_state(st_id, status="completed", output_data={"late": j})
            long_open.clear()
        run.record_token_outcome(token_id=token, outcome="completed", sink_name="out")
    if not leave_open:
        for st_id, j in long_open:
            run.complete_node_state(st_id, status="failed", error={"late": j})
    run.begin_node_state(token_id=token, node_id=sink, step_index=2, input_data={"last": True})


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AuditStore, str, Path]]:
    """A completed run in a store with small journal segments, and its live export."""
    root = tmp_path_factory.mktemp("parallel") / "audit"
    with AuditStore.open(root, segment_bytes=40_000) as store:
        with store.start_run(export=SETTINGS, sql=False) as run:
            record(run, 200)
        assert len(list(store.journal_dir(run.run_id).glob("*.jsonl"))) > 3
        yield store, run.run_id, store.export_dir(run.run_id)


def files(directory: Path) -> dict[str, bytes]:
    """The export's files (not the projector's lock)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(directory.iterdir())
        if p.is_file() and not p.name.startswith(".")
    }


def parallel(store: AuditStore, run_id: str, out: Path, range_bytes: int) -> object:
    """The parallel path itself (replay_export would fall back to one process on errors)."""
    shutil.rmtree(out, ignore_errors=True)
    return replay_module._replay_parallel(
        store.journal(run_id), run_id, store.payloads, SETTINGS, out / "audit_trail",
        2, range_bytes,
    )  # fmt: skip


def single(store: AuditStore, run_id: str, out: Path) -> object:
    shutil.rmtree(out, ignore_errors=True)
    return replay_export(
        journal_dir=store.journal_dir(run_id), run_id=run_id, payloads=store.payloads,
        settings=SETTINGS, prefix=out / "audit_trail", workers=1,
    )  # fmt: skip


def stitched_sizes(monkeypatch: pytest.MonkeyPatch, part: int) -> list[int]:
    """The length of one part of each range's result, as the parent stitches them."""
    sizes: list[int] = []
    real_stitch = replay_module._stitch

    def stitch(projector: object, maker: object, result: tuple[object, ...]) -> bool:
        sizes.append(len(result[part]))  # type: ignore[arg-type]
        return real_stitch(projector, maker, result)  # type: ignore[arg-type]

    monkeypatch.setattr(replay_module, "_stitch", stitch)
    return sizes


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(range_bytes=st.integers(min_value=1_000, max_value=40_000))
def test_any_cut_gives_the_live_exports_bytes(
    recorded: tuple[AuditStore, str, Path], tmp_path: Path, range_bytes: int
) -> None:
    store, run_id, export_dir = recorded
    out = tmp_path / f"par-{range_bytes}"
    result = parallel(store, run_id, out, range_bytes)
    assert result is not None
    assert files(out) == files(export_dir)


def test_default_replay_of_a_big_journal_uses_workers_and_matches(
    recorded: tuple[AuditStore, str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, run_id, export_dir = recorded
    used: list[int] = []
    real = replay_module._replay_parallel

    def spy(*args: object) -> object:
        used.append(1)
        return real(*args)  # type: ignore[arg-type]

    deferred = stitched_sizes(monkeypatch, 4)  # states completed in a later range than started
    monkeypatch.setattr(replay_module, "_replay_parallel", spy)
    monkeypatch.setattr(replay_module, "_PARALLEL_BYTES", 0)
    monkeypatch.setattr(replay_module.os, "cpu_count", lambda: 2)
    result = replay_export(
        journal_dir=store.journal_dir(run_id), run_id=run_id, payloads=store.payloads,
        settings=SETTINGS, prefix=tmp_path / "out" / "audit_trail", range_bytes=5_000,
    )  # fmt: skip
    assert used and result is not None
    assert len(deferred) > 20 and sum(deferred) > 10
    assert files(tmp_path / "out") == files(export_dir)


@pytest.mark.parametrize("slot_bytes", [1, 2_500, 1 << 20])
def test_records_too_big_for_a_shared_slot_travel_through_the_pipe(
    recorded: tuple[AuditStore, str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    slot_bytes: int,
) -> None:
    # Workers leave a range's records in a slot of shared memory when they fit (an int
    # in the result says how many bytes), else send them as bytes: both give the same export.
    store, run_id, export_dir = recorded
    sizes = stitched_sizes(monkeypatch, 0)
    monkeypatch.setattr(replay_module, "_SLOT_BYTES", slot_bytes)
    out = tmp_path / "out"
    assert parallel(store, run_id, out, 3_000) is not None
    assert files(out) == files(export_dir)
    ranges = [size for size in sizes if size]  # the last may hold only run_completed
    fits = sum(size <= slot_bytes for size in ranges)
    expected = {1: 0, 1 << 20: len(ranges)}.get(slot_bytes)
    if expected is None:  # the middle size: some ranges fit and some do not
        assert 0 < fits < len(ranges)
    else:
        assert fits == expected


@pytest.mark.parametrize("leave_open", [False, True])
def test_unfinished_runs_match_the_single_process_replay(tmp_path: Path, leave_open: bool) -> None:
    """A failed run with open states is sealed alike; a run never completed (crash)
    leaves the same unsealed chunks."""
    with AuditStore.open(tmp_path / "audit", segment_bytes=30_000) as store:
        run = store.start_run(export=None, sql=False)
        record(run, 120, leave_open=leave_open)
        if leave_open:
            run.complete(status="failed", error={"why": "test"})
        else:
            run.close()  # no run_completed
        for cut in (700, 4_000):
            got = parallel(store, run.run_id, tmp_path / f"par-{cut}", cut)
            want = single(store, run.run_id, tmp_path / "single")
            assert (got is None, want is None) == (not leave_open, not leave_open)
            assert files(tmp_path / f"par-{cut}") == files(tmp_path / "single")
            assert files(tmp_path / "single")


def test_a_damaged_journal_gives_the_single_process_error(tmp_path: Path) -> None:
    with AuditStore.open(tmp_path / "audit", segment_bytes=30_000) as store:
        with store.start_run(export=None, sql=False) as run:
            record(run, 120)
        segment = sorted(store.journal_dir(run.run_id).glob("*.jsonl"))[1]
        data = bytearray(segment.read_bytes())
        data[len(data) // 2] ^= 0x01  # inside some entry
        segment.write_bytes(bytes(data))
        with pytest.raises(CorruptJournalError) as single_error:
            single(store, run.run_id, tmp_path / "single")
        with pytest.raises(CorruptJournalError):  # the parallel path finds it too ...
            parallel(store, run.run_id, tmp_path / "par", 2_000)
        with pytest.raises(CorruptJournalError) as default_error:  # ... and reports as before
            replay_export(
                journal_dir=store.journal_dir(run.run_id), run_id=run.run_id,
                payloads=store.payloads, settings=SETTINGS,
                prefix=tmp_path / "default" / "audit_trail", workers=2, range_bytes=2_000,
            )  # fmt: skip
        assert str(default_error.value) == str(single_error.value)
