"""Benchmark harness for the figures of SPEC §7, on the reference workload of SPEC §8.

Run ``python tools/bench/bench.py`` (defaults: ``--rows 20000 --repeats 3``); see
``tools/bench/README.md`` for what each figure means. Measured here:

* **SHA-256 single core** — ``hashlib.sha256`` over 1 MiB buffers, MB/s (10^6 bytes/s): the
  machine-speed reference the verify figure of SPEC §7 is relative to.
* **recording <mode>** — the reference workload through ``auditjournal``'s recorder with
  ``durability=<mode>`` and ``start_run(..., export=None, sql=False)`` (the recorder
  alone): a fresh store per sample; the plans are built before timing; the clock runs from
  ``store.start_run`` until ``run.complete()`` *and* ``store.close()`` have returned (so in
  ``batch`` mode everything buffered is written and fsynced). Events/s counts every event
  appended in that window (``run_started`` + setup + 15/row + artifacts + ``run_completed``);
  payloads/s counts the 9 ~1 KiB payloads per row of SPEC §8. ``<mode>+export`` is the same
  with the library's default live export on (``complete()`` waits for the sealed export),
  ``+sql`` with the SQL audit tables kept current.
* **baseline** — the same workload through the Landscape-style recorder of ``baseline.py``
  (same clock: ``start_run`` .. ``complete`` + engine disposed), on fewer rows.
* **ratio batch/baseline** — median(ours, batch) / median(baseline), events/s.
* **export figures** (``exportbench.py``, same rounds): live export lag p50/p99 (in-process
  projector and projector process), replay MB/s, export vs the baseline's, verify vs
  SHA-256, replay peak RSS small vs big (``--rss-big``: a ~2 GB export).

Samples are interleaved (each round measures SHA-256, then every mode, then the baseline),
so a machine getting slower or faster during the run affects all figures alike; dirty pages
are synced (``os.sync``, untimed) before every timed section.

``--profile`` instead runs one ``batch`` recording under cProfile and prints the top 25
functions by tottime (main thread only: the group-commit thread is not profiled).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as _dt
import inspect
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import exportbench  # noqa: E402
import pgbench  # noqa: E402
import projcost  # noqa: E402
import workload  # noqa: E402
import workloadbench  # noqa: E402
from benchlib import (  # noqa: E402
    Figure,
    Sample,
    Series,
    busy_warning,
    check_driven,
    default_flush_interval,
    events_in_window,
    fmt_1,
    fmt_int,
    fmt_load,
    fmt_ratio,
    loadavg,
    log,
    machine_info,
    make_workdir,
    non_negative,
    positive,
    pressure,
    quiesce,
    record_baseline,
    render_table,
    sha256_mb_s,
    tree_bytes,
)

from auditjournal import AuditStore  # noqa: E402

DURABILITIES: tuple[str, ...] = ("batch", "always", "none")
FEATURES: tuple[str, ...] = ("export", "sql", "thread")
"""Optional ``+feature`` suffixes of a mode: the live export, the SQL audit tables."""
DEFAULT_MODES: tuple[str, ...] = ("batch", "always", "none", "batch+export")
DEFAULT_ROWS = 20_000
DEFAULT_REPEATS = 3
DEFAULT_BASELINE_ROWS = 300
DEFAULT_ALWAYS_ROWS_CAP = 300
DEFAULT_SHA_MIB = 256
DEFAULT_WARMUP_ROWS = 100
SHA_BUFFER = 1 << 20
TARGET_BATCH_EVENTS_PER_S = 100_000.0
TARGET_RATIO_VS_BASELINE = 50.0
JSON_SCHEMA = "auditjournal-bench/1"


def record_ours(
    plans: list[workload.RowPlan],
    *,
    mode: str,
    workdir: Path,
    seed: int,
    flush_interval: float | None,
    profiler: cProfile.Profile | None = None,
) -> Sample:
    """One timed recording through our recorder in a fresh store under ``workdir``."""
    rows = len(plans)
    spec = split_mode(mode)
    durability = spec.durability
    root = Path(tempfile.mkdtemp(prefix=f"ours-{durability}-", dir=workdir))
    kwargs: dict[str, Any] = {}
    if flush_interval is not None:
        kwargs["flush_interval"] = flush_interval
    if spec.thread:
        kwargs["projection"] = "thread"
    store = AuditStore.open(root / "store", durability=durability, **kwargs)  # type: ignore[arg-type]
    run_kwargs = start_run_kwargs(spec)
    closed = False
    try:
        config = workload.run_config(rows, seed)
        quiesce()
        c0 = time.process_time()
        t0 = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        run = store.start_run(config=config, **run_kwargs)
        live = run.live.export or run.live.sql
        host = getattr(live, "host", None)  # the projector process, if any
        driven = workload.drive(run, plans)
        run.complete()
        store.close()
        closed = True
        if profiler is not None:
            profiler.disable()
        t1 = time.perf_counter()
        c1 = time.process_time()
        check_driven(driven, rows)
        return Sample(
            rows=rows,
            events=events_in_window(driven),
            payloads=workload.PAYLOADS_PER_ROW * rows,
            seconds=t1 - t0,
            cpu_seconds=c1 - c0,
            store_bytes=tree_bytes(root),
            projector_cpu_seconds=0.0 if host is None else host.cpu_seconds,
        )
    finally:
        if profiler is not None:
            profiler.disable()
        if not closed:
            store.close()
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class ModeSpec:
    """A ``--modes`` entry: ``DURABILITY[+export][+sql]``, e.g. ``batch+export+sql``."""

    durability: str
    export: bool = False
    sql: bool = False
    thread: bool = False
    """``+thread``: the store opened with ``projection="thread"`` (default: a process)."""

    @classmethod
    def parse(cls, text: str) -> ModeSpec:
        durability, *features = text.strip().split("+")
        if durability not in DURABILITIES or any(f not in FEATURES for f in features):
            raise ValueError(text)
        return cls(
            durability,
            export="export" in features,
            sql="sql" in features,
            thread="thread" in features,
        )

    @property
    def name(self) -> str:
        return "+".join([self.durability, *(f for f in FEATURES if getattr(self, f))])


def split_mode(mode: str) -> ModeSpec:
    return ModeSpec.parse(mode)


def start_run_kwargs(spec: ModeSpec) -> dict[str, Any]:
    """``start_run`` arguments beside ``config`` for a mode.

    A feature that is off is switched off explicitly (``export=None``, ``sql=False``); one
    that is on is left to the library's default (``ExportSettings()``: a projector thread
    writes the live export and ``complete()`` waits until it is sealed; ``sql=True``: a
    thread keeps the SQL audit tables current). Plain ``batch`` is therefore the recorder
    alone (journal + payloads), which is what SPEC §7 compares with the baseline's
    recording. Parameters ``start_run`` does not have are not passed.
    """
    params = inspect.signature(AuditStore.start_run).parameters
    kwargs: dict[str, Any] = {}
    if "export" in params and not spec.export:
        kwargs["export"] = None
    if "sql" in params and not spec.sql:
        kwargs["sql"] = False
    return kwargs


def projection_figures(modes: list[str], ours: dict[str, Series]) -> list[Figure]:
    """Issue 13: the library's defaults against the recorder alone (same rounds), and the
    CPU per event of the recorder and of its projector process (machine load aside)."""
    figs: list[Figure] = []
    for m in modes:
        spec = split_mode(m)
        if not (spec.export or spec.sql):
            continue
        samples = ours[m].samples
        figs.append(
            Figure(
                f"cpu.{m}.recorder_us_per_event",
                f"  CPU per event, recorder process, {m}",
                "µs",
                [s.cpu_seconds / s.events * 1e6 for s in samples],
                fmt_1,
            )
        )
        if not spec.thread:
            figs.append(
                Figure(
                    f"cpu.{m}.projector_us_per_event",
                    f"  CPU per event, projector process, {m}",
                    "µs",
                    [s.projector_cpu_seconds / s.events * 1e6 for s in samples],
                    fmt_1,
                )
            )
        alone = split_mode(m).durability
        if alone not in ours or len(ours[alone].samples) != len(samples):
            continue
        mine, theirs = ours[m].events_per_s(), ours[alone].events_per_s()
        figs.append(
            Figure(
                f"ratio.{m}_vs_{alone}",
                f"ratio {m}/{alone} recording",
                "x",
                [a / b for a, b in zip(mine, theirs, strict=True)],
                fmt_ratio,
                target=0.60 if m == "batch+export+sql" else None,
                value=statistics.median(mine) / statistics.median(theirs),
                note="median/median, same rounds; spread from per-round pairs",
            )
        )
        base_cpu = [s.cpu_seconds / s.events for s in ours[alone].samples]
        my_cpu = [s.cpu_seconds / s.events for s in samples]
        figs.append(
            Figure(
                f"ratio.{m}_vs_{alone}.cpu",
                "  the same by the recorder's CPU per event (a core of its own)",
                "x",
                [b / a for a, b in zip(my_cpu, base_cpu, strict=True)],
                fmt_ratio,
                value=statistics.median(base_cpu) / statistics.median(my_cpu),
                note="recorder-alone CPU/event over this mode's recorder CPU/event",
            )
        )
    return figs


def _what(spec: ModeSpec) -> str:
    if not (spec.export or spec.sql):
        return (
            "the recorder alone (journal + payloads), as SPEC §7 compares it with the "
            "baseline's recording"
        )
    parts = []
    if spec.export:
        parts.append("live export on (complete() waits until it is sealed)")
    if spec.sql:
        parts.append("SQL tables kept current")
    where = "as threads of the recorder" if spec.thread else "in a projector process"
    return " and ".join(parts) + f", {where}"


def describe_start_run(mode: str) -> str:
    spec = split_mode(mode)
    args = ["config=..."]
    args += [f"{k}={v!r}" for k, v in start_run_kwargs(spec).items()]
    args += [f"{f}=<default>" for f in ("export", "sql") if getattr(spec, f)]
    return f"start_run({', '.join(args)})"


def _parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    try:
        names = [ModeSpec.parse(m).name for m in modes]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"bad mode {exc}: modes are a comma list of {'/'.join(DURABILITIES)}, "
            "each optionally followed by +export and/or +sql"
        ) from None
    if not names:
        raise argparse.ArgumentTypeError("no modes given")
    return list(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark auditjournal's recorder against SPEC §7 on the §8 workload.",
    )
    p.add_argument("--rows", type=positive, default=DEFAULT_ROWS, help="rows per recording")
    p.add_argument("--repeats", type=positive, default=DEFAULT_REPEATS, help="samples per figure")
    p.add_argument(
        "--modes",
        type=_parse_modes,
        default=list(DEFAULT_MODES),
        help=(
            "what to measure: comma list of durability modes (batch, always, none), each "
            "optionally with +export (live export on) and/or +sql (SQL tables on) "
            f"(default {','.join(DEFAULT_MODES)})"
        ),
    )
    p.add_argument(
        "--always-rows",
        type=positive,
        default=None,
        help=f"rows for 'always' (fsync per event; default min(rows, {DEFAULT_ALWAYS_ROWS_CAP}))",
    )
    p.add_argument(
        "--baseline-rows",
        type=non_negative,
        default=DEFAULT_BASELINE_ROWS,
        help="rows for the Landscape-style baseline (~1000 events/s); 0 skips it",
    )
    p.add_argument(
        "--sha-mib", type=positive, default=DEFAULT_SHA_MIB, help="MiB hashed per SHA-256 sample"
    )
    p.add_argument(
        "--warmup-rows",
        type=non_negative,
        default=DEFAULT_WARMUP_ROWS,
        help="untimed warm-up recording size per recorder (0: none)",
    )
    p.add_argument("--seed", type=int, default=1, help="workload seed")
    p.add_argument(
        "--flush-interval",
        type=float,
        default=None,
        help="AuditStore.open(flush_interval=...) in seconds (default: the library's)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="parent of the temp stores (default: the temp dir, if on the repo's filesystem)",
    )
    p.add_argument(
        "--json", action="store_true", help="print a JSON document on stdout (table to stderr)"
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="profile one batch recording of --rows rows with cProfile instead",
    )
    p.add_argument(
        "--profile-mode",
        type=_parse_modes,
        default=["batch"],
        help="mode profiled by --profile (default batch; e.g. batch+export)",
    )
    p.add_argument("--profile-top", type=positive, default=25, help="functions shown by --profile")
    p.add_argument("--profile-out", type=Path, default=None, help="also dump pstats data here")
    p.add_argument(
        "--sql",
        action="store_true",
        help="measure SQL projection throughput (SQLite, PostgreSQL) instead (see sqlbench.py)",
    )
    p.add_argument(
        "--sql-url",
        default=None,
        help="PostgreSQL URL for --sql (default $AUDITJOURNAL_BENCH_DATABASE_URL, "
        "then $AUDITJOURNAL_TEST_DATABASE_URL; unset: SQLite only)",
    )
    exportbench.add_arguments(p)
    pgbench.add_arguments(p)
    projcost.add_arguments(p)
    workloadbench.add_arguments(p)
    return p


def run_profile(args: argparse.Namespace) -> int:
    mode: str = args.profile_mode[0]
    workdir = make_workdir(args.workdir)
    try:
        print(f"preparing {args.rows:,} rows (untimed) ...", file=sys.stderr, flush=True)
        plans = workload.prepare(args.rows, args.seed)
        if args.warmup_rows:
            warm = workload.prepare(min(args.warmup_rows, args.rows), args.seed + 1)
            record_ours(
                warm,
                mode=mode,
                workdir=workdir,
                seed=args.seed,
                flush_interval=args.flush_interval,
            )
        profiler = cProfile.Profile()
        sample = record_ours(
            plans,
            mode=mode,
            workdir=workdir,
            seed=args.seed,
            flush_interval=args.flush_interval,
            profiler=profiler,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"profiled {mode} recording ({describe_start_run(mode)}): "
        f"{sample.rows:,} rows, {sample.events:,} events in "
        f"{sample.seconds:.3f} s = {sample.events_per_s:,.0f} events/s under cProfile "
        f"(main thread only; profiling overhead included)"
    )
    if args.profile_out is not None:
        profiler.dump_stats(str(args.profile_out))
        print(f"pstats data written to {args.profile_out}")
    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(args.profile_top)
    print(buf.getvalue().rstrip())
    return 0


def run_bench(args: argparse.Namespace) -> int:
    out_human: TextIO = sys.stderr if args.json else sys.stdout
    progress: TextIO = sys.stderr
    started = _dt.datetime.now(_dt.UTC)
    t_start = time.perf_counter()
    modes: list[str] = args.modes
    always_rows = (
        args.always_rows
        if args.always_rows is not None
        else min(args.rows, DEFAULT_ALWAYS_ROWS_CAP)
    )
    rows_of = {
        m: (always_rows if split_mode(m).durability == "always" else args.rows) for m in modes
    }
    flush_interval = args.flush_interval
    workdir = make_workdir(args.workdir)
    machine = machine_info(workdir)
    notes: list[str] = []
    xb: exportbench.ExportBench | None = None
    if machine["workdir_fs"] in ("tmpfs", "ramfs"):
        notes.append(f"WARNING: workdir {workdir} is on {machine['workdir_fs']}: fsync is free")
    missing = [name for name, used in machine["compiled"].items() if not used]
    if missing:
        notes.append(
            f"NOTE: optional compiled paths not in use ({', '.join(missing)}): the figures are "
            "the pure-Python path's (`python setup.py build_ext --inplace` builds them)"
        )

    try:
        # Plans: built once per distinct row count, untimed, reused by every sample.
        counts = sorted({*rows_of.values(), *([args.baseline_rows] if args.baseline_rows else [])})
        plans: dict[int, list[workload.RowPlan]] = {}
        t0 = time.perf_counter()
        for n in counts:
            log(f"preparing {n:,} rows (untimed) ...", progress)
            plans[n] = workload.prepare(n, args.seed)
        prepare_s = time.perf_counter() - t0

        def plans_for(n: int) -> list[workload.RowPlan]:
            # plans are a deterministic prefix of a longer run's at whole artifact batches
            if n not in plans:
                longer = [p for k, p in plans.items() if k > n]
                if longer and n % workload.ARTIFACT_EVERY == 0:
                    plans[n] = longer[0][:n]
                else:
                    log(f"preparing {n:,} rows (untimed) ...", progress)
                    plans[n] = workload.prepare(n, args.seed)
            return plans[n]

        if args.warmup_rows:
            log(f"warm-up ({args.warmup_rows} rows per recorder, untimed) ...", progress)
            warm = workload.prepare(args.warmup_rows, args.seed + 1)
            for m in modes:
                if split_mode(m).durability != "always":
                    record_ours(
                        warm, mode=m, workdir=workdir, seed=args.seed, flush_interval=flush_interval
                    )
            if args.baseline_rows:
                warm_base = workload.prepare(min(20, args.warmup_rows), args.seed + 1)
                record_baseline(warm_base, workdir=workdir, seed=args.seed)
        if args.export_figures:
            xb = exportbench.ExportBench(args, workdir, plans_for, progress)
            xb.setup()

        buf = os.urandom(SHA_BUFFER)
        sha256_mb_s(16, buf)  # warm-up
        sha: list[float] = []
        ours = {m: Series(m, rows_of[m]) for m in modes}
        base = Series("baseline", args.baseline_rows)
        for r in range(args.repeats):
            sha.append(sha256_mb_s(args.sha_mib, buf))
            line = [f"round {r + 1}/{args.repeats}: sha256 {sha[-1]:,.0f} MB/s"]
            for m in modes:
                s = record_ours(
                    plans[rows_of[m]],
                    mode=m,
                    workdir=workdir,
                    seed=args.seed,
                    flush_interval=flush_interval,
                )
                ours[m].samples.append(s)
                line.append(f"{m} {s.events_per_s:,.0f} ev/s")
            if args.baseline_rows:
                s = record_baseline(plans[args.baseline_rows], workdir=workdir, seed=args.seed)
                base.samples.append(s)
                line.append(f"baseline {s.events_per_s:,.0f} ev/s")
            log(", ".join(line), progress)
            if xb is not None:
                log(f"round {r + 1}/{args.repeats}, export: {xb.round()}", progress)
        if xb is not None:
            xb.finish()
    finally:
        if xb is not None:
            xb.close()
        shutil.rmtree(workdir, ignore_errors=True)

    # ---- figures
    figures: list[Figure] = [
        Figure("sha256", "SHA-256 single core", "MB/s", sha, fmt_1, note="1 MiB updates"),
    ]
    for m in modes:
        series = ours[m]
        tag = "" if series.rows == args.rows else f" [{series.rows:,} rows]"
        target = TARGET_BATCH_EVENTS_PER_S if m == "batch" else None
        figures.append(
            Figure(
                f"recording.{m}.events_per_s",
                f"recording {m}{tag}",
                "events/s",
                series.events_per_s(),
                fmt_int,
                target=target,
            )
        )
        figures.append(
            Figure(
                f"recording.{m}.payloads_per_s",
                f"recording {m}{tag}",
                "payloads/s",
                series.payloads_per_s(),
                fmt_int,
            )
        )
    figures += projection_figures(modes, ours)
    uses_always = any(split_mode(m).durability == "always" for m in modes)
    if uses_always and always_rows != args.rows:
        notes.append(
            f"'always' fsyncs every event, so it records {always_rows:,} rows instead of "
            f"{args.rows:,} (--always-rows)."
        )
    explained: dict[str, list[str]] = {}
    for m in modes:
        explained.setdefault(f"{describe_start_run(m)} -- {_what(split_mode(m))}.", []).append(m)
    notes += [f"{', '.join(ms)}: {text}" for text, ms in explained.items()]
    if args.baseline_rows:
        figures.append(
            Figure(
                "baseline.events_per_s",
                f"baseline Landscape-style [{args.baseline_rows:,} rows]",
                "events/s",
                base.events_per_s(),
                fmt_int,
            )
        )
        notes.append(
            f"The baseline records {args.baseline_rows:,} rows (--baseline-rows): its cost per "
            "event is a commit + fsync, independent of the run's length."
        )
        for m in ("batch", "always"):
            if m not in modes:
                continue
            mine = ours[m].events_per_s()
            theirs = base.events_per_s()
            paired = [a / b for a, b in zip(mine, theirs, strict=True)]
            figures.append(
                Figure(
                    f"ratio.{m}_vs_baseline",
                    f"ratio {m}/baseline recording",
                    "x",
                    paired,
                    fmt_ratio,
                    target=TARGET_RATIO_VS_BASELINE if m == "batch" else None,
                    value=statistics.median(mine) / statistics.median(theirs),
                    note="median(ours)/median(baseline); spread from per-round pairs",
                )
            )
    if xb is not None:
        figures += xb.figures(sha)
        notes += xb.notes()

    total_s = time.perf_counter() - t_start
    title = (
        f"auditjournal bench — reference workload (SPEC §8), rows={args.rows:,}, "
        f"repeats={args.repeats}, seed={args.seed}"
    )
    machine["loadavg_end"] = loadavg()
    machine["pressure_end"] = pressure()
    busy = busy_warning(machine)
    if busy:
        notes.insert(0, busy)
    machine_line = (
        f"machine: {machine['cpu_count']} CPUs ({machine['cpu_model']}), Python "
        f"{machine['python']}, {machine['platform']}; workdir fs {machine['workdir_fs']}; "
        f"load average {fmt_load(machine['loadavg_start'])} at start, "
        f"{fmt_load(machine['loadavg_end'])} at end"
    )
    print(title, file=out_human)
    print(machine_line, file=out_human)
    print("", file=out_human)
    print(render_table(figures), file=out_human)
    print("", file=out_human)
    notes.append(
        "Recording time runs from start_run to after run.complete() and store.close() "
        "(baseline: complete() and engine disposal); plans are built beforehand (untimed). "
        f"Events include run_started/run_completed; payloads = {workload.PAYLOADS_PER_ROW}/row."
    )
    notes.append(
        f"Spread: min..max over repeats; stdev (relative) with >= 3 repeats. "
        f"Total wall time {total_s:.0f} s (preparing plans {prepare_s:.0f} s)."
    )
    for note in notes:
        print(f"* {note}", file=out_human)

    if args.json:
        doc: dict[str, Any] = {
            "schema": JSON_SCHEMA,
            "started_at": started.isoformat(),
            "wall_seconds": total_s,
            "prepare_seconds": prepare_s,
            "parameters": {
                "rows": args.rows,
                "repeats": args.repeats,
                "modes": modes,
                "rows_per_mode": rows_of,
                "always_rows": always_rows if uses_always else None,
                "start_run": {m: describe_start_run(m) for m in modes},
                "baseline_rows": args.baseline_rows,
                "sha_mib": args.sha_mib,
                "sha_buffer_bytes": SHA_BUFFER,
                "warmup_rows": args.warmup_rows,
                "seed": args.seed,
                "flush_interval": flush_interval
                if flush_interval is not None
                else default_flush_interval(),
                "workdir": str(workdir),
            },
            "workload": {
                "events_per_row": workload.EVENTS_PER_ROW,
                "payloads_per_row": workload.PAYLOADS_PER_ROW,
                "distinct_payloads_per_row": workload.DISTINCT_PAYLOADS_PER_ROW,
                "payload_args_per_row": workload.PAYLOAD_ARGS_PER_ROW,
                "setup_events": workload.SETUP_EVENTS,
                "artifact_every": workload.ARTIFACT_EVERY,
                "events_counted": "run_started + expected_events(rows) + run_completed",
            },
            "machine": machine,
            "raw": {
                "sha256_mb_s": sha,
                "recording": {
                    m: {"rows": ours[m].rows, "samples": [s.to_json() for s in ours[m].samples]}
                    for m in modes
                },
                "baseline": {
                    "rows": base.rows,
                    "samples": [s.to_json() for s in base.samples],
                },
            },
            "export": None if xb is None else xb.to_json(),
            "figures": {f.key: f.to_json() for f in figures},
            "notes": notes,
        }
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


def run_sql(args: argparse.Namespace) -> int:
    """``--sql``: SQL projection events/s beside the baseline's per-call inserts."""
    import sqlbench

    if args.sql_url is None:
        args.sql_url = sqlbench.default_pg_url()
    return sqlbench.run_sql_bench(args, make_workdir=make_workdir)


def run_pg(args: argparse.Namespace) -> int:
    """``--journal-url``: aggregate events/s of 1, 2, 4 writer processes (see pgbench.py)."""
    workdir = make_workdir(args.workdir)

    def record_file(plans: list[workload.RowPlan]) -> float:
        sample = record_ours(
            plans,
            mode="batch",
            workdir=workdir,
            seed=args.seed,
            flush_interval=args.flush_interval,
        )
        return sample.events_per_s

    try:
        return pgbench.run_pg_bench(args, record_file, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.journal_url:
        return run_pg(args)
    if args.sql:
        return run_sql(args)
    if args.projection_cost:
        return projcost.run_projection_cost(args, make_workdir=make_workdir)
    if args.workload_figures:
        return workloadbench.run_workload_figures(args, make_workdir=make_workdir)
    if args.profile:
        return run_profile(args)
    return run_bench(args)


if __name__ == "__main__":
    raise SystemExit(main())
