"""``prove-consistency`` / ``verify-consistency``: hold a sealed export to a live checkpoint.

An observer who kept a live checkpoint of a run (``audit_trail.checkpoints/N.checkpoint``)
gets from the operator a proof file: the checkpoint note, the sealed manifest
(its bytes, so its signature can be checked) and the RFC 9162 consistency
proof from the checkpoint's tree size to the sealed tree. ``verify-consistency``
needs nothing else -- no chunk -- to know the sealed export extends exactly what
the checkpoint showed: a record before the checkpoint changed, removed or
reordered after it makes the proof fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from ..errors import (
    AuditJournalError,
    ConsistencyProofError,
    MalformedEvidenceError,
)
from ..export.chunks import iter_chunk_records
from ..export.livecheckpoints import export_origin
from ..fs.safeio import decode_strict, read_regular
from ..proofs.merkle import (
    CompactRange,
    consistency_proof_from_ranges,
    leaf_hash,
    verify_consistency,
)
from ..proofs.signednote import NoteVerifier, open_checkpoint, read_checkpoint
from ..proofs.signing import check_signature
from .verify import find_manifest, load_manifest

__all__ = ["PROOF_FORMAT", "ConsistencyReport", "prove_consistency", "verify_consistency_file"]

PROOF_FORMAT: Final = "auditjournal-consistency/1"
_MAX_PROOF: Final = 64 << 20


class ConsistencyProofFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str
    checkpoint: str  # the kept checkpoint note, as its file holds it
    manifest: str  # the sealed manifest's file, as written
    proof: list[str]  # hex hashes


def prove_consistency(export: Path, checkpoint_file: Path) -> dict[str, Any]:
    """The proof file's content for the export at ``export`` and a kept checkpoint.

    Raises :class:`ConsistencyProofError` when the export does not extend the
    checkpoint (the proof would not verify: that is the finding)."""
    manifest_path = find_manifest(export)
    raw, manifest = load_manifest(manifest_path)
    note = read_regular(checkpoint_file, "checkpoint", 1 << 20)
    checkpoint, _ = read_checkpoint(note)
    if checkpoint.origin != export_origin(manifest.run_id):
        raise ConsistencyProofError(
            f"the checkpoint is of {checkpoint.origin!r}, not of run {manifest.run_id!r}"
        )
    m, n = checkpoint.size, manifest.total_record_count
    if m > n:
        raise ConsistencyProofError(f"the checkpoint has {m} records, the sealed export {n}")
    first, rest = CompactRange(0), CompactRange(m)
    for chunk in manifest.chunks:
        for record in iter_chunk_records(manifest_path.parent / chunk.file):
            (first if first.end < m else rest).add(leaf_hash(record))
    if rest.end != n:
        raise ConsistencyProofError(f"the chunks hold {rest.end} records, the manifest says {n}")
    if first.root() != checkpoint.root_hash:
        raise ConsistencyProofError(
            f"the sealed export's first {m} records are not those of the checkpoint "
            "(changed, removed or reordered since)"
        )
    proof = consistency_proof_from_ranges([first, rest], m, n)
    return {
        "format": PROOF_FORMAT,
        "checkpoint": note.decode("utf-8"),
        "manifest": raw.decode("utf-8"),
        "proof": [h.hex() for h in proof],
    }


@dataclass
class ConsistencyReport:
    ok: bool = False
    run_id: str = ""
    checkpoint_size: int = 0
    sealed_size: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (what ``verify-consistency --json`` prints)."""
        return dict(self.__dict__)

    def summary(self) -> str:
        """One line for people: ``consistent: ...`` or ``INVALID: `` and the problems."""
        if self.ok:
            return (
                f"consistent: the sealed export of run {self.run_id} ({self.sealed_size} records) "
                f"extends the checkpoint of {self.checkpoint_size} records"
            )
        return "INVALID: " + "; ".join(self.problems)


def verify_consistency_file(path: Path, public_key: Path | None = None) -> ConsistencyReport:
    """Check a proof file: the checkpoint's and manifest's signatures (with ``public_key``,
    the export's Ed25519 key) and the consistency proof between them."""
    report = ConsistencyReport()
    try:
        data = decode_strict(read_regular(path, "proof", _MAX_PROOF), "proof", ConsistencyProofFile)
        if data.format != PROOF_FORMAT:
            raise MalformedEvidenceError(f"unknown proof format {data.format!r}")
        note = data.checkpoint.encode("utf-8")
        checkpoint, signed = read_checkpoint(note)
        manifest = decode_strict(data.manifest.encode("utf-8"), "manifest")
        if not isinstance(manifest, dict):
            raise MalformedEvidenceError("the manifest is not a JSON object")
        run_id = str(manifest.get("run_id"))
        sealed_size = manifest.get("total_record_count")
        sealed_root = manifest.get("merkle_root")
        if type(sealed_size) is not int or not isinstance(sealed_root, str):
            raise MalformedEvidenceError("the manifest has no tree size or Merkle root")
        report.run_id, report.checkpoint_size, report.sealed_size = (
            run_id,
            checkpoint.size,
            sealed_size,
        )
        if checkpoint.origin != export_origin(run_id):
            raise ConsistencyProofError(
                f"the checkpoint is of {checkpoint.origin!r}, not of run {run_id!r}"
            )
        if public_key is not None:
            if signed is None:
                raise ConsistencyProofError("the checkpoint is unsigned, but a key was given")
            open_checkpoint(note, [NoteVerifier.from_pem_file(checkpoint.origin, public_key)])
            check_signature(manifest, public_key_file=public_key)
        else:
            report.notes.append("signatures not checked: give --public-key")
        try:
            proof = [bytes.fromhex(h) for h in data.proof]
            root = bytes.fromhex(sealed_root)
        except ValueError:
            raise MalformedEvidenceError("a proof hash or the root is not hex") from None
        verify_consistency(checkpoint.size, sealed_size, checkpoint.root_hash, root, proof)
    except AuditJournalError as exc:
        report.problems.append(str(exc))
        return report
    report.ok = True
    return report
