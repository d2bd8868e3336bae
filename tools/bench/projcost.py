"""Projection CPU per event over a finished journal (``bench.py --projection-cost``).

Issue 13 asks for the projectors' cost per event: the export projector (the live
export's code: one :class:`ExportProjector` over the whole journal, payloads inlined,
chunks fsynced, sealed -- ``replay_export(..., workers=1)``) and the SQL projector
(``replay_sql`` into a fresh SQLite database, and into PostgreSQL when a URL is given).
Each sample runs in a **fresh child process** and counts the CPU of that process --
user + system, all its threads (the chunk writer's I/O thread hashes and writes), plus
any children -- from just before the call to just after, read with ``getrusage``.
CPU, not wall time: the machine is shared, and CPU per event is what the projector
takes from the recorder's cores.

``--baseline-src DIR`` measures another checkout's code (e.g. main's ``src/`` in a
second worktree) the same way, **interleaved**: every round runs each projection with
both trees, alternating which goes first, so load changes hit both alike; the ratio is
per round (baseline / this tree: > 1 means this tree is cheaper), reported as median
and spread. Both trees project the same journal, recorded once (untimed) by this tree.

``--workload reference|small|both``: the SPEC §8 reference workload (``workload.py``) or
the small-record one (``workload_small.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RUN_ID = "bench-proj"
KINDS = ("export", "sqlite", "postgresql")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--projection-cost",
        action="store_true",
        help="measure export/SQL projection CPU per event over a finished journal instead",
    )
    p.add_argument(
        "--proj-rows",
        type=int,
        default=4000,
        help="rows of the journal projected by --projection-cost (default 4000)",
    )
    p.add_argument(
        "--baseline-sql-url",
        default=None,
        help="--projection-cost: the baseline's PostgreSQL database (default: the same URL; "
        "needed when the baseline's schema version differs)",
    )
    p.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="--projection-cost: also measure this src/ directory (e.g. main's), interleaved",
    )


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def child(kind: str, root: Path, out: Path, url: str) -> dict[str, Any]:
    """One projection of the finished run in this (fresh) process."""
    from auditjournal import AuditStore, ExportSettings, SqlDatabase, replay_export, replay_sql

    out.mkdir(parents=True, exist_ok=True)
    with AuditStore.open(root) as store:
        journal = store.journal_dir(RUN_ID)
        database = None
        if kind == "sqlite":
            database = SqlDatabase(f"sqlite:///{out / 'landscape.db'}")
        elif kind == "postgresql":
            database = SqlDatabase(url)
            database.delete_run(RUN_ID)
        c0, t0 = _cpu(), time.perf_counter()
        if database is None:
            result = replay_export(
                journal_dir=journal,
                run_id=RUN_ID,
                payloads=store.payloads,
                settings=ExportSettings(),
                prefix=out / "audit_trail",
                workers=1,
            )
            assert result is not None
        else:
            replay_sql(database=database, journal_dir=journal, run_id=RUN_ID)
        cpu, wall = _cpu() - c0, time.perf_counter() - t0
        if database is not None:
            database.close()
    return {"cpu_seconds": cpu, "seconds": wall}


def _sample(src: Path, kind: str, root: Path, work: Path, url: str) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix=f"proj-{kind}-", dir=work))
    env = {**os.environ, "PYTHONPATH": str(src)}
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__)), "child", kind, str(root), str(out), url],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode:
            raise RuntimeError(f"{kind} child ({src}) failed: {proc.stderr.strip()[-800:]}")
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def _record(wl: Any, root: Path, rows: int, seed: int) -> int:
    from auditjournal import AuditStore

    with AuditStore.open(root) as store:
        config = wl.run_config(rows, seed)
        run = store.start_run(run_id=RUN_ID, config=config, export=None, sql=False)
        wl.drive(run, wl.prepare(rows, seed))
        run.complete()
        return int(run.last_seq)


def measure(
    wl: Any,
    *,
    rows: int,
    seed: int,
    repeats: int,
    work: Path,
    trees: dict[str, Path],
    pg_url: str | None,
    log: Callable[[str], None],
    pg_urls: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Interleaved rounds of every projection with every tree; µs of CPU per event."""
    root = work / f"store-{wl.NAME}"
    events = _record(wl, root, rows, seed)
    kinds = [k for k in KINDS if k != "postgresql" or pg_url]
    samples: dict[str, dict[str, list[float]]] = {k: {t: [] for t in trees} for k in kinds}
    labels = list(trees)
    for r in range(repeats):
        order = labels if r % 2 == 0 else labels[::-1]
        line = [f"[{wl.NAME}] round {r + 1}/{repeats}:"]
        for kind in kinds:
            for label in order:
                url = (pg_urls or {}).get(label) or pg_url or ""
                doc = _sample(trees[label], kind, root, work, url)
                us = doc["cpu_seconds"] / events * 1e6
                samples[kind][label].append(us)
                line.append(f"{kind}/{label} {us:.2f}")
        log(" ".join(line) + " µs/event")
    result: dict[str, Any] = {"workload": wl.NAME, "rows": rows, "events": events, "figures": {}}
    for kind in kinds:
        fig: dict[str, Any] = {t: _summary(v) | {"samples": v} for t, v in samples[kind].items()}
        if "baseline" in trees:
            pairs = zip(samples[kind]["baseline"], samples[kind]["this"], strict=True)
            ratios = [b / o for b, o in pairs]
            fig["ratio_baseline_over_this"] = _summary(ratios) | {"samples": ratios}
        result["figures"][kind] = fig
    return result


