"""Child processes of ``exportbench.py``: a chunk follower, an export projector, a replay,
a verify.

Each runs in a fresh interpreter (``python exportchild.py KIND ARGS...``), so it shares no GIL
with the recording process and (for ``replay``) its peak RSS is its own. A child that has to be
running before the recording starts prints ``ready`` once its imports are done; every child
prints its result as one JSON line last on stdout. Timestamps are ``time.monotonic_ns()``
(``CLOCK_MONOTONIC``, system-wide on Linux), so they compare with the parent's.

* ``follow PREFIX TIMEOUT POLL`` -- tails the chunk files ``PREFIX.NNN.json`` with its own
  minimal reader (an open fd per chunk, ``os.read`` to the end every ``POLL`` seconds) and
  notes when each ``row`` record's line became readable; ends when the manifest exists and
  every chunk it lists has been read to its ``]`` (or after ``TIMEOUT`` seconds).
* ``project ROOT RUN_ID TIMEOUT`` -- waits for the run's journal, then drives
  ``store.export_projector(run_id, ExportSettings()).run(follow=True)`` until sealed
  (what ``auditjournal project ROOT --follow`` does per run, minus the SQL tables and the
  ``export_sealed`` entry).
* ``replay ROOT RUN_ID PREFIX`` -- ``replay_export`` of the run into ``PREFIX`` (payloads
  inlined, default chunking), timed around the call; reports peak RSS (``VmHWM``), and
  RSS after the imports and after ``AuditStore.open`` (which loads the payload index).
* ``verify EXPORT_DIR`` -- ``verify_export`` of a sealed export, timed around the call,
  as ``auditjournal verify`` runs it: in a small process (verify forks its workers from
  it, and forking the bench's own process, which holds the workload's plans, costs more).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import msgspec


def _status_kib(field: str) -> int | None:
    """A ``kB`` line of ``/proc/self/status`` (``VmHWM``, ``VmRSS``), in KiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _children_cpu() -> float:
    """CPU (user + system) of the waited-for child processes (the replay's workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _emit(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


class _RowHead(msgspec.Struct):
    record_type: str
    row_id: str
    seq: int


def follow(prefix: Path, timeout: float, poll: float) -> dict[str, Any]:
    from auditjournal.export.chunks import chunk_name

    decode = msgspec.json.Decoder(_RowHead).decode
    directory, name = prefix.parent, prefix.name
    manifest = directory / f"{name}.manifest.json"
    seen: dict[str, int] = {}
    index = 0
    fd = -1
    carry = b""
    records = nbytes = reads = empty_polls = 0
    timed_out = False
    monotonic_ns = time.monotonic_ns
    deadline = time.monotonic() + timeout
    print("ready", flush=True)
    while True:
        if fd < 0:
            try:
                fd = os.open(directory / chunk_name(name, index, False), os.O_RDONLY)
            except FileNotFoundError:
                if manifest.exists():
                    count = msgspec.json.decode(manifest.read_bytes())["chunk_count"]
                    if index >= count:
                        break
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                time.sleep(poll)
                continue
        data = os.read(fd, 1 << 24)
        if not data:
            empty_polls += 1
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(poll)
            continue
        now = monotonic_ns()
        reads += 1
        nbytes += len(data)
        if carry:
            data = carry + data
        end = data.rfind(b"\n") + 1
        carry = data[end:]
        closed = False
        for line in data[:end].split(b"\n")[:-1]:
            if line == b"[":
                continue
            if line == b"]":
                closed = True
                continue
            records += 1
            if b'"record_type":"row"' in line:
                head = decode(line[1:] if line[:1] == b"," else line)
                seen[head.row_id] = now
        if closed:
            os.close(fd)
            fd = -1
            index += 1
            carry = b""
    if fd >= 0:
        os.close(fd)
    return {
        "seen_ns": seen,
        "records": records,
        "bytes": nbytes,
        "chunks": index,
        "reads": reads,
        "empty_polls": empty_polls,
        "timed_out": timed_out,
        "cpu_seconds": time.process_time(),
    }


def project(root: Path, run_id: str, timeout: float) -> dict[str, Any]:
    from auditjournal import AuditStore, ExportSettings

    journal = root / "runs" / run_id / "journal"
    deadline = time.monotonic() + timeout
    print("ready", flush=True)
    while not (journal.is_dir() and any(journal.glob("*.jsonl"))):
        if time.monotonic() > deadline:
            return {"error": f"no journal at {journal} after {timeout} s"}
        time.sleep(0.001)
    t0 = time.perf_counter()
    with AuditStore.open(root, durability="batch") as store:
        projector = store.export_projector(run_id, ExportSettings())
        try:
            result = projector.run(follow=True)
        finally:
            projector.close()
    return {
        "seconds": time.perf_counter() - t0,
        "sealed": result is not None,
        "record_count": None if result is None else result.record_count,
        "chunk_count": None if result is None else result.chunk_count,
        "cpu_seconds": time.process_time(),
    }


def replay(root: Path, run_id: str, prefix: Path) -> dict[str, Any]:
    from auditjournal import AuditStore, ExportSettings, replay_export

    rss_start = _status_kib("VmRSS")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with AuditStore.open(root, durability="batch") as store:
        rss_opened = _status_kib("VmRSS")  # the store's payload index is loaded by now
        c0 = time.process_time()
        children_cpu = _children_cpu()
        t0 = time.perf_counter()
        result = replay_export(
            journal_dir=store.journal_dir(run_id),
            run_id=run_id,
            payloads=store.payloads,
            settings=ExportSettings(),
            prefix=prefix,
        )
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - c0
    if result is None:
        return {"error": "replay_export returned None (run not completed?)"}
    manifest = json.loads(Path(result.manifest_path).read_bytes())
    files = [p for p in prefix.parent.iterdir() if p.is_file()]
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "bytes": sum(p.stat().st_size for p in files),
        "chunk_bytes": sum(c["bytes"] for c in manifest["chunks"]),
        "chunk_count": result.chunk_count,
        "record_count": result.record_count,
        "rss_start_kib": rss_start,
        "rss_opened_kib": rss_opened,
        "vmhwm_kib": _status_kib("VmHWM"),
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        # the largest worker process of a parallel replay (0: replayed in-process)
        "workers_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "workers_cpu_seconds": _children_cpu() - children_cpu,
    }


def verify(export_dir: Path) -> dict[str, Any]:
    from auditjournal import verify_export

    c0 = time.process_time()
    t0 = time.perf_counter()
    report = verify_export(export_dir)
    seconds = time.perf_counter() - t0
    if not report.ok:
        return {"error": f"verify failed: {report.summary()}"}
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - c0,
        "records": report.record_count,
    }


def main(argv: list[str]) -> int:
    kind, *rest = argv
    if kind == "follow":
        doc = follow(Path(rest[0]), float(rest[1]), float(rest[2]))
    elif kind == "project":
        doc = project(Path(rest[0]), rest[1], float(rest[2]))
    elif kind == "replay":
        doc = replay(Path(rest[0]), rest[1], Path(rest[2]))
    elif kind == "verify":
        doc = verify(Path(rest[0]))
    else:
        raise SystemExit(f"unknown child kind {kind!r}")
    _emit(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
