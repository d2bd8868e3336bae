"""Replay: a fresh export of a run from its journal (``auditjournal replay``, and
``verify --journal``).

A small journal is projected by one :class:`~auditjournal.export.projector.ExportProjector`
in this process, the live export's code. A big one (at least
``_PARALLEL_BYTES``, with two or more cores) is cut at entry boundaries into
ranges of about ``_RANGE_BYTES``. Worker processes (forked while this process has
one thread, so they share the loaded payload index; else started by a fork server,
``fs/processes.py``) each read their range with a
journal cursor (:class:`~auditjournal.journal.base.JournalCursor`) started at it -- every entry's
chain hash checks against the chain value stored in the entry before it, so
ranges verify independently, and together they verify the whole chain -- and
turn its events into encoded records and their Merkle leaf hashes. A worker
leaves its records in a slot of a shared memory ring (an unnamed file mapped by all)
rather than sending them through the pool's pipe, which would copy them four
times and make the processes take turns; only records too big for a slot
travel through the pipe. This process takes the ranges in order and writes
their records through the same projector (chunk rollover, chunk SHA-256,
Merkle tree, seal), so the bytes are exactly those of the single-process
replay.

What a range cannot finish alone is finished here, in journal order: a node
state completed in a later range than it started in (the worker never saw its
start), and ``run_completed`` (it needs the run's ``run_started`` fields and
every still-open state). A run with operations, batches or run-level facts
(field resolutions, contracts, secret resolutions, preflight results) is
replayed in one process: their records need what came before them. If anything
goes wrong in the parallel replay -- a damaged journal, a worker that died -- the
replay starts over in one process, so errors are exactly those the
single-process replay reports.
"""

from __future__ import annotations

import itertools
import mmap
import os
import shutil
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.reduction import DupFd
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, cast

from ..errors import RunNotFoundError
from ..fs.digests import leaf_hashes
from ..fs.processes import anonymous_file, pool_context
from ..journal.base import JournalPosition, RunJournal
from ..journal.filebackend import as_run_journal
from ..model.completeness import merge_tally
from ..model.events import BaseEvent, NodeStateCompleted, RunCompleted
from ..model.landscape_records import STATEFUL_EVENTS
from ..model.records import RecordMaker
from ..model.settings import ExportSettings
from ..payloads.store import PayloadStore
from .projector import ExportPaths, ExportProjector, SealResult

__all__ = ["RECORDED", "replay_export", "replay_settings"]

_PARALLEL_BYTES: Final = 16 << 20  # smaller journals are replayed in this process
_RANGE_BYTES: Final = 1 << 20  # of journal per worker task (~2.3 MB of export, reference)
_MAX_WORKERS: Final = 4
_POLL: Final = 4096
_SLOT_BYTES: Final = 4 << 20  # of shared memory per task in flight (~1.7x a range's records)


@dataclass
class _Range:
    """A worker's result for one range of the journal."""

    lines: bytes | int
    """Its records as lines ("," + record + newline each, back to back), or, as an int,
    how many bytes of them the worker left in the task's slot of the shared ring."""
    lengths: list[int]
    """Each record's length (without "," and newline)."""
    seqs: list[int]
    leaves: bytes
    """The records' Merkle leaf hashes, 32 bytes each."""
    deferred: list[tuple[int, NodeStateCompleted]]
    """Node state completions left for the caller (record index, event): the state
    started in an earlier range."""
    still_open: dict[str, dict[str, Any]]
    """The states still open at the range's end."""
    run: dict[str, Any]
    """``run_started``'s fields (first range only, else empty)."""
    completed: tuple[RunCompleted, bytes] | None
    """``run_completed`` and its chain value, if the range reached it."""
    tally: dict[str, int]
    """The range's completeness counts."""


_worker_payloads: PayloadStore | None = None  # in a worker: its copy of the store
_worker_ring: mmap.mmap | None = None  # in a worker: the shared slots
_worker_slot_bytes = _SLOT_BYTES  # in a worker: the parent's slot size (not its own global)


RECORDED: Final = "recorded"
"""For :func:`replay_settings`: as the run's live export had it."""


