"""``verify-store``: check a store's ledger against its runs (and against an earlier checkpoint).

Checks, each one line (``valid`` / ``INVALID: reason``):

* the ledger: every entry line is the canonical JSON of an entry, no torn tail;
* its latest checkpoint and every archived one: a well-formed C2SP checkpoint of
  the ledger's origin whose tree (size, root) is the ledger's (the latest) or a
  prefix of it (archived ones), signed by the given public key (``--public-key``);
* every entry (the latest per kind, run and file): its run directory exists, its
  file exists and has the SHA-256 the entry names, and an export manifest carries
  the entry's run id, Merkle root, record count and ``sealed_at`` (an ``import``
  entry names the export an imported run was sealed with: checked the same way);
* every run directory holding a sealed export manifest is in the ledger;
* with ``since``: the ledger is consistent with that earlier checkpoint (RFC 9162
  consistency proof from its size to the ledger's), so runs removed or rewritten
  after it -- even with the ledger rolled back and re-grown -- are found.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final

import msgspec

from ..errors import AuditJournalError, JournalUnavailableError, MalformedEvidenceError
from ..fs.safeio import MAX_MANIFEST_BYTES, decode_strict, read_regular
from ..journal.pgbackend import PgDatabase
from ..proofs.ledger import (
    LedgerEntry,
    LedgerPaths,
    LedgerState,
    checkpoint_name,
    parse_ledger,
    read_ledger,
)
from ..proofs.merkle import MerkleBuilder, consistency_proof, verify_consistency
from ..proofs.pgledger import read_store_id
from ..proofs.signednote import Checkpoint, NoteVerifier, open_checkpoint, read_checkpoint

__all__ = ["StoreCheck", "StoreReport", "verify_store"]

_MAX_NOTE: Final = 1 << 20
_MANIFEST_NAME: Final = "audit_trail.manifest.json"


class _ManifestHead(msgspec.Struct):
    run_id: str
    merkle_root: str
    total_record_count: int
    sealed_at: str


@dataclass
class StoreCheck:
    subject: str
    ok: bool
    reason: str = ""

    def line(self) -> str:
        return f"{self.subject}: {'valid' if self.ok else 'INVALID: ' + self.reason}"


@dataclass
class StoreReport:
    """Everything ``verify-store`` found; ``ok`` only if every check passed."""

    root: str
    checks: list[StoreCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tree_size: int = 0
    tree_root: str = ""
    signed: bool = False

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.ok for c in self.checks)

    def add(self, subject: str, reason: str | None) -> None:
        """Record a check of ``subject``: passed if ``reason`` is None, else failed for it."""
        self.checks.append(StoreCheck(subject, reason is None, reason or ""))

    def summary(self) -> str:
        """One line for people: the verdict, the ledger's size and root."""
        bad = sum(not c.ok for c in self.checks)
        verdict = "VALID" if not bad else f"INVALID ({bad} problem{'s' * (bad != 1)})"
        return (
            f"store {self.root}: {verdict}; ledger of {self.tree_size} entries, "
            f"root {self.tree_root or '-'}"
        )

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (what ``verify-store --json`` prints)."""
        return {
            "root": self.root,
            "ok": self.ok,
            "tree_size": self.tree_size,
            "tree_root": self.tree_root,
            "signed": self.signed,
            "notes": self.notes,
            "checks": [{"subject": c.subject, "ok": c.ok, "reason": c.reason} for c in self.checks],
        }


def verify_store(
    root: Path,
    *,
    public_key: Path | None = None,
    since: Path | None = None,
    journal_url: str | None = None,
) -> StoreReport:
    """Check the store at ``root`` (see the module docstring). ``public_key``: the PEM
    Ed25519 key the checkpoints must be signed with; ``since``: an earlier checkpoint file;
    ``journal_url``: the store's PostgreSQL journal database, whose ledger is checked (the
    entries of the other roots sharing it are counted, not checked)."""
    report = StoreReport(str(root))
    notes: list[tuple[str, bytes | str | None]] = []
    store: str | None = None
    # A database that cannot be reached, or holds no journal, is not evidence: its error
    # (JournalUnavailableError, InvalidSettingsError, ...) goes to the caller, not into
    # the report as an INVALID ledger. Opened read-only: checking never creates tables.
    database = None if journal_url is None else PgDatabase(journal_url, create=False)
    try:
        if database is None:
            state = read_ledger(root)
            if state is not None:
                notes = _checkpoint_files(LedgerPaths(root))
        else:
            state, notes = _pg_ledger(database)
            store = read_store_id(root)
    except JournalUnavailableError:
        raise
    except AuditJournalError as exc:
        report.add("ledger", str(exc))
        state = None
    else:
        if state is None:
            report.notes.append("the store has no ledger yet (nothing was sealed)")
        elif state.torn_bytes:
            report.add(
                "ledger",
                f"it ends in {state.torn_bytes} bytes of a partial entry (truncated or torn)",
            )
        else:
            report.add("ledger", None)
    verifier = None
    if state is not None:
        report.tree_size = state.size
        report.tree_root = state.root().hex()
        if public_key is not None:
            verifier = NoteVerifier.from_pem_file(state.origin, public_key)
        _check_checkpoints(report, notes, state, verifier, pg=journal_url is not None)
        _check_entries(report, root, state, store, pg=journal_url is not None)
    _check_sealed_runs(report, root, state, store)
    if since is not None:
        _check_since(report, since, state, verifier)
    return report


def _checkpoint_files(paths: LedgerPaths) -> list[tuple[str, bytes | str | None]]:
    """The file ledger's checkpoints, the latest first: (subject, its bytes, or why it
    cannot be read, or None if it is missing)."""
    archived = sorted(paths.checkpoints.glob("*.checkpoint")) if paths.checkpoints.is_dir() else []
    found: list[tuple[str, bytes | str | None]] = []
    for path in [paths.checkpoint, *archived]:
        try:
            data: bytes | str | None = read_regular(path, "checkpoint", _MAX_NOTE)
        except FileNotFoundError:
            data = None
        except AuditJournalError as exc:
            data = str(exc)
        found.append((os.path.relpath(path, paths.root), data))
    return found


def _pg_ledger(
    db: PgDatabase,
) -> tuple[LedgerState | None, list[tuple[str, bytes | str | None]]]:
    """The journal database's ledger and its checkpoints, the latest first."""
    try:
        read = db.ledger_read()
    finally:
        db.close()
    if read is None:
        return None, []
    origin, lines, checkpoints = read
    state = parse_ledger(origin, b"".join(line + b"\n" for line in lines))
    notes: list[tuple[str, bytes | str | None]] = [
        (f"ledger checkpoint {size}", note) for size, note in reversed(checkpoints)
    ]
    return state, notes or [("ledger checkpoint", None)]


