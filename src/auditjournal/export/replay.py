"""Replay: a fresh export of a run from its journal (``auditjournal replay``, and
``verify --journal``).

A small journal is projected by one :class:`~auditjournal.export.projector.ExportProjector`
in this process, the live export's code. A big one (at least
``_PARALLEL_BYTES``, with two or more cores) is cut at entry boundaries into
ranges of about ``_RANGE_BYTES``. Worker processes (forked, so they share the
loaded payload index) each read their range with a
journal cursor (:class:`~auditjournal.journal.base.JournalCursor`) started at it -- every entry's
chain hash checks against the chain value stored in the entry before it, so
ranges verify independently, and together they verify the whole chain -- and
turn its events into encoded records and their Merkle leaf hashes. A worker
leaves its records in a slot of a shared memory ring (mapped before the fork)
rather than sending them through the pool's pipe, which would copy them four
times and make the processes take turns; only records too big for a slot
travel through the pipe. This process takes the ranges in order and writes
their records through the same projector (chunk rollover, chunk SHA-256,
Merkle tree, seal), so the bytes are exactly those of the single-process
replay.

What a range cannot finish alone is finished here, in journal order: a node
state completed in a later range than it started in (the worker never saw its
start), and ``run_completed`` (it needs the run's ``run_started`` fields and
every still-open state). If anything goes wrong in the parallel replay -- a
damaged journal, a worker that died -- the replay starts over in one process,
so errors are exactly those the single-process replay reports.
"""

from __future__ import annotations

import itertools
import mmap
import multiprocessing
import os
import sys
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Final

from ..errors import RunNotFoundError
from ..journal.base import JournalPosition, RunJournal
from ..journal.filebackend import as_run_journal
from ..model.events import NodeStateCompleted, RunCompleted
from ..model.records import RecordMaker
from ..model.settings import ExportSettings
from ..payloads.store import PayloadStore
from ..proofs.merkle import leaf_hash
from .projector import ExportPaths, ExportProjector, SealResult

__all__ = ["replay_export"]

_PARALLEL_BYTES: Final = 16 << 20  # smaller journals are replayed in this process
_RANGE_BYTES: Final = 512 << 10  # of journal per worker task (~1.4 MB of export with payloads)
_MAX_WORKERS: Final = 4
_POLL: Final = 4096
_SLOT_BYTES: Final = 4 << 20  # of shared memory per task in flight (~3x a range's records)

# A range's result: its records as lines ("," + record + newline each, back to
# back; or, as an int, how many bytes of them are in the task's slot), their
# lengths, seqs and leaf hashes (32 bytes each), the node state completions left
# for the caller (record index, event), the states still open at the range's end,
# run_started's fields (first range only), and run_completed with its chain value
# if the range reached it.
_Range = tuple[
    bytes | int,
    list[int],
    list[int],
    bytes,
    list[tuple[int, NodeStateCompleted]],
    dict[str, dict[str, Any]],
    dict[str, Any],
    tuple[RunCompleted, bytes] | None,
]

_worker_payloads: PayloadStore | None = None  # in a worker: its copy of the store
_worker_ring: mmap.mmap | None = None  # in a worker: the shared slots


def replay_export(
    *,
    journal_dir: Path | RunJournal,
    run_id: str,
    payloads: PayloadStore,
    settings: ExportSettings,
    prefix: Path,
    workers: int | None = None,
    range_bytes: int = _RANGE_BYTES,
) -> SealResult | None:
    """Build a fresh export of a journal at ``prefix``; ``None`` if the run never completed
    (the chunks then hold everything recorded, unsealed).

    ``workers``: processes for a big journal (default: up to 4, one per core;
    ``0`` or ``1``: this process only, whatever the size). ``range_bytes``:
    journal bytes per worker task. ``journal_dir``: the run's journal, or the directory
    of a file journal.
    """
    journal = as_run_journal(journal_dir, run_id)
    if not journal.exists():
        raise RunNotFoundError(f"no journal for run {run_id!r} at {journal.location}")
    paths = ExportPaths(prefix)
    for stale in (paths.manifest, paths.sha256sums, paths.checkpoint):
        stale.unlink(missing_ok=True)
    if workers is None:
        total = journal.size_bytes()
        workers = min(os.cpu_count() or 1, _MAX_WORKERS) if total >= _PARALLEL_BYTES else 1
    if workers > 1 and sys.platform == "linux":
        try:
            return _replay_parallel(
                journal, run_id, payloads, settings, prefix, workers, range_bytes
            )
        except Exception:  # a damaged journal, a worker that died, ...
            pass  # start over in one process: it reports what is wrong, as it always does
    return _replay_here(journal, run_id, payloads, settings, prefix)


def _projector(
    journal: RunJournal, run_id: str, payloads: PayloadStore, settings: ExportSettings, prefix: Path
) -> ExportProjector:
    return ExportProjector(
        journal_dir=journal,
        run_id=run_id,
        payloads=payloads,
        settings=settings,
        prefix=prefix,
        checkpoint=False,
    )


def _replay_here(
    journal: RunJournal, run_id: str, payloads: PayloadStore, settings: ExportSettings, prefix: Path
) -> SealResult | None:
    projector = _projector(journal, run_id, payloads, settings, prefix)
    try:
        result = projector.run(follow=False)
        if result is None:
            projector.flush()  # everything recorded is in the chunks, unsealed
        return result
    finally:
        projector.close()


class _Inconsistent(Exception):
    """The ranges do not fit together (the single-process replay says why)."""


