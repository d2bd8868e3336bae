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

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ..errors import (
    AuditJournalError,
    CanonicalizationError,
    ExportNotFoundError,
    MalformedEvidenceError,
    SignatureError,
)
from ..export.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_SUFFIX,
    MERKLE_TREE,
    SHA256SUMS_SUFFIX,
    ExportPaths,
    Manifest,
    encode_manifest,
    prefix_name_of,
    read_manifest,
    sha256sums_text,
)
from ..fs.safeio import (
    MAX_LISTING_BYTES,
    plain_name,
    read_regular,
)
from ..model.completeness import merge_tally
from ..model.settings import ExportSettings
from ..proofs.merkle import MerkleBuilder
from ..proofs.signing import check_signature
from .chunkscan import scan_chunks
from .completeness_check import check_completeness, completeness_note
from .journalcheck import scan_journal
from .timestamp_check import check_timestamp
from .treeheads import check_tree_heads

if TYPE_CHECKING:
    from ..journal.base import RunJournal
    from ..payloads.store import PayloadStore

__all__ = ["FileCheck", "VerifyReport", "find_manifest", "load_manifest", "verify_export"]

_HEX64: Final = re.compile(r"[0-9a-f]{64}")


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
    timestamp: str = "absent"
    completeness: str = "absent"

    @property
    def ok(self) -> bool:
        """True when every file and check passed (chunks, listing, manifest, signature, ...)."""
        return all(c.ok for c in self.checks)

    def summary(self) -> str:
        """One line for people: chunks valid, signature and timestamp state, record count,
        VALID or INVALID."""
        chunks_ok = sum(
            1
            for c in self.checks
            if c.ok and c.file.endswith(".json") and not c.file.endswith(MANIFEST_SUFFIX)
        )
        stamp = "" if self.timestamp == "absent" else f"timestamp {self.timestamp}, "
        unfinished = "without a terminal outcome" in self.completeness
        done = f" ({self.completeness})" if unfinished else ""
        return (
            f"{chunks_ok}/{self.chunk_count} chunks valid, manifest signature {self.signature}, "
            f"{stamp}{self.record_count:,} records: {'VALID' if self.ok else 'INVALID'}{done}"
        )

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (what ``verify --json`` prints), per file."""
        return {
            "ok": self.ok,
            "manifest": str(self.manifest_path),
            "run_id": self.run_id,
            "chunk_count": self.chunk_count,
            "record_count": self.record_count,
            "signature": self.signature,
            "timestamp": self.timestamp,
            "completeness": self.completeness,
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
    journal: tuple[Path | RunJournal, PayloadStore] | None = None,
    public_key: Path | None = None,
    hmac_key: bytes | None = None,
    progress: Callable[[int], None] | None = None,
    require_signature: bool = False,
    tsa_ca: Path | None = None,
) -> VerifyReport:
    """Verify the export at ``export`` (directory or manifest).

    ``journal`` = (the run's journal or its directory, the payload store) adds the
    chain check and the comparison with a fresh projection. With
    ``public_key`` (Ed25519 PEM) or ``hmac_key`` the signature must verify;
    without either it is reported as absent / not checked, unless
    ``require_signature`` (then the manifest is INVALID unless its signature was
    checked and holds). ``progress`` is called with the bytes read: in all
    :func:`verify_work` (the chunks, and with ``journal`` the journal twice: read
    through, then projected afresh), so a bar over that total ends at 100 %.
    ``tsa_ca``: a PEM CA file the RFC 3161 token beside the manifest must verify
    against (then the token must be there).
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

    tsr = ExportPaths(directory / prefix_name).timestamp
    stamp_problem, report.timestamp = check_timestamp(tsr, raw, tsa_ca)
    if stamp_problem is not None or tsr.exists():
        report.checks.append(FileCheck(tsr.name, stamp_problem is None, stamp_problem or ""))
    listing = directory / f"{prefix_name}{SHA256SUMS_SUFFIX}"
    report.checks.append(_check_listing(listing, manifest, raw, manifest_path.name))
    merkle = MerkleBuilder()
    chunk_changed = False  # a chunk's bytes are not the ones the manifest lists
    folded = True  # every chunk's subtrees were hashed at the leaf offset they landed at
    heads = {h.tree_size: h.root for h in manifest.checkpoints or ()}
    prefix_roots: dict[int, str] = {}
    tally: dict[str, int] = {}
    last_seq = 0
    for entry, scan in scan_chunks(directory, manifest, progress):
        problem, count, first, last = scan.problem, scan.count, scan.first, scan.last
        chunk_changed = chunk_changed or not scan.as_listed
        merge_tally(tally, scan.tally)
        if not problem and first is not None and first < last_seq:
            problem = f"first seq {first} goes backwards (the chunk before ends at {last_seq})"
        if folded and count == entry.record_count:
            for width, node in scan.subtrees:
                merkle.add_subtree(width, node)
                if merkle.count in heads:
                    prefix_roots[merkle.count] = merkle.root().hex()
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
    elif heads:
        problems += check_tree_heads(
            heads, prefix_roots, directory, prefix_name, manifest.run_id, public_key
        )
    if folded and not chunk_failed:  # a changed chunk is blamed alone (as above)
        paths = [directory / c.file for c in manifest.chunks]
        problems += check_completeness(manifest.completeness, tally, manifest.run_status, paths)
        report.completeness = completeness_note(manifest.completeness, manifest.run_status)
    if problems and manifest_check.ok:
        manifest_check.ok, manifest_check.reason = False, "; ".join(problems)
    if journal is not None:
        report.checks.extend(
            _check_against_journal(journal, manifest, raw, prefix_name, manifest_path, progress)
        )
    return report


def verify_work(export: Path, journal: RunJournal | None = None) -> int:
    """The bytes :func:`verify_export` reports to ``progress`` for this export: every
    chunk the manifest lists, and the journal's bytes twice with ``journal``.
    (0 for a manifest that cannot be read: verify reports that at once.)"""
    try:
        _raw, manifest = load_manifest(find_manifest(export))
        total = sum(c.bytes for c in manifest.chunks)
    except (OSError, AuditJournalError):
        total = 0
    if journal is not None:
        total += 2 * journal.size_bytes()
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


def _check_against_journal(
    journal: tuple[Path | RunJournal, PayloadStore],
    manifest: Manifest,
    raw: bytes,
    prefix_name: str,
    manifest_path: Path,
    progress: Callable[[int], None] | None = None,
) -> list[FileCheck]:
    # the journal's reader and the projector only here: `auditjournal verify EXPORT` (no
    # journal) starts without importing them
    from ..export.replay import replay_export
    from ..journal.filebackend import as_run_journal

    given, payloads = journal
    run_journal = as_run_journal(given, manifest.run_id)
    # where the store keeps the run's live export (beside a file journal's directory)
    live_dir = given.parent / "export" if isinstance(given, Path) else None
    size = run_journal.size_bytes()  # reported in two steps: read through, projected
    name = f"journal of run {manifest.run_id}"
    payload_check = FileCheck(f"payloads of run {manifest.run_id}", True)
    try:
        problem = scan_journal(run_journal, payloads, raw, manifest_path, live_dir)
    except AuditJournalError as exc:
        return [FileCheck(name, False, str(exc))]
    if progress is not None:
        progress(size)
    if problem[1]:
        payload_check.ok, payload_check.reason = False, problem[1]
    if problem[0]:
        return [FileCheck(name, False, problem[0]), payload_check]
    settings = ExportSettings(
        include_payloads=manifest.include_payloads,
        chunk_size_bytes=manifest.chunk_size_bytes,
        # live checkpoints are at multiples of the setting: the first listed is it
        checkpoint_every_records=manifest.checkpoints[0].tree_size
        if manifest.checkpoints
        else None,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="auditjournal-verify-") as tmp:
            # one level down: the projection's state directory (lock, checkpoint) goes
            # beside its export directory, so inside the temporary one, removed with it
            fresh_prefix = Path(tmp) / "export" / prefix_name
            result = replay_export(
                journal_dir=run_journal,
                run_id=manifest.run_id,
                payloads=payloads,
                settings=settings,
                prefix=fresh_prefix,
            )
            if result is None:
                where = run_journal.where()
                return [
                    FileCheck(name, False, f"{where}: the journal has no run_completed event"),
                    payload_check,
                ]
            fresh = msgspec.json.decode(ExportPaths(fresh_prefix).manifest.read_bytes())
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
