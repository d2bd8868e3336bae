"""Self-contained bundles for a subset of an export, with Merkle inclusion proofs.

``extract`` selects records (everything about a row, a token or a node, or
given seqs) from a sealed export and writes one JSON file holding the signed
manifest, the records and, for each, its RFC 6962/9162 inclusion proof
against the manifest's Merkle root. ``verify_bundle`` checks such a file
with nothing else: each record's bytes are re-derived as RFC 8785 canonical
JSON from its parsed value, hashed as a leaf and folded up its audit path;
the result must be the manifest's root, and the manifest's signature must
verify. That is how one row's full story can be handed to a third party.

Memory: extraction keeps one 32-byte leaf hash per record of the export
(64 MB for two million records) to build the proofs, plus the calls, routing
events and artifacts of states whose record has not been read yet (a state's
record is written when it completes, after what it recorded while open).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

import msgspec

from ..errors import (
    AuditJournalError,
    CanonicalizationError,
    EmptySelectionError,
    ExportNotFoundError,
    MalformedEvidenceError,
    SignatureError,
)
from ..export.chunks import iter_chunk_records
from ..export.manifest import Manifest, read_manifest
from ..fs.safeio import MAX_BUNDLE_BYTES, check_canonical, decode_strict, plain_name, read_regular
from ..model.canonical import canonical_json
from ..model.recordtypes import AnyRecord
from ..proofs.merkle import inclusion_proof, leaf_hash, root_from_inclusion_proof
from ..proofs.signing import check_signature
from .verify import find_manifest

__all__ = [
    "BUNDLE_FORMAT",
    "Bundle",
    "BundleCheck",
    "BundleItem",
    "BundleReport",
    "BundleSelection",
    "Selection",
    "extract_bundle",
    "read_bundle",
    "verify_bundle",
]

BUNDLE_FORMAT: Final = "auditjournal-bundle/1"


class BundleSelection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """What the bundle was extracted for (:meth:`Selection.describe`)."""

    row_id: str | None = None
    token_id: str | None = None
    node_id: str | None = None
    seqs: list[int] | None = None


class BundleItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One record of the export, where it is and its RFC 6962 inclusion proof (hex)."""

    index: int
    chunk: str
    record: AnyRecord
    proof: list[str]


