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

Samples are interleaved (each round measures SHA-256, then every mode, then the baseline),
so a machine getting slower or faster during the run affects all figures alike; dirty pages
are synced (``os.sync``, untimed) before every timed section.

``--profile`` instead runs one ``batch`` recording under cProfile and prints the top 25
functions by tottime (main thread only: the group-commit thread is not profiled).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as _dt
import gc
import hashlib
import inspect
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import baseline  # noqa: E402
import workload  # noqa: E402

import auditjournal  # noqa: E402
from auditjournal import AuditStore  # noqa: E402

DURABILITIES: tuple[str, ...] = ("batch", "always", "none")
FEATURES: tuple[str, ...] = ("export", "sql")
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

Op = Literal[">=", "<="]


# --------------------------------------------------------------------------- statistics


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """Median and spread: min, max, and with >= 3 values stdev (and relative) and IQR."""
    n = len(values)
    if n == 0:
        return {"n": 0, "median": None, "min": None, "max": None}
    out: dict[str, float | int | None] = {
        "n": n,
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
        "stdev": None,
        "rel_stdev": None,
        "q1": None,
        "q3": None,
        "iqr": None,
    }
    if n >= 3:
        stdev = statistics.stdev(values)
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        mean = statistics.fmean(values)
        out.update(
            stdev=stdev,
            rel_stdev=stdev / mean if mean else None,
            q1=q1,
            q3=q3,
            iqr=q3 - q1,
        )
    return out


@dataclass
class Figure:
    """One line of the result table (and one entry of the JSON ``figures``)."""

    key: str
    label: str
    unit: str
    samples: list[float]
    fmt: Callable[[float], str]
    target: float | None = None
    op: Op = ">="
    value: float | None = None
    """Headline value; ``None`` means the median of ``samples``."""
    note: str = ""

    @property
    def summary(self) -> dict[str, float | int | None]:
        return summarize(self.samples)

    @property
    def headline(self) -> float | None:
        if self.value is not None:
            return self.value
        median = self.summary["median"]
        return None if median is None else float(median)

    @property
    def passed(self) -> bool | None:
        if self.target is None or self.headline is None:
            return None
        if self.op == ">=":
            return self.headline >= self.target
        return self.headline <= self.target

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "unit": self.unit,
            "value": self.headline,
            "samples": self.samples,
            "summary": self.summary,
            "target": None if self.target is None else {"op": self.op, "value": self.target},
            "pass": self.passed,
            "note": self.note or None,
        }


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def fmt_1(x: float) -> str:
    return f"{x:,.1f}"


def fmt_ratio(x: float) -> str:
    return f"{x:,.1f}x"


# --------------------------------------------------------------------------- samples


@dataclass
class Sample:
    """One timed recording."""

    rows: int
    events: int
    payloads: int
    seconds: float
    cpu_seconds: float
    """Process CPU time (all threads) in the timed window."""
    store_bytes: int
    """Bytes on disk in the store after close (sum of file sizes)."""

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def payloads_per_s(self) -> float:
        return self.payloads / self.seconds

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["events_per_s"] = self.events_per_s
        d["payloads_per_s"] = self.payloads_per_s
        return d


@dataclass
class Series:
    """All samples of one recorder configuration."""

    name: str
    rows: int
    samples: list[Sample] = field(default_factory=list)

    def events_per_s(self) -> list[float]:
        return [s.events_per_s for s in self.samples]

    def payloads_per_s(self) -> list[float]:
        return [s.payloads_per_s for s in self.samples]


def tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _events_in_window(driven: int) -> int:
    """Events appended between start_run and complete: run_started + driven + run_completed."""
    return driven + 2


def _check_driven(driven: int, rows: int) -> None:
    expected = workload.expected_events(rows)
    if driven != expected:
        raise RuntimeError(f"workload drove {driven} events, expected {expected}")


