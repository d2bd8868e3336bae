"""Follow an export as it is written: records as they land, across chunk rollovers.

Like watchdog's model, the follower only needs to know "this file may have
grown": it keeps its own chunk index and byte offset and reads to the end
of complete lines on every poll. A chunk is done when its ``]`` line is
read; the export is done when the manifest exists and every chunk it lists
has been read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from ..errors import (
    AuditJournalError,
    CorruptJournalError,
    ExportInvalidError,
    InvalidSettingsError,
    MalformedEvidenceError,
)
from ..fs.safeio import MAX_MANIFEST_BYTES, decode_strict, open_regular, read_regular
from ..proofs.merkle import MerkleBuilder, leaf_hash
from ..proofs.signednote import NoteVerifier, open_checkpoint, read_checkpoint
from .chunks import chunk_name
from .livecheckpoints import ORIGIN_PREFIX
from .projector import ExportPaths

__all__ = ["ExportTail", "TailFilter"]


class _SealedManifest(msgspec.Struct):
    chunk_count: int


@dataclass(frozen=True)
class TailFilter:
    """Which records to show: by record type, row id, node id (any node field)."""

    types: frozenset[str] = frozenset()
    row_id: str | None = None
    node_id: str | None = None

    def __call__(self, record: dict[str, Any]) -> bool:
        if self.types and record.get("record_type") not in self.types:
            return False
        if self.row_id is not None and record.get("row_id") != self.row_id:
            return False
        if self.node_id is not None:
            nodes = (
                record.get("node_id"),
                record.get("source_node_id"),
                record.get("sink_node_id"),
                record.get("from_node_id"),
                record.get("to_node_id"),
            )
            if self.node_id not in nodes:
                return False
        return True


class ExportTail:
    """Iterates over an export's records as they are written; stops once it is sealed.

    ``from_end`` skips the records already written when the tail starts.
    ``verify``: hash the records as they stream and check each live checkpoint
    (``audit_trail.checkpoints/``) as it appears against the records read: a
    record changed, removed or reordered before a checkpoint raises
    :class:`ExportInvalidError`; with ``public_key`` each checkpoint's signature
    is checked too. Not with ``from_end`` (the tree needs every record).
    """

    def __init__(
        self,
        prefix: Path,
        *,
        record_filter: TailFilter | None = None,
        from_end: bool = False,
        verify: bool = False,
        public_key: Path | None = None,
    ) -> None:
        if verify and from_end:
            raise InvalidSettingsError("verifying checkpoints needs every record: not from_end")
        self.verify = verify
        self._public_key = public_key
        self._merkle = MerkleBuilder()
        self._roots: dict[int, bytes] = {}  # tree heads since the last checkpoint verified
        self.verified_size = 0  # the tree size of the last checkpoint verified
        self.checkpoints_verified = 0
        self.paths = ExportPaths(prefix)
        self.filter = record_filter or TailFilter()
        self.index = 0
        self.offset = 0
        self.seen = 0  # records read (before filtering)
        self.shown = 0
        self.sealed = False
        self._carry = b""
        self._closed_current = False
        if from_end:
            self._skip_to_end()

    def _chunk_path(self, index: int) -> Path:
        single = self.paths.prefix.with_name(self.paths.prefix.name + ".json")
        if index == 0 and single.exists():
            return single
        return self.paths.directory / chunk_name(self.paths.prefix.name, index, False)

    def poll(self) -> list[dict[str, Any]]:
        """Records that landed since the last poll (filtered), in export order."""
        out: list[dict[str, Any]] = []
        while True:
            path = self._chunk_path(self.index)
            try:
                with open(open_regular(path, "chunk"), "rb") as fh:
                    fh.seek(self.offset)
                    raw = fh.read()
            except FileNotFoundError:
                self._check_sealed()
                return out
            self.offset += len(raw)  # a partial last line waits in _carry
            data = self._carry + raw if self._carry else raw
            end = data.rfind(b"\n") + 1
            self._carry = data[end:]
            for line in data[:end].split(b"\n")[:-1]:
                if line == b"[":
                    continue
                if line == b"]":
                    self._closed_current = True
                    continue
                record = line[1:] if line[:1] == b"," else line
                try:
                    value = decode_strict(record, f"{path}: record line")
                except MalformedEvidenceError as exc:
                    raise CorruptJournalError(f"{path}: unreadable record line: {exc}") from None
                self.seen += 1
                if self.verify:
                    merkle = self._merkle
                    merkle.add(leaf_hash(record))
                    self._roots[merkle.count] = merkle.root()
                if self.filter(value):
                    self.shown += 1
                    out.append(value)
            if self.verify:
                self._check_checkpoints()
            if not self._closed_current:
                self._check_sealed()
                return out
            self.index += 1
            self.offset = 0
            self._carry = b""
            self._closed_current = False

    def _check_checkpoints(self) -> None:
        """Check every checkpoint file of a tree size up to the records read so far."""
        directory = self.paths.live_checkpoints
        if not directory.is_dir():
            return
        sizes = []
        for path in directory.glob("*.checkpoint"):
            stem = path.name[: -len(".checkpoint")]
            if stem.isdigit() and self.verified_size < int(stem) <= self._merkle.count:
                sizes.append((int(stem), path))
        for size, path in sorted(sizes):
            try:
                data = read_regular(path, "checkpoint", 1 << 20)
                checkpoint, _ = read_checkpoint(data)
                if self._public_key is not None:
                    verifier = NoteVerifier.from_pem_file(checkpoint.origin, self._public_key)
                    open_checkpoint(data, [verifier])
            except AuditJournalError as exc:
                raise ExportInvalidError(f"{path}: {exc}") from None
            if checkpoint.size != size or not checkpoint.origin.startswith(ORIGIN_PREFIX):
                raise ExportInvalidError(f"{path}: not this export's checkpoint of {size} records")
            if self._roots.get(size) != checkpoint.root_hash:
                raise ExportInvalidError(
                    f"{path}: the first {size} records read do not have the checkpoint's "
                    "Merkle root (a record was changed, removed or reordered)"
                )
            self.verified_size = size
            self.checkpoints_verified += 1
            self._roots = {k: v for k, v in self._roots.items() if k > size}

    def _check_sealed(self) -> None:
        try:
            raw = read_regular(self.paths.manifest, "manifest", MAX_MANIFEST_BYTES)
        except FileNotFoundError:
            return  # not sealed yet (the manifest is written atomically: never half of it)
        count = decode_strict(raw, f"{self.paths.manifest}", _SealedManifest).chunk_count
        self.sealed = self.index >= count

    def _skip_to_end(self) -> None:
        while self._chunk_path(self.index + 1).exists():
            self.index += 1
        path = self._chunk_path(self.index)
        if path.exists():
            with open(open_regular(path, "chunk"), "rb") as fh:
                data = fh.read()
            end = data.rfind(b"\n") + 1
            self.offset = end
            self._closed_current = data[:end].endswith(b"\n]\n")
            if self._closed_current:
                self.index += 1
                self.offset = 0
                self._closed_current = False

    def follow(
        self, *, poll_interval: float = 0.02, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield records as they land until the export is sealed (or ``timeout`` passes
        without it being sealed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = self.poll()
            yield from batch
            if self.sealed:
                if self.verify:  # those written just before the manifest
                    self._check_checkpoints()
                return
            if not batch:
                if deadline is not None and time.monotonic() > deadline:
                    return
                time.sleep(poll_interval)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.follow()
