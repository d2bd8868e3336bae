"""Verify a sealed export without trusting anything but its bytes.

Checks, one result per file: the manifest is well-formed; the
``sha256sum`` listing agrees with it; each chunk exists and has the listed
bytes, sha256, record count and seq range, is a JSON array with one record
per line and the separators of SPEC section 4, and every line is a record of
a known type of this run; seqs never go backwards across chunks; no chunk
file is unlisted; the RFC 6962 Merkle root over all record lines matches;
the manifest is byte for byte what the exporter writes for its content.
With a journal it also checks the journal's hash chain up to its last byte,
the pack records (header and data) of every payload the journal names, that
the journal's ``export_sealed`` entry (required for the run's live export)
has this manifest's sha256, and that a fresh projection of the journal gives
the same export.

Streaming: chunks are read in blocks, so memory stays flat whatever their size.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import re
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from ..errors import (
    AuditJournalError,
    CanonicalizationError,
    ExportNotFoundError,
    MalformedEvidenceError,
    SignatureError,
)
from ..export.chunks import ChunkLines
from ..export.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_SUFFIX,
    MERKLE_TREE,
    SHA256SUMS_SUFFIX,
    ChunkEntry,
    ExportPaths,
    Manifest,
    encode_manifest,
    prefix_name_of,
    read_manifest,
    sha256sums_text,
)
from ..export.replay import replay_export
from ..fs.safeio import (
    MAX_LISTING_BYTES,
    open_regular,
    plain_name,
    read_regular,
)
from ..journal.files import JournalReader, segment_name
from ..model.events import ExportFailed, ExportSealed, RunStarted
from ..model.recordtypes import RECORD_TYPES, REF_FIELDS
from ..model.settings import ExportSettings
from ..payloads.store import PayloadStore
from ..proofs.merkle import MerkleBuilder, leaf_hasher, range_subtrees
from ..proofs.signing import check_signature

__all__ = ["FileCheck", "VerifyReport", "find_manifest", "load_manifest", "verify_export"]

_BLOCK: Final = 4 << 20
_PARALLEL_BYTES: Final = 64 << 20  # smaller exports are verified in this process
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_KNOWN_TYPES: Final = frozenset(RECORD_TYPES)
_RETAINED: Final = {
    "source_data_ref": "source_data_retained",
    "input_data_ref": "input_retained",
    "request_ref": "request_retained",
}
"""Required refs that repeat the hash when only the hash was recorded (the flag is false)."""


class _RecordHead(msgspec.Struct):
    record_type: str
    run_id: str
    seq: int


_HEAD_DECODER: Final = msgspec.json.Decoder(_RecordHead)


@dataclass
class FileCheck:
    """The verdict on one file."""

    file: str
    ok: bool
    reason: str = ""

    def line(self) -> str:
        return f"{self.file}: {'valid' if self.ok else 'INVALID: ' + self.reason}"


@dataclass
class VerifyReport:
    """Everything ``verify`` found; ``ok`` only if every check passed."""

    manifest_path: Path
    checks: list[FileCheck] = field(default_factory=list)
    record_count: int = 0
    chunk_count: int = 0
    signature: str = "absent"
    run_id: str = ""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def summary(self) -> str:
        chunks_ok = sum(
            1
            for c in self.checks
            if c.ok and c.file.endswith(".json") and not c.file.endswith(MANIFEST_SUFFIX)
        )
        return (
            f"{chunks_ok}/{self.chunk_count} chunks valid, manifest signature {self.signature}, "
            f"{self.record_count:,} records: {'VALID' if self.ok else 'INVALID'}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "manifest": str(self.manifest_path),
            "run_id": self.run_id,
            "chunk_count": self.chunk_count,
            "record_count": self.record_count,
            "signature": self.signature,
            "files": [{"file": c.file, "valid": c.ok, "reason": c.reason} for c in self.checks],
            "summary": self.summary(),
        }


def find_manifest(export: Path) -> Path:
    """The manifest of an export given as its directory or its manifest file."""
    if export.is_file():
        return export
    if export.is_dir():
        found = sorted(export.glob(f"*{MANIFEST_SUFFIX}"))
        if len(found) == 1:
            return found[0]
        if not found:
            raise ExportNotFoundError(
                f"{export} holds no *{MANIFEST_SUFFIX} (is the export sealed?)"
            )
        raise ExportNotFoundError(f"{export} holds several manifests; name one")
    raise ExportNotFoundError(f"{export} does not exist")


load_manifest = read_manifest
"""The manifest's bytes and parsed form (:func:`auditjournal.export.manifest.read_manifest`)."""