def _quiesce() -> None:
    """Untimed: write back dirty pages of earlier samples and collect garbage."""
    os.sync()
    gc.collect()


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
    store = AuditStore.open(root / "store", durability=durability, **kwargs)  # type: ignore[arg-type]
    run_kwargs = start_run_kwargs(spec)
    closed = False
    try:
        config = workload.run_config(rows, seed)
        _quiesce()
        c0 = time.process_time()
        t0 = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        run = store.start_run(config=config, **run_kwargs)
        driven = workload.drive(run, plans)
        run.complete()
        store.close()
        closed = True
        if profiler is not None:
            profiler.disable()
        t1 = time.perf_counter()
        c1 = time.process_time()
        _check_driven(driven, rows)
        return Sample(
            rows=rows,
            events=_events_in_window(driven),
            payloads=workload.PAYLOADS_PER_ROW * rows,
            seconds=t1 - t0,
            cpu_seconds=c1 - c0,
            store_bytes=tree_bytes(root),
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

    @classmethod
    def parse(cls, text: str) -> ModeSpec:
        durability, *features = text.strip().split("+")
        if durability not in DURABILITIES or any(f not in FEATURES for f in features):
            raise ValueError(text)
        return cls(durability, export="export" in features, sql="sql" in features)

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
    return " and ".join(parts) + "; no target of its own"


def describe_start_run(mode: str) -> str:
    spec = split_mode(mode)
    args = ["config=..."]
    args += [f"{k}={v!r}" for k, v in start_run_kwargs(spec).items()]
    args += [f"{f}=<default>" for f in FEATURES if getattr(spec, f)]
    return f"start_run({', '.join(args)})"


def record_baseline(plans: list[workload.RowPlan], *, workdir: Path, seed: int) -> Sample:
    """One timed recording through the Landscape-style baseline in a fresh directory."""
    rows = len(plans)
    root = Path(tempfile.mkdtemp(prefix="baseline-", dir=workdir))
    db = baseline.LandscapeBaseline(root)
    closed = False
    try:
        config = workload.run_config(rows, seed)
        _quiesce()
        c0 = time.process_time()
        t0 = time.perf_counter()
        run = db.start_run(config)
        driven = workload.drive(run, plans)
        run.complete("completed")
        db.close()
        closed = True
        t1 = time.perf_counter()
        c1 = time.process_time()
        _check_driven(driven, rows)
        return Sample(
            rows=rows,
            events=_events_in_window(driven),
            payloads=workload.PAYLOADS_PER_ROW * rows,
            seconds=t1 - t0,
            cpu_seconds=c1 - c0,
            store_bytes=tree_bytes(root),
        )
    finally:
        if not closed:
            db.close()
        shutil.rmtree(root, ignore_errors=True)


def sha256_mb_s(mib: int, buf: bytes) -> float:
    """Single-core SHA-256 throughput over ``mib`` updates of a 1 MiB buffer, in MB/s."""
    h = hashlib.sha256()
    t0 = time.perf_counter()
    for _ in range(mib):
        h.update(buf)
    h.digest()
    return mib * len(buf) / (time.perf_counter() - t0) / 1e6


# --------------------------------------------------------------------------- environment


def fs_type(path: Path) -> str:
    """The filesystem type of the mount holding ``path`` (Linux; ``unknown`` elsewhere)."""
    best, kind = "", "unknown"
    target = str(path.resolve())
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


def default_parent() -> Path:
    """Where to make the work dir: the temp dir if it shares the repo's filesystem.

    Otherwise (e.g. ``/tmp`` is a tmpfs) a ``.work`` directory beside this script.
    """
    repo_dev = os.stat(REPO).st_dev
    tmp = Path(tempfile.gettempdir())
    try:
        if os.stat(tmp).st_dev == repo_dev and fs_type(tmp) not in ("tmpfs", "ramfs"):
            return tmp
    except OSError:
        pass
    fallback = HERE / ".work"
    fallback.mkdir(exist_ok=True)
    return fallback


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_total_mib() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return str(getattr(mod, "__version__", None) or getattr(mod, "sqlite_version", None))


def _loadavg() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def _pressure() -> dict[str, float]:
    """Linux PSI ``some avg60`` for cpu and io (% of time something waited), if available."""
    out: dict[str, float] = {}
    for what in ("cpu", "io"):
        try:
            with open(f"/proc/pressure/{what}", encoding="utf-8") as fh:
                first = fh.readline().split()
        except OSError:
            continue
        for part in first[1:]:
            key, _, value = part.partition("=")
            if key == "avg60":
                out[what] = float(value)
    return out


def _fmt_load(load: list[float] | None) -> str:
    return "?" if load is None else "/".join(f"{x:.2f}" for x in load)


def machine_info(workdir: Path) -> dict[str, Any]:
    affinity: int | None = None
    if hasattr(os, "sched_getaffinity"):
        affinity = len(os.sched_getaffinity(0))
    status = _git("status", "--porcelain", "--", "src")
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpu_model": _cpu_model(),
        "mem_total_mib": _mem_total_mib(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "workdir": str(workdir),
        "workdir_fs": fs_type(workdir),
        "versions": {
            "auditjournal": auditjournal.__version__,
            "msgspec": _version("msgspec"),
            "sqlalchemy": _version("sqlalchemy"),
            "sqlite": _version("sqlite3"),
        },
        "git_commit": _git("rev-parse", "HEAD"),
        "git_src_dirty": None if status is None else bool(status),
        "loadavg_start": _loadavg(),
        "pressure_start": _pressure(),
    }


def _default_flush_interval() -> float | None:
    try:
        from auditjournal.journal import DEFAULT_FLUSH_INTERVAL
    except ImportError:
        return None
    return float(DEFAULT_FLUSH_INTERVAL)


# --------------------------------------------------------------------------- output


def render_table(figures: Sequence[Figure]) -> str:
    header = ("figure", "median", "spread (min..max)", "stdev", "n", "target", "result")
    lines: list[tuple[str, ...]] = []
    for f in figures:
        s = f.summary
        head = f.headline
        lo, hi, rel = s["min"], s["max"], s["rel_stdev"]
        spread = "—" if lo is None or hi is None else f"{f.fmt(lo)} .. {f.fmt(hi)}"
        stdev = "—" if rel is None else f"±{100 * rel:.1f}%"
        target = "—" if f.target is None else f"{f.op.replace('>=', '≥').replace('<=', '≤')} "
        if f.target is not None:
            target += f.fmt(f.target)
        result = {None: "", True: "PASS", False: "FAIL"}[f.passed]
        lines.append(
            (
                f"{f.label} ({f.unit})",
                "—" if head is None else f.fmt(head),
                spread,
                stdev,
                str(s["n"]),
                target,
                result,
            )
        )
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    right = {1, 2, 3, 4}

    def fmt_row(row: tuple[str, ...]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt_row(header), rule, *(fmt_row(r) for r in lines)])


