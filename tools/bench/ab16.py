"""Same-run A/B for issue 16: sealing (replay into a fresh export, sealed) and verify,
with the code of another checkout (A, e.g. main) against this one (B); and the cost of
live checkpoints per record (B with ``checkpoint_every_records`` None / 10,000 / 1,000).

    python tools/bench/ab16.py --a-src /work/main/src [--rows 4000] [--rounds 5]

One journal of the reference workload (SPEC section 8) is recorded once (no live
export); every round then runs, in fresh child processes and interleaved, a replay
(single process) and a verify of its result with A's code and with B's. The figures
are medians over the rounds with min..max spread, and the ratio of the medians to A's;
wall-clock and CPU time (process_time, all threads) both, as CPU time is what a loaded
machine disturbs least.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
B_SRC = HERE.parent.parent / "src"

_CHILD = r"""
import json, sys, time
from pathlib import Path
from auditjournal import AuditStore, ExportSettings
from auditjournal.export.replay import replay_export
from auditjournal.evidence.verify import verify_export
root, run_id, out, every = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
kwargs = {} if every == "default" else {
    "checkpoint_every_records": None if every == "none" else int(every)}
settings = ExportSettings(**kwargs)
with AuditStore.open(root) as store:
    t0, c0 = time.perf_counter(), time.process_time()
    result = replay_export(journal_dir=store.journal_dir(run_id), run_id=run_id,
                           payloads=store.payloads, settings=settings,
                           prefix=out / "audit_trail", workers=1)
    t1, c1 = time.perf_counter(), time.process_time()
report = verify_export(out)
t2, c2 = time.perf_counter(), time.process_time()
assert report.ok, [c.line() for c in report.checks]
print(json.dumps({"seal_s": t1 - t0, "verify_s": t2 - t1, "seal_cpu_s": c1 - c0,
                  "verify_cpu_s": c2 - c1, "records": result.record_count}))
"""


def record(root: Path, rows: int) -> str:
    sys.path.insert(0, str(B_SRC))
    sys.path.insert(0, str(HERE))
    import workload

    from auditjournal import AuditStore

    with (
        AuditStore.open(root) as store,
        store.start_run(config=workload.run_config(rows, 1), export=None, sql=False) as run,
    ):
        workload.drive(run, workload.prepare(rows, 1))
    return run.run_id


def once(src: Path, root: Path, run_id: str, out: Path, every: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(src))
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root), run_id, str(out), every],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a-src", type=Path, required=True, help="src/ of the A checkout")
    p.add_argument("--rows", type=int, default=4000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ab16-") as tmp:
        root = Path(tmp) / "store"
        run_id = record(root, args.rows)
        variants = {
            "A": (args.a_src, "default"),
            "B": (B_SRC, "default"),
            "B-no-checkpoints": (B_SRC, "none"),
            "B-every-1000": (B_SRC, "1000"),
        }
        samples: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
        for r in range(args.rounds):
            for name, (src, every) in variants.items():
                out = Path(tmp) / f"{name}-{r}"
                out.mkdir()
                samples[name].append(once(src, root, run_id, out, every))
                time.sleep(0.2)
        records = samples["B"][0]["records"]
        print(f"{args.rows} rows, {records:,} records, {args.rounds} rounds (interleaved)")
        for figure in ("seal_s", "verify_s", "seal_cpu_s", "verify_cpu_s"):
            med = {k: statistics.median(s[figure] for s in v) for k, v in samples.items()}
            for name, values in samples.items():
                xs = [s[figure] for s in values]
                print(
                    f"{figure:12} {name:17} median {med[name]:.3f} s  "
                    f"spread {min(xs):.3f}..{max(xs):.3f}  B/A-style ratio "
                    f"{med[name] / med['A']:.3f}"
                )
        per = {
            k: statistics.median(s["seal_cpu_s"] for s in samples[k]) / records * 1e9
            for k in ("B-no-checkpoints", "B", "B-every-1000")
        }
        print(
            "checkpoint cost per record (ns of CPU, sealing vs none): "
            f"every 10,000: {per['B'] - per['B-no-checkpoints']:+.0f}; "
            f"every 1,000: {per['B-every-1000'] - per['B-no-checkpoints']:+.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