def replay_settings(
    recorded: ExportSettings,
    *,
    include_payloads: bool = True,
    chunk_size_bytes: int | Literal["recorded"] | None = RECORDED,
    sign: bool = True,
    signing_key_file: str | None = None,
) -> ExportSettings:
    """The settings of a replay (``auditjournal replay``) of a run whose live export used
    ``recorded``: the same unless told otherwise.

    ``include_payloads=False`` exports refs only (payloads are never added to a run
    exported without them); ``chunk_size_bytes`` another chunk size (``None``: one file);
    ``sign=False`` leaves the manifest unsigned; ``signing_key_file`` signs with that
    Ed25519 key instead (an HMAC-signed run is re-signed with ``$AUDITJOURNAL_SIGNING_KEY``).
    """
    return ExportSettings(
        include_payloads=recorded.include_payloads and include_payloads,
        chunk_size_bytes=(
            recorded.chunk_size_bytes if chunk_size_bytes == RECORDED else chunk_size_bytes
        ),
        sign=None if not sign else ("ed25519" if signing_key_file else recorded.sign),
        signing_key_file=None if not sign else (signing_key_file or recorded.signing_key_file),
        checkpoint_every_records=recorded.checkpoint_every_records,
    )


def replay_export(
    *,
    journal_dir: Path | RunJournal,
    run_id: str,
    payloads: PayloadStore,
    settings: ExportSettings,
    prefix: Path,
    workers: int | None = None,
    range_bytes: int = _RANGE_BYTES,
    progress: Callable[[int], None] | None = None,
) -> SealResult | None:
    """Build a fresh export of a journal at ``prefix``; ``None`` if the run never completed
    (the chunks then hold everything recorded, unsealed).

    ``workers``: processes for a big journal (default: up to 4, one per core;
    ``0`` or ``1``: this process only, whatever the size). ``range_bytes``:
    journal bytes per worker task. ``journal_dir``: the run's journal, or the directory
    of a file journal. ``progress`` is called with journal bytes as they are projected;
    the calls add up to the journal's size (:meth:`RunJournal.size_bytes`).
    """
    journal = as_run_journal(journal_dir, run_id)
    if not journal.exists():
        raise RunNotFoundError(f"no journal for run {run_id!r} at {journal.location}")
    paths = ExportPaths(prefix)
    stale_files = (paths.manifest, paths.sha256sums, paths.checkpoint, paths.legacy_checkpoint)
    for stale in (*stale_files, paths.timestamp):
        stale.unlink(missing_ok=True)
    shutil.rmtree(paths.live_checkpoints, ignore_errors=True)
    if workers is None:
        total = journal.size_bytes()
        workers = min(os.cpu_count() or 1, _MAX_WORKERS) if total >= _PARALLEL_BYTES else 1
    meter = _Meter(journal, progress)
    if workers > 1 and sys.platform == "linux":
        try:
            return _replay_parallel(
                journal, run_id, payloads, settings, prefix, workers, range_bytes, meter
            )
        except Exception:  # a damaged journal, a worker that died, ...
            # start over in one process: it reports what is wrong, as it always does (the
            # meter reports only bytes beyond those already reported: no double count)
            pass
    return _replay_here(journal, run_id, payloads, settings, prefix, meter)