def _log(msg: str, stream: TextIO) -> None:
    print(msg, file=stream, flush=True)


# --------------------------------------------------------------------------- main runs


def _busy_warning(machine: dict[str, Any]) -> str | None:
    """A note if other work competed for the CPU or the disk while we measured."""
    loads = [x for x in (machine.get("loadavg_start"), machine.get("loadavg_end")) if x]
    pressures = [p for p in (machine.get("pressure_start"), machine.get("pressure_end")) if p]
    cpu = max((p.get("cpu", 0.0) for p in pressures), default=0.0)
    io_ = max((p.get("io", 0.0) for p in pressures), default=0.0)
    load = max((x[0] for x in loads), default=0.0)
    cpus = machine.get("cpu_affinity") or machine.get("cpu_count") or 1
    if load > 0.5 * cpus or cpu > 10.0 or io_ > 10.0:
        return (
            f"WARNING: the machine was busy (1-min load up to {load:.2f} on {cpus} CPUs, "
            f"PSI avg60 cpu {cpu:.0f}% io {io_:.0f}%): figures are pessimistic; rerun when idle."
        )
    return None


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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark auditjournal's recorder against SPEC §7 on the §8 workload.",
    )
    p.add_argument("--rows", type=_positive, default=DEFAULT_ROWS, help="rows per recording")
    p.add_argument("--repeats", type=_positive, default=DEFAULT_REPEATS, help="samples per figure")
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
        type=_positive,
        default=None,
        help=f"rows for 'always' (fsync per event; default min(rows, {DEFAULT_ALWAYS_ROWS_CAP}))",
    )
    p.add_argument(
        "--baseline-rows",
        type=_non_negative,
        default=DEFAULT_BASELINE_ROWS,
        help="rows for the Landscape-style baseline (~1000 events/s); 0 skips it",
    )
    p.add_argument(
        "--sha-mib", type=_positive, default=DEFAULT_SHA_MIB, help="MiB hashed per SHA-256 sample"
    )
    p.add_argument(
        "--warmup-rows",
        type=_non_negative,
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
    p.add_argument("--profile-top", type=_positive, default=25, help="functions shown by --profile")
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
    return p


def _make_workdir(parent: Path | None) -> Path:
    base = parent if parent is not None else default_parent()
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="auditjournal-bench-", dir=base))


