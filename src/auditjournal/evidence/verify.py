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
from ..export.projector import MANIFEST_FORMAT, encode_manifest
from ..export.replay import replay_export
from ..fs.safeio import (
    MAX_LISTING_BYTES,
    MAX_MANIFEST_BYTES,
    decode_strict,
    open_regular,
    plain_name,
    read_regular,
)
from ..journal.files import JournalReader, segment_name
from ..model.events import ExportFailed, ExportSealed, RunStarted
from ..model.records import RECORD_TYPES
from ..model.settings import ExportSettings
from ..payloads.store import PayloadStore
from ..proofs.merkle import MerkleBuilder, range_subtrees
from ..proofs.signing import check_signature

__all__ = ["FileCheck", "VerifyReport", "find_manifest", "load_manifest", "verify_export"]

_BLOCK: Final = 4 << 20
_PARALLEL_BYTES: Final = 64 << 20  # smaller exports are verified in this process
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_KNOWN_TYPES: Final = frozenset(RECORD_TYPES)
_REF_FIELDS: Final = (
    "source_data_ref",
    "input_data_ref",
    "output_data_ref",
    "reason_ref",
    "request_ref",
    "response_ref",
    "sink_input_ref",
    "row_data_ref",  # validation and transform errors (issue 14)
    "aggregation_state_ref",
    "coalesce_state_ref",
)

_RETAINED: Final = {
    "source_data_ref": "source_data_retained",
    "input_data_ref": "input_retained",
    "request_ref": "request_retained",
}
"""Required refs that repeat the hash when only the hash was recorded (the flag is false)."""


class ChunkEntry(msgspec.Struct, forbid_unknown_fields=True):
    file: str
    sha256: str
    bytes: int
    record_count: int
    first_seq: int
    last_seq: int


class JournalHead(msgspec.Struct, forbid_unknown_fields=True):
    seq: int
    chain: str


class Signature(msgspec.Struct, forbid_unknown_fields=True):
    algorithm: str
    key_id: str
    value: str


class Manifest(msgspec.Struct, forbid_unknown_fields=True):
    """The sealed manifest, as ``verify`` requires it to be."""

    format: str
    run_id: str
    run_status: str
    chunk_count: int
    chunk_size_bytes: int | None
    total_record_count: int
    include_payloads: bool
    chunks: list[ChunkEntry]
    journal_head: JournalHead
    merkle_tree: str
    merkle_root: str
    sealed_at: str
    signature: Signature | None = None


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
            if c.ok and c.file.endswith(".json") and not c.file.endswith(".manifest.json")
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
        found = sorted(export.glob("*.manifest.json"))
        if len(found) == 1:
            return found[0]
        if not found:
            raise ExportNotFoundError(f"{export} holds no *.manifest.json (is the export sealed?)")
        raise ExportNotFoundError(f"{export} holds several manifests; name one")
    raise ExportNotFoundError(f"{export} does not exist")


def load_manifest(path: Path) -> tuple[bytes, Manifest]:
    """The manifest file's bytes and their parsed form, read as evidence (a regular file
    only, bounded, no duplicate members, every field of the right type; a missing file is
    ``FileNotFoundError``). The chunk entries are not checked here (:func:`verify_export`
    does)."""
    raw = read_regular(path, "manifest", MAX_MANIFEST_BYTES)
    return raw, decode_strict(raw, f"{path.name}", Manifest)