class _Meter:
    """Journal positions as bytes from its start, reported to ``progress`` as they grow."""

    def __init__(self, journal: RunJournal, progress: Callable[[int], None] | None) -> None:
        self._journal = journal
        self._progress = progress
        self.total = 0 if progress is None else journal.size_bytes()
        self._done = 0

    def at(self, position: JournalPosition) -> int:
        return 0 if self._progress is None else self._journal.bytes_before(position)

    def to(self, done: int) -> None:
        """Report up to ``done`` bytes (never back, never past the total)."""
        done = min(done, self.total)
        if self._progress is not None and done > self._done:
            self._progress(done - self._done)
            self._done = done

    def finish(self) -> None:
        self.to(self.total)  # what follows run_completed is read through, not projected


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
    journal: RunJournal,
    run_id: str,
    payloads: PayloadStore,
    settings: ExportSettings,
    prefix: Path,
    meter: _Meter | None = None,
) -> SealResult | None:
    projector = _projector(journal, run_id, payloads, settings, prefix)
    try:
        while projector.result is None and projector.step():
            if meter is not None:
                meter.to(meter.at(projector.position))
        result = projector.result
        if result is None:
            projector.flush()  # everything recorded is in the chunks, unsealed
        if meter is not None:
            meter.finish()
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
    meter: _Meter | None = None,
) -> SealResult | None:
    meter = meter or _Meter(journal, None)
    starts = journal.split(range_bytes)
    ends = [meter.at(s) for s in starts[1:]] + [meter.total]  # where each range ends
    # event count of each range but the last, which reads to the journal's end
    counts: list[int | None] = [b.next_seq - a.next_seq for a, b in itertools.pairwise(starts)]
    counts.append(None)
    if any(c is not None and c <= 0 for c in counts):
        raise _Inconsistent("range starts out of order")
    payloads.flush(fsync=False)  # the workers read the packs from disk
    # fork while single-threaded (the pool forks before the projector starts its I/O
    # thread; the workers inherit the loaded payload index), else a fork server's workers
    context, inherit = pool_context()
    jobs = [
        (journal, run_id, start, count, settings.include_payloads)
        for start, count in zip(starts, counts, strict=True)
    ]
    in_flight = workers + 1  # one queued beyond those being worked on; a slot each
    ring_file = os.fdopen(anonymous_file(in_flight * _SLOT_BYTES), "r+b", buffering=0)
    ring = mmap.mmap(ring_file.fileno(), in_flight * _SLOT_BYTES)  # shared with the workers
    given = (_PayloadsAt.of(payloads), _RingFile(ring_file.fileno()))
    source = (*((payloads, ring) if inherit else given), _SLOT_BYTES)
    with (
        ring_file,
        ring,
        ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=source
        ) as pool,
    ):
        pending: deque[tuple[int, Future[_Range]]] = deque()
        queued = iter(jobs)
        for slot, job in zip(range(in_flight), queued, strict=False):  # range first
            pending.append((slot, pool.submit(_project_range, *job, slot)))
        projector = _projector(journal, run_id, payloads, settings, prefix)
        try:
            maker = projector.maker
            stitched = 0
            while pending:
                slot, future = pending.popleft()
                result = future.result()
                if type(result.lines) is int:  # copied out: the slot is free for the next task
                    at = slot * _SLOT_BYTES
                    result.lines = ring[at : at + result.lines]
                upcoming = next(queued, None)
                if upcoming is not None:
                    pending.append((slot, pool.submit(_project_range, *upcoming, slot)))
                sealed = _stitch(projector, maker, result)
                meter.to(ends[stitched])
                stitched += 1
                if sealed:
                    for _, future in pending:
                        future.cancel()
                    meter.finish()
                    return projector.result
            projector.flush()
            meter.finish()
            return None
        except BaseException:
            for _, future in pending:
                future.cancel()
            raise
        finally:
            projector.close()


def _stitch(projector: ExportProjector, maker: RecordMaker, result: _Range) -> bool:
    """Write one range's records in journal order; True once the export is sealed."""
    lines, lengths, seqs, leaves = result.lines, result.lengths, result.seqs, result.leaves
    merge_tally(maker.tally, result.tally)
    assert type(lines) is bytes  # the caller took them out of the slot
    if result.run:
        maker.run = result.run
    done = at = 0  # records and bytes of lines written
    for index, event in result.deferred:  # started in an earlier range: maker.open_states has it
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
    maker.open_states.update(result.still_open)
    if result.completed is not None:
        projector.project(*result.completed)
        return True
    return False


class _PayloadsAt(NamedTuple):
    """Where a worker that does not inherit the store opens it (reads only)."""

    directory: str
    max_payload_bytes: int

    @classmethod
    def of(cls, payloads: PayloadStore) -> _PayloadsAt:
        return cls(str(payloads.directory), payloads.max_payload_bytes)


