"""Export figures per workload (``bench.py --workload-figures --workload small|reference|both``).

Issue 13 item 4: replay, verify and live-export figures on the small-record workload
(``workload_small.py``: ~200-byte payloads, hash-only node states) beside the
reference workload (``workload.py``, SPEC §8), measured the same way, in the same run:

* setup (untimed): each workload's run is recorded once (``export=None``), ``--export-rows``
  rows of the reference workload and ``--small-rows`` of the small one (sized so both
  journals are alike in bytes);
* then each round, per workload in turn (the order alternates between rounds):
  **replay** (``replay_export`` in a fresh child process: MB/s of export, records/s,
  events/s, peak RSS, and records per CPU-second of the whole replay -- its process,
  threads and workers -- which does not fall with the machine's load; ``exportchild.py
  replay``), **verify** of that export (a fresh child
  process, as ``auditjournal verify`` runs; MB/s of chunk bytes and % of the round's
  single-core SHA-256), and **live export** (a recording of ``--lag-rows`` rows at full
  speed with the library's live export, ``start_run(config=..., export=ExportSettings(),
  sql=False)``, while a follower process times each sampled row's record: lag p50/p99 and
  the recording's events/s; ``exportmeasure.measure_lag``), and the same with the
  library's defaults (``start_run(config=..., export=ExportSettings())``: export and SQL
  tables in the projector process; ``defaults_lag_*``): the lag at the defaults' rate.

Medians and spread (min..max) over the rounds; the load average at start and end.
Targets (issue 13): replay on the small workload >= 250,000 records/s, on the reference
>= 150 MB/s; verify >= 35 % of SHA-256 on both; replay peak RSS flat.
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
from pathlib import Path
from typing import Any

import workload
import workload_small
from benchlib import sha256_mb_s
from exportmeasure import measure_lag, measure_replay, measure_verify, record_store

_SHA_BUFFER = 1 << 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workload-figures",
        action="store_true",
        help="measure replay/verify/live export per workload instead (see workloadbench.py)",
    )
    p.add_argument(
        "--workload",
        choices=("reference", "small", "both"),
        default="both",
        help="--workload-figures / --projection-cost: which workload(s) (default both)",
    )
    p.add_argument(
        "--small-rows",
        type=int,
        default=40000,
        help="rows of the small-record run replayed and verified (default 40000: ~440k events)",
    )


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run_workload_figures(args: argparse.Namespace, *, make_workdir: Any) -> int:
    out = sys.stderr if args.json else sys.stdout
    chosen = {"reference": [workload], "small": [workload_small]}.get(
        args.workload, [workload, workload_small]
    )
    rows = {workload.NAME: args.export_rows, workload_small.NAME: args.small_rows}
    work = make_workdir(args.workdir)
    load_start = os.getloadavg()
    raw: dict[str, dict[str, list[float]]] = {wl.NAME: {} for wl in chosen}
    shas: list[float] = []
    try:
        roots = {}
        events = {}
        for wl in chosen:
            print(f"recording {wl.NAME} ({rows[wl.NAME]:,} rows, untimed) ...", file=sys.stderr)
            roots[wl.NAME] = work / f"store-{wl.NAME}"
            events[wl.NAME] = record_store(
                roots[wl.NAME],
                wl.iter_plans(rows[wl.NAME], args.seed),
                rows[wl.NAME],
                args.seed,
                {},
                wl,
            )
        buf = os.urandom(_SHA_BUFFER)
        for r in range(args.repeats):
            shas.append(sha256_mb_s(args.sha_mib, buf))
            for wl in chosen if r % 2 == 0 else chosen[::-1]:
                got = raw[wl.NAME]
                out_dir = Path(tempfile.mkdtemp(prefix=f"replay-{wl.NAME}-", dir=work))
                try:
                    rep = measure_replay(roots[wl.NAME], rows[wl.NAME], events[wl.NAME], out_dir)
                    ver = measure_verify(out_dir, rep.chunk_bytes)
                finally:
                    shutil.rmtree(out_dir, ignore_errors=True)
                got.setdefault("replay_mb_s", []).append(rep.mb_s)
                got.setdefault("replay_records_s", []).append(rep.record_count / rep.seconds)
                got.setdefault("replay_events_s", []).append(rep.events_per_s)
                got.setdefault("replay_records_per_cpu_s", []).append(rep.records_per_cpu_s)
                got.setdefault("replay_peak_rss_mb", []).append(rep.peak_rss_mb)
                got.setdefault("verify_mb_s", []).append(ver.mb_s)
                got.setdefault("verify_pct_sha", []).append(100 * ver.mb_s / shas[-1])
                lags = {}
                for kind, sql in (("live", False), ("defaults", True)):  # defaults: + SQL
                    lag = measure_lag(
                        list(wl.iter_plans(args.lag_rows, args.seed + 7)),
                        workdir=work,
                        seed=args.seed,
                        every=args.lag_every,
                        out_of_process=False,
                        store_kwargs={},
                        wl=wl,
                        sql=sql,
                    )
                    got.setdefault(f"{kind}_lag_p50_ms", []).append(lag.p50_ms)
                    got.setdefault(f"{kind}_lag_p99_ms", []).append(lag.p99_ms)
                    got.setdefault(f"{kind}_recording_events_s", []).append(lag.events_per_s)
                    lags[kind] = lag
                lag, both = lags["live"], lags["defaults"]
                print(
                    f"round {r + 1}/{args.repeats} {wl.NAME}: replay {rep.mb_s:.0f} MB/s "
                    f"{rep.record_count / rep.seconds:,.0f} records/s, verify {ver.mb_s:.0f} MB/s, "
                    f"live lag p99 {lag.p99_ms:.1f} ms at {lag.events_per_s:,.0f} events/s, "
                    f"with SQL tables {both.p99_ms:.1f} ms at {both.events_per_s:,.0f} events/s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()
    figures = {name: {k: _summary(v) for k, v in got.items()} for name, got in raw.items()}
    print(
        f"export figures per workload, {args.repeats} rounds; SHA-256 single core "
        f"{statistics.median(shas):,.0f} MB/s; load average {load_start[0]:.2f} at start, "
        f"{load_end[0]:.2f} at end; {os.cpu_count()} cpus",
        file=out,
    )
    print(f"{'figure':<26}" + "".join(f"{name:>36}" for name in figures), file=out)
    for key in next(iter(figures.values())):
        cells = []
        for fig in figures.values():
            s = fig[key]
            cells.append(f"{s['median']:>14,.1f} ({s['min']:,.1f}..{s['max']:,.1f})")
        print(f"{key:<26}" + "".join(f"{c:>36}" for c in cells), file=out)
    if args.json:
        doc = {
            "schema": "auditjournal-bench-workloads/1",
            "rows": rows,
            "time": time.time(),
            "load": {"start": load_start, "end": load_end},
            "sha256_mb_s": shas,
            "raw": raw,
            "figures": figures,
        }
        print(json.dumps(doc, indent=2))
    return 0