def render(results: list[dict[str, Any]], out: Any) -> None:
    print(
        f"{'workload':<10} {'projection':<11} {'tree':<9} {'median µs/ev':>13} {'min..max':>15}"
        f" {'baseline/this (x)':>22}",
        file=out,
    )
    for res in results:
        for kind, fig in res["figures"].items():
            for tree in ("this", "baseline"):
                if tree not in fig:
                    continue
                s = fig[tree]
                ratio = ""
                if tree == "this" and "ratio_baseline_over_this" in fig:
                    q = fig["ratio_baseline_over_this"]
                    ratio = f"{q['median']:.2f} ({q['min']:.2f}..{q['max']:.2f})"
                print(
                    f"{res['workload']:<10} {kind:<11} {tree:<9} {s['median']:>13.2f}"
                    f" {s['min']:>7.2f}..{s['max']:<7.2f} {ratio:>22}",
                    file=out,
                )


def run_projection_cost(
    args: argparse.Namespace, *, make_workdir: Callable[[Path | None], Path]
) -> int:
    import workload
    import workload_small

    out = sys.stderr if args.json else sys.stdout
    workloads = {"reference": [workload], "small": [workload_small]}.get(
        args.workload, [workload, workload_small]
    )
    trees = {"this": (HERE.parent.parent / "src").resolve()}
    if args.baseline_src is not None:
        trees["baseline"] = args.baseline_src.resolve()
    pg_url = (
        args.sql_url
        or os.environ.get("AUDITJOURNAL_BENCH_DATABASE_URL")
        or os.environ.get("AUDITJOURNAL_TEST_DATABASE_URL")
    )
    work = make_workdir(args.workdir)
    load_start = os.getloadavg()
    results = []
    try:
        for wl in workloads:
            results.append(
                measure(
                    wl,
                    rows=args.proj_rows,
                    seed=args.seed,
                    repeats=args.repeats,
                    work=work,
                    trees=trees,
                    pg_url=pg_url,
                    log=lambda s: print(s, file=sys.stderr, flush=True),
                    pg_urls={"baseline": args.baseline_sql_url} if args.baseline_sql_url else None,
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()
    print(
        f"projection CPU per event over a finished journal (fresh child per sample; "
        f"getrusage self+children, all threads); load average {load_start[0]:.2f} at start, "
        f"{load_end[0]:.2f} at end; {os.cpu_count()} cpus",
        file=out,
    )
    render(results, out)
    if args.json:
        doc = {
            "schema": "auditjournal-bench-projection/1",
            "trees": {k: str(v) for k, v in trees.items()},
            "load": {"start": load_start, "end": load_end},
            "results": results,
        }
        print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "child":
        kind, root, out, url = sys.argv[2:6]
        print(json.dumps(child(kind, Path(root), Path(out), url)))
    else:
        raise SystemExit("run through bench.py --projection-cost")
