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

from ..errors import CorruptExportError, MalformedEvidenceError
from ..fs.safeio import decode_strict, open_regular
from .chunks import ChunkLines
from .manifest import ExportPaths, read_manifest

__all__ = ["ExportTail", "TailFilter"]


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
    """

    def __init__(
        self,
        prefix: Path,
        *,
        record_filter: TailFilter | None = None,
        from_end: bool = False,
    ) -> None:
        self.paths = ExportPaths(prefix)
        self.filter = record_filter or TailFilter()
        self.index = 0
        self.offset = 0
        self.seen = 0  # records read (before filtering)
        self.shown = 0
        self.sealed = False
        self._carry = b""
        self._lines = ChunkLines()  # of the current chunk
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
                self._check_sealed()
                return out
            self.offset += len(raw)  # a partial last line waits in _carry
            data = self._carry + raw if self._carry else raw
            end = data.rfind(b"\n") + 1
            self._carry = data[end:]
            for record in self._lines.byte_records(data, end):
                try:
                    value = decode_strict(record, f"{path}: record line")
                except MalformedEvidenceError as exc:
                    raise CorruptExportError(f"{path}: unreadable record line: {exc}") from None
                self.seen += 1
                if self.filter(value):
                    self.shown += 1
                    out.append(value)
            if not self._lines.closed:
                self._check_sealed()
                return out
            self.index += 1
            self.offset = 0
            self._carry = b""
            self._lines = ChunkLines()

    def _check_sealed(self) -> None:
        try:
            _raw, manifest = read_manifest(self.paths.manifest)
        except FileNotFoundError:
            return  # not sealed yet (the manifest is written atomically: never half of it)
        self.sealed = self.index >= manifest.chunk_count

    def _skip_to_end(self) -> None:
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
        self, *, poll_interval: float = 0.02, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield records as they land until the export is sealed (or ``timeout`` passes
        without it being sealed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = self.poll()
            yield from batch
            if self.sealed:
                return
            if not batch:
                if deadline is not None and time.monotonic() > deadline:
                    return
                time.sleep(poll_interval)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.follow()