def verify_export(
    export: Path,
    *,
    journal: tuple[Path, PayloadStore] | None = None,
    public_key: Path | None = None,
    hmac_key: bytes | None = None,
    progress: Callable[[int], None] | None = None,
    require_signature: bool = False,
) -> VerifyReport:
    """Verify the export at ``export`` (directory or manifest).

    ``journal`` = (the run's journal directory, the payload store) adds the
    chain check and the comparison with a fresh projection. With
    ``public_key`` (Ed25519 PEM) or ``hmac_key`` the signature must verify;
    without either it is reported as absent / not checked, unless
    ``require_signature`` (then the manifest is INVALID unless its signature was
    checked and holds). ``progress`` is called with the bytes read: in all
    :func:`verify_work` (the chunks, and with ``journal`` the journal twice: read
    through, then projected afresh), so a bar over that total ends at 100 %.
    """
    manifest_path = find_manifest(export)
    report = VerifyReport(manifest_path)
    directory = manifest_path.parent
    prefix_name = prefix_name_of(manifest_path)
    try:
        raw, manifest = load_manifest(manifest_path)
        _check_manifest_fields(manifest)
    except FileNotFoundError:
        report.checks.append(FileCheck(manifest_path.name, False, "missing"))
        return report
    except (MalformedEvidenceError, ValueError) as exc:
        report.checks.append(FileCheck(manifest_path.name, False, f"malformed manifest: {exc}"))
        return report
    except AuditJournalError as exc:  # not a regular file, unreadable
        report.checks.append(FileCheck(manifest_path.name, False, str(exc)))
        return report
    report.run_id = manifest.run_id
    report.chunk_count = manifest.chunk_count
    manifest_check = FileCheck(manifest_path.name, True)
    report.checks.append(manifest_check)
    try:
        report.signature = check_signature(
            msgspec.json.decode(raw), public_key_file=public_key, hmac_key=hmac_key
        )
    except (SignatureError, CanonicalizationError) as exc:  # not signable as it is
        report.signature = "INVALID"
        manifest_check.ok, manifest_check.reason = False, f"signature: {exc}"
    if require_signature and manifest_check.ok and report.signature != "valid":
        manifest_check.ok = False
        manifest_check.reason = f"a signature is required; it is {report.signature}"

    listing = directory / f"{prefix_name}{SHA256SUMS_SUFFIX}"
    report.checks.append(_check_listing(listing, manifest, raw, manifest_path.name))
    merkle = MerkleBuilder()
    chunk_changed = False  # a chunk's bytes are not the ones the manifest lists
    folded = True  # every chunk's subtrees were hashed at the leaf offset they landed at
    last_seq = 0
    for entry, scan in _scan_chunks(directory, manifest, progress):
        problem, count, first, last = scan.problem, scan.count, scan.first, scan.last
        chunk_changed = chunk_changed or not scan.as_listed
        if not problem and first is not None and first < last_seq:
            problem = f"first seq {first} goes backwards (the chunk before ends at {last_seq})"
        if folded and count == entry.record_count:
            for width, node in scan.subtrees:
                merkle.add_subtree(width, node)
        else:
            # a count differs from the manifest's, so later chunks were hashed at the
            # wrong leaf offsets: the root cannot be recomputed (the chunk is INVALID)
            folded = False
        report.record_count += count
        # a changed chunk's own seqs say nothing: go on from where the manifest says it ends
        last_seq = last if scan.as_listed and last is not None else max(last_seq, entry.last_seq)
        report.checks.append(FileCheck(entry.file, not problem, problem))
    listed = {c.file for c in manifest.chunks}
    for path in sorted(directory.glob(f"{prefix_name}*.json")):
        if path.name != manifest_path.name and path.name not in listed:
            report.checks.append(FileCheck(path.name, False, "chunk file not listed in manifest"))
    problems = []
    # a chunk whose bytes are not the ones the manifest lists (changed, cut, removed)
    # explains a count or root that differs: blame it alone, the manifest may be intact.
    # Chunks as listed whose records still do not give the root: the manifest is forged.
    chunk_failed = chunk_changed
    if raw != encode_manifest(msgspec.json.decode(raw)):
        # the signature covers the canonical JSON only: whitespace or member order
        # edits would pass it unnoticed
        problems.append("not byte for byte the layout the exporter writes (edited?)")
    if chunk_failed:
        pass
    elif report.record_count != manifest.total_record_count:
        problems.append(
            f"total_record_count {manifest.total_record_count} "
            f"but chunks hold {report.record_count}"
        )
    if chunk_failed:
        pass
    elif not folded:
        problems.append("Merkle root not recomputed: chunk record counts differ from the manifest")
    elif merkle.root().hex() != manifest.merkle_root:
        problems.append("Merkle root does not match the records")
    if problems and manifest_check.ok:
        manifest_check.ok, manifest_check.reason = False, "; ".join(problems)
    if journal is not None:
        report.checks.extend(
            _check_against_journal(journal, manifest, raw, prefix_name, manifest_path, progress)
        )
    return report