def _replay_parallel(
    journal: RunJournal,
    run_id: str,
    payloads: PayloadStore,
    settings: ExportSettings,
    prefix: Path,
    workers: int,
    range_bytes: int,
) -> SealResult | None:
    starts = journal.split(range_bytes)
    # event count of each range but the last, which reads to the journal's end
    counts: list[int | None] = [b.next_seq - a.next_seq for a, b in itertools.pairwise(starts)]
    counts.append(None)
    if any(c is not None and c <= 0 for c in counts):
        raise _Inconsistent("range starts out of order")
    payloads.flush(fsync=False)  # the workers read the packs from disk
    context = multiprocessing.get_context("fork")
    jobs = [
        (journal, run_id, start, count, settings.include_payloads)
        for start, count in zip(starts, counts, strict=True)
    ]
    in_flight = workers + 1  # one queued beyond those being worked on; a slot each
    ring = mmap.mmap(-1, in_flight * _SLOT_BYTES)  # shared, anonymous: the workers inherit it
    # the pool forks before the projector starts its I/O thread
    with (
        ring,
        ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(payloads, ring)
        ) as pool,
    ):
        pending: deque[tuple[int, Future[_Range]]] = deque()
        queued = iter(jobs)
        for slot, job in zip(range(in_flight), queued, strict=False):  # range first
            pending.append((slot, pool.submit(_project_range, *job, slot)))
        projector = _projector(journal, run_id, payloads, settings, prefix)
        try:
            maker = projector.maker
            while pending:
                slot, future = pending.popleft()
                result = future.result()
                lines = result[0]
                if type(lines) is int:  # copied out, so the slot is free for the next task
                    at = slot * _SLOT_BYTES
                    result = (ring[at : at + lines], *result[1:])
                upcoming = next(queued, None)
                if upcoming is not None:
                    pending.append((slot, pool.submit(_project_range, *upcoming, slot)))
                if _stitch(projector, maker, result):
                    for _, future in pending:
                        future.cancel()
                    return projector.result
            projector.flush()
            return None
        except BaseException:
            for _, future in pending:
                future.cancel()
            raise
        finally:
            projector.close()


def _stitch(projector: ExportProjector, maker: RecordMaker, result: _Range) -> bool:
    """Write one range's records in journal order; True once the export is sealed."""
    lines, lengths, seqs, leaves, deferred, still_open, run, completed = result
    assert type(lines) is bytes  # the caller took them out of the slot
    if run:
        maker.run = run
    done = at = 0  # records and bytes of lines written
    for index, event in deferred:  # started in an earlier range: maker.open_states has it
        end = at + sum(lengths[done:index]) + 2 * (index - done)
        projector.add_lines(
            lines[at:end], lengths[done:index], seqs[done:index], leaves[32 * done : 32 * index]
        )
        if event.state_id not in maker.open_states:
            raise _Inconsistent(f"state {event.state_id} completed but never started")
        projector.project(event, b"")
        done, at = index, end
    projector.add_lines(
        lines[at:] if at else lines, lengths[done:], seqs[done:], leaves[32 * done :]
    )
    maker.open_states.update(still_open)
    if completed is not None:
        projector.project(*completed)
        return True
    return False


def _init_worker(payloads: PayloadStore, ring: mmap.mmap) -> None:
    """In a worker (forked: ``payloads`` is the owner's store and ``ring`` the shared
    slots, both inherited, not pickled)."""
    global _worker_payloads, _worker_ring
    payloads.forked_reader()
    _worker_payloads = payloads
    _worker_ring = ring


def _project_range(
    journal: RunJournal,
    run_id: str,
    start: JournalPosition,
    count: int | None,
    include_payloads: bool,
    slot: int,
) -> _Range:
    """A worker's part: the records of ``count`` entries from ``start`` (or to the end),
    left in the shared ring's ``slot`` when they fit."""
    assert _worker_payloads is not None and _worker_ring is not None
    maker = RecordMaker(run_id, _worker_payloads.get if include_payloads else None)
    open_states = maker.open_states
    make = maker.records
    lines = bytearray()
    lengths: list[int] = []
    seqs: list[int] = []
    leaves = bytearray()
    deferred: list[tuple[int, NodeStateCompleted]] = []
    completed: tuple[RunCompleted, bytes] | None = None
    read = 0
    reader = journal.cursor(start)
    try:
        while completed is None and (count is None or read < count):
            chains: list[bytes] = []
            limit = _POLL if count is None else min(_POLL, count - read)
            events = reader.poll(limit=limit, chains=chains)
            if not events:
                break
            read += len(events)
            for index, event in enumerate(events):
                if type(event) is NodeStateCompleted and event.state_id not in open_states:
                    deferred.append((len(lengths), event))
                    continue
                if type(event) is RunCompleted:
                    completed = (event, chains[index])
                    break
                for seq, record in make(event):
                    lines += b","
                    lines += record
                    lines += b"\n"
                    lengths.append(len(record))
                    seqs.append(seq)
                    leaves += leaf_hash(record)
    finally:
        reader.close()
    if count is not None and read != count and completed is None:
        raise _Inconsistent(f"range from seq {start.next_seq}: {read} of {count} entries")
    size = len(lines)
    if size <= _SLOT_BYTES:
        at = slot * _SLOT_BYTES
        _worker_ring[at : at + size] = lines
    return (
        size if size <= _SLOT_BYTES else bytes(lines),
        lengths,
        seqs,
        bytes(leaves),
        deferred,
        dict(open_states),
        maker.run,
        completed,
    )
