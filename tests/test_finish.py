"""Runs that stop and go on (issue 14, item 5): resume events and ``auditjournal finish``.

A writer is killed with SIGKILL in a real child process; a new process resumes the
run (``run_interrupted`` + ``run_resumed`` are recorded) or finishes it with
``auditjournal finish ROOT RUN_ID --status interrupted|failed``, which completes it,
seals its export and brings its SQL tables up to date.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from auditjournal import AuditStore, RunAlreadyCompletedError
from auditjournal.evidence.verify import verify_export
from auditjournal.model.events import RunCompleted, RunInterrupted, RunResumed
from auditjournal.sql.lineage import show_run

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from auditjournal import AuditStore
    store = AuditStore.open(sys.argv[1], durability="always")
    run = store.start_run(run_id="killed", config={"rows": 3})
    src = run.register_node(plugin_name="csv", node_type="source", node_id="src")
    for i in range(3):
        row = run.create_row(source_node_id=src, row_index=i, data={"i": i})
        tok = run.create_token(row_id=row)
        run.begin_node_state(token_id=tok, node_id=src, step_index=0, input_data={"i": i})
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def kill_a_writer(root: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "auditjournal", *args], capture_output=True, text=True, env=env
    )


@pytest.mark.parametrize("status", ["interrupted", "failed"])
def test_finish_completes_and_seals_a_run_whose_writer_died(tmp_path: Path, status: str) -> None:
    root = tmp_path / "audit"
    kill_a_writer(root)
    done = cli("finish", str(root), "killed", "--status", status)
    assert done.returncode == 0, done.stderr
    assert f"finished killed as {status}" in done.stdout and "export sealed" in done.stdout
    with AuditStore.open(root) as store:
        events = list(store.read_journal("killed"))
        kinds = [type(e) for e in events]
        interrupted = next(e for e in events if isinstance(e, RunInterrupted))
        assert interrupted.last_seq == interrupted.seq - 1  # the dead writer's last entry
        assert kinds.index(RunInterrupted) + 1 == kinds.index(RunResumed)
        resumed = next(e for e in events if isinstance(e, RunResumed))
        assert resumed.writer["pid"] != os.getpid() and resumed.writer["host"]
        completed = next(e for e in events if isinstance(e, RunCompleted))
        assert completed.status == status
        export = store.export_dir("killed")
        report = verify_export(export, journal=(store.journal_dir("killed"), store.payloads))
        assert report.ok, report.lines
        manifest = json.loads((export / "audit_trail.manifest.json").read_text())
        records = [
            r for c in manifest["chunks"] for r in json.loads((export / c["file"]).read_text())
        ]
        (run,) = [r for r in records if r["record_type"] == "run"]
        assert run["status"] == status
        assert [i["kind"] for i in run["interruptions"]] == ["interrupted", "resumed"]
        states = [r for r in records if r["record_type"] == "node_state"]
        assert [s["status"] for s in states] == ["open"] * 3  # never completed
        assert show_run(store, "killed")["run"]["status"] == status  # the SQL tables too
    again = cli("finish", str(root), "killed", "--status", status)
    assert again.returncode == 1 and "already completed" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1  # one line, no traceback


def test_resume_records_the_interruption_and_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    kill_a_writer(root)
    with AuditStore.open(root) as store:
        run = store.resume_run("killed", reason="host rebooted")
        run.create_row(source_node_id="src", row_index=3, data={"i": 3})
        run.complete()
        run.close()
        events = list(store.read_journal("killed"))
        (interrupted,) = [e for e in events if isinstance(e, RunInterrupted)]
        assert interrupted.reason == "host rebooted"
        with pytest.raises(RunAlreadyCompletedError):
            store.resume_run("killed")
        assert len(list(store.read_journal("killed"))) == len(events)  # nothing appended


def test_finish_refuses_a_status_other_than_interrupted_or_failed(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    kill_a_writer(root)
    bad = cli("finish", str(root), "killed", "--status", "completed")
    assert bad.returncode == 2
