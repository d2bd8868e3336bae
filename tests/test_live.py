"""The live projectors of a run being recorded (threads: live.py, LiveExport, LiveSql; a
projector process: process.py) do not sleep while the recorder waits for them: the
recorder wakes them when it has written the journal and they signal each step. With
their poll interval (a projector process: its idle look, the store's flush interval)
set to an hour, a run still records, seals and fills its tables -- only the wake-ups
can make that happen."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from auditjournal import AuditStore, ExportSettings
from auditjournal.projection import live as live_module
from auditjournal.projection import process as process_module
from auditjournal.recording.recorder import RunRecorder

HOUR = 3600.0
PATIENCE = 60.0  # seconds a test waits before it calls a wake-up missing


def record_rows(run: RunRecorder, rows: int) -> None:
    src = run.register_node(plugin_name="csv", node_type="source")
    xf = run.register_node(plugin_name="upper", node_type="transform")
    for i in range(rows):
        row = run.create_row(source_node_id=src, row_index=i, data={"i": i})
        token = run.create_token(row_id=row)
        state = run.begin_node_state(token_id=token, node_id=xf, step_index=1, input_data={"i": i})
        run.complete_node_state(state, status="completed", output_data={"o": i})
        run.record_token_outcome(token_id=token, outcome="completed")


def within(seconds: float, work: Callable[[], None]) -> None:
    """Run ``work`` on a thread; fail (instead of hanging) if it is not done in time."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s: a projector was not woken"
    if errors:
        raise errors[0]


@pytest.fixture(params=["process", "thread"])
def hour_polls(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """How to open the store (in both projection modes) so that only wake-ups move them."""
    monkeypatch.setattr(live_module, "_LIVE_POLL", HOUR)
    monkeypatch.setattr(live_module.LiveSql.__init__, "__defaults__", (HOUR,))
    monkeypatch.setattr(live_module, "_THROTTLE_WAIT", 2 * PATIENCE)
    return {"durability": "none", "flush_interval": HOUR, "projection": request.param}


def test_woken_live_export_takes_in_new_entries(tmp_path: Path, hour_polls: dict[str, Any]) -> None:
    with AuditStore.open(tmp_path / "audit", **hour_polls) as store:
        run = store.start_run(run_id="r", export=ExportSettings(), sql=False)
        live = run.live.export
        assert live is not None
        record_rows(run, 5)  # fewer events than the recorder lets a projector trail by
        run._journal.flush(fsync=False)
        live.wake()

        def caught_up() -> None:
            while live.done_seq() < run.last_seq:
                live.wait_progress(0.5)

        within(PATIENCE, caught_up)
        assert live.done_seq() == run.last_seq
        within(PATIENCE, run.complete)  # the seal wakes it too
        assert run.export_result is not None


@pytest.mark.parametrize("sql", [False, True])
def test_backpressure_wakes_the_projectors_and_the_run_seals(
    tmp_path: Path, hour_polls: dict[str, Any], sql: bool
) -> None:
    # 1,000 rows = 5,000 events: far more than either mode's MAX_BEHIND, so the recorder
    # throttles many times; each time it must wake the projector, not wait out its poll.
    assert 4 * max(live_module.MAX_BEHIND, process_module.MAX_BEHIND) < 5 * 1_000
    with AuditStore.open(tmp_path / "audit", **hour_polls) as store:
        run = store.start_run(run_id="r", export=ExportSettings(), sql=sql)

        def record() -> None:
            with run:
                record_rows(run, 1_000)

        within(PATIENCE, record)
        assert run.export_result is not None
        assert run.export_result.record_count == 4 * 1_000 + 3  # rows, tokens, states, outcomes
        if sql:
            assert store.sql_database().checkpoint("r") is not None