# -- checkpoints ----------------------------------------------------------------------


def _read_checkpoint(
    data: bytes, state: LedgerState, verifier: NoteVerifier | None, report: StoreReport
) -> Checkpoint:
    """A checkpoint of this ledger, its signature checked when a key is given
    (AuditJournalError with the reason otherwise)."""
    checkpoint, note = read_checkpoint(data)
    if checkpoint.origin != state.origin:
        raise MalformedEvidenceError(
            f"it is a checkpoint of {checkpoint.origin!r}, not of this ledger ({state.origin!r})"
        )
    if note is None:
        if verifier is not None:
            raise MalformedEvidenceError("it is unsigned, but a public key was given")
        return checkpoint
    report.signed = True
    if verifier is not None:
        open_checkpoint(data, [verifier])
    return checkpoint


def _check_checkpoints(
    report: StoreReport,
    notes: list[tuple[str, bytes | str | None]],
    state: LedgerState,
    verifier: NoteVerifier | None,
    *,
    pg: bool,
) -> None:
    read: list[tuple[str, Checkpoint]] = []
    for subject, data in notes:
        if data is None or isinstance(data, str):
            report.add(subject, data or "missing")
            continue
        try:
            read.append((subject, _read_checkpoint(data, state, verifier, report)))
        except AuditJournalError as exc:
            report.add(subject, str(exc))
    roots = _prefix_roots(state, {cp.size for _, cp in read})
    for index, (subject, checkpoint) in enumerate(read):
        latest = index == 0
        if checkpoint.size > state.size:
            reason: str | None = (
                f"it is of {checkpoint.size} entries but the ledger has only {state.size} "
                "(entries were removed: truncated or rolled back)"
            )
        elif latest and checkpoint.size != state.size:
            reason = f"it is of {checkpoint.size} entries but the ledger has {state.size} " + (
                "(entries no checkpoint covers: added outside auditjournal)"
                if pg
                else "(entries no checkpoint covers; opening the store with its key re-signs)"
            )
        elif roots[checkpoint.size] != checkpoint.root_hash:
            reason = f"its root is not the ledger's root at {checkpoint.size} entries (rewritten)"
        elif pg and subject != f"ledger checkpoint {checkpoint.size}":
            reason = f"it is the checkpoint of {checkpoint.size} entries, under another size"
        elif (
            not pg
            and not latest
            and subject != f"ledger/checkpoints/{checkpoint_name(checkpoint.size)}"
        ):
            reason = f"it is the checkpoint of {checkpoint.size} entries, under another name"
        else:
            reason = None
        report.add(subject, reason)
    if state.size and report.signed and verifier is None:
        report.notes.append("checkpoint signatures not checked: give --public-key")
    elif not report.signed:
        report.notes.append("the ledger's checkpoints are unsigned (no ledger key was set)")


