"""The export figures of SPEC §7, measured by ``bench.py`` in the same run as the recording.

Per round (interleaved with the recording figures of ``bench.py``):

* **live export lag** -- the reference workload recorded (``durability="batch"``, at full
  speed, plans built beforehand) while a *separate follower process* (``exportchild.py
  follow``) tails the chunk files every 1 ms with its own minimal reader. The recording
  process stamps ``time.monotonic_ns()`` right after ``create_row`` returns for every
  ``--lag-every``-th row; the follower stamps when that row's ``row`` record line became
  readable (matched by ``row_id``); lag = readable - appended (``CLOCK_MONOTONIC`` is
  system-wide). Three times: with the library's live export in its projector process
  (``start_run(export=ExportSettings(), sql=False)``, the default ``projection="process"``),
  as a thread beside the recorder (``AuditStore.open(..., projection="thread")``), and
  with no live export but a separate projector process (``start_run(export=None,
  sql=False)`` and ``exportchild.py project`` running ``export_projector(...).run(follow=True)``).
  Also reported: the recording rate achieved meanwhile (``start_run`` .. ``complete()`` +
  ``close()``, like ``bench.py``'s recording figures).
* **replay** -- ``replay_export`` of a recorded run (``--export-rows``) into a fresh export,
  payloads inlined, in a fresh child process (``exportchild.py replay``), timed around the
  call (its final fsync of every chunk included); MB/s = bytes of the export directory
  written / seconds. The same child reports its peak RSS (``VmHWM``).
* **verify** -- ``verify_export(export_dir)`` of that fresh export (sealed; hashes, layout,
  Merkle root), in this process; MB/s of chunk bytes, and as a % of the round's SHA-256 MB/s.
* **export vs baseline** -- ``LandscapeBaseline.export_run`` of a baseline run recorded once
  (``--baseline-rows``, untimed) against our replay, per *event* exported per second (the
  two runs have different lengths; both costs are per event).
* **memory** -- peak RSS of the replay child for a ~20 MB export (``--rss-small-rows``)
  and for the replay export above (~200 MB by default); with ``--rss-big`` also once (or
  ``--rss-big-repeats`` times) for a ~2 GB export (``--rss-big-rows``, recorded lazily).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import baseline
import workload
from benchlib import (
    Figure,
    events_in_window,
    fmt_1,
    fmt_int,
    fmt_ratio,
    log,
    non_negative,
    positive,
    quiesce,
)
from exportmeasure import (
    LAG_POLL_S,
    BaselineExportSample,
    LagSample,
    ReplaySample,
    VerifySample,
    measure_lag,
    measure_replay,
    measure_verify,
    measure_verify_here,
    record_store,
)

from auditjournal import ExportSettings

DEFAULT_LAG_ROWS = 5_000
DEFAULT_LAG_EVERY = 10
DEFAULT_EXPORT_ROWS = 12_000
DEFAULT_RSS_SMALL_ROWS = 1_250
DEFAULT_RSS_BIG_ROWS = 125_000
TARGET_LAG_P99_MS = 50.0
TARGET_REPLAY_MB_S = 150.0
TARGET_EXPORT_RATIO = 10.0
TARGET_VERIFY_PCT_OF_SHA = 35.0
TARGET_RSS_GROWTH_MB = 50.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("export figures (exportbench.py)")
    g.add_argument(
        "--export-figures",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure lag, replay, verify, export-vs-baseline and RSS (default on)",
    )
    g.add_argument("--lag-rows", type=positive, default=DEFAULT_LAG_ROWS, help="rows per lag run")
    g.add_argument(
        "--lag-every", type=positive, default=DEFAULT_LAG_EVERY, help="sample every Nth row's lag"
    )
    g.add_argument(
        "--export-rows",
        type=positive,
        default=DEFAULT_EXPORT_ROWS,
        help="rows of the run replayed and verified (~16 KB of export per row)",
    )
    g.add_argument(
        "--rss-small-rows",
        type=positive,
        default=DEFAULT_RSS_SMALL_ROWS,
        help="rows of the small replay whose RSS is compared (~20 MB export)",
    )
    g.add_argument(
        "--rss-big", action="store_true", help="also measure replay RSS for a ~2 GB export"
    )
    g.add_argument(
        "--rss-big-rows",
        type=positive,
        default=DEFAULT_RSS_BIG_ROWS,
        help="rows of the --rss-big run (125,000 rows ~ 2.0 GB of export)",
    )
    g.add_argument(
        "--rss-big-repeats", type=non_negative, default=1, help="replays of the --rss-big run"
    )


# --------------------------------------------------------------------------- the bench


@dataclass
class ExportBench:
    """Setup (untimed recordings), one measurement per round, figures, notes and JSON."""

    args: argparse.Namespace
    workdir: Path
    plans_for: Callable[[int], list[workload.RowPlan]]
    progress: TextIO
    lag_in: list[LagSample] = field(default_factory=list)
    lag_live: list[LagSample] = field(default_factory=list)
    lag_out: list[LagSample] = field(default_factory=list)
    replay: list[ReplaySample] = field(default_factory=list)
    small: list[ReplaySample] = field(default_factory=list)
    big: list[ReplaySample] = field(default_factory=list)
    verify: list[VerifySample] = field(default_factory=list)
    verify_here: list[VerifySample] = field(default_factory=list)
    base_export: list[BaselineExportSample] = field(default_factory=list)
    setup_seconds: dict[str, float] = field(default_factory=dict)
    _events: dict[str, int] = field(default_factory=dict)
    _baseline: Any = None
    _baseline_run_id: str = ""

    @property
    def store_kwargs(self) -> dict[str, Any]:
        fi = self.args.flush_interval
        return {} if fi is None else {"flush_interval": fi}

    def _root(self, name: str) -> Path:
        return self.workdir / "export-bench" / name

    def setup(self) -> None:
        a = self.args
        for name, rows in (("replay", a.export_rows), ("small", a.rss_small_rows)):
            t0 = time.perf_counter()
            plans = self.plans_for(rows)
            log(
                f"export figures: recording {rows:,} rows to replay ({name}, untimed) ...",
                self.progress,
            )
            self._events[name] = record_store(
                self._root(name), plans, rows, a.seed, self.store_kwargs
            )
            self.setup_seconds[name] = time.perf_counter() - t0
        if a.baseline_rows:
            t0 = time.perf_counter()
            log(
                f"export figures: baseline run of {a.baseline_rows:,} rows (untimed) ...",
                self.progress,
            )
            root = self._root("baseline")
            root.mkdir(parents=True)
            self._baseline = baseline.LandscapeBaseline(root)
            run = self._baseline.start_run(workload.run_config(a.baseline_rows, a.seed))
            driven = workload.drive(run, self.plans_for(a.baseline_rows))
            run.complete("completed")
            self._baseline_run_id = run.run_id
            self._events["baseline"] = events_in_window(driven)
            self.setup_seconds["baseline"] = time.perf_counter() - t0
        if a.rss_big:
            t0 = time.perf_counter()
            log(
                f"export figures: --rss-big: recording {a.rss_big_rows:,} rows (plans built "
                "lazily, untimed; minutes) ...",
                self.progress,
            )
            lazy = workload.iter_plans(a.rss_big_rows, a.seed)
            self._events["big"] = record_store(
                self._root("big"), lazy, a.rss_big_rows, a.seed, self.store_kwargs
            )
            self.setup_seconds["big"] = time.perf_counter() - t0

    def round(self) -> str:
        a = self.args
        lag_plans = self.plans_for(a.lag_rows)
        parts = []
        for out_of_process, projection, series, tag in (
            (False, "process", self.lag_live, "live process"),
            (False, "thread", self.lag_in, "thread"),
            (True, "process", self.lag_out, "separate"),
        ):
            s = measure_lag(
                lag_plans,
                workdir=self.workdir,
                seed=a.seed,
                every=a.lag_every,
                out_of_process=out_of_process,
                store_kwargs=self.store_kwargs,
                projection=projection,
            )
            series.append(s)
            parts.append(f"lag p99 {tag} {s.p99_ms:.1f} ms")
        out = self._root("replayed")
        r = measure_replay(self._root("replay"), a.export_rows, self._events["replay"], out)
        self.replay.append(r)
        v = measure_verify(out, r.chunk_bytes)
        self.verify.append(v)
        here = measure_verify_here(out, r.chunk_bytes)
        self.verify_here.append(here)
        shutil.rmtree(out, ignore_errors=True)
        parts.append(
            f"replay {r.mb_s:,.0f} MB/s, verify {v.mb_s:,.0f} MB/s "
            f"(in the bench process {here.mb_s:,.0f})"
        )
        out = self._root("replayed-small")
        small = measure_replay(self._root("small"), a.rss_small_rows, self._events["small"], out)
        self.small.append(small)
        shutil.rmtree(out, ignore_errors=True)
        parts.append(f"RSS {small.peak_rss_mb:,.0f}/{r.peak_rss_mb:,.0f} MB")
        if self._baseline is not None:
            b = self._baseline_export()
            self.base_export.append(b)
            parts.append(f"baseline export {b.events_per_s:,.0f} ev/s")
        return ", ".join(parts)

    def _baseline_export(self) -> BaselineExportSample:
        out = self._root("baseline") / "audit_trail.json"
        quiesce()
        t0 = time.perf_counter()
        size = self._baseline.export_run(self._baseline_run_id, out)
        seconds = time.perf_counter() - t0
        out.unlink()
        return BaselineExportSample(
            rows=self.args.baseline_rows,
            events=self._events["baseline"],
            seconds=seconds,
            bytes=size,
        )

    def finish(self) -> None:
        """The --rss-big replays (after the rounds: each takes a while)."""
        a = self.args
        if not a.rss_big:
            return
        for i in range(a.rss_big_repeats):
            out = self._root("replayed-big")
            s = measure_replay(self._root("big"), a.rss_big_rows, self._events["big"], out)
            self.big.append(s)
            shutil.rmtree(out, ignore_errors=True)
            log(
                f"--rss-big replay {i + 1}/{a.rss_big_repeats}: {s.bytes / 1e9:.2f} GB in "
                f"{s.seconds:.1f} s = {s.mb_s:,.0f} MB/s, peak RSS {s.peak_rss_mb:,.0f} MB",
                self.progress,
            )

    def close(self) -> None:
        if self._baseline is not None:
            self._baseline.close()
            self._baseline = None
        shutil.rmtree(self.workdir / "export-bench", ignore_errors=True)

    # ---- results

    def figures(self, sha: list[float]) -> list[Figure]:
        a = self.args
        figs: list[Figure] = []
        for key, name, series in (
            ("live_process", "live projector process (default)", self.lag_live),
            ("in_process", "in-process thread", self.lag_in),
            ("projector_process", "separate projector process", self.lag_out),
        ):
            figs += [
                Figure(
                    f"lag.{key}.p50_ms",
                    f"live export lag p50, {name} [{a.lag_rows:,} rows]",
                    "ms",
                    [s.p50_ms for s in series],
                    _fmt_ms,
                ),
                Figure(
                    f"lag.{key}.p99_ms",
                    f"live export lag p99, {name}",
                    "ms",
                    [s.p99_ms for s in series],
                    _fmt_ms,
                    target=TARGET_LAG_P99_MS,
                    op="<=",
                ),
                Figure(
                    f"lag.{key}.events_per_s",
                    f"  recording meanwhile, {name}",
                    "events/s",
                    [s.events_per_s for s in series],
                    fmt_int,
                ),
            ]
        mb = _median([r.bytes for r in self.replay]) / 1e6
        figs.append(
            Figure(
                "replay.mb_s",
                f"replay export, payloads inlined [{a.export_rows:,} rows, {mb:,.0f} MB]",
                "MB/s",
                [r.mb_s for r in self.replay],
                fmt_1,
                target=TARGET_REPLAY_MB_S,
            )
        )
        figs.append(
            Figure(
                "replay.events_per_s",
                "replay export, payloads inlined",
                "events/s",
                [r.events_per_s for r in self.replay],
                fmt_int,
            )
        )
        if self.base_export:
            ours = [r.events_per_s for r in self.replay]
            theirs = [b.events_per_s for b in self.base_export]
            figs.append(
                Figure(
                    "baseline_export.events_per_s",
                    f"baseline export Landscape-style [{a.baseline_rows:,} rows]",
                    "events/s",
                    theirs,
                    fmt_int,
                )
            )
            figs.append(
                Figure(
                    "ratio.export_vs_baseline",
                    "ratio replay/baseline export, per event",
                    "x",
                    [x / y for x, y in zip(ours, theirs, strict=True)],
                    fmt_ratio,
                    target=TARGET_EXPORT_RATIO,
                    value=statistics.median(ours) / statistics.median(theirs),
                    note="median(ours)/median(baseline), events exported per second",
                )
            )
        if self.base_export and self.lag_live:
            # What a user waits for once the run is over: ours is the live export's tail and
            # seal (run.complete()); the baseline exports the same events only then.
            ready = [s.complete_seconds * 1000 for s in self.lag_live]
            events = _median([s.events for s in self.lag_live])
            theirs_ms = [events / b.events_per_s * 1000 for b in self.base_export]
            figs.append(
                Figure(
                    "export_ready.ms",
                    f"export sealed after run end, live [{a.lag_rows:,} rows]",
                    "ms",
                    ready,
                    _fmt_ms,
                )
            )
            figs.append(
                Figure(
                    "ratio.export_ready_vs_baseline",
                    "ratio baseline export / live export, after run end",
                    "x",
                    [t / r for t, r in zip(theirs_ms, ready, strict=False)],
                    fmt_ratio,
                    target=TARGET_EXPORT_RATIO,
                    value=statistics.median(theirs_ms) / statistics.median(ready),
                    note="baseline time = same events / its measured export events/s",
                )
            )
        vmb = [v.mb_s for v in self.verify]
        figs.append(Figure("verify.mb_s", f"verify [{mb:,.0f} MB]", "MB/s", vmb, fmt_1))
        figs.append(
            Figure(
                "verify.pct_of_sha256",
                "verify / SHA-256 single core",
                "%",
                [100 * v / s for v, s in zip(vmb, sha, strict=True)],
                _fmt_pct,
                target=TARGET_VERIFY_PCT_OF_SHA,
                value=100 * statistics.median(vmb) / statistics.median(sha),
                note="median(verify MB/s)/median(SHA-256 MB/s); spread from per-round pairs",
            )
        )
        here = [v.mb_s for v in self.verify_here]
        figs.append(
            Figure(
                "verify.in_bench_process_mb_s",
                "  verify in the bench process",
                "MB/s",
                here,
                fmt_1,
                note="the same call in this big process: forking its workers costs more",
            )
        )
        small_mb = _median([s.bytes for s in self.small]) / 1e6
        figs.append(
            Figure(
                "rss.small_mb",
                f"replay peak RSS [{a.rss_small_rows:,} rows, {small_mb:,.0f} MB export]",
                "MB",
                [s.peak_rss_mb for s in self.small],
                fmt_1,
            )
        )
        figs += self._rss_pair("replay", f"{a.export_rows:,} rows, {mb:,.0f} MB", self.replay)
        if self.big:
            size = _size(_median([s.bytes for s in self.big]) / 1e6)
            figs.append(
                Figure(
                    "replay_big.mb_s",
                    f"replay export [{a.rss_big_rows:,} rows, {size}]",
                    "MB/s",
                    [s.mb_s for s in self.big],
                    fmt_1,
                )
            )
            figs += self._rss_pair("big", f"{a.rss_big_rows:,} rows, {size}", self.big)
        return figs

    def _rss_pair(self, key: str, what: str, series: list[ReplaySample]) -> list[Figure]:
        small = [s.peak_rss_mb for s in self.small]
        big = [s.peak_rss_mb for s in series]
        size = _median([s.bytes for s in series]) / 1e6
        small_size = _median([s.bytes for s in self.small]) / 1e6
        pairs = [b - s for b, s in zip(big, small, strict=False)]
        return [
            Figure(f"rss.{key}_mb", f"replay peak RSS [{what} export]", "MB", big, fmt_1),
            Figure(
                f"rss.growth_{key}_mb",
                f"RSS growth, {_size(size)} vs {_size(small_size)} export",
                "MB",
                pairs,
                fmt_1,
                target=TARGET_RSS_GROWTH_MB,
                op="<=",
                value=statistics.median(big) - statistics.median(small),
                note="median(big) - median(small) peak RSS; spread from per-round pairs",
            ),
        ]

    def notes(self) -> list[str]:
        a = self.args
        out = [
            "Export lag: a separate follower process (own reader, 1 ms polls) stamps when "
            f"every {a.lag_every}th row's record is readable in a chunk; the recording process "
            "stamps after create_row returns (CLOCK_MONOTONIC in both). p50/p99 per run, "
            "median over runs. Live projector process: start_run(config=..., "
            "export=ExportSettings(), sql=False) with the default projection='process'. "
            "In-process thread: the same with AuditStore.open(..., projection='thread'). "
            "Separate projector process: start_run(config=..., export=None, sql=False) plus a "
            "child running store.export_projector(run_id, ExportSettings()).run(follow=True).",
            "Replay: replay_export(..., settings=ExportSettings(), payloads inlined) in a fresh "
            "child process, timed around the call (chunk fsyncs included), page cache warm; "
            "MB = 10^6 bytes of export files written. Verify: verify_export(export_dir) of that "
            "export in a fresh child process (as auditjournal verify runs), timed around the "
            "call, MB/s of chunk bytes, page cache warm; also shown as run in the bench's own "
            "process, whose workload plans make forking verify's workers slower.",
        ]
        at = 1
        for name, series in (
            ("live projector process", self.lag_live),
            ("in-process thread", self.lag_in),
            ("separate projector process", self.lag_out),
        ):
            first = _median([x.first_tenth_p50_ms for x in series])
            last = _median([x.last_tenth_p50_ms for x in series])
            if last > 2 * first + 5:
                at += 1
                out.insert(
                    at - 1,
                    f"Lag, {name}: grows through the run (median lag of the first 10 % of rows "
                    f"{first:,.1f} ms, of the last 10 % {last:,.1f} ms): the projector falls "
                    "behind the recorder at full rate, so this figure depends on --lag-rows.",
                )
        if self.base_export:
            out.append(
                "Export vs baseline: per event exported (our replay of "
                f"{a.export_rows:,} rows vs the baseline's export_run of {a.baseline_rows:,} "
                "rows, recorded once untimed: its recording is too slow for more); median "
                f"export MB/s: ours {_median([r.mb_s for r in self.replay]):,.0f}, baseline "
                f"{_median([b.mb_s for b in self.base_export]):,.0f}."
            )
        sizes = [("small", self.small), ("replay", self.replay), ("big", self.big)]
        opened = ", ".join(
            f"{_size(_median([x.bytes for x in xs]) / 1e6)}: "
            f"{_median([x.opened_rss_mb for x in xs]):,.0f} MB"
            for _, xs in sizes
            if xs
        )
        rss = (
            "Memory: peak RSS (VmHWM) of the replay child process, imports included (RSS "
            f"after imports ~{_median([s.start_rss_mb for s in self.small]):,.0f} MB; after "
            f"AuditStore.open, which loads the payload index, before replaying: {opened})."
        )
        if not self.big:
            rss += (
                " SPEC §7 compares a 2 GB export with a 20 MB one; the default run compares "
                f"~{_median([r.bytes for r in self.replay]) / 1e6:,.0f} MB with "
                f"~{_median([s.bytes for s in self.small]) / 1e6:,.0f} MB (--rss-big adds the "
                "2 GB run)."
            )
        workers = ", ".join(
            f"{_size(_median([x.bytes for x in xs]) / 1e6)}: "
            f"{_median([x.workers_peak_rss_mb for x in xs]):,.0f} MB"
            for _, xs in sizes
            if xs and any(x.workers_peak_rss_mb for x in xs)
        )
        if workers:
            rss += (
                " Big journals are replayed on forked worker processes, whose RSS is not in "
                f"that figure; the largest worker's peak RSS ({workers}) counts the pages it "
                "shares with the parent (imports, payload index) too."
            )
        out.append(rss)
        return out

    def to_json(self) -> dict[str, Any]:
        a = self.args

        def rows(samples: list[Any]) -> list[dict[str, Any]]:
            return [asdict(s) | _props(s) for s in samples]

        return {
            "parameters": {
                "lag_rows": a.lag_rows,
                "lag_every": a.lag_every,
                "lag_poll_s": LAG_POLL_S,
                "export_rows": a.export_rows,
                "rss_small_rows": a.rss_small_rows,
                "rss_big": a.rss_big,
                "rss_big_rows": a.rss_big_rows if a.rss_big else None,
                "rss_big_repeats": a.rss_big_repeats if a.rss_big else None,
                "baseline_rows": a.baseline_rows,
                "follower": "separate process (exportchild.py follow), CLOCK_MONOTONIC",
                "export_settings": ExportSettings().describe(),
            },
            "setup_seconds": self.setup_seconds,
            "events": self._events,
            "raw": {
                "lag_live_process": rows(self.lag_live),
                "lag_in_process": rows(self.lag_in),
                "lag_projector_process": rows(self.lag_out),
                "replay": rows(self.replay),
                "replay_small": rows(self.small),
                "replay_big": rows(self.big),
                "verify": rows(self.verify),
                "verify_in_bench_process": rows(self.verify_here),
                "baseline_export": rows(self.base_export),
            },
        }


def _props(sample: Any) -> dict[str, float]:
    names = ("events_per_s", "mb_s")
    return {n: getattr(sample, n) for n in names if hasattr(type(sample), n)}


def _median(values: list[float] | list[int]) -> float:
    return float(statistics.median(values)) if values else 0.0


def _size(mb: float) -> str:
    return f"{mb / 1e3:,.2f} GB" if mb >= 1e3 else f"{mb:,.0f} MB"


def _fmt_ms(x: float) -> str:
    return f"{x:,.1f}"


def _fmt_pct(x: float) -> str:
    return f"{x:,.1f}%"
