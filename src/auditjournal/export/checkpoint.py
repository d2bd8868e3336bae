"""The export projector's checkpoint file, ``audit_trail.checkpoint.json`` in the state
directory beside the export (:attr:`ExportPaths.state_dir`): its format, declared once,
how it is read back, and the lock that goes with it (:func:`lock_export`).

The checkpoint is derived data (the export can always be rebuilt from the
journal), so reading it back never fails a projector: a file that is missing,
not a regular file, too big, not JSON of exactly this shape (a member named
twice included), of another version, run or settings, or holding values no
projector writes (a chunk name that leaves the export directory, a hash that is
not hex, a negative size, a Merkle frontier that does not add up to its count,
a journal position the journal does not have) is ignored and the export is
rebuilt from the start of the journal (docs/durability.md).

The file is the state's compact JSON with a ``checksum`` member appended last:
the SHA-256 of the bytes before it (with ``}`` closing them), as a journal
line carries its chain. So any damage to the bytes -- a flipped digit in a
hash or a Merkle node, which would still be a plausible value -- is found and
the export rebuilt, instead of sealed with a wrong root.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import re
from pathlib import Path
from typing import Any, Final

import msgspec

from ..errors import AuditJournalError
from ..fs.safeio import MAX_CHECKPOINT_BYTES, decode_strict, plain_name, read_regular, real_dir
from ..fs.storage import atomic_write, lock_file
from ..journal.base import JournalPosition, RunJournal
from .manifest import ChunkEntry, ExportPaths

__all__ = [
    "CHECKPOINT_VERSION",
    "Checkpoint",
    "encode_checkpoint",
    "load_checkpoint",
    "lock_export",
]

CHECKPOINT_VERSION: Final = 3
_CHECKSUM: Final = b',"checksum":"'
_CHECKSUM_LEN: Final = len(_CHECKSUM) + 64 + len(b'"}')
_HEX64: Final = re.compile(r"[0-9a-f]{64}")


class WriterState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``ChunkWriter.snapshot()``."""

    index: int
    closed: list[ChunkEntry]
    current: ChunkEntry | None
    current_sha256: str
    merkle: list[tuple[int, str]]
    records: int
    tree_heads: list[tuple[int, str]]


class PositionState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    next_seq: int
    segment_first_seq: int
    offset: int
    chain: str


