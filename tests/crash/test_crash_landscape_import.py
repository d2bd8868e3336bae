"""Kill -9 during ``import-landscape`` (issue 14): the same command imports the run again.

A real child process runs the import command and is SIGKILLed halfway through a
run (after some of its tokens are in the journal, flushed). Running the same
command again removes what the dead import left and imports the run from the
start: the journal verifies, the export is sealed, and the counts and records
equal those of an uninterrupted import. A journal that a live writer still holds,
and a run that was not an import, are refused and left as they are.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from auditjournal import AuditStore
from auditjournal.landscape.importer import import_landscape
from auditjournal.model.events import RunCompleted, RunResumed, RunStarted, TokenCreated
from auditjournal.sql import lineage

FIXTURES = Path("/work/shared/fixtures/elspeth-landscape")
NAME = "batch_aggregation"
RUN_ID = "e9f5e91aef1d4fdca7548ad3b87e9dde"
CHILD = Path(__file__).with_name("landscape_import_child.py")
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="Landscape fixtures not found")


def command(root: Path) -> list[str]:
    return [
        "import-landscape", str(FIXTURES / NAME / "audit.db"),
        "--payloads", str(FIXTURES / NAME / "payloads"), "--root", str(root), "--json",
    ]  # fmt: skip


def kill_halfway(root: Path, stop_after: int = 9) -> int:
    """Start the import in a child, SIGKILL it once it has recorded ``stop_after``
    tokens; returns the last seq it had flushed."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(stop_after), *command(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # waiting for the child's word (a bound only so that a broken child cannot hang
        # the suite; nothing is asserted about time)
        ready, _, _ = select.select([child.stdout], [], [], 300)
        line = child.stdout.readline() if ready else ""  # type: ignore[union-attr]
        assert line.startswith("stopped "), (line, child.stderr.read() if not ready else "")  # type: ignore[union-attr]
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    return int(line.split()[1])


def cli(root: Path) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "auditjournal", *command(root)]
    return subprocess.run(args, capture_output=True, text=True)


def export_records(store: AuditStore) -> list[dict[str, Any]]:
    """The sealed export's records without the journal's own append times."""
    export = store.export_dir(RUN_ID)
    manifest = json.loads((export / "audit_trail.manifest.json").read_text())
    out = []
    for chunk in manifest["chunks"]:
        for record in json.loads((export / chunk["file"]).read_text()):
            record.pop("appended_at", None)
            out.append(record)
    return out


def test_an_import_killed_halfway_is_imported_again_whole(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    last_seq = kill_halfway(root)
    with AuditStore.open(root) as store:  # the dead import's leftovers: a partial journal
        events = list(store.journal(RUN_ID).read())
    assert len(events) >= last_seq > 0
    assert sum(type(e) is TokenCreated for e in events) >= 9
    assert not any(type(e) is RunCompleted for e in events)

    again = cli(root)
    assert again.returncode == 0, again.stdout + again.stderr
    (run,) = json.loads(again.stdout)["runs"]
    assert run["status"] == "imported"
    assert any("died after" in note for note in run["notes"]), run["notes"]

    whole = tmp_path / "whole"
    first = cli(whole)
    assert first.returncode == 0, first.stderr
    (reference,) = json.loads(first.stdout)["runs"]
    assert run["tables"] == reference["tables"] and run["records"] == reference["records"]
    assert run["payloads"]["referenced"] == reference["payloads"]["referenced"]

    verified = subprocess.run(
        [sys.executable, "-m", "auditjournal", "verify", str(root / "runs" / RUN_ID / "export"),
         "--journal", str(root), RUN_ID],
        capture_output=True, text=True,
    )  # fmt: skip
    assert verified.returncode == 0 and "VALID" in verified.stdout, verified.stdout
    with AuditStore.open(root) as store, AuditStore.open(whole) as other:
        assert export_records(store) == export_records(other)
        counts = lineage.show_run(store, RUN_ID)["counts"]
        assert counts == lineage.show_run(other, RUN_ID)["counts"]
        # one run_started, no run_resumed: the dead import's events are gone, not resumed
        kinds = [type(e) for e in store.journal(RUN_ID).read()]
        assert kinds.count(RunStarted) == 1 and RunResumed not in kinds

    done = cli(root)  # imported whole: now it is refused
    assert done.returncode == 1
    assert json.loads(done.stdout)["runs"][0]["status"] == "refused"


def test_a_journal_a_live_writer_holds_is_refused_and_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    kill_halfway(root, stop_after=3)
    journal = root / "runs" / RUN_ID / "journal"
    before = {p.name: p.read_bytes() for p in journal.iterdir()}
    with AuditStore.open(root) as store:
        with store.journal(RUN_ID).lease():  # as a living importer would
            (run,) = import_landscape(
                str(FIXTURES / NAME / "audit.db"), FIXTURES / NAME / "payloads", store
            ).runs
        assert run.status == "refused", run.message
        assert {p.name: p.read_bytes() for p in journal.iterdir()} == before


def test_a_run_that_was_not_imported_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    with AuditStore.open(root) as store:
        live = store.start_run(run_id=RUN_ID, config={"mine": True})
        live.close()  # unfinished, but not an import: never removed
        (run,) = import_landscape(
            str(FIXTURES / NAME / "audit.db"), FIXTURES / NAME / "payloads", store
        ).runs
        assert run.status == "refused" and "already in" in (run.message or "")
        assert len(list(store.journal(RUN_ID).read())) >= 1
