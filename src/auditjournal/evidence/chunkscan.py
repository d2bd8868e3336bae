"""One chunk of a sealed export, checked on its own (verify's streaming scan).

Each chunk is read in blocks (memory stays flat), hashed, split into record lines with
the separators of SPEC section 4, each line's record head checked, and its Merkle leaves
folded into the aligned subtrees of its leaf range; two chunks are scanned at a time, on
threads (the compiled scan) or, for big exports, worker processes (the Python loop).
:mod:`auditjournal.evidence.verify` puts the chunks' results together.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import add
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from ..errors import (
    AuditJournalError,
)
from ..export.chunks import ChunkLines
from ..export.manifest import (
    ChunkEntry,
    Manifest,
)
from ..fs.processes import pool_context
from ..fs.safeio import (
    open_regular,
)
from ..model.canonical import PURE_PYTHON_ENV
from ..model.completeness import OUTCOME_PREFIX, merge_tally, scan_tally
from ..model.recordtypes import RECORD_TYPES
from ..proofs.merkle import leaf_hasher, range_subtrees

__all__ = ["ChunkScan", "scan_chunk", "scan_chunks"]

_Heads = tuple[int, bytes, list[int], dict[str, int], int, int | None, int | None]
_compiled_block: Callable[[bytearray, int, int, bytes, tuple[str, ...], int], _Heads | None] | None
_compiled_subtrees: Callable[[bytes, int], list[tuple[int, bytes]]] | None
try:  # the per-record work of a block in C (setup.py, optional): identical results
    from ._chunkscan_accel import heads as _compiled_block
    from ._chunkscan_accel import subtrees as _compiled_subtrees
except ImportError:  # pragma: no cover - a build without a C compiler or OpenSSL headers
    _compiled_block = _compiled_subtrees = None
if os.environ.get(PURE_PYTHON_ENV):
    _compiled_block = _compiled_subtrees = None

_BLOCK: Final = 4 << 20
_PARALLEL_BYTES: Final = 64 << 20  # the Python loop: smaller exports stay in this process
_WORKERS: Final = 2  # chunks scanned at once (at most: one per core)


class _RecordHead(msgspec.Struct):
    if TYPE_CHECKING:
        record_type: str
    else:  # a known type, checked by msgspec while decoding (cheaper than a set per record)
        record_type: Literal[RECORD_TYPES]
    run_id: str
    seq: int
    outcome: str | None = None  # token_outcome
    status: str | None = None  # node_state (and run)


_HEAD_DECODER: Final = msgspec.json.Decoder(_RecordHead)
_TYPES: Final = tuple(RECORD_TYPES)


_FOREIGN: Final = "line {}: unknown record type or another run's record"


_Subtrees = list[tuple[int, bytes]]


@dataclass(frozen=True)
class ChunkScan:
    """What checking one chunk on its own found."""

    problem: str
    """Empty if the chunk is valid."""
    subtrees: _Subtrees
    """The Merkle subtrees its records fill (:func:`range_subtrees`)."""
    count: int
    """Records read."""
    first: int | None
    last: int | None
    """Seq of its first and last record (None: no record read)."""
    size: int
    """Bytes read."""
    tally: dict[str, int] = field(default_factory=dict)
    """Its completeness counts (:func:`~auditjournal.model.completeness.scan_tally`)."""
    as_listed: bool = False
    """Whether its bytes are the ones the manifest lists (size and sha256)."""


def scan_chunk(
    path: str,
    entry: ChunkEntry,
    run_id: str,
    leaf_offset: int,
    cuts: tuple[int, ...] = (),
    threaded: bool = True,
) -> ChunkScan:
    """Check one chunk against its manifest ``entry``, on its own.

    A plain function of plain values, so a worker process can run it. Its
    records are leaves ``leaf_offset``... of the export's Merkle tree; it returns
    them as the aligned subtrees they fill (:func:`range_subtrees`), so the caller
    folds in a few hashes per chunk, not one per record. With ``threaded`` the
    file's SHA-256 runs on a helper thread (hashlib releases the GIL on big blocks)
    while this thread checks the lines and hashes the tree; the scan pool's threads and
    processes, which already keep every core busy, hash inline. Lines are memoryview
    slices: no copies.
    ``cuts``: leaf counts (live checkpoints) no returned subtree may straddle.
    """
    try:
        fd = open_regular(path, "chunk")
    except FileNotFoundError:
        return ChunkScan("missing", [], 0, None, None, 0, {})
    except AuditJournalError as exc:
        return ChunkScan(str(exc), [], 0, None, None, 0, {})
    hasher = hashlib.sha256()
    scan = _Scan(run_id, leaf_offset, cuts)
    with open(fd, "rb") as fh:
        blocks = _LineBlocks(fh, hasher, threaded)
        for data, end in blocks:
            if not scan.problem and not scan.compiled_block(data, end):
                scan.python_block(data, end)
    problem, lines, count, first, last = scan.problem, scan.lines, scan.count, scan.first, scan.last
    size = blocks.size
    if not problem:
        if blocks.leftover:
            problem = "file does not end with a newline"
        elif not lines.closed:
            problem = "no closing ']' (chunk not sealed or truncated)"
        elif size != entry.bytes:
            problem = f"{size} bytes, manifest says {entry.bytes}"
        elif hasher.hexdigest() != entry.sha256:
            problem = "sha256 does not match the manifest"
        elif count != entry.record_count:
            problem = f"{count} records, manifest says {entry.record_count}"
        elif (first, last) != (entry.first_seq, entry.last_seq):
            listed = f"{entry.first_seq}..{entry.last_seq}"
            problem = f"seq range {first}..{last}, manifest says {listed}"
    as_listed = size == entry.bytes and hasher.hexdigest() == entry.sha256
    return ChunkScan(problem, scan.subtrees, count, first, last, size, scan.tally(), as_listed)


class _Scan:
    """One chunk's scan so far, fed blocks of whole lines: :meth:`python_block` (the
    reference, record by record) or :meth:`compiled_block` (a whole block in a few calls,
    where the optional build is there; it takes a block only if it finds nothing wrong in
    it, so every problem is found and worded by the Python loop)."""

    def __init__(self, run_id: str, leaf_offset: int, cuts: tuple[int, ...]) -> None:
        self.run_id, self.leaf_offset, self.cuts = run_id, leaf_offset, cuts
        self.lines = ChunkLines(strict=True)
        self.problem = ""
        self.count = self.previous = self.open_states = 0
        self.first: int | None = None
        self.last: int | None = None
        self.subtrees: _Subtrees = []  # each block's leaves as aligned subtrees
        self.kinds: list[str] = []  # record types, counted at the end (cheaper per record)
        self.outcomes: list[str | None] = []
        self.leaf_prefix = leaf_hasher()  # copying merkle's primed leaf hash beats a call
        self.type_counts = [0] * len(_TYPES)  # the compiled blocks' records per type
        self.outcome_counts: dict[str, int] = {}  # and their token outcomes' kinds
        try:  # the compiled scan compares the run id's bytes; none: the Python loop
            self.run_id_bytes: bytes | None = run_id.encode()
        except UnicodeEncodeError:
            self.run_id_bytes = None

    def python_block(self, data: bytearray, end: int) -> None:
        """Check the records of ``data[:end]`` one by one (the reference path)."""
        run_id, decode, leaf_prefix = self.run_id, _HEAD_DECODER.decode, self.leaf_prefix
        count, previous, first, last = self.count, self.previous, self.first, self.last
        add_kind, add_outcome = self.kinds.append, self.outcomes.append
        problem = ""
        view = memoryview(data)
        leaves: list[bytes] = []
        add_leaf = leaves.append
        block_start = self.leaf_offset + count
        for record in self.lines.records(data, end, view):
            try:
                head = decode(record)
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
                problem = f"line {count + 2} is not a record: {exc}"
                if str(exc).startswith("Invalid enum value") and "$.record_type" in str(exc):
                    problem = _FOREIGN.format(count + 2)  # as before the Literal
                break
            if head.run_id != run_id:
                problem = _FOREIGN.format(count + 2)
                break
            seq = head.seq
            if seq < previous:
                problem = f"line {count + 2}: seq {seq} goes backwards"
                break
            previous = last = seq
            if first is None:
                first = seq
            kind = head.record_type
            add_kind(kind)
            if kind == "token_outcome":  # one test for most records, not two attributes
                add_outcome(head.outcome)
            elif kind == "node_state" and head.status == "open":  # not operations
                self.open_states += 1
            h = leaf_prefix.copy()
            h.update(record)
            add_leaf(h.digest())
            count += 1
        record = b""  # the records' views are dropped before the buffer is reused
        view.release()
        self.problem = problem or self.lines.problem
        self.count, self.previous, self.first, self.last = count, previous, first, last
        self.subtrees += _cut_subtrees(leaves, block_start, self.cuts)

    def compiled_block(self, data: bytearray, end: int) -> bool:
        """Take the block in one call (True), or leave it untouched (False): no compiled
        part, or something in it the Python loop must find, word or judge (the compiled
        scan takes only records it reads exactly as the head decode does)."""
        if _compiled_block is None or _compiled_subtrees is None or self.run_id_bytes is None:
            return False
        lines = self.lines
        got = _compiled_block(data, end, lines.state, self.run_id_bytes, _TYPES, self.previous)
        if got is None:
            return False
        state, leaves, counts, outcomes, open_states, first, last = got
        self.type_counts = list(map(add, self.type_counts, counts))
        merge_tally(self.outcome_counts, outcomes)
        self.open_states += open_states
        if last is not None:
            if self.first is None:
                self.first = first
            self.previous = self.last = last
        n = len(leaves) // 32
        lines.state = state
        lines.count += n
        start = self.leaf_offset + self.count
        self.subtrees += _cut_packed_subtrees(leaves, start, self.cuts, _compiled_subtrees)
        self.count += n
        return True

    def tally(self) -> dict[str, int]:
        """The chunk's completeness counts, both loops' records together."""
        tally = scan_tally(self.kinds, [o for o in self.outcomes if o is not None], 0)
        merge_tally(tally, {k: n for k, n in zip(_TYPES, self.type_counts, strict=True) if n})
        merge_tally(tally, {OUTCOME_PREFIX + k: n for k, n in self.outcome_counts.items()})
        if self.open_states:
            tally["open_states"] = self.open_states
        return tally


class _LineBlocks:
    """The bytes of an open file as blocks of whole lines, each fed to ``hasher``.

    Yields ``(buffer, end)``: ``buffer[:end]`` is whole lines. One buffer is
    reused (no fresh allocation and page faults per block), so a block must be
    consumed before the next is asked for. Afterwards ``size`` is the file's
    length and ``leftover`` the bytes after its last newline. With ``threaded``
    the hashing of a block overlaps with consuming it.
    """

    def __init__(self, fh: io.BufferedReader, hasher: Any, threaded: bool) -> None:
        self._fh = fh
        self._hasher = hasher
        self._threaded = threaded
        self.size = 0
        self.leftover = 0

    def __iter__(self) -> Iterator[tuple[bytearray, int]]:
        buf = bytearray(_BLOCK)
        kept = 0  # bytes of an unfinished line at the start of buf
        with ThreadPoolExecutor(max_workers=1) as hashing:
            while True:
                if kept == len(buf):  # one line longer than the buffer: grow it
                    buf.extend(bytes(len(buf)))
                with memoryview(buf) as view:
                    read = self._fh.readinto(view[kept:])
                    if not read:
                        break
                    fresh = view[kept : kept + read]
                    hashed = hashing.submit(self._hasher.update, fresh) if self._threaded else None
                    if hashed is None:
                        self._hasher.update(fresh)
                    self.size += read
                    filled = kept + read
                    end = buf.rfind(b"\n", 0, filled) + 1
                    if end:
                        yield buf, end
                    if hashed is not None:
                        hashed.result()
                    fresh.release()
                buf[: filled - end] = buf[end:filled]
                kept = filled - end
        self.leftover = kept


def _cut_subtrees(
    leaves: list[bytes], start: int, cuts: tuple[int, ...]
) -> list[tuple[int, bytes]]:
    """:func:`range_subtrees` of the leaves, split at every cut inside them."""
    out: list[tuple[int, bytes]] = []
    for at, to in _pieces(len(leaves), start, cuts):
        out += range_subtrees(leaves[at:to], start + at)
    return out


def _cut_packed_subtrees(
    leaves: bytes,
    start: int,
    cuts: tuple[int, ...],
    subtrees: Callable[[bytes, int], list[tuple[int, bytes]]],
) -> list[tuple[int, bytes]]:
    """:func:`_cut_subtrees` of leaves packed in one bytes (32 each), by the compiled
    ``subtrees`` (:func:`range_subtrees` of packed leaves)."""
    out: list[tuple[int, bytes]] = []
    for at, to in _pieces(len(leaves) // 32, start, cuts):
        out += subtrees(leaves[32 * at : 32 * to], start + at)
    return out


def _pieces(n: int, start: int, cuts: tuple[int, ...]) -> list[tuple[int, int]]:
    """``range(n)`` (leaves ``start``...) as pieces that no cut falls inside."""
    pieces = []
    at = 0
    for cut in cuts:
        if start + at < cut < start + n:
            pieces.append((at, cut - start))
            at = cut - start
    pieces.append((at, n))
    return pieces


def scan_chunks(
    directory: Path, manifest: Manifest, progress: Callable[[int], None] | None
) -> Iterator[tuple[ChunkEntry, ChunkScan]]:
    """Every chunk's scan, in order; on a second core (threads, or worker processes for
    the Python loop's big exports)."""
    jobs = []
    cuts = tuple(sorted({h.tree_size for h in manifest.checkpoints or ()}))
    offset = 0  # leaf index of the chunk's first record, if the manifest's counts hold
    for c in manifest.chunks:
        jobs.append((str(directory / c.file), c, manifest.run_id, offset, cuts))
        offset += max(c.record_count, 0)
    total = sum(c.bytes for c in manifest.chunks)
    workers = min(os.cpu_count() or 1, _WORKERS)
    if workers < 2 or len(jobs) < 2 or (_compiled_block is None and total < _PARALLEL_BYTES):
        for chunk, job in zip(manifest.chunks, jobs, strict=True):
            result = scan_chunk(*job)
            if progress is not None:
                progress(chunk.bytes)  # as listed: the total is known before (verify_work)
            yield chunk, result
        return
    # The compiled scan and hashlib hold the GIL for a few calls per block, not per record:
    # threads then scan chunks side by side as well as processes would, with no process
    # to start (nor a fork of a big process), so exports of any size get them. The Python
    # loop holds the GIL throughout: it gets worker processes, for big exports only.
    pool: Executor
    if _compiled_block is not None:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify-scan")
    else:
        context, _ = pool_context()  # never a fork of a multi-threaded process
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    with pool:
        pending: deque[Future[ChunkScan]] = deque()
        queued = iter(jobs)
        for chunk in manifest.chunks:
            while len(pending) < 2 * workers:
                upcoming = next(queued, None)
                if upcoming is None:
                    break
                pending.append(pool.submit(scan_chunk, *upcoming, threaded=False))
            result = pending.popleft().result()
            if progress is not None:
                progress(chunk.bytes)  # as listed: the total is known before (verify_work)
            yield chunk, result