class OpenState(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A node state started and not yet completed (``RecordMaker.open_states``)."""

    state_id: str
    token_id: str
    row_id: str
    node_id: str
    step_index: int
    attempt: int
    input_hash: str
    input_data_ref: str | None
    started_seq: int
    started_at: str
    input_data_retained: bool = True
    """Present (false) only for a hash-only input."""
    context_before: Any = None


class RunFields(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What ``run_started`` gave the run record (``RecordMaker.run``)."""

    started_seq: int
    started_at: str
    config: Any
    config_hash: str
    settings: Any
    canonical_version: str
    redacted: list[str] | None = None


class MakerState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``RecordMaker.snapshot()``: ``run`` holds :class:`RunFields`, or nothing before
    ``run_started`` is projected."""

    open_states: dict[str, OpenState]
    run: dict[str, Any]
    tally: dict[str, int]
    landscape: dict[str, Any] = {}
    """``LandscapeRecords.snapshot()``: open operations and batches, run-level lists."""


class SealedState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``SealResult`` fields."""

    manifest_path: str
    manifest_sha256: str
    chunk_count: int
    record_count: int
    merkle_root: str
    run_status: str
    checkpoints: list[tuple[int, str]]
    timestamp: str


class Checkpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: int
    run_id: str
    settings: dict[str, Any]
    position: PositionState
    writer: WriterState
    records: MakerState
    sealed: SealedState | None
    checksum: str


def encode_checkpoint(state: dict[str, Any]) -> bytes:
    """The checkpoint file's bytes for ``state`` (every :class:`Checkpoint` member but
    ``checksum``, which is appended)."""
    body = msgspec.json.encode(state)
    digest = hashlib.sha256(body).hexdigest().encode()
    return b"".join((body[:-1], _CHECKSUM, digest, b'"}'))


def _checksum_holds(raw: bytes) -> bool:
    suffix = raw[-_CHECKSUM_LEN:]
    if len(raw) <= _CHECKSUM_LEN or not suffix.startswith(_CHECKSUM) or raw[-2:] != b'"}':
        return False
    body = raw[:-_CHECKSUM_LEN] + b"}"
    return hashlib.sha256(body).hexdigest().encode() == suffix[len(_CHECKSUM) : -2]


def load_checkpoint(
    path: Path, *, run_id: str, settings: dict[str, Any], journal: RunJournal
) -> dict[str, Any] | None:
    """The checkpoint at ``path`` as plain values (what the projector wrote), or None when
    it is absent or unusable and the export must be rebuilt."""
    try:
        raw = read_regular(path, "checkpoint", MAX_CHECKPOINT_BYTES)
        if not _checksum_holds(raw):
            return None
        state = decode_strict(raw, f"checkpoint {path}", Checkpoint)
        if state.records.run:
            msgspec.convert(state.records.run, RunFields)
    except (OSError, AuditJournalError, msgspec.ValidationError):
        return None
    if (
        state.version != CHECKPOINT_VERSION
        or state.run_id != run_id
        or state.settings != settings
        or not _plausible(state, journal)
    ):
        return None
    plain: dict[str, Any] = msgspec.to_builtins(state)
    del plain["checksum"]
    return plain


def _plausible(state: Checkpoint, journal: RunJournal) -> bool:
    """Values a projector could have written, and a position the journal has."""
    writer = state.writer
    chunks = [*writer.closed, *([writer.current] if writer.current is not None else [])]
    try:
        for chunk in chunks:
            plain_name(chunk.file, "checkpoint chunk")
    except AuditJournalError:
        return False
    if any(
        min(c.bytes, c.record_count, c.first_seq, c.last_seq) < 0
        or (c.sha256 and not _HEX64.fullmatch(c.sha256))
        for c in chunks
    ):
        return False
    if writer.index < 0 or not _HEX64.fullmatch(writer.current_sha256):
        return False
    if writer.records != sum(c.record_count for c in chunks):
        return False
    sizes = [size for size, _ in writer.merkle]
    if (
        sum(sizes) != writer.records
        or any(size < 1 or size & (size - 1) for size in sizes)
        or any(a <= b for a, b in itertools.pairwise(sizes))
        or not all(_HEX64.fullmatch(node) for _, node in writer.merkle)
        or not all(_HEX64.fullmatch(root) for _, root in writer.tree_heads)
        or any(not 0 < size <= writer.records for size, _ in writer.tree_heads)
    ):
        return False
    p = state.position
    if not _HEX64.fullmatch(p.chain) or min(p.next_seq, p.segment_first_seq, p.offset + 1) < 1:
        return False
    position = JournalPosition(p.next_seq, p.segment_first_seq, p.offset, bytes.fromhex(p.chain))
    return journal.position_exists(position)


def lock_export(paths: ExportPaths, what: str) -> int:
    """Take the export's lock (one projector at a time) in its state directory, created
    here and never through a link; returns the fd that holds it.

    An export written before issue 15 kept its checkpoint and lock inside the export
    directory (``.audit_trail.checkpoint.json``, ``.audit_trail.lock``): the checkpoint
    is moved to the state directory (so the projector resumes from it) and the old lock
    removed, under both locks, so the directory holds only the export afterwards.
    Raises :class:`~auditjournal.errors.JournalLockedError` while another projector
    (of this version or an older one) holds either lock.
    """
    state = paths.state_dir
    if state != Path(os.path.abspath(paths.directory)):
        real_dir(state.parent, state.name)
    fd = lock_file(paths.lock, what)
    try:
        if paths.legacy_lock != paths.lock:
            _move_legacy_state(paths, what)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _move_legacy_state(paths: ExportPaths, what: str) -> None:
    old_lock, old = paths.legacy_lock, paths.legacy_checkpoint
    if not os.path.lexists(old_lock) and not os.path.lexists(old):
        return  # the common case: one stat each
    old_fd = lock_file(old_lock, what)  # an older projector still at work: in use
    try:
        if os.path.lexists(old) and not os.path.lexists(paths.checkpoint):
            try:
                os.replace(old, paths.checkpoint)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                # the export directory is a mount point: copy (a link is not followed)
                atomic_write(
                    paths.checkpoint, read_regular(old, "checkpoint", MAX_CHECKPOINT_BYTES)
                )
        old.unlink(missing_ok=True)
        old_lock.unlink(missing_ok=True)
    finally:
        os.close(old_fd)