class Bundle(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A bundle file, as :func:`extract_bundle` writes it (``schemas/bundle.schema.json``).

    ``manifest`` is the export's manifest as it is (signed); ``tree_size`` its record count."""

    format: str
    manifest: Manifest
    tree_size: int
    selection: BundleSelection
    records: list[BundleItem]


@dataclass(frozen=True)
class Selection:
    """What to extract: a row, a token, a node, or records by seq (any combination)."""

    row_id: str | None = None
    token_id: str | None = None
    node_id: str | None = None
    seqs: frozenset[int] = frozenset()

    def empty(self) -> bool:
        """True when nothing is selected (extracting it is an :class:`EmptySelectionError`)."""
        return not (self.row_id or self.token_id or self.node_id or self.seqs)

    def describe(self) -> dict[str, Any]:
        """The selection as recorded in a bundle's ``selection`` member (only what is set)."""
        out: dict[str, Any] = {}
        for name in ("row_id", "token_id", "node_id"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.seqs:
            out["seqs"] = sorted(self.seqs)
        return out


_Pick = tuple[int, str, dict[str, Any]]  # (leaf index, chunk file, record)


class _Matcher:
    """Decides record by record; selected states pull in their calls, routing and artifacts.

    A state's record is written when the state completes, so the calls (and
    possibly routing events and artifacts) made while it was open come *before*
    it: those wait in ``pending`` until their state's record shows whether it
    is selected.
    """

    def __init__(self, selection: Selection) -> None:
        self.s = selection
        self.states: set[str] = set()  # selected states
        self.seen: set[str] = set()  # states whose record has been read
        self.pending: dict[str, list[_Pick]] = {}

    def __call__(self, pick: _Pick) -> list[_Pick]:
        """The picks this record decides: itself if selected, plus released pending ones."""
        r = pick[2]
        s = self.s
        hit = r.get("seq") in s.seqs
        if s.row_id is not None and r.get("row_id") == s.row_id:
            hit = True
        if s.token_id is not None and r.get("token_id") == s.token_id:
            hit = True
        if s.node_id is not None and s.node_id in (r.get("node_id"), r.get("sink_node_id")):
            hit = True
        state = r.get("state_id")
        if state is None:
            return [pick] if hit else []
        if r.get("record_type") == "node_state":
            self.seen.add(state)
            waiting = self.pending.pop(state, [])
            if not hit:
                return []
            self.states.add(state)
            return [*waiting, pick]
        if hit or state in self.states:
            return [pick]  # calls, routing events and artifacts of a selected state
        if state not in self.seen:
            self.pending.setdefault(state, []).append(pick)
        return []


def extract_bundle(export: Path, selection: Selection) -> dict[str, Any]:
    """The bundle (as a JSON-able dict) of the records ``selection`` picks."""
    if selection.empty():
        raise EmptySelectionError("nothing selected: give a row, token, node or seq")
    manifest_path = find_manifest(export)
    try:
        raw, parsed = read_manifest(manifest_path)
    except FileNotFoundError:
        raise ExportNotFoundError(f"{manifest_path} is missing") from None
    except MalformedEvidenceError as exc:
        raise type(exc)(f"{manifest_path} is not an export manifest ({exc})") from None
    manifest = msgspec.json.decode(raw)  # the signed form, as it is, for the bundle
    files = [plain_name(chunk.file, f"{manifest_path.name}: chunk file") for chunk in parsed.chunks]
    leaves: list[bytes] = []
    picked: list[_Pick] = []
    match = _Matcher(selection)
    for file in files:
        path = manifest_path.parent / file
        try:
            for line in iter_chunk_records(path):
                where = f"{path}: record {len(leaves) + 1} of the export"
                record = decode_strict(line, where)
                if not isinstance(record, dict):
                    raise MalformedEvidenceError(f"{where} is not a record")
                # the bundle's reader re-derives the line from the value: it must be canonical
                check_canonical(line, record, where)
                picked += match((len(leaves), file, record))
                leaves.append(leaf_hash(line))
        except FileNotFoundError:
            raise ExportNotFoundError(f"chunk {path} is missing; run verify first") from None
        except MalformedEvidenceError as exc:
            raise type(exc)(f"{exc}; run verify first") from None
    if len(leaves) != parsed.total_record_count:
        raise MalformedEvidenceError(
            "the chunks do not hold the manifest's records; run verify first"
        )
    picked.sort(key=lambda pick: pick[0])
    return {
        "format": BUNDLE_FORMAT,
        "manifest": manifest,
        "tree_size": len(leaves),
        "selection": selection.describe(),
        "records": [
            {
                "index": index,
                "chunk": file,
                "record": record,
                "proof": [h.hex() for h in inclusion_proof(leaves, index)],
            }
            for index, file, record in picked
        ],
    }


def write_bundle(bundle: dict[str, Any], out: Path) -> None:
    out.write_text(json.dumps(bundle, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def read_bundle(path: Path) -> dict[str, Any]:
    """A bundle file, parsed as evidence: a regular file of at most ``MAX_BUNDLE_BYTES``,
    JSON without a repeated member name anywhere (a record or manifest naming ``status``
    twice reads one way here and another way elsewhere, while its proof would check the
    one we kept), not nested beyond what the parser takes. Anything else raises a
    :class:`MalformedEvidenceError` (or :class:`UnsafePathError`); a missing file is
    ``FileNotFoundError``. Check the result with :func:`verify_bundle`."""
    bundle = decode_strict(read_regular(path, "bundle", MAX_BUNDLE_BYTES), f"bundle {path}")
    if not isinstance(bundle, dict):
        raise MalformedEvidenceError(f"bundle {path} is not a JSON object")
    return bundle


class BundleCheck(NamedTuple):
    """The verdict on one item of a bundle (``manifest``, or a record)."""

    item: str
    ok: bool
    reason: str = ""

    def line(self) -> str:
        return f"{self.item}: {'valid' if self.ok else 'INVALID: ' + self.reason}"


@dataclass
class BundleReport:
    """The verdict on a bundle: one line per record plus the manifest's."""

    lines: list[BundleCheck] = field(default_factory=list)
    signature: str = "absent"

    @property
    def ok(self) -> bool:
        return bool(self.lines) and all(check.ok for check in self.lines)

    def text(self, *, quiet: bool = False) -> list[str]:
        """The report as ``verify-bundle`` prints it: one line per item, then the summary
        (``quiet``: only the items that are not valid, no summary)."""
        lines = [check.line() for check in self.lines if not (quiet and check.ok)]
        return lines if quiet else [*lines, self.summary()]

    def as_dict(self) -> dict[str, Any]:
        """The report as ``verify-bundle --json`` prints it."""
        lines = [{"item": c.item, "valid": c.ok, "reason": c.reason} for c in self.lines]
        return {"ok": self.ok, "lines": lines, "summary": self.summary()}

    def summary(self) -> str:
        good = sum(1 for name, ok, _ in self.lines if ok and name != "manifest")
        total = sum(1 for name, _, _ in self.lines if name != "manifest")
        verdict = "VALID" if self.ok else "INVALID"
        return f"{good}/{total} records proven, manifest signature {self.signature}: {verdict}"


def verify_bundle(
    bundle: dict[str, Any], *, public_key: Path | None = None, hmac_key: bytes | None = None
) -> BundleReport:
    """Check every record's inclusion proof against the (signed) manifest's Merkle root.

    Give it what :func:`read_bundle` returns: a dict parsed by another reader has
    already lost any member the file named twice (and the proof, checked on the
    canonical JSON of the value kept, would pass for a file that says two things)."""
    report = BundleReport()
    manifest = bundle.get("manifest") if isinstance(bundle, dict) else None
    if (
        not isinstance(manifest, dict)
        or bundle.get("format") != BUNDLE_FORMAT
        or not isinstance(bundle.get("records"), list)
    ):
        report.lines.append(BundleCheck("bundle", False, "not an auditjournal bundle"))
        return report
    manifest_ok, reason = True, ""
    try:
        report.signature = check_signature(manifest, public_key_file=public_key, hmac_key=hmac_key)
    except (SignatureError, CanonicalizationError) as exc:  # not signable as it is
        report.signature = "INVALID"
        manifest_ok, reason = False, f"signature: {exc}"
    size = bundle.get("tree_size")
    if type(size) is not int or size != manifest.get("total_record_count"):
        manifest_ok, reason = False, "tree_size differs from the manifest's total_record_count"
    report.lines.append(BundleCheck("manifest", manifest_ok, reason))
    try:
        root = bytes.fromhex(str(manifest.get("merkle_root")))
    except ValueError:
        root = b""
    for item in bundle["records"]:
        report.lines.append(_check_record(item, manifest, size if type(size) is int else 0, root))
    return report


def _check_record(item: Any, manifest: dict[str, Any], size: int, root: bytes) -> BundleCheck:
    if not isinstance(item, dict):
        return BundleCheck("record", False, "not a bundle item")
    record = item.get("record")
    name = f"record #{item.get('index')}"
    if not isinstance(record, dict):
        return BundleCheck(name, False, "no record")
    name = f"{record.get('record_type')} seq {record.get('seq')} (#{item.get('index')})"
    if record.get("run_id") != manifest.get("run_id"):
        return BundleCheck(name, False, "belongs to another run")
    try:
        leaf = leaf_hash(canonical_json(record))
        proof = [bytes.fromhex(h) for h in item.get("proof") or []]
        index = item.get("index")
        if type(index) is not int:
            return BundleCheck(name, False, "index missing")
        computed = root_from_inclusion_proof(leaf, index, size, proof)
    except (ValueError, TypeError, AuditJournalError) as exc:
        return BundleCheck(name, False, f"proof malformed: {exc}")
    if computed != root:
        return BundleCheck(
            name, False, "inclusion proof does not lead to the manifest's Merkle root"
        )
    return BundleCheck(name, True)
