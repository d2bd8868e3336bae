"""Shared pieces of the benchmark harness: statistics, the result table, samples, environment.

Used by ``bench.py`` (recording figures) and ``exportbench.py`` (export figures); nothing
here measures anything by itself except ``sha256_mb_s`` and the two recorders' helpers.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import os
import platform
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

import baseline
import workload

import auditjournal

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

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
    projector_cpu_seconds: float = 0.0
    """CPU time of the run's projector process(es) (user + system; they report it)."""

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


def events_in_window(driven: int) -> int:
    """Events appended between start_run and complete: run_started + driven + run_completed."""
    return driven + 2


def check_driven(driven: int, rows: int) -> None:
    expected = workload.expected_events(rows)
    if driven != expected:
        raise RuntimeError(f"workload drove {driven} events, expected {expected}")


def quiesce() -> None:
    """Untimed: write back dirty pages of earlier samples and collect garbage."""
    os.sync()
    gc.collect()


def record_baseline(plans: list[workload.RowPlan], *, workdir: Path, seed: int) -> Sample:
    """One timed recording through the Landscape-style baseline in a fresh directory."""
    rows = len(plans)
    root = Path(tempfile.mkdtemp(prefix="baseline-", dir=workdir))
    db = baseline.LandscapeBaseline(root)
    closed = False
    try:
        config = workload.run_config(rows, seed)
        quiesce()
        c0 = time.process_time()
        t0 = time.perf_counter()
        run = db.start_run(config)
        driven = workload.drive(run, plans)
        run.complete("completed")
        db.close()
        closed = True
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


def loadavg() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def pressure() -> dict[str, float]:
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


def fmt_load(load: list[float] | None) -> str:
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
        "compiled": compiled_paths(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_src_dirty": None if status is None else bool(status),
        "loadavg_start": loadavg(),
        "pressure_start": pressure(),
    }


def compiled_paths() -> dict[str, bool]:
    """Which optional compiled hot paths the measured code uses (setup.py builds them;
    ``AUDITJOURNAL_PURE_PYTHON=1`` or a checkout without ``build_ext --inplace``: none)."""
    from auditjournal.evidence import chunkscan
    from auditjournal.journal import lines
    from auditjournal.model import canonical, secretfilter

    return {
        "canonical_check": canonical._passes is not None,
        "secret_check": secretfilter._unfiltered is not None,
        "seal": lines.seal is not lines.seal_python,
        "chunk_scan": getattr(chunkscan, "_compiled_block", None) is not None,
    }


def default_flush_interval() -> float | None:
    try:
        from auditjournal.journal.files import DEFAULT_FLUSH_INTERVAL
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


def log(msg: str, stream: TextIO) -> None:
    print(msg, file=stream, flush=True)


# --------------------------------------------------------------------------- helpers


def busy_warning(machine: dict[str, Any]) -> str | None:
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


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def make_workdir(parent: Path | None) -> Path:
    base = parent if parent is not None else default_parent()
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="auditjournal-bench-", dir=base))
