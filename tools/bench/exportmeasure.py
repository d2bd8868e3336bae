"""Samples and single measurements of the export figures (``exportbench.py`` runs them).

Each ``measure_*`` takes one sample in a fresh child process (``exportchild.py``), but
``measure_verify_here`` measures in this process; the round structure, figures and notes
live in ``exportbench.py``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import workload
from benchlib import events_in_window, quiesce

from auditjournal import AuditStore, ExportSettings, verify_export

CHILD = Path(__file__).resolve().parent / "exportchild.py"
LAG_POLL_S = 0.001
CHILD_TIMEOUT_S = 3_600.0
RUN_ID = "bench-export"


# --------------------------------------------------------------------------- samples


@dataclass
class LagSample:
    rows: int
    events: int
    seconds: float
    samples: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    follower: dict[str, Any]
    projector: dict[str, Any] | None = None
    first_tenth_p50_ms: float = 0.0
    """Median lag of the first 10 % of the sampled rows (with the last: is lag growing?)."""
    last_tenth_p50_ms: float = 0.0
    lags_ms: list[float] = field(default_factory=list)
    """Every sampled row's lag, in row order."""
    complete_seconds: float = 0.0
    """How long ``run.complete()`` took: with the in-process live export, the time from
    the run's last event to a sealed, verified-ready export (``export_sealed`` appended)."""

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds


@dataclass
class ReplaySample:
    rows: int
    events: int
    seconds: float
    cpu_seconds: float
    bytes: int
    chunk_bytes: int
    chunk_count: int
    record_count: int
    peak_rss_mb: float
    start_rss_mb: float
    """RSS of the child after its imports."""
    opened_rss_mb: float
    """RSS after ``AuditStore.open`` (payload index loaded), before the replay."""
    workers_peak_rss_mb: float = 0.0
    """Peak RSS of the largest replay worker process (0: replayed in-process)."""
    workers_cpu_seconds: float = 0.0
    """CPU (user + system) of the replay's worker processes (0: replayed in-process)."""

    @property
    def records_per_cpu_s(self) -> float:
        """Records per CPU-second of the whole replay (this process, its threads and its
        workers): what one core replays on an idle machine, whatever the load was."""
        return self.record_count / (self.cpu_seconds + self.workers_cpu_seconds)

    @property
    def mb_s(self) -> float:
        return self.bytes / self.seconds / 1e6

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds


@dataclass
class VerifySample:
    chunk_bytes: int
    seconds: float
    records: int

    @property
    def mb_s(self) -> float:
        return self.chunk_bytes / self.seconds / 1e6


@dataclass
class BaselineExportSample:
    rows: int
    events: int
    seconds: float
    bytes: int

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def mb_s(self) -> float:
        return self.bytes / self.seconds / 1e6


def _percentile(values: list[float], pct: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


# --------------------------------------------------------------------------- children


def _spawn(kind: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), kind, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        _, err = proc.communicate()
        raise RuntimeError(f"export bench child failed to start: {line!r} {err[-2000:]}")


def _result(proc: subprocess.Popen[str], timeout: float = CHILD_TIMEOUT_S) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    lines = out.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"export bench child exited {proc.returncode}: {err[-2000:]}")
    doc: dict[str, Any] = json.loads(lines[-1])
    if "error" in doc:
        raise RuntimeError(f"export bench child: {doc['error']}")
    return doc


def _kill(procs: Iterable[subprocess.Popen[str] | None]) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


class _Stamped:
    """The recorder, with ``create_row`` stamping ``monotonic_ns`` after every Nth row returns."""

    _PASS_THROUGH = (
        "register_node",
        "register_edge",
        "create_token",
        "begin_node_state",
        "record_call",
        "complete_node_state",
        "record_routing_event",
        "record_artifact",
        "record_token_outcome",
    )

    def __init__(self, run: Any, every: int) -> None:
        for name in self._PASS_THROUGH:
            setattr(self, name, getattr(run, name))
        self._create_row = run.create_row
        self._every = every
        self.stamps: list[tuple[str, int]] = []

    def create_row(self, *, source_node_id: str, row_index: int, data: Any) -> str:
        row_id: str = self._create_row(
            source_node_id=source_node_id, row_index=row_index, data=data
        )
        if row_index % self._every == 0:
            self.stamps.append((row_id, time.monotonic_ns()))
        return row_id


# --------------------------------------------------------------------------- measurements


