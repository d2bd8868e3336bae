"""SIGKILL the live projector process, or the recorder beside it, at random moments.

A recorder child process records runs with the library defaults (a projector process
per run writing the live export and the SQL tables). Each trial kills, after a random
delay spread over a run's recording and sealing:

* the **projector process**: the recorder starts it again from its checkpoints and the
  ``with`` block still returns with the export sealed (``export_sealed`` recorded
  once), the tables caught up, and the export byte-identical to a clean replay of
  the journal;
* the **recorder**: the projector takes in everything that reached the journal (its
  SQL checkpoint ends at the journal's last entry; a completed run's export is
  sealed) and exits by itself; the run is then finished and projected as an operator
  would (``finish_run`` + the projection service), and the export is byte-identical
  to a clean replay.

Nothing may hang: every wait is bounded. The default run does 20 + 10 trials; ``-m slow``
runs 100 + 40. ``AUDITJOURNAL_CRASH_SEED`` repeats a failing run (printed on failure).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from auditjournal import AuditStore, ExportSettings, RunAlreadyCompletedError, replay_export
from auditjournal.model.events import ExportSealed, RunCompleted
from auditjournal.projection.service import ProjectionService

SETTINGS = ExportSettings(chunk_size_bytes=20_000)
ROWS = 400
PATIENCE = 120.0  # seconds any one wait may take before the trial counts as hung

CHILD = r"""
import sys
from auditjournal import AuditStore, ExportSettings

root, first, count, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
store = AuditStore.open(root, projection="process")
for trial in range(first, first + count):
    run_id = f"run-{trial}"
    with store.start_run(run_id=run_id, export=ExportSettings(chunk_size_bytes=20_000)) as run:
        print("started", run_id, run.live.export.host.pid, flush=True)
        src = run.register_node(plugin_name="csv", node_type="source")
        xf = run.register_node(plugin_name="upper", node_type="transform")
        for i in range(rows):
            row = run.create_row(source_node_id=src, row_index=i, data={"i": i, "t": "x" * 40})
            token = run.create_token(row_id=row)
            state = run.begin_node_state(token_id=token, node_id=xf, step_index=1,
                                         input_data={"i": i})
            run.complete_node_state(state, status="completed", output_data={"o": i})
    sealed = run.export_result is not None
    print("done", run_id, "sealed" if sealed else "unsealed", flush=True)
