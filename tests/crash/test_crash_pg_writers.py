"""Kill -9 of a writer of a run in the PostgreSQL journal (issue 12).

Each trial: this process coordinates a run (with its live export); two writer
processes join it, each with its own root, and record rows under ``always``,
writing ``ack <row id>`` to a file once every event of the row is committed.
One writer is SIGKILLed at a random moment. Then: every acknowledged row is in
the journal exactly once (all five events), no row twice, the seqs gapless and
the chain valid; the other writer finished; the run completes, seals, and the
export verifies against the journal.

Writers are forked from a forkserver that has the package imported (a real
process each, started in milliseconds). ``AUDITJOURNAL_CRASH_SEED`` reproduces.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from auditjournal import AuditStore
from auditjournal.evidence.verify import verify_export
from auditjournal.model.events import NodeStateCompleted, NodeStateStarted, RowCreated

pytestmark = pytest.mark.postgres

ROWS = 12  # per writer
TRIAL_TIMEOUT = 60.0


def _context() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["auditjournal", "sqlalchemy", "psycopg", "pg_writer_child"])
    return ctx


def _acks(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [line.split()[1] for line in lines if line.startswith("ack ")]


def trial(tmp: Path, url: str, store: AuditStore, number: int, rng: random.Random) -> None:
    from pg_writer_child import write_rows_acking_to

    run_id = f"trial-{number}"
    run = store.start_run(run_id=run_id, sql=False)
    src = run.register_node(plugin_name="csv", node_type="source", node_id="src")
    sink = run.register_node(plugin_name="out", node_type="sink", node_id="sink")
    run.flush()
    ctx = _context()
    acks = [tmp / f"{run_id}-w{i}.acks" for i in range(2)]
    procs = [
        ctx.Process(  # type: ignore[attr-defined]
            target=write_rows_acking_to,
            args=(str(acks[i]), url, str(tmp / f"{run_id}-w{i}"), run_id, src, sink),
            kwargs={"tag": f"w{i}", "rows": ROWS, "durability": "always"},
        )
        for i in range(2)
    ]
    for proc in procs:
        proc.start()
    victim = procs[0]
    time.sleep(rng.uniform(0.0, 0.4))
    with contextlib.suppress(ProcessLookupError):  # it finished its rows first (and was reaped)
        os.kill(victim.pid, signal.SIGKILL)
    victim.join(TRIAL_TIMEOUT)
    procs[1].join(TRIAL_TIMEOUT)
    assert victim.exitcode == -signal.SIGKILL or victim.exitcode == 0
    assert procs[1].exitcode == 0, "the other writer must go on"
    acknowledged = _acks(acks[0])
    assert len(_acks(acks[1])) == ROWS
    run.complete()
    run.close()
    events = list(store.read_journal(run_id))  # seqs and chain checked while read
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    rows = Counter(e.row_id for e in events if type(e) is RowCreated)
    completed = Counter(e.state_id for e in events if type(e) is NodeStateCompleted)
    assert all(count == 1 for count in rows.values()), "a row recorded twice"
    for row in acknowledged:
        assert rows[row] == 1, f"acknowledged {row} is missing"
        of_row = [e for e in events if getattr(e, "row_id", None) == row]
        assert len(of_row) == 4  # created, token, state started, outcome
        state = next(e for e in of_row if type(e) is NodeStateStarted)
        assert completed[state.state_id] == 1
    report = verify_export(
        store.export_dir(run_id), journal=(store.journal_dir(run_id), store.payloads)
    )
    assert report.ok, report.summary()


def _seed() -> int:
    return int(os.environ.get("AUDITJOURNAL_CRASH_SEED", "12"))


def test_sigkill_of_a_writer_loses_nothing_acknowledged(tmp_path: Path, pg_url: str) -> None:
    rng = random.Random(_seed())
    with AuditStore.open(tmp_path / "coordinator", journal_url=pg_url) as store:
        for number in range(30):
            trial(tmp_path, pg_url, store, number, rng)


@pytest.mark.slow
def test_sigkill_of_a_writer_many_trials(tmp_path: Path, pg_url: str) -> None:
    rng = random.Random(_seed() + 1)
    with AuditStore.open(tmp_path / "coordinator", journal_url=pg_url) as store:
        for number in range(150):
            trial(tmp_path, pg_url, store, number, rng)
