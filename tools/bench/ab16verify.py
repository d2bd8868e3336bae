"""Same-run A/B of ``verify``'s CPU time: another checkout's code (A, e.g. the commit before
issue 16) against this one (B), each verifying the export its own code sealed.

    python tools/bench/ab16verify.py --a-src /work/wt/i16-base/src [--rows 4000]
        [--rounds 16] [--reps 5] [--cli]

One journal of the reference workload is recorded once; A and B each replay it into an
export of their own (B's has live checkpoints and the completeness certificate). Then,
in interleaved rounds (ABBA...), a fresh child process per side verifies its export
``--reps`` times after one warm-up (``--cli``: runs ``auditjournal verify`` once, the
whole process, imports included). CPU time is the child's own plus its children's
(``getrusage``: the hashing thread and any worker processes). Printed: median and
min..max per side, the ratio of the medians, and the per-round ratios' median and spread.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
B_SRC = HERE.parent.parent / "src"

_REPLAY = r"""
import sys
from pathlib import Path
from auditjournal import AuditStore, ExportSettings
from auditjournal.export.replay import replay_export
root, run_id, out = sys.argv[1:4]
with AuditStore.open(root) as store:
    replay_export(journal_dir=store.journal_dir(run_id), run_id=run_id, payloads=store.payloads,
                  settings=ExportSettings(), prefix=Path(out) / "audit_trail", workers=1)
"""
_VERIFY = r"""
import json, resource, sys
from pathlib import Path
from auditjournal.evidence.verify import verify_export
def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
export, reps = Path(sys.argv[1]), int(sys.argv[2])
assert verify_export(export).ok
start = cpu()
for _ in range(reps):
    verify_export(export)
print(json.dumps((cpu() - start) / reps))
"""


def _child(src: Path, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(src))
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    return done.stdout


def _cli_cpu(src: Path, export: Path) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    _child(src, "-m", "auditjournal", "verify", str(export))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a-src", type=Path, required=True, help="src/ of the A checkout")
    p.add_argument("--rows", type=int, default=4000)
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--cli", action="store_true", help="time `auditjournal verify`, imports too")
    args = p.parse_args()
    sides = {"A": args.a_src, "B": B_SRC}
    with tempfile.TemporaryDirectory(prefix="ab16verify-") as tmp:
        sys.path[:0] = [str(B_SRC), str(HERE)]
        import workload

        from auditjournal import AuditStore

        root = Path(tmp) / "store"
        with (
            AuditStore.open(root) as store,
            store.start_run(
                config=workload.run_config(args.rows, 1), export=None, sql=False
            ) as run,
        ):
            workload.drive(run, workload.prepare(args.rows, 1))
        for name, src in sides.items():
            (Path(tmp) / name).mkdir()
            _child(src, "-c", _REPLAY, str(root), run.run_id, str(Path(tmp) / name))
        samples: dict[str, list[float]] = {"A": [], "B": []}
        for r in range(args.rounds):
            for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
                export = Path(tmp) / name
                if args.cli:
                    samples[name].append(_cli_cpu(sides[name], export))
                else:
                    out = _child(sides[name], "-c", _VERIFY, str(export), str(args.reps))
                    samples[name].append(json.loads(out))
    what = "`auditjournal verify` (whole process)" if args.cli else f"{args.reps} verifies"
    print(f"{args.rows} rows, {args.rounds} rounds of {what}, load {os.getloadavg()}")
    for name, xs in samples.items():
        print(
            f"{name}: median {statistics.median(xs) * 1000:.1f} ms CPU, "
            f"spread {min(xs) * 1000:.1f}..{max(xs) * 1000:.1f}"
        )
    ratios = [b / a for a, b in zip(samples["A"], samples["B"], strict=True)]
    medians = statistics.median(samples["B"]) / statistics.median(samples["A"])
    print(
        f"B/A: ratio of medians {medians:.4f}; "
        f"per-round median {statistics.median(ratios):.4f}, "
        f"spread {min(ratios):.3f}..{max(ratios):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