def verify_work(export: Path, journal_dir: Path | None = None) -> int:
    """The bytes :func:`verify_export` reports to ``progress`` for this export: every
    chunk the manifest lists, and the journal's bytes twice with ``journal_dir``.
    (0 for a manifest that cannot be read: verify reports that at once.)"""
    try:
        _raw, manifest = load_manifest(find_manifest(export))
        total = sum(c.bytes for c in manifest.chunks)
    except (OSError, AuditJournalError):
        total = 0
    if journal_dir is not None:
        total += 2 * _journal_bytes(journal_dir)
    return total


def _journal_bytes(journal_dir: Path) -> int:
    total = 0
    for path in journal_dir.glob("*.jsonl"):
        try:
            total += path.lstat().st_size
        except OSError:
            continue
    return total


def _check_manifest_fields(m: Manifest) -> None:
    if m.format != MANIFEST_FORMAT:
        raise ValueError(f"unknown format {m.format!r}")
    if m.chunk_count != len(m.chunks):
        raise ValueError(f"chunk_count {m.chunk_count} but {len(m.chunks)} chunks listed")
    if m.merkle_tree != MERKLE_TREE or not _HEX64.fullmatch(m.merkle_root):
        raise ValueError("merkle_tree/merkle_root malformed")
    names = [plain_name(c.file, "chunk file") for c in m.chunks]
    if len(set(names)) != len(names):
        raise ValueError("chunk file names are duplicated")
    for c in m.chunks:
        if not _HEX64.fullmatch(c.sha256):
            raise ValueError(f"chunk {c.file}: sha256 malformed")


def _check_listing(path: Path, manifest: Manifest, raw: bytes, manifest_name: str) -> FileCheck:
    """The ``sha256sum`` listing: every chunk, then the manifest."""
    chunks = sha256sums_text(manifest.chunks)
    manifest_line = sha256sums_text([], (manifest_name, raw))
    try:
        actual = read_regular(path, "listing", MAX_LISTING_BYTES)
    except FileNotFoundError:
        return FileCheck(path.name, False, "missing")
    except AuditJournalError as exc:
        return FileCheck(path.name, False, str(exc))
    if actual == chunks + manifest_line:
        return FileCheck(path.name, True)
    rest = actual[len(chunks) :] if actual.startswith(chunks) else b""
    if rest.endswith(f"  {manifest_name}\n".encode()) and rest.count(b"\n") == 1:
        return FileCheck(path.name, False, f"lists another sha256 for {manifest_name}")
    return FileCheck(path.name, False, "does not list exactly the manifest's chunks and hashes")


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
    as_listed: bool = False
    """Whether its bytes are the ones the manifest lists (size and sha256)."""