def verify_export(
    export: Path,
    *,
    journal: tuple[Path, PayloadStore] | None = None,
    public_key: Path | None = None,
    hmac_key: bytes | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Verify the export at ``export`` (directory or manifest).

    ``journal`` = (the run's journal directory, the payload store) adds the
    chain check and the comparison with a fresh projection. With
    ``public_key`` (Ed25519 PEM) or ``hmac_key`` the signature must verify;
    without either it is reported as absent / not checked. ``progress`` is
    called with the bytes read.
    """
    manifest_path = find_manifest(export)
    report = VerifyReport(manifest_path)
    directory = manifest_path.parent
    prefix_name = manifest_path.name[: -len(".manifest.json")]
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

    report.checks.append(_check_listing(directory / f"{prefix_name}.sha256", manifest))
    merkle = MerkleBuilder()
    folded = True  # every chunk's subtrees were hashed at the leaf offset they landed at
    last_seq = 0
    for entry, scan in _scan_chunks(directory, manifest, progress):
        problem, subtrees, count, first, last, _size = scan
        if not problem and first is not None and first < last_seq:
            problem = f"first seq {first} goes backwards (the chunk before ends at {last_seq})"
        if folded and count == entry.record_count:
            for width, node in subtrees:
                merkle.add_subtree(width, node)
        else:
            # a count differs from the manifest's, so later chunks were hashed at the
            # wrong leaf offsets: the root cannot be recomputed (the chunk is INVALID)
            folded = False
        report.record_count += count
        last_seq = last if last is not None else last_seq
        report.checks.append(FileCheck(entry.file, not problem, problem))
    listed = {c.file for c in manifest.chunks}
    for path in sorted(directory.glob(f"{prefix_name}*.json")):
        if path.name != manifest_path.name and path.name not in listed:
            report.checks.append(FileCheck(path.name, False, "chunk file not listed in manifest"))
    problems = []
    if raw != encode_manifest(msgspec.json.decode(raw)):
        # the signature covers the canonical JSON only: whitespace or member order
        # edits would pass it unnoticed
        problems.append("not byte for byte the layout the exporter writes (edited?)")
    if report.record_count != manifest.total_record_count:
        problems.append(
            f"total_record_count {manifest.total_record_count} "
            f"but chunks hold {report.record_count}"
        )
    if not folded:
        problems.append("Merkle root not recomputed: chunk record counts differ from the manifest")
    elif merkle.root().hex() != manifest.merkle_root:
        problems.append("Merkle root does not match the records")
    if problems and manifest_check.ok:
        manifest_check.ok, manifest_check.reason = False, "; ".join(problems)
    if journal is not None:
        report.checks.extend(
            _check_against_journal(journal, manifest, raw, prefix_name, manifest_path)
        )
    return report


def _check_manifest_fields(m: Manifest) -> None:
    if m.format != MANIFEST_FORMAT:
        raise ValueError(f"unknown format {m.format!r}")
    if m.chunk_count != len(m.chunks):
        raise ValueError(f"chunk_count {m.chunk_count} but {len(m.chunks)} chunks listed")
    if m.merkle_tree != "rfc6962-sha256" or not _HEX64.fullmatch(m.merkle_root):
        raise ValueError("merkle_tree/merkle_root malformed")
    names = [plain_name(c.file, "chunk file") for c in m.chunks]
    if len(set(names)) != len(names):
        raise ValueError("chunk file names are duplicated")
    for c in m.chunks:
        if not _HEX64.fullmatch(c.sha256):
            raise ValueError(f"chunk {c.file}: sha256 malformed")


def _check_listing(path: Path, manifest: Manifest) -> FileCheck:
    expected = "".join(f"{c.sha256}  {c.file}\n" for c in manifest.chunks).encode()
    try:
        actual = read_regular(path, "listing", MAX_LISTING_BYTES)
    except FileNotFoundError:
        return FileCheck(path.name, False, "missing")
    except AuditJournalError as exc:
        return FileCheck(path.name, False, str(exc))
    if actual != expected:
        return FileCheck(path.name, False, "does not list exactly the manifest's chunks and hashes")
    return FileCheck(path.name, True)


_Entry = tuple[str, int, str, int, int, int]  # file, bytes, sha256, record_count, first, last
_Subtrees = list[tuple[int, bytes]]
_Scan = tuple[str, _Subtrees, int, int | None, int | None, int]
# problem, Merkle subtrees of its records, record count, first seq, last seq, size


def _scan_chunk(
    path: str, entry: _Entry, run_id: str, leaf_offset: int, threaded: bool = True
) -> _Scan:
    """Check one chunk on its own; return (problem, Merkle subtrees, records, first seq,
    last seq, size).

    A plain function of plain values, so a worker process can run it. Its
    records are leaves ``leaf_offset``... of the export's Merkle tree; it returns
    them as the aligned subtrees they fill (:func:`range_subtrees`), so the caller
    folds in a few hashes per chunk, not one per record. With ``threaded`` the
    file's SHA-256 runs on a helper thread (hashlib releases the GIL on big blocks)
    while this thread checks the lines and hashes the tree; worker processes, which
    already keep every core busy, hash inline. Lines are memoryview slices: no copies.
    """
    _file, expected_bytes, expected_sha, expected_count, expected_first, expected_last = entry
    try:
        fd = open_regular(path, "chunk")
    except FileNotFoundError:
        return "missing", [], 0, None, None, 0
    except AuditJournalError as exc:
        return str(exc), [], 0, None, None, 0
    hasher = hashlib.sha256()
    subtrees: _Subtrees = []  # each block's leaves as aligned subtrees (range_subtrees)
    count = previous = 0
    first = last = None
    problem = ""
    state = "open"  # open -> first (record) -> records -> closed
    leaf_prefix = hashlib.sha256(b"\x00")  # copying a primed hash beats a new one
    decode = _HEAD_DECODER.decode
    known = _KNOWN_TYPES
    with open(fd, "rb") as fh:
        blocks = _LineBlocks(fh, hasher, threaded)
        for data, end in blocks:
            if problem:
                continue
            view = memoryview(data)
            record = view[:0]  # the views are released before the buffer is reused
            leaves: list[bytes] = []
            block_start = leaf_offset + count
            pos = 0
            find = data.find
            while (newline := find(b"\n", pos, end)) >= 0:
                start, pos = pos, newline + 1
                if state != "records":
                    if state == "open":
                        if newline - start != 1 or data[start] != 0x5B:  # "["
                            problem = "first line is not '['"
                            break
                        state = "first"
                        continue
                    if state == "closed":
                        problem = "content after the closing ']'"
                        break
                if newline - start == 1 and data[start] == 0x5D:  # "]"
                    state = "closed"
                    continue
                if state == "first":
                    state = "records"
                elif data[start] == 0x2C:  # ","
                    start += 1
                else:
                    problem = f"record line {count + 1} lacks its leading ','"
                    break
                record = view[start:newline]
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
                leaves.append(h.digest())
                count += 1
            record.release()
            view.release()
            subtrees += range_subtrees(leaves, block_start)
    size = blocks.size
    if not problem:
        if blocks.leftover:
            problem = "file does not end with a newline"
        elif state != "closed":
            problem = "no closing ']' (chunk not sealed or truncated)"
        elif size != expected_bytes:
            problem = f"{size} bytes, manifest says {expected_bytes}"
        elif hasher.hexdigest() != expected_sha:
            problem = "sha256 does not match the manifest"
        elif count != expected_count:
            problem = f"{count} records, manifest says {expected_count}"
        elif (first, last) != (expected_first, expected_last):
            listed = f"{expected_first}..{expected_last}"
            problem = f"seq range {first}..{last}, manifest says {listed}"
    return problem, subtrees, count, first, last, size


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
) -> Iterator[tuple[ChunkEntry, _Scan]]:
    """Every chunk's scan, in order; on a second core (worker processes) for big exports."""
    jobs = []
    offset = 0  # leaf index of the chunk's first record, if the manifest's counts hold
    for c in manifest.chunks:
        entry = (c.file, c.bytes, c.sha256, c.record_count, c.first_seq, c.last_seq)
        jobs.append((str(directory / c.file), entry, manifest.run_id, offset))
        offset += max(c.record_count, 0)
    total = sum(c.bytes for c in manifest.chunks)
    workers = min(os.cpu_count() or 1, 2)
    if workers < 2 or total < _PARALLEL_BYTES or len(jobs) < 2:
        for chunk, job in zip(manifest.chunks, jobs, strict=True):
            result = _scan_chunk(*job)
            if progress is not None:
                progress(result[5])
            yield chunk, result
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque[Future[_Scan]] = deque()
        queued = iter(jobs)
        for chunk in manifest.chunks:
            while len(pending) < 2 * workers:
                upcoming = next(queued, None)
                if upcoming is None:
                    break
                pending.append(pool.submit(_scan_chunk, *upcoming, False))
            result = pending.popleft().result()
            if progress is not None:
                progress(result[5])
            yield chunk, result


def _check_against_journal(
    journal: tuple[Path, PayloadStore],
    manifest: Manifest,
    raw: bytes,
    prefix_name: str,
    manifest_path: Path,
) -> list[FileCheck]:
    journal_dir, payloads = journal
    name = f"journal of run {manifest.run_id}"
    payload_check = FileCheck(f"payloads of run {manifest.run_id}", True)
    try:
        problem = _scan_journal(journal_dir, manifest.run_id, payloads, raw, manifest_path)
    except AuditJournalError as exc:
        return [FileCheck(name, False, str(exc))]
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
            fresh = msgspec.json.decode((Path(tmp) / f"{prefix_name}.manifest.json").read_bytes())
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
            for field_name in _REF_FIELDS:
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
