"""Follow an export as it is written: records as they land, across chunk rollovers.

Like watchdog's model, the follower only needs to know "this file may have
grown": it keeps its own chunk index and byte offset and reads to the end
of complete lines on every poll. A chunk is done when its ``]`` line is
read; the export is done when the manifest exists and every chunk it lists
has been read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import (
    AuditJournalError,
    CorruptExportError,
    ExportIncompleteError,
    ExportInvalidError,
    MalformedEvidenceError,
)
from ..fs.safeio import decode_strict, open_regular, read_regular
from ..proofs.merkle import MerkleBuilder, leaf_hash
from ..proofs.signednote import NoteVerifier, open_checkpoint, read_checkpoint
from .chunks import ChunkLines
from .livecheckpoints import ORIGIN_PREFIX
from .manifest import ExportPaths, read_manifest

__all__ = ["ExportTail", "TailFilter"]


_NODE_FIELDS = ("node_id", "source_node_id", "sink_node_id", "from_node_id", "to_node_id")
_STATE_RECORDS = frozenset({"node_state", "node_state_started"})


@dataclass(frozen=True)
class TailFilter:
    """Which records to show: by record type, row id, node id.

    A node selects what names it (its states, edges, artifacts) and what belongs
    to one of its states (calls, routing events), as ``extract --node`` does. An
    export writes a state's calls before the state's own record, so those wait
    (:meth:`pick`) until the state shows whose it is.
    """

    types: frozenset[str] = frozenset()
    row_id: str | None = None
    node_id: str | None = None
    _states: set[str] = field(default_factory=set, compare=False, repr=False)
    _seen: set[str] = field(default_factory=set, compare=False, repr=False)
    _pending: dict[str, list[dict[str, Any]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def _rest(self, record: dict[str, Any]) -> bool:
        if self.types and record.get("record_type") not in self.types:
            return False
        return self.row_id is None or record.get("row_id") == self.row_id

    def pick(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """The records this one lets through, in order: itself if selected, and before it
        the held records of its state if that state is the node's."""
        if self.node_id is None:
            return [record] if self._rest(record) else []
        hit = any(record.get(f) == self.node_id for f in _NODE_FIELDS)
        state = record.get("state_id")
        out: list[dict[str, Any]] = []
        if state is not None and record.get("record_type") in _STATE_RECORDS:
            self._seen.add(state)
            held = self._pending.pop(state, [])
            if hit:
                self._states.add(state)
                out = [*held, record]
        elif hit or (state is not None and state in self._states):
            out = [record]
        elif state is not None and state not in self._seen:
            self._pending.setdefault(state, []).append(record)
        return [r for r in out if self._rest(r)]


class ExportTail:
    """Iterates over an export's records as they are written; stops once it is sealed.

    ``from_end`` skips the records already written when the tail starts.
    ``verify``: hash the records as they stream and check each live checkpoint
    (``audit_trail.checkpoints/``) as it appears against the records read: a
    record changed, removed or reordered before a checkpoint raises
    :class:`ExportInvalidError`; with ``public_key`` each checkpoint's signature
    is checked too. With ``from_end`` too, the records already written are read
    and hashed without being decoded or shown (the tree of the records that follow
    needs them), and the checkpoints they reach are checked before the tail starts.
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
        self.stopped: str | None = None
        """Why :meth:`follow` gave up waiting (its ``stalled`` check said so), else None."""
        self._carry = b""
        self._lines = ChunkLines()  # of the current chunk
        self._hash_only = False  # reading the records already there, for the tree alone
        if from_end:
            self._skip_to_end()

    def _chunk_path(self, index: int) -> Path:
        single = self.paths.chunk(0, single_file=True)
        if index == 0 and single.exists():
            return single
        return self.paths.chunk(index)

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
                self._check_sealed(missing=path)
                return out
            self.offset += len(raw)  # a partial last line waits in _carry
            data = self._carry + raw if self._carry else raw
            end = data.rfind(b"\n") + 1
            self._carry = data[end:]
            for record in self._lines.byte_records(data, end):
                if self._hash_only:
                    self._add_leaf(record)
                    continue
                try:
                    value = decode_strict(record, f"{path}: record line")
                except MalformedEvidenceError as exc:
                    raise CorruptExportError(f"{path}: unreadable record line: {exc}") from None
                self.seen += 1
                if self.verify:
                    self._add_leaf(record)
                picked = self.filter.pick(value)
                self.shown += len(picked)
                out.extend(picked)
            if self.verify:
                self._check_checkpoints()
            if not self._lines.closed:
                self._check_sealed()
                return out
            self.index += 1
            self.offset = 0
            self._carry = b""
            self._lines = ChunkLines()

    def _add_leaf(self, record: bytes) -> None:
        merkle = self._merkle
        merkle.add(leaf_hash(record))
        self._roots[merkle.count] = merkle.root()

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

    def _check_sealed(self, missing: Path | None = None) -> None:
        try:
            _raw, manifest = read_manifest(self.paths.manifest)
        except FileNotFoundError:
            return  # not sealed yet (the manifest is written atomically: never half of it)
        count = manifest.chunk_count
        self.sealed = self.index >= count
        if missing is not None and not self.sealed:
            # every chunk is in place before the manifest is written: this one never comes
            raise ExportIncompleteError(
                f"{missing} is missing: the sealed export lists {count} chunk(s); "
                "verify the export, or replay it from the journal"
            )

    def _skip_to_end(self) -> None:
        if self.verify:  # every record is read, to build the tree, but not shown
            self._hash_only = True
            try:
                self.poll()
            finally:
                self._hash_only = False
            return
        while self._chunk_path(self.index + 1).exists():
            self.index += 1
        path = self._chunk_path(self.index)
        if path.exists():
            with open(open_regular(path, "chunk"), "rb") as fh:
                data = fh.read()
            end = data.rfind(b"\n") + 1
            self.offset = end
            for _ in self._lines.byte_records(data, end):
                pass  # skipped: only whether the chunk is closed matters
            if self._lines.closed:
                self.index += 1
                self.offset = 0
                self._lines = ChunkLines()

    def follow(
        self,
        *,
        poll_interval: float = 0.02,
        timeout: float | None = None,
        stalled: Callable[[], str | None] | None = None,
        stall_after: float = 1.0,
    ) -> Iterator[dict[str, Any]]:
        """Yield records as they land until the export is sealed (or ``timeout`` passes
        without it being sealed).

        ``stalled`` is asked, after ``stall_after`` seconds without a new record,
        whether waiting can still end; a reason (a string) stops the follow and is
        kept in :attr:`stopped`. Nothing that arrives in between is missed: the
        export is read once more after a reason is given.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        idle_since = time.monotonic()
        while True:
            batch = self.poll()
            yield from batch
            if self.sealed:
                if self.verify:  # those written just before the manifest
                    self._check_checkpoints()
                return
            now = time.monotonic()
            if batch:
                idle_since = now
                continue
            if deadline is not None and now > deadline:
                return
            if stalled is not None and now - idle_since >= stall_after:
                reason = stalled()
                if reason is not None:
                    yield from self.poll()  # what landed while we looked
                    if not self.sealed:
                        self.stopped = reason
                    return
                idle_since = now
            time.sleep(poll_interval)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.follow()