store.close()
"""


@pytest.fixture
def rng() -> Iterator[random.Random]:
    seed = int(os.environ.get("AUDITJOURNAL_CRASH_SEED", random.randrange(1 << 30)))
    try:
        yield random.Random(seed)
    except BaseException:
        print(f"AUDITJOURNAL_CRASH_SEED={seed}")
        raise


def start_child(root: Path, script: Path, first: int, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), str(root), str(first), str(count), str(ROWS)],
        stdout=subprocess.PIPE,
        text=True,
    )


def read_line(pipe: IO[str] | None) -> list[str]:
    """The child's next line (bounded by the child's own exit: EOF gives [])."""
    assert pipe is not None
    return pipe.readline().split()


def gone(pid: int) -> bool:
    """The process exited (a zombie nobody reaped counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + PATIENCE
    while not gone(pid):
        assert time.monotonic() < deadline, f"projector process {pid} did not exit"
        time.sleep(0.02)


def export_files(prefix_dir: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(prefix_dir.iterdir())
        if p.is_file() and p.name.startswith("audit_trail.") and p.suffix == ".json"
    }


def assert_identical_to_replay(store: AuditStore, run_id: str, scratch: Path) -> None:
    out = scratch / f"replay-{run_id}"
    replay_export(
        journal_dir=store.journal_dir(run_id), run_id=run_id, payloads=store.payloads,
        settings=SETTINGS, prefix=out / "audit_trail", workers=1,
    )  # fmt: skip
    live = export_files(store.export_dir(run_id))
    assert live and live == export_files(out), run_id


def count(store: AuditStore, run_id: str, kind: type) -> int:
    return sum(type(e) is kind for e in store.read_journal(run_id))


def write_child(tmp_path: Path) -> Path:
    script = tmp_path / "recorder.py"
    script.write_text(CHILD)
    return script


def test_sigkill_the_projector_process(tmp_path: Path, rng: random.Random) -> None:
    kill_projector(tmp_path, rng, 20)


@pytest.mark.slow
def test_sigkill_the_projector_process_many(tmp_path: Path, rng: random.Random) -> None:
    kill_projector(tmp_path, rng, 100)


def kill_projector(tmp_path: Path, rng: random.Random, n: int) -> None:
    root, script = tmp_path / "audit", write_child(tmp_path)
    child = start_child(root, script, 0, n + 1)
    try:
        # run-0 uninterrupted: how long a run takes from its start to its seal
        assert read_line(child.stdout)[0] == "started"
        began = time.monotonic()
        assert read_line(child.stdout) == ["done", "run-0", "sealed"]
        full = time.monotonic() - began
        killed = 0
        for trial in range(1, n + 1):
            started = read_line(child.stdout)
            began = time.monotonic()
            assert started[:2] == ["started", f"run-{trial}"], started
            time.sleep(rng.uniform(0, 1.2 * full))
            try:
                os.kill(int(started[2]), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass  # it had already finished: the run must be whole all the same
            assert read_line(child.stdout) == ["done", f"run-{trial}", "sealed"]
            # run-0 also started the fork server, and the load changes: the kills aim at
            # the quickest run seen so far, so most land whatever the machine does
            full = min(full, time.monotonic() - began)
        assert child.wait(PATIENCE) == 0
        assert killed >= n // 2, f"only {killed} of {n} kills landed"
    finally:
        child.kill()
        child.wait()
    with AuditStore.open(root, projection="thread") as store:
        for trial in range(n + 1):
            run_id = f"run-{trial}"
            assert count(store, run_id, ExportSealed) == 1, run_id
            completed = [e for e in store.read_journal(run_id) if type(e) is RunCompleted]
            checkpoint = store.sql_database().checkpoint(run_id)
            assert checkpoint is not None and checkpoint.last_seq >= completed[0].seq
            assert_identical_to_replay(store, run_id, tmp_path)


def test_sigkill_the_recorder(tmp_path: Path, rng: random.Random) -> None:
    kill_recorder(tmp_path, rng, 10)


@pytest.mark.slow
def test_sigkill_the_recorder_many(tmp_path: Path, rng: random.Random) -> None:
    kill_recorder(tmp_path, rng, 40)


def kill_recorder(tmp_path: Path, rng: random.Random, n: int) -> None:
    root, script = tmp_path / "audit", write_child(tmp_path)
    calibrate = start_child(root, script, 0, 1)
    began = time.monotonic()
    assert read_line(calibrate.stdout)[0] == "started"
    assert read_line(calibrate.stdout) == ["done", "run-0", "sealed"]
    full = time.monotonic() - began
    assert calibrate.wait(PATIENCE) == 0
    for trial in range(1, n + 1):
        run_id = f"run-{trial}"
        child = start_child(root, script, trial, 1)
        try:
            started = read_line(child.stdout)
            assert started[:2] == ["started", run_id], started
            time.sleep(rng.uniform(0, 1.1 * full))
            child.kill()
            child.wait(PATIENCE)
        finally:
            child.kill()
            child.wait()
        wait_gone(int(started[2]))  # the orphaned projector finished and exited
        with AuditStore.open(root, projection="thread") as store:
            last = None
            for event in store.read_journal(run_id):
                last = event
            assert last is not None
            checkpoint = store.sql_database().checkpoint(run_id)
            assert checkpoint is not None and checkpoint.last_seq == last.seq, run_id
            with contextlib.suppress(RunAlreadyCompletedError):  # it died after completing
                store.finish_run(run_id, "failed")
            ProjectionService(store, run_ids=[run_id]).run(follow=False)
            assert count(store, run_id, ExportSealed) == 1, run_id
            assert_identical_to_replay(store, run_id, tmp_path)