def _scan_chunk(
    path: str, entry: ChunkEntry, run_id: str, leaf_offset: int, threaded: bool = True
) -> ChunkScan:
    """Check one chunk against its manifest ``entry``, on its own.

    A plain function of plain values, so a worker process can run it. Its
    records are leaves ``leaf_offset``... of the export's Merkle tree; it returns
    them as the aligned subtrees they fill (:func:`range_subtrees`), so the caller
    folds in a few hashes per chunk, not one per record. With ``threaded`` the
    file's SHA-256 runs on a helper thread (hashlib releases the GIL on big blocks)
    while this thread checks the lines and hashes the tree; worker processes, which
    already keep every core busy, hash inline. Lines are memoryview slices: no copies.
    """
    try:
        fd = open_regular(path, "chunk")
    except FileNotFoundError:
        return ChunkScan("missing", [], 0, None, None, 0)
    except AuditJournalError as exc:
        return ChunkScan(str(exc), [], 0, None, None, 0)
    hasher = hashlib.sha256()
    subtrees: _Subtrees = []  # each block's leaves as aligned subtrees (range_subtrees)
    count = previous = 0
    first = last = None
    problem = ""
    lines = ChunkLines(strict=True)
    decode = _HEAD_DECODER.decode
    known = _KNOWN_TYPES
    leaf_prefix = leaf_hasher()  # copying merkle's primed leaf hash beats a call per leaf
    with open(fd, "rb") as fh:
        blocks = _LineBlocks(fh, hasher, threaded)
        for data, end in blocks:
            if problem:
                continue
            view = memoryview(data)
            leaves: list[bytes] = []
            add_leaf = leaves.append
            block_start = leaf_offset + count
            for record in lines.records(data, end, view):
                try:
                    head = decode(record)
                except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
                    problem = f"line {count + 2} is not a record: {exc}"
                    break
                if head.record_type not in known or head.run_id != run_id:
                    problem = f"line {count + 2}: unknown record type or another run's record"
                    break
                seq = head.seq
                if seq < previous:
                    problem = f"line {count + 2}: seq {seq} goes backwards"
                    break
                previous = last = seq
                if first is None:
                    first = seq
                h = leaf_prefix.copy()
                h.update(record)
                add_leaf(h.digest())
                count += 1
            problem = problem or lines.problem
            record = b""  # the records' views are dropped before the buffer is reused
            view.release()
            subtrees += range_subtrees(leaves, block_start)
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
    return ChunkScan(problem, subtrees, count, first, last, size, as_listed)


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


def _scan_chunks(
    directory: Path, manifest: Manifest, progress: Callable[[int], None] | None
) -> Iterator[tuple[ChunkEntry, ChunkScan]]:
    """Every chunk's scan, in order; on a second core (worker processes) for big exports."""
    jobs = []
    offset = 0  # leaf index of the chunk's first record, if the manifest's counts hold
    for c in manifest.chunks:
        jobs.append((str(directory / c.file), c, manifest.run_id, offset))
        offset += max(c.record_count, 0)
    total = sum(c.bytes for c in manifest.chunks)
    workers = min(os.cpu_count() or 1, 2)
    if workers < 2 or total < _PARALLEL_BYTES or len(jobs) < 2:
        for chunk, job in zip(manifest.chunks, jobs, strict=True):
            result = _scan_chunk(*job)
            if progress is not None:
                progress(chunk.bytes)  # as listed: the total is known before (verify_work)
            yield chunk, result
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque[Future[ChunkScan]] = deque()
        queued = iter(jobs)
        for chunk in manifest.chunks:
            while len(pending) < 2 * workers:
                upcoming = next(queued, None)
                if upcoming is None:
                    break
                pending.append(pool.submit(_scan_chunk, *upcoming, False))
            result = pending.popleft().result()
            if progress is not None:
                progress(chunk.bytes)  # as listed: the total is known before (verify_work)
            yield chunk, result


