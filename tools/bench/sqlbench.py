"""SQL projection throughput (``bench.py --sql``): journal -> audit tables, events/s.

The reference workload (SPEC §8) is recorded once (``batch`` durability, no
export, no SQL); each sample then rebuilds its tables with ``replay_sql``
into a fresh database, timed from the call until every event is committed:

* **SQLite** -- a fresh ``landscape.db`` per sample (WAL, ``synchronous=NORMAL``);
* **PostgreSQL** -- ``--sql-url`` (default ``$AUDITJOURNAL_BENCH_DATABASE_URL``, then
  ``$AUDITJOURNAL_TEST_DATABASE_URL``); the run's rows are deleted (untimed) first;
* **SQLite, one transaction per event** -- the same projector with ``batch_size=1``
  on ``--baseline-rows`` rows: what per-call inserts into these tables cost;
* **baseline Landscape-style** -- ``baseline.py`` recording the same workload on
  ``--baseline-rows`` rows: one INSERT/UPDATE and commit (fsync) per call, plus
  one fsynced file per payload (the SPEC §7 baseline).

Ratios are median(ours) / median(baseline). Events are every journal event
(run_started .. run_completed), as in the recording figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import baseline
import workload

from auditjournal import AuditStore, SqlDatabase, replay_sql

RUN_ID = "bench-sql"


def _rate(events: int, seconds: float) -> float:
    return events / seconds


def record_reference(root: Path, rows: int, seed: int) -> tuple[AuditStore, int]:
    """The workload's journal (untimed); returns the store and its event count."""
    store = AuditStore.open(root / "store")
    run = store.start_run(
        run_id=RUN_ID, config=workload.run_config(rows, seed), export=None, sql=False
    )
    workload.drive(run, workload.prepare(rows, seed))
    run.complete()
    return store, run.last_seq


def time_replay(store: AuditStore, database: SqlDatabase, *, batch_size: int = 4096) -> float:
    """Seconds to rebuild the run's tables (its old rows deleted first, untimed)."""
    database.delete_run(RUN_ID)
    t0 = time.perf_counter()
    replay_sql(
        database=database,
        journal_dir=store.journal_dir(RUN_ID),
        run_id=RUN_ID,
        batch_size=batch_size,
    )
    return time.perf_counter() - t0


def time_baseline(workdir: Path, rows: int, seed: int) -> tuple[int, float]:
    """Events and seconds of one Landscape-style recording (``start_run`` .. close)."""
    plans = workload.prepare(rows, seed)
    root = Path(tempfile.mkdtemp(prefix="sql-baseline-", dir=workdir))
    try:
        db = baseline.LandscapeBaseline(root)
        t0 = time.perf_counter()
        run = db.start_run(workload.run_config(rows, seed))
        driven = workload.drive(run, plans)
        run.complete("completed")
        db.close()
        return driven + 2, time.perf_counter() - t0
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run_sql_bench(args: argparse.Namespace, *, make_workdir: Callable[[Path | None], Path]) -> int:
    """Measure and print the SQL projection figures; JSON on stdout with ``--json``."""
    out = sys.stderr if args.json else sys.stdout
    pg_url: str | None = args.sql_url
    workdir = make_workdir(args.workdir)
    small = max(1, args.baseline_rows or 300)
    samples: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    try:
        print(
            f"recording the reference workload ({args.rows:,} rows, untimed) ...", file=sys.stderr
        )
        store, events = record_reference(workdir / "big", args.rows, args.seed)
        small_store, small_events = record_reference(workdir / "small", small, args.seed)
        pg = SqlDatabase(pg_url) if pg_url else None
        for r in range(args.repeats):
            line = [f"round {r + 1}/{args.repeats}:"]
            sqlite = SqlDatabase(f"sqlite:///{workdir / f'sqlite-{r}.db'}")
            rate = _rate(events, time_replay(store, sqlite))
            samples.setdefault("sqlite", []).append(rate)
            line.append(f"sqlite {rate:,.0f} ev/s")
            sqlite.close()
            if pg is not None:
                rate = _rate(events, time_replay(store, pg))
                samples.setdefault("postgresql", []).append(rate)
                line.append(f"postgresql {rate:,.0f} ev/s")
            single = SqlDatabase(f"sqlite:///{workdir / f'single-{r}.db'}")
            rate = _rate(small_events, time_replay(small_store, single, batch_size=1))
            samples.setdefault("sqlite_per_event", []).append(rate)
            line.append(f"sqlite 1 tx/event {rate:,.0f} ev/s")
            single.close()
            base_events, seconds = time_baseline(workdir, small, args.seed)
            samples.setdefault("baseline", []).append(_rate(base_events, seconds))
            line.append(f"baseline {samples['baseline'][-1]:,.0f} ev/s")
            print(" ".join(line), file=sys.stderr, flush=True)
        counts = {"events": events, "per_event_events": small_events}
        if pg is not None:
            pg.delete_run(RUN_ID)
            pg.close()
        store.close()
        small_store.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    figures = {k: _summary(v) for k, v in samples.items()}
    base = figures["baseline"]["median"]
    ratios = {
        f"{k}_vs_baseline": figures[k]["median"] / base
        for k in ("sqlite", "postgresql")
        if k in figures
    }
    labels = {
        "sqlite": f"SQL projection, SQLite [{args.rows:,} rows]",
        "postgresql": f"SQL projection, PostgreSQL [{args.rows:,} rows]",
        "sqlite_per_event": f"SQL projection, SQLite, 1 transaction/event [{small:,} rows]",
        "baseline": f"baseline Landscape-style recording, per-call inserts [{small:,} rows]",
    }
    print(
        f"SQL projection (replay_sql) on the reference workload, repeats={args.repeats}", file=out
    )
    for key, fig in figures.items():
        print(
            f"  {labels[key]:<66} {fig['median']:>10,.0f} events/s  "
            f"({fig['min']:,.0f}..{fig['max']:,.0f})",
            file=out,
        )
    for key, ratio in ratios.items():
        label = f"ratio {key.replace('_vs_', ' projection / ')} (medians)"
        print(f"  {label:<66} {ratio:>10.1f} x", file=out)
    if pg_url is None:
        print("  (PostgreSQL skipped: set --sql-url or AUDITJOURNAL_BENCH_DATABASE_URL)", file=out)
    if args.json:
        doc: dict[str, Any] = {
            "schema": "auditjournal-bench-sql/1",
            "parameters": {"rows": args.rows, "baseline_rows": small, "repeats": args.repeats},
            "counts": counts,
            "samples": samples,
            "figures": figures,
            "ratios": ratios,
            "postgresql": pg_url is not None,
        }
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


def default_pg_url() -> str | None:
    return os.environ.get("AUDITJOURNAL_BENCH_DATABASE_URL") or os.environ.get(
        "AUDITJOURNAL_TEST_DATABASE_URL"
    )