def _prefix_roots(state: LedgerState, sizes: set[int]) -> dict[int, bytes]:
    builder = MerkleBuilder()
    roots = {0: builder.root()} if 0 in sizes else {}
    for leaf in state.leaves:
        builder.add(leaf)
        if builder.count in sizes:
            roots[builder.count] = builder.root()
    return roots


def _check_since(
    report: StoreReport, since: Path, state: LedgerState | None, verifier: NoteVerifier | None
) -> None:
    subject = f"since {since}"
    if state is None:
        report.add(subject, "the store has no ledger any more")
        return
    try:
        old = _read_checkpoint(
            read_regular(since, "checkpoint", _MAX_NOTE), state, verifier, report
        )
    except FileNotFoundError:
        report.add(subject, "the checkpoint file does not exist")
        return
    except AuditJournalError as exc:
        report.add(subject, str(exc))
        return
    if old.size > state.size:
        report.add(
            subject,
            f"the ledger has {state.size} entries, fewer than the {old.size} of the checkpoint "
            "(rolled back or truncated)",
        )
        return
    proof = consistency_proof(state.leaves, old.size)
    try:
        verify_consistency(old.size, state.size, old.root_hash, state.root(), proof)
    except AuditJournalError as exc:
        report.add(
            subject,
            f"the ledger is not an extension of the checkpoint of {old.size} entries "
            f"(rewritten or rolled back): {exc}",
        )
        return
    report.add(subject, None)


# -- entries and runs -----------------------------------------------------------------


def _entry_file(root: Path, entry: LedgerEntry) -> Path:
    path = PurePosixPath(entry.path)
    if path.is_absolute():
        return Path(path)
    if ".." in path.parts or not path.parts:
        raise MalformedEvidenceError(f"its path {entry.path!r} leaves the store")
    return root.joinpath(*path.parts)


def _check_entries(
    report: StoreReport, root: Path, state: LedgerState, store: str | None, *, pg: bool
) -> None:
    """The entries of this root, checked on it; with ``pg`` (a database's ledger, shared by
    several roots) the entries sealed in other roots are counted: their files are there."""
    elsewhere: set[str | None] = set()
    for entry in state.latest().values():
        if pg and (entry.store is None or entry.store != store):
            elsewhere.add(entry.store)
            continue
        subject = f"{entry.kind} {entry.path}"
        report.add(subject, _entry_problem(root, entry))
    if elsewhere:
        report.notes.append(
            f"entries of {len(elsewhere)} other store root(s) not checked here "
            "(run verify-store on each of them)"
        )


def _entry_problem(root: Path, entry: LedgerEntry) -> str | None:
    run_dir = root / "runs" / entry.run_id
    if "/" in entry.run_id or entry.run_id in ("", ".", "..") or not run_dir.is_dir():
        return f"run {entry.run_id} is in the ledger but its run directory is gone"
    try:
        data = read_regular(_entry_file(root, entry), "sealed file", MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        return f"run {entry.run_id}: the sealed file is gone"
    except AuditJournalError as exc:
        return str(exc)
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.manifest_sha256:
        return (
            f"run {entry.run_id}: its sha256 is {digest}, the ledger recorded "
            f"{entry.manifest_sha256} (replaced or edited)"
        )
    if entry.kind == "csv":
        return None
    try:
        head = decode_strict(data, "manifest", _ManifestHead)
    except AuditJournalError as exc:
        return str(exc)
    mine = (head.run_id, head.merkle_root, head.total_record_count, head.sealed_at)
    theirs = (entry.run_id, entry.merkle_root, entry.record_count, entry.sealed_at)
    if mine != theirs:
        return f"run {entry.run_id}: the manifest does not say what the ledger recorded"
    return None


def _check_sealed_runs(
    report: StoreReport, root: Path, state: LedgerState | None, store: str | None
) -> None:
    """Every run directory with a sealed export manifest is in the ledger (as sealed in
    this root: ``store`` is the root's id for a database's ledger, else None)."""
    known = (
        set()
        if state is None
        else {e.path for e in state.entries if e.kind == "export" and e.store == store}
    )
    runs = root / "runs"
    if not runs.is_dir():
        return
    for run_dir in sorted(runs.iterdir()):
        manifest = run_dir / "export" / _MANIFEST_NAME
        if not manifest.is_file():
            continue
        relative = f"runs/{run_dir.name}/export/{_MANIFEST_NAME}"
        if relative not in known:
            report.add(
                f"run {run_dir.name}",
                "its export is sealed but not in the ledger (added or sealed outside the store)",
            )