def run_profile(args: argparse.Namespace) -> int:
    mode: str = args.profile_mode[0]
    workdir = _make_workdir(args.workdir)
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
    workdir = _make_workdir(args.workdir)
    machine = machine_info(workdir)
    notes: list[str] = []
    if machine["workdir_fs"] in ("tmpfs", "ramfs"):
        notes.append(f"WARNING: workdir {workdir} is on {machine['workdir_fs']}: fsync is free")

    try:
        # Plans: built once per distinct row count, untimed, reused by every sample.
        counts = sorted({*rows_of.values(), *([args.baseline_rows] if args.baseline_rows else [])})
        plans: dict[int, list[workload.RowPlan]] = {}
        t0 = time.perf_counter()
        for n in counts:
            _log(f"preparing {n:,} rows (untimed) ...", progress)
            plans[n] = workload.prepare(n, args.seed)
        prepare_s = time.perf_counter() - t0

        if args.warmup_rows:
            _log(f"warm-up ({args.warmup_rows} rows per recorder, untimed) ...", progress)
            warm = workload.prepare(args.warmup_rows, args.seed + 1)
            for m in modes:
                if split_mode(m).durability != "always":
                    record_ours(
                        warm, mode=m, workdir=workdir, seed=args.seed, flush_interval=flush_interval
                    )
            if args.baseline_rows:
                warm_base = workload.prepare(min(20, args.warmup_rows), args.seed + 1)
                record_baseline(warm_base, workdir=workdir, seed=args.seed)

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
            _log(", ".join(line), progress)
    finally:
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

    total_s = time.perf_counter() - t_start
    title = (
        f"auditjournal bench — reference workload (SPEC §8), rows={args.rows:,}, "
        f"repeats={args.repeats}, seed={args.seed}"
    )
    machine["loadavg_end"] = _loadavg()
    machine["pressure_end"] = _pressure()
    busy = _busy_warning(machine)
    if busy:
        notes.insert(0, busy)
    machine_line = (
        f"machine: {machine['cpu_count']} CPUs ({machine['cpu_model']}), Python "
        f"{machine['python']}, {machine['platform']}; workdir fs {machine['workdir_fs']}; "
        f"load average {_fmt_load(machine['loadavg_start'])} at start, "
        f"{_fmt_load(machine['loadavg_end'])} at end"
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
                else _default_flush_interval(),
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
    return sqlbench.run_sql_bench(args, make_workdir=_make_workdir)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.sql:
        return run_sql(args)
    if args.profile:
        return run_profile(args)
    return run_bench(args)


if __name__ == "__main__":
    raise SystemExit(main())