def _check_against_journal(
    journal: tuple[Path, PayloadStore],
    manifest: Manifest,
    raw: bytes,
    prefix_name: str,
    manifest_path: Path,
    progress: Callable[[int], None] | None = None,
) -> list[FileCheck]:
    journal_dir, payloads = journal
    size = _journal_bytes(journal_dir)  # reported in two steps: read through, projected
    name = f"journal of run {manifest.run_id}"
    payload_check = FileCheck(f"payloads of run {manifest.run_id}", True)
    try:
        problem = _scan_journal(journal_dir, manifest.run_id, payloads, raw, manifest_path)
    except AuditJournalError as exc:
        return [FileCheck(name, False, str(exc))]
    if progress is not None:
        progress(size)
    if problem[1]:
        payload_check.ok, payload_check.reason = False, problem[1]
    if problem[0]:
        return [FileCheck(name, False, problem[0]), payload_check]
    settings = ExportSettings(
        include_payloads=manifest.include_payloads, chunk_size_bytes=manifest.chunk_size_bytes
    )
    try:
        with tempfile.TemporaryDirectory(prefix="auditjournal-verify-") as tmp:
            result = replay_export(
                journal_dir=journal_dir,
                run_id=manifest.run_id,
                payloads=payloads,
                settings=settings,
                prefix=Path(tmp) / prefix_name,
            )
            if result is None:
                segments = sorted(journal_dir.glob("*.jsonl"))
                where = segments[-1] if segments else journal_dir
                return [
                    FileCheck(name, False, f"{where}: the journal has no run_completed event"),
                    payload_check,
                ]
            fresh = msgspec.json.decode(ExportPaths(Path(tmp) / prefix_name).manifest.read_bytes())
            if progress is not None:
                progress(size)
    except AuditJournalError as exc:
        return [FileCheck(name, False, str(exc)), payload_check]
    ours = msgspec.json.decode(raw)
    ours.pop("signature", None)
    if fresh != ours:
        differing = sorted(k for k in set(fresh) | set(ours) if fresh.get(k) != ours.get(k))
        return [
            FileCheck(name, False, f"fresh projection differs in {', '.join(differing)}"),
            payload_check,
        ]
    return [FileCheck(name, True), payload_check]


def _scan_journal(
    journal_dir: Path, run_id: str, payloads: PayloadStore, raw: bytes, manifest_path: Path
) -> tuple[str, str]:
    """(journal problem, payload problem) after reading the whole journal.

    Projecting stops at ``run_completed``; this reads on to the last byte, so an
    edited or cut entry after it, or a torn last line, is found too. Every payload
    the journal names must have an intact pack record.
    """
    reader = JournalReader(journal_dir, run_id)
    live_export = False  # run_started asked for a live export
    failed = False
    sealed: list[ExportSealed] = []
    payload_problem = ""
    try:
        for event in reader:
            if type(event) is RunStarted:
                live_export = isinstance(event.settings.get("export"), dict)
            elif type(event) is ExportSealed:
                sealed.append(event)
            elif type(event) is ExportFailed:
                failed = True
            for field_name in REF_FIELDS:
                ref = getattr(event, field_name, None)
                if not getattr(event, _RETAINED.get(field_name, ""), True):
                    continue  # a hash only: the data was not retained, not missing
                if ref is not None and not payload_problem:
                    try:
                        payloads.check_stored(ref)
                    except AuditJournalError as exc:
                        payload_problem = str(exc)
        position = reader.position
    finally:
        reader.close()
    if not payload_problem:
        payload_problem = payloads.check_indexes()
    last = journal_dir / segment_name(position.segment_first_seq)
    if last.exists() and last.stat().st_size != position.offset:
        return (
            f"{last}: ends with an incomplete entry at offset {position.offset} "
            "(truncated or edited)",
            payload_problem,
        )
    digest = hashlib.sha256(raw).hexdigest()
    default = journal_dir.parent / "export" / manifest_path.name
    is_live = _same_file(default, manifest_path) or any(
        _same_file(Path(e.export_path), manifest_path) for e in sealed if e.export_path
    )
    if is_live and (live_export or sealed):
        if not sealed and not failed:
            return (
                f"{last}: no export_sealed entry for this run's live export (last entry removed?)",
                payload_problem,
            )
        if sealed and all(e.manifest_sha256 != digest for e in sealed):
            return (
                f"{last}: the export_sealed entry has another manifest sha256 than this one",
                payload_problem,
            )
    return "", payload_problem


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