def measure_lag(
    plans: list[workload.RowPlan],
    *,
    workdir: Path,
    seed: int,
    every: int,
    out_of_process: bool,
    store_kwargs: dict[str, Any],
    projection: str = "process",
    wl: Any = workload,
    sql: bool = False,
) -> LagSample:
    """One recording at full speed with a follower process timing each sampled row record.
    ``projection``: where the library's live export runs ("process": the default projector
    process; "thread"); ``out_of_process``: no live export, a separate projector child;
    ``wl``: the workload module, ``workload`` or ``workload_small`` (``plans`` are its);
    ``sql``: the SQL tables kept current too (the library's defaults: export and SQL in
    the projector process)."""
    root = Path(tempfile.mkdtemp(prefix="lag-", dir=workdir)) / "store"
    store = AuditStore.open(root, durability="batch", projection=projection, **store_kwargs)
    settings = ExportSettings()
    prefix = store.export_prefix(RUN_ID, settings)
    follower = projector = None
    closed = False
    try:
        follower = _spawn("follow", str(prefix), str(CHILD_TIMEOUT_S), str(LAG_POLL_S))
        _wait_ready(follower)
        if out_of_process:
            projector = _spawn("project", str(root), RUN_ID, str(CHILD_TIMEOUT_S))
            _wait_ready(projector)
        config = wl.run_config(len(plans), seed)
        quiesce()
        t0 = time.perf_counter()
        run = store.start_run(
            run_id=RUN_ID,
            config=config,
            export=None if out_of_process else settings,
            sql=sql and not out_of_process,
        )
        stamped = _Stamped(run, every)
        driven = wl.drive(cast(workload.Recorder, stamped), plans)
        t_end = time.perf_counter()
        run.complete()
        complete_seconds = time.perf_counter() - t_end
        store.close()
        closed = True
        seconds = time.perf_counter() - t0
        projected = _result(projector) if projector is not None else None
        followed = _result(follower)
    finally:
        _kill((follower, projector))
        if not closed:
            store.close()
        shutil.rmtree(root.parent, ignore_errors=True)
    seen: dict[str, int] = followed.pop("seen_ns")
    missing = [rid for rid, _ in stamped.stamps if rid not in seen]
    if missing or followed["timed_out"]:
        raise RuntimeError(
            f"follower did not see {len(missing)} sampled rows (timed out: "
            f"{followed['timed_out']}), e.g. {missing[:3]}"
        )
    lags = [(seen[rid] - t) / 1e6 for rid, t in stamped.stamps]
    tenth = max(1, len(lags) // 10)
    return LagSample(
        rows=len(plans),
        events=events_in_window(driven),
        seconds=seconds,
        samples=len(lags),
        p50_ms=statistics.median(lags),
        p90_ms=_percentile(lags, 90),
        p99_ms=_percentile(lags, 99),
        max_ms=max(lags),
        mean_ms=statistics.fmean(lags),
        follower=followed,
        projector=projected,
        first_tenth_p50_ms=statistics.median(lags[:tenth]),
        last_tenth_p50_ms=statistics.median(lags[-tenth:]),
        lags_ms=[round(x, 3) for x in lags],
        complete_seconds=complete_seconds,
    )


def record_store(
    root: Path,
    plans: Iterable[workload.RowPlan],
    rows: int,
    seed: int,
    store_kwargs: dict[str, Any],
    wl: Any = workload,
) -> int:
    """An untimed recording (journal + payloads, no export) to replay; returns its events."""
    with AuditStore.open(root, durability="batch", **store_kwargs) as store:
        run = store.start_run(
            run_id=RUN_ID, config=wl.run_config(rows, seed), export=None, sql=False
        )
        driven = wl.drive(run, plans)
        run.complete()
    return events_in_window(driven)


def measure_replay(root: Path, rows: int, events: int, out: Path) -> ReplaySample:
    """Replay the run of the store at ``root`` into ``out/audit_trail`` in a child process."""
    quiesce()
    doc = _result(_spawn("replay", str(root), RUN_ID, str(out / "audit_trail")))
    peak = doc["vmhwm_kib"] or doc["ru_maxrss_kib"]
    return ReplaySample(
        rows=rows,
        events=events,
        seconds=doc["seconds"],
        cpu_seconds=doc["cpu_seconds"],
        bytes=doc["bytes"],
        chunk_bytes=doc["chunk_bytes"],
        chunk_count=doc["chunk_count"],
        record_count=doc["record_count"],
        peak_rss_mb=peak * 1024 / 1e6,
        start_rss_mb=(doc["rss_start_kib"] or 0) * 1024 / 1e6,
        opened_rss_mb=(doc["rss_opened_kib"] or 0) * 1024 / 1e6,
        workers_peak_rss_mb=doc.get("workers_maxrss_kib", 0) * 1024 / 1e6,
        workers_cpu_seconds=doc.get("workers_cpu_seconds", 0.0),
    )


def measure_verify(export_dir: Path, chunk_bytes: int) -> VerifySample:
    """``verify_export`` of a sealed export in a child process (as ``auditjournal verify``)."""
    quiesce()
    doc = _result(_spawn("verify", str(export_dir)))
    return VerifySample(chunk_bytes=chunk_bytes, seconds=doc["seconds"], records=doc["records"])


def measure_verify_here(export_dir: Path, chunk_bytes: int) -> VerifySample:
    """The same in this (the bench's, big) process: forking verify's workers costs more."""
    quiesce()
    t0 = time.perf_counter()
    report = verify_export(export_dir)
    seconds = time.perf_counter() - t0
    if not report.ok:
        raise RuntimeError(f"verify failed on the replayed export: {report.summary()}")
    return VerifySample(chunk_bytes=chunk_bytes, seconds=seconds, records=report.record_count)
