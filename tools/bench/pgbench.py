"""``bench.py --journal-url URL --writers 1,2,4``: several writer processes, one run.

Each round measures, interleaved (so a machine that gets slower affects all alike):

* **file journal, 1 writer** -- the reference workload (``--writer-rows`` rows) through the
  file journal, ``batch``, no live export or SQL tables (as ``recording batch``);
* **PostgreSQL journal, W writers** for each W of ``--writers`` -- a fresh database on the
  server of URL (created and dropped per sample); this process starts the run
  (``export=None, sql=False``) and W writer processes (``spawn``: fresh interpreters), each
  with its own root, ``join_run`` it and drive the reference workload (``--writer-rows``
  rows each, its own 6 nodes and 5 edges) under ``batch``. The clock runs from a barrier
  all writers pass once their plans are built until the last one has closed its recorder
  (everything committed). Aggregate events/s = all writers' events / that time.

Printed per W: median and spread (min..max) of aggregate events/s, and the same-round
ratio to the file journal's median.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import workload  # noqa: E402
from benchlib import fmt_load, loadavg, log  # noqa: E402

from auditjournal import AuditStore  # noqa: E402

DEFAULT_WRITER_ROWS = 3000
TARGET_TWO_WRITERS = 30_000.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--journal-url",
        default=None,
        help="measure the PostgreSQL journal with several writer processes on this server "
        "(a database per sample is created and dropped)",
    )
    p.add_argument(
        "--writers",
        default="1,2,4",
        help="writer process counts for --journal-url (comma list, default 1,2,4)",
    )
    p.add_argument(
        "--writer-durability",
        default="batch",
        choices=["batch", "none"],
        help="durability of the PostgreSQL writers (default batch)",
    )
    p.add_argument(
        "--writer-rows",
        type=int,
        default=DEFAULT_WRITER_ROWS,
        help=f"rows each writer records with --journal-url (default {DEFAULT_WRITER_ROWS})",
    )


def _database(base: str) -> tuple[str, str]:
    name = f"aj_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(sa.make_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.make_url(base).set(database=name).render_as_string(hide_password=False), name


def _drop(base: str, name: str) -> None:
    admin = sa.create_engine(sa.make_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _writer(
    url: str,
    root: str,
    run_id: str,
    rows: int,
    seed: int,
    barrier: Any,
    results: Any,
    durability: str = "batch",
) -> None:
    plans = workload.prepare(rows, seed)
    store = AuditStore.open(root, journal_url=url, durability=durability)  # type: ignore[arg-type]
    run = store.join_run(run_id)
    barrier.wait()
    events = workload.drive(run, plans)
    run.close()
    done = time.perf_counter()
    store.close()
    results.put((events, done))


def pg_sample(
    url: str, writers: int, rows: int, seed: int, workdir: Path, durability: str = "batch"
) -> float:
    """Aggregate events/s of ``writers`` processes recording one run (see the docstring)."""
    db_url, name = _database(url)
    root = Path(tempfile.mkdtemp(prefix="pg-writers-", dir=workdir))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(writers + 1)
    results = ctx.Queue()
    try:
        with AuditStore.open(root / "coordinator", journal_url=db_url) as store:
            run = store.start_run(run_id="bench", export=None, sql=False)
            run.flush()
            procs = [
                ctx.Process(
                    target=_writer,
                    args=(
                        db_url,
                        str(root / f"w{i}"),
                        "bench",
                        rows,
                        seed + i,
                        barrier,
                        results,
                        durability,
                    ),
                )
                for i in range(writers)
            ]
            for proc in procs:
                proc.start()
            barrier.wait(timeout=600)
            start = time.perf_counter()
            got = [results.get(timeout=1800) for _ in procs]
            for proc in procs:
                proc.join()
                if proc.exitcode != 0:
                    raise RuntimeError(f"a writer process failed (exit {proc.exitcode})")
            run.complete()
            run.close()
        end = max(done for _, done in got)
        return sum(events for events, _ in got) / (end - start)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        _drop(url, name)


def run_pg_bench(args: argparse.Namespace, record_file: Any, workdir: Path) -> int:
    counts = [int(x) for x in str(args.writers).split(",") if x.strip()]
    rows = args.writer_rows
    samples: dict[str, list[float]] = {"file": [], **{f"pg{w}": [] for w in counts}}
    ratios: dict[int, list[float]] = {w: [] for w in counts}
    plans = workload.prepare(rows, args.seed)
    for round_no in range(args.repeats):
        log(f"round {round_no + 1}/{args.repeats} (load {fmt_load(loadavg())})", sys.stderr)
        file_rate = record_file(plans)
        samples["file"].append(file_rate)
        for w in counts:
            rate = pg_sample(args.journal_url, w, rows, args.seed, workdir, args.writer_durability)
            samples[f"pg{w}"].append(rate)
            ratios[w].append(rate / file_rate)
            log(f"  {w} writer(s): {rate:,.0f} events/s (file {file_rate:,.0f})", sys.stderr)
    print(
        f"reference workload, {rows:,} rows per writer, PostgreSQL writers "
        f"{args.writer_durability}, {args.repeats} rounds"
    )
    print(f"{'journal':<28} {'events/s median':>16} {'spread (min..max)':>24} {'vs file':>9}")
    line = _line("file journal, 1 writer", samples["file"])
    print(f"{line} {'1.00x':>9}")
    for w in counts:
        ratio = statistics.median(ratios[w])
        print(f"{_line(f'PostgreSQL, {w} writer(s)', samples[f'pg{w}'])} {ratio:>8.2f}x")
    if 2 in counts:
        two = statistics.median(samples["pg2"])
        verdict = "meets" if two >= TARGET_TWO_WRITERS else "below"
        print(f"2 writers: {two:,.0f} events/s, {verdict} the target of {TARGET_TWO_WRITERS:,.0f}")
    medians = [statistics.median(samples[f"pg{w}"]) for w in counts]
    monotone = all(b >= a for a, b in itertools.pairwise(medians))
    print(f"more writers never slower than fewer: {'yes' if monotone else 'NO'}")
    return 0


def _line(label: str, values: list[float]) -> str:
    return (
        f"{label:<28} {statistics.median(values):>16,.0f} "
        f"{f'{min(values):,.0f}..{max(values):,.0f}':>24}"
    )
