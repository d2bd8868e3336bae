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

Printed per W: median and spread (min..max) of aggregate events/s, the same-round
ratio to the file journal's median, and CPU per event: the writers' (each process's own
CPU time from the barrier to its close, summed) and the server's (the CPU time of the
sample database's backends, read from ``/proc`` while they live: only when the server
runs on this machine and ``/proc`` shows it).
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
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


@dataclass(frozen=True)
class PgSample:
    events_per_s: float
    writer_cpu_us: float  # per event, all writer processes
    server_cpu_us: float | None  # per event, the sample database's backends


class _ServerCpu:
    """CPU time of a database's backends, polled from ``/proc`` (a backend's figures are
    kept from its last poll when it exits, so only the last interval of one is lost)."""

    def __init__(self, url: str, name: str) -> None:
        self._engine = sa.create_engine(sa.make_url(url), poolclass=sa.pool.NullPool)
        self._name = name
        self._seen: dict[int, float] = {}
        self._start: dict[int, float] = {}
        self._stop = threading.Event()
        self.available = True
        self._poll()
        self._start = dict(self._seen)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        with self._engine.connect() as conn:
            pids = conn.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": self._name}
            ).scalars()
            pids = list(pids)
        tick = os.sysconf("SC_CLK_TCK")
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rpartition(")")[2].split()
            except OSError:
                if pid not in self._seen:
                    self.available = False
                continue
            self._seen[pid] = (int(fields[11]) + int(fields[12])) / tick

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self._poll()

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join()
        self._poll()
        self._engine.dispose()
        if not self.available:
            return None
        return sum(cpu - self._start.get(pid, 0.0) for pid, cpu in self._seen.items())


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
    cpu = time.process_time()
    events = workload.drive(run, plans)
    run.close()
    done = time.perf_counter()
    cpu = time.process_time() - cpu
    store.close()
    results.put((events, done, cpu))


def pg_sample(
    url: str, writers: int, rows: int, seed: int, workdir: Path, durability: str = "batch"
) -> PgSample:
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
            server = _ServerCpu(url, name)
            barrier.wait(timeout=600)
            start = time.perf_counter()
            got = [results.get(timeout=1800) for _ in procs]
            server_cpu = server.stop()
            for proc in procs:
                proc.join()
                if proc.exitcode != 0:
                    raise RuntimeError(f"a writer process failed (exit {proc.exitcode})")
            run.complete()
            run.close()
        end = max(done for _, done, _ in got)
        events = sum(n for n, _, _ in got)
        return PgSample(
            events / (end - start),
            1e6 * sum(cpu for _, _, cpu in got) / events,
            None if server_cpu is None else 1e6 * server_cpu / events,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
        _drop(url, name)


def run_pg_bench(args: argparse.Namespace, record_file: Any, workdir: Path) -> int:
    counts = [int(x) for x in str(args.writers).split(",") if x.strip()]
    rows = args.writer_rows
    samples: dict[str, list[float]] = {"file": [], **{f"pg{w}": [] for w in counts}}
    ratios: dict[int, list[float]] = {w: [] for w in counts}
    cpu: dict[str, list[float]] = {}
    plans = workload.prepare(rows, args.seed)
    for round_no in range(args.repeats):
        log(f"round {round_no + 1}/{args.repeats} (load {fmt_load(loadavg())})", sys.stderr)
        file_rate = record_file(plans)
        samples["file"].append(file_rate)
        for w in counts:
            got = pg_sample(args.journal_url, w, rows, args.seed, workdir, args.writer_durability)
            rate = got.events_per_s
            samples[f"pg{w}"].append(rate)
            ratios[w].append(rate / file_rate)
            cpu.setdefault(f"w{w}", []).append(got.writer_cpu_us)
            if got.server_cpu_us is not None:
                cpu.setdefault(f"s{w}", []).append(got.server_cpu_us)
            log(
                f"  {w} writer(s): {rate:,.0f} events/s (file {file_rate:,.0f}), CPU per "
                f"event: writers {got.writer_cpu_us:.1f} us, server {_us(got.server_cpu_us)}",
                sys.stderr,
            )
    print(
        f"reference workload, {rows:,} rows per writer, PostgreSQL writers "
        f"{args.writer_durability}, {args.repeats} rounds"
    )
    print(
        f"{'journal':<28} {'events/s median':>16} {'spread (min..max)':>24} {'vs file':>9}"
        f" {'writer us/ev':>13} {'server us/ev':>13}"
    )
    line = _line("file journal, 1 writer", samples["file"])
    print(f"{line} {'1.00x':>9}")
    for w in counts:
        ratio = statistics.median(ratios[w])
        writer_cpu = statistics.median(cpu[f"w{w}"])
        server = cpu.get(f"s{w}")
        server_cpu = _us(statistics.median(server) if server else None)
        print(
            f"{_line(f'PostgreSQL, {w} writer(s)', samples[f'pg{w}'])} {ratio:>8.2f}x"
            f" {writer_cpu:>13.1f} {server_cpu:>13}"
        )
    if 2 in counts:
        two = statistics.median(samples["pg2"])
        verdict = "meets" if two >= TARGET_TWO_WRITERS else "below"
        print(f"2 writers: {two:,.0f} events/s, {verdict} the target of {TARGET_TWO_WRITERS:,.0f}")
    medians = [statistics.median(samples[f"pg{w}"]) for w in counts]
    monotone = all(b >= a for a, b in itertools.pairwise(medians))
    print(f"more writers never slower than fewer: {'yes' if monotone else 'NO'}")
    return 0


def _us(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def _line(label: str, values: list[float]) -> str:
    return (
        f"{label:<28} {statistics.median(values):>16,.0f} "
        f"{f'{min(values):,.0f}..{max(values):,.0f}':>24}"
    )
