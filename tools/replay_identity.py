#!/usr/bin/env python3
"""Byte-identity of exports across two versions of the code (a refactoring must not change
a byte): ``python tools/replay_identity.py --old-commit <sha>``.

It records one fixed run (the reference workload of tools/bench, with payloads, a live
export and small journal segments) with each version, then replays each recording with
each version -- in one process and in parallel workers -- and compares every export file
byte for byte: the four replays of one recording must equal that recording's live export.
Each step runs in a child process whose ``sys.path`` starts with that version's ``src``
(the old one from ``git archive <sha>``), so the two never mix.

Prints one line per comparison and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

RECORD = """
import sys
sys.path[:0] = [{src!r}, {bench!r}]
from pathlib import Path
import auditjournal
from auditjournal import AuditStore, ExportSettings
import workload
assert auditjournal.__file__.startswith({src!r}), auditjournal.__file__
with AuditStore.open({root!r}, segment_bytes=64 << 10) as store:
    settings = ExportSettings(include_payloads=True, chunk_size_bytes=256 << 10)
    with store.start_run(run_id="fixed", export=settings, sql=False) as run:
        workload.drive(run, workload.prepare({rows}, 7))
"""

REPLAY = """
import sys
sys.path[:0] = [{src!r}]
from pathlib import Path
import auditjournal
from auditjournal import AuditStore, ExportSettings, replay_export
assert auditjournal.__file__.startswith({src!r}), auditjournal.__file__
with AuditStore.open({root!r}) as store:
    settings = ExportSettings(include_payloads=True, chunk_size_bytes=256 << 10)
    result = replay_export(
        journal_dir=store.journal_dir("fixed"), run_id="fixed", payloads=store.payloads,
        settings=settings, prefix=Path({out!r}) / "audit_trail", workers={workers},
        range_bytes=128 << 10,
    )
    assert result is not None
"""


def run(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tempfile.gettempdir())


def files(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(directory.iterdir())
        if p.is_file() and not p.name.startswith(".")
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-commit", required=True, help="the version to compare against")
    parser.add_argument("--rows", type=int, default=2000, help="rows of the fixed run")
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory(prefix="replay-identity-") as tmp:
        work = Path(tmp)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.old_commit, "src"],
            check=True,
            capture_output=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(work / "old", filter="data")
        versions = {"old": str(work / "old" / "src"), "new": str(REPO / "src")}
        for recorder, src in versions.items():
            root = work / f"recorded-by-{recorder}"
            run(RECORD.format(src=src, bench=str(HERE / "bench"), root=str(root), rows=args.rows))
            live = files(root / "runs" / "fixed" / "export")
            size = sum(len(b) for b in live.values())
            print(f"recorded by {recorder}: {len(live)} export files, {size:,} bytes")
            for replayer, replay_src in versions.items():
                for workers in (1, 2):
                    out = work / f"{recorder}-{replayer}-{workers}"
                    run(
                        REPLAY.format(src=replay_src, root=str(root), out=str(out), workers=workers)
                    )
                    same = files(out) == live
                    failed |= not same
                    print(
                        f"  replayed by {replayer} ({workers} process{'es' * (workers > 1)}): "
                        + ("byte-identical to the live export" if same else "DIFFERENT")
                    )
        old_live = files(work / "recorded-by-old" / "runs" / "fixed" / "export")
        new_live = files(work / "recorded-by-new" / "runs" / "fixed" / "export")
        print(f"export files of both recordings: {sorted(old_live) == sorted(new_live)}")
    print("FAILED: exports differ" if failed else "OK: every replay is byte-identical")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
