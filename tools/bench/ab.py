#!/usr/bin/env python3
"""A/B of two versions of the code on the reference workload, interleaved:
``python tools/bench/ab.py --old-commit <sha> [--rounds 10] [--rows 3000]``.

Each round runs one child process per version (order ABBA across rounds, so drift of a
busy machine cancels), each recording ``--rows`` rows (``batch``, the recorder alone:
``export=None, sql=False``; plans built untimed) and then replaying the run into a fresh
export in one process (``workers=1``). A child's ``sys.path`` starts with its version's
``src`` (the old one from ``git archive``, its optional C modules built as this
checkout's are, where it has them). Prints, per figure and version, the median and
spread (min..max) of wall-clock rates and of CPU-time rates (less disturbed by other load
on a shared machine), and the median of the same-round ratios new/old.
``--recording-only`` skips the replay; ``--new-env NAME=VALUE`` sets the environment of
the new version's children (``AUDITJOURNAL_PURE_PYTHON=1``: without the compiled checks).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

CHILD = """
import json, shutil, sys, time
sys.path[:0] = [{src!r}, {bench!r}]
from pathlib import Path
import auditjournal
from auditjournal import AuditStore, ExportSettings, replay_export
import workload
assert auditjournal.__file__.startswith({src!r}), auditjournal.__file__
plans = workload.prepare({rows}, 1)
root = Path({root!r})
shutil.rmtree(root, ignore_errors=True)
out = {{}}
store = AuditStore.open(root, durability="batch")
w, c = time.perf_counter(), time.process_time()
run = store.start_run(config=workload.run_config({rows}, 1), export=None, sql=False)
events = workload.drive(run, plans)
run.complete()
store.close()
out["recording"] = (events, time.perf_counter() - w, time.process_time() - c)
if {recording_only}:
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out))
    sys.exit(0)
with AuditStore.open(root) as store:
    w, c = time.perf_counter(), time.process_time()
    replay_export(
        journal_dir=store.journal_dir(run.run_id), run_id=run.run_id, payloads=store.payloads,
        settings=ExportSettings(), prefix=root / "replayed" / "audit_trail", workers=1,
    )
    out["replay"] = (events, time.perf_counter() - w, time.process_time() - c)
shutil.rmtree(root, ignore_errors=True)
print(json.dumps(out))
"""


def _build_old(commit: str, tree: Path) -> bool:
    """Build the old version's optional C modules in place, as this checkout's are (else
    the A/B would compare a C build with pure Python); False where it has none or the
    build fails (then it runs as pure Python, and the report says so)."""
    for name in ("setup.py", "pyproject.toml", "README.md"):  # setup.py reads the metadata
        got = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{commit}:{name}"], capture_output=True, check=False
        )
        if got.returncode:
            return False
        (tree / name).write_bytes(got.stdout)
    done = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=tree,
        capture_output=True,
        check=False,
    )
    return done.returncode == 0 and any((tree / "src").rglob("*.so"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-commit", required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument(
        "--recording-only", action="store_true", help="measure recording, not the replay"
    )
    parser.add_argument(
        "--new-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment of the new version's children (e.g. AUDITJOURNAL_PURE_PYTHON=1)",
    )
    args = parser.parse_args()
    new_env = dict(item.split("=", 1) for item in args.new_env)
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="ab-") as tmp:
        work = Path(tmp)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.old_commit, "src"],
            check=True,
            capture_output=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(work / "old", filter="data")
        built = _build_old(args.old_commit, work / "old")
        print(f"old version: {'with' if built else 'WITHOUT'} its optional C build", flush=True)
        versions = {"old": str(work / "old" / "src"), "new": str(REPO / "src")}
        for n in range(args.rounds):
            order = ["old", "new"] if n % 2 == 0 else ["new", "old"]
            for name in order:
                code = CHILD.format(
                    src=versions[name],
                    bench=str(HERE),
                    rows=args.rows,
                    root=str(work / "store"),
                    recording_only=args.recording_only,
                )
                env = {**os.environ, **(new_env if name == "new" else {})}
                result = subprocess.run(
                    [sys.executable, "-c", code],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=env,
                )
                for figure, (events, wall, cpu) in json.loads(result.stdout).items():
                    samples.setdefault(figure, {}).setdefault(name, []).append(
                        (events / wall, events / cpu)
                    )
            print(f"round {n + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    for figure, by_version in samples.items():
        print(f"{figure} ({args.rows:,} rows, events/s; {args.rounds} rounds)")
        for kind, index in (("wall", 0), ("cpu", 1)):
            for name in ("old", "new"):
                values = [s[index] for s in by_version[name]]
                print(
                    f"  {kind:4} {name}: median {statistics.median(values):>9,.0f}  "
                    f"spread {min(values):,.0f} .. {max(values):,.0f}"
                )
            ratios = [
                new[index] / old[index]
                for old, new in zip(by_version["old"], by_version["new"], strict=True)
            ]
            print(
                f"  {kind:4} same-round new/old: median {statistics.median(ratios):.3f}  "
                f"spread {min(ratios):.3f} .. {max(ratios):.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
