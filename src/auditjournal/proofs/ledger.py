"""The store ledger: a store-wide, append-only Merkle log of every sealed output.

Layout under ``<root>/ledger/``::

    origin                        the log's name (C2SP origin), written once
    entries.jsonl                 one entry per line, canonical JSON (RFC 8785)
    checkpoint                    the latest checkpoint (C2SP tlog-checkpoint note)
    checkpoints/<size>.checkpoint every checkpoint ever written (size zero-padded, 20 digits)

Every sealed export and CSV export appends a :class:`LedgerEntry` (kind, run
id, path, sha256 of the manifest or listing, Merkle root, record count,
sealed_at); an import (``import-landscape``) appends one more, of kind ``import``,
for the export its run was sealed with. The Merkle tree over the entry lines is RFC 9162's (leaf =
SHA-256(0x00 || line without its newline)); after each append a checkpoint
(origin, tree size, root) is written as a C2SP signed note with the store's
Ed25519 key, or as its text alone when no key is set (then it is unsigned and
``verify-store`` says so).

Crash-safe like the journal: the entry line is written and fsynced before the
checkpoint; a line torn by a crash (no newline yet) is cut off by the next
writer, and a checkpoint a crash kept from being written is written by the
next writer, before it appends. Appends are idempotent: an entry equal to the
latest one for the same (kind, run, path) is not appended again, so a seal
re-done after a crash is recorded once. Writers in several processes take
turns under an exclusive ``flock`` on ``ledger/.lock``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import msgspec

from ..errors import AuditJournalError, MalformedEvidenceError
from ..fs.safeio import decode_strict, read_regular, real_dir
from ..fs.storage import atomic_write, fsync_dir, open_file, storage_error
from ..model.canonical import canonical_json
from .merkle import MerkleBuilder, leaf_hash
from .signednote import Checkpoint, NoteSigner, read_checkpoint, sign_checkpoint

__all__ = [
    "LEDGER_DIR",
    "LEDGER_KEY_ENV",
    "Ledger",
    "LedgerEntry",
    "LedgerPaths",
    "LedgerState",
    "checkpoint_name",
    "entry_path",
    "ledger_key_file",
    "new_origin",
    "parse_ledger",
    "read_ledger",
]

_log = logging.getLogger("auditjournal")

LEDGER_DIR: Final = "ledger"
LEDGER_KEY_ENV: Final = "AUDITJOURNAL_LEDGER_KEY_FILE"
MAX_LEDGER_BYTES: Final = 1 << 30
_ORIGIN_PREFIX: Final = "auditjournal.ledger/"

EntryKind = Literal["export", "csv", "import"]


class LedgerEntry(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True
):
    """One sealed output. ``path``: the manifest (export, import) or the ``sha256`` listing
    (csv), relative to the store root when inside it, else absolute. ``manifest_sha256``:
    that file's SHA-256. ``merkle_root``/``sealed_at``: the export manifest's (None for
    csv). ``import``: the export an imported run was sealed with, recorded by the import
    (beside the seal's own ``export`` entry), so the ledger says which runs came in that way.
    ``store``: the store root the output was sealed in (its ``ledger/store`` id), set only in
    the ledger of a PostgreSQL journal database, which several roots share; omitted (not
    in the hashed line) otherwise."""

    kind: EntryKind
    run_id: str
    path: str
    manifest_sha256: str
    merkle_root: str | None
    record_count: int
    sealed_at: str | None
    store: str | None = None

    def line(self) -> bytes:
        """The entry as its ledger line: canonical JSON (RFC 8785), the bytes that are hashed."""
        return canonical_json(msgspec.to_builtins(self))

    @property
    def key(self) -> tuple[str, str, str, str | None]:
        """``(kind, run_id, path, store)``: what the entry is about; an entry equal to the
        latest one with its key is not appended again."""
        return (self.kind, self.run_id, self.path, self.store)


@dataclass(frozen=True)
class LedgerPaths:
    root: Path  # the store root

    @property
    def directory(self) -> Path:
        return self.root / LEDGER_DIR

    @property
    def origin(self) -> Path:
        return self.directory / "origin"

    @property
    def entries(self) -> Path:
        return self.directory / "entries.jsonl"

    @property
    def checkpoint(self) -> Path:
        return self.directory / "checkpoint"

    @property
    def checkpoints(self) -> Path:
        return self.directory / "checkpoints"

    @property
    def lock(self) -> Path:
        return self.directory / ".lock"


def checkpoint_name(size: int) -> str:
    return f"{size:020d}.checkpoint"


@dataclass
class LedgerState:
    """The ledger as read: entries in order, their leaf hashes, and a torn tail if any."""

    origin: str
    entries: list[LedgerEntry] = field(default_factory=list)
    leaves: list[bytes] = field(default_factory=list)
    good_bytes: int = 0  # bytes of complete lines
    torn_bytes: int = 0  # bytes after the last newline

    @property
    def size(self) -> int:
        return len(self.entries)

    def root(self, size: int | None = None) -> bytes:
        builder = MerkleBuilder()
        for leaf in self.leaves[: self.size if size is None else size]:
            builder.add(leaf)
        return builder.root()

    def latest(self) -> dict[tuple[str, str, str, str | None], LedgerEntry]:
        """The latest entry for each (kind, run id, path): what the files must match."""
        return {entry.key: entry for entry in self.entries}


def read_ledger(root: Path) -> LedgerState | None:
    """The ledger of the store at ``root`` (None if it has none yet).

    A line that is not the canonical JSON of a :class:`LedgerEntry` is
    :class:`MalformedEvidenceError` naming it; bytes after the last newline are
    a torn tail (counted, not an error: the writer cuts them, ``verify-store`` reports them).
    """
    paths = LedgerPaths(root)
    try:
        origin = read_regular(paths.origin, "ledger origin", 4096).decode("utf-8", "replace")
    except FileNotFoundError:
        if paths.entries.exists() or paths.checkpoint.exists():
            raise MalformedEvidenceError(f"{paths.origin} is missing") from None
        return None
    origin = origin.rstrip("\n")
    try:
        data = read_regular(paths.entries, "ledger", MAX_LEDGER_BYTES)
    except FileNotFoundError:
        data = b""
    return parse_ledger(origin, data)


def parse_ledger(origin: str, data: bytes) -> LedgerState:
    """The ledger of ``origin`` whose entry lines (each ending in a newline) are ``data``."""
    state = LedgerState(origin)
    end = data.rfind(b"\n") + 1
    state.good_bytes, state.torn_bytes = end, len(data) - end
    for number, line in enumerate(data[:end].split(b"\n")[:-1], 1):
        what = f"ledger entry {number}"
        entry = decode_strict(line, what, LedgerEntry)
        if entry.line() != line:
            raise MalformedEvidenceError(f"{what} is not canonical JSON")
        state.entries.append(entry)
        state.leaves.append(leaf_hash(line))
    return state


class Ledger:
    """Appends to the ledger of the store at ``root``; signs checkpoints with ``signer``
    (None: unsigned). Cheap to make; every append reads the ledger under the lock."""

    def __init__(self, root: Path, key_file: Path | None = None) -> None:
        self.paths = LedgerPaths(root)
        self._key_file = key_file
        self._signer: NoteSigner | None = None

    @property
    def signed(self) -> bool:
        """True when the ledger's checkpoints are signed (opened with a key file)."""
        return self._key_file is not None

    @property
    def key_file(self) -> Path | None:
        """The private key that signs the checkpoints (another process opens it again)."""
        return self._key_file

    def append(self, entry: LedgerEntry) -> bool:
        """Append ``entry`` (unless it is already the latest for its key) and write a
        checkpoint; True if appended. :class:`StorageError` if the ledger cannot be written."""
        paths = self.paths
        real_dir(paths.root, LEDGER_DIR)
        real_dir(paths.directory, "checkpoints")
        with self._locked():
            origin = self._origin()
            state = read_ledger(paths.root)
            assert state is not None
            if state.torn_bytes:
                self._truncate(state.good_bytes)
            appended = state.latest().get(entry.key) != entry
            if appended:
                line = entry.line()
                self._write_line(line)
                state.entries.append(entry)
                state.leaves.append(leaf_hash(line))
            self._checkpoint(origin, state)
            return appended

    def catch_up(self) -> None:
        """Write a checkpoint a crash kept from being written (and cut a torn line).

        Nothing is locked or written when the ledger is whole (a store opened only to
        read, even read-only, is left alone); a ledger that cannot be read or repaired
        is logged, not raised: ``verify-store`` reports it, and the next append fails."""
        if not self.paths.origin.exists():
            return
        try:
            state = read_ledger(self.paths.root)
            if state is None or (not state.torn_bytes and self._current_size() == state.size):
                return
            with self._locked():
                state = read_ledger(self.paths.root)
                if state is None:
                    return
                if state.torn_bytes:
                    self._truncate(state.good_bytes)
                self._checkpoint(state.origin, state)
        except AuditJournalError as exc:
            _log.warning("the store ledger needs repair and could not be repaired: %s", exc)

    def _current_size(self) -> int | None:
        try:
            data = read_regular(self.paths.checkpoint, "ledger checkpoint", 1 << 20)
            return read_checkpoint(data)[0].size
        except (FileNotFoundError, AuditJournalError):
            return None

    # -- inside the lock --------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            fd = open_file(self.paths.lock, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise storage_error(exc, f"cannot open {self.paths.lock}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # other writers append one entry each: wait
            yield
        finally:
            os.close(fd)

    def _origin(self) -> str:
        path = self.paths.origin
        if not path.exists():
            atomic_write(path, (new_origin() + "\n").encode())
        return read_regular(path, "ledger origin", 4096).decode().rstrip("\n")

    def _truncate(self, size: int) -> None:
        try:
            fd = open_file(self.paths.entries, os.O_WRONLY)
            try:
                os.ftruncate(fd, size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise storage_error(exc, f"cannot repair {self.paths.entries}") from None

    def _write_line(self, line: bytes) -> None:
        path = self.paths.entries
        new = not path.exists()
        try:
            fd = open_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                start = os.fstat(fd).st_size
                try:
                    data = line + b"\n"
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, start)  # leave no partial line behind
                    raise
            finally:
                os.close(fd)
            if new:
                fsync_dir(path.parent)
        except OSError as exc:
            raise storage_error(exc, f"cannot append to {path}") from None

    def _note(self, origin: str, state: LedgerState) -> bytes:
        """The checkpoint of ``state``: signed with the key, else its text alone."""
        checkpoint = Checkpoint(origin, state.size, state.root())
        signer = self._load_signer(origin)
        return checkpoint.text().encode() if signer is None else sign_checkpoint(checkpoint, signer)

    def _checkpoint(self, origin: str, state: LedgerState) -> None:
        data = self._note(origin, state)
        archived = self.paths.checkpoints / checkpoint_name(state.size)
        if not archived.exists():
            atomic_write(archived, data)
        try:
            current = read_regular(self.paths.checkpoint, "ledger checkpoint", 1 << 20)
        except FileNotFoundError:
            current = b""
        if current != data:
            atomic_write(self.paths.checkpoint, data)

    def _load_signer(self, origin: str) -> NoteSigner | None:
        if self._key_file is None:
            return None
        if self._signer is None or self._signer.name != origin:
            self._signer = NoteSigner.from_pem_file(origin, self._key_file)
        return self._signer


def new_origin() -> str:
    """A new ledger's C2SP origin (its name, and the name of the key that signs it)."""
    return _ORIGIN_PREFIX + secrets.token_hex(8)


def ledger_key_file(explicit: str | os.PathLike[str] | None) -> Path | None:
    """The store's ledger key: the one given, else ``$AUDITJOURNAL_LEDGER_KEY_FILE``, else None."""
    if explicit is not None:
        return Path(explicit)
    value = os.environ.get(LEDGER_KEY_ENV)
    return Path(value) if value else None


def entry_path(root: Path, path: Path) -> str:
    """How an entry names a file: relative to the store root when inside it, else absolute."""
    absolute = Path(os.path.abspath(path))
    base = Path(os.path.abspath(root))
    if absolute.is_relative_to(base):
        return absolute.relative_to(base).as_posix()
    return str(absolute)