class _RingFile:
    """The shared ring for a worker that does not inherit it: its descriptor is
    duplicated into each worker as the worker is started (``DupFd`` while pickled)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, ...]:
        return (_RingFile._inherited, (DupFd(self.fd),))

    @staticmethod
    def _inherited(dup: Any) -> mmap.mmap:
        fd = dup.detach()
        try:
            return mmap.mmap(fd, 0)
        finally:
            os.close(fd)


def _init_worker(
    payloads: PayloadStore | _PayloadsAt, ring: mmap.mmap | _RingFile, slot_bytes: int
) -> None:
    """In a worker: forked, ``payloads`` is the owner's store and ``ring`` the shared slots,
    both inherited, not pickled; else where to open them."""
    global _worker_payloads, _worker_ring, _worker_slot_bytes
    _worker_slot_bytes = slot_bytes
    if isinstance(payloads, PayloadStore):
        payloads.forked_reader()
        _worker_payloads = payloads
    else:
        _worker_payloads = PayloadStore(
            payloads.directory, max_payload_bytes=payloads.max_payload_bytes
        )
    assert isinstance(ring, mmap.mmap)  # a _RingFile arrives mapped
    _worker_ring = ring


def _range_handlers(
    maker: RecordMaker, seqs: list[int], deferred: list[tuple[int, NodeStateCompleted]]
) -> dict[type[BaseEvent], Callable[[Any], list[tuple[int, bytes]]]]:
    """A range's own handling of what it cannot finish alone (RecordMaker.extend's
    ``overrides``): a completion of a state it never saw started is left for the
    caller, ``run_completed`` is left for the caller (no records here), and an event
    that needs earlier ranges stops the parallel replay."""
    open_states = maker.open_states
    make = maker.records

    def state_completed(event: NodeStateCompleted) -> list[tuple[int, bytes]]:
        if event.state_id in open_states:
            return make(event)
        deferred.append((len(seqs), event))
        return []

    def refuse(event: BaseEvent) -> list[tuple[int, bytes]]:
        raise _Inconsistent(f"{type(event).__name__} at seq {event.seq}")

    overrides: dict[type[BaseEvent], Callable[[Any], list[tuple[int, bytes]]]] = {
        NodeStateCompleted: state_completed,
        RunCompleted: lambda event: [],
    }
    for kind in STATEFUL_EVENTS:
        overrides[cast(type[BaseEvent], kind)] = refuse
    return overrides


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
    maker = RecordMaker(
        run_id,
        _worker_payloads.get if include_payloads else None,
        _worker_payloads.window_sources,
    )
    seqs: list[int] = []
    records: list[bytes] = []  # (the Python loop's)
    parts: list[bytes] = []  # (the compiled loop's lines, lengths and leaf hashes)
    lengths: list[int] = []
    leaf_parts: list[bytes] = []
    deferred: list[tuple[int, NodeStateCompleted]] = []
    completed: tuple[RunCompleted, bytes] | None = None
    read = 0
    reader = journal.cursor(start)
    try:
        overrides = _range_handlers(maker, seqs, deferred)
        while completed is None and (count is None or read < count):
            chains: list[bytes] = []
            limit = _POLL if count is None else min(_POLL, count - read)
            events = reader.poll(limit=limit, chains=chains)
            if not events:
                break
            read += len(events)
            # the batch in one call, up to run_completed: as lines with their leaf hashes
            # where the compiled loop is built, else as records
            lined = maker.extend_lines(events, seqs, overrides)
            if lined is None:
                used = maker.extend(events, seqs, records, overrides)
            else:
                used = lined[0]
                parts.append(lined[1])
                lengths += lined[2]
                leaf_parts.append(lined[3])
            if type(events[used - 1]) is RunCompleted:
                completed = (cast(RunCompleted, events[used - 1]), chains[used - 1])
    finally:
        reader.close()
    if count is not None and read != count and completed is None:
        raise _Inconsistent(f"range from seq {start.next_seq}: {read} of {count} entries")
    if records or not parts:  # the Python loop's records: their lines, leaf hashes
        parts = [b"\n,".join([b"", *records, b""])[1:-1]]
        lengths = [len(r) for r in records]
        leaf_parts = [leaf_hashes(records)]
    lines = b"".join(parts) if len(parts) > 1 else parts[0]
    size = len(lines)
    slot_bytes = _worker_slot_bytes
    if size <= slot_bytes:
        at = slot * slot_bytes
        _worker_ring[at : at + size] = lines
    return _Range(
        lines=size if size <= slot_bytes else lines,
        lengths=lengths,
        seqs=seqs,
        leaves=b"".join(leaf_parts),
        deferred=deferred,
        still_open=dict(maker.open_states),
        run=maker.run,
        completed=completed,
        tally=maker.tally,
    )
