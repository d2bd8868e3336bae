"""Chunk files of the export: JSON arrays with exactly one record per line.

A chunk looks like this, and every line is final the moment its newline is
written (the separating comma leads the *next* record, so nothing is held
back)::

    [
    {"record_type":"node",...}
    ,{"record_type":"edge",...}
    ]

A chunk being written has no ``]`` yet. A new chunk starts before a record
would push the current one past ``chunk_size_bytes`` (counting the closing
``]\\n``); a record larger than the limit on its own gets a chunk of its own.

The writer keeps each chunk's running SHA-256 and the RFC 6962 Merkle
frontier over all records, so sealing needs no second pass over the files.
Bytes are buffered and handed to the OS by :meth:`ChunkWriter.flush` (the
projector calls it after every batch of events, which is what bounds the
live-export lag). The ``write`` and the chunk's SHA-256 of each flushed block
run on a small I/O thread: both release the GIL, so on a second core they
overlap with building the next records. A closed chunk is fsynced on a second
thread while the next one fills, so sealing waits only for the last chunk's.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ..errors import StorageError
from ..fs.digests import leaf_hashes
from ..fs.safeio import open_regular
from ..fs.storage import open_file, storage_error
from ..proofs.merkle import MerkleBuilder, leaf_hash
from .chunkio import Inline, Worker, sync_closed, write_block
from .manifest import chunk_name

__all__ = ["ChunkInfo", "ChunkLines", "ChunkWriter", "chunk_name", "iter_chunk_records"]

_MAX_QUEUED = 2  # blocks handed to the I/O thread and not yet written
_DIRECT_BYTES = 64 << 10  # a run of lines this big is written from the caller's bytes
_MAX_UNSYNCED = 8  # closed chunks handed to the sync thread and not yet fsynced
_OPEN = b"[\n"
_CLOSE = b"]\n"


@dataclass
class ChunkInfo:
    """One chunk as the manifest lists it."""

    file: str
    sha256: str
    bytes: int
    record_count: int
    first_seq: int
    last_seq: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "record_count": self.record_count,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
        }


class ChunkWriter:
    """Appends encoded records to the chunk files under ``prefix``. One thread drives it."""

    def __init__(
        self,
        prefix: Path,
        chunk_size_bytes: int | None,
        checkpoint_every: int | None = None,
        *,
        io_thread: bool = True,
    ) -> None:
        self.prefix = prefix
        # a tree head (size, root) every ``checkpoint_every`` records: the live checkpoints
        self.checkpoint_every = checkpoint_every
        self.tree_heads: list[tuple[int, bytes]] = []
        self.directory = prefix.parent
        self.limit = chunk_size_bytes
        self.closed_chunks: list[ChunkInfo] = []
        self.merkle = MerkleBuilder()
        self.index = 0  # of the current chunk
        self.current: ChunkInfo | None = None
        self._hash = hashlib.sha256()  # of the current chunk, fed by the I/O thread
        self._buf = bytearray()
        self._fd = -1
        what = "cannot write export chunk"
        self._io: Worker | Inline = (
            Worker("auditjournal-chunk-io", write_block, _MAX_QUEUED, what)
            if io_thread
            else Inline(write_block, what)
        )
        self._syncer: Worker | None = None  # started at the first closed chunk
        self._synced: set[str] = set()  # closed chunks handed to it (finish() waits for it)

    @property
    def total_records(self) -> int:
        return self.merkle.count

    def path(self, index: int) -> Path:
        return self.directory / chunk_name(self.prefix.name, index, self.limit is None)

    def add(self, seq: int, record: bytes) -> None:
        """Write one record (canonical JSON, no newline) at the end of the export."""
        self._place(seq, record)
        merkle = self.merkle
        merkle.add(leaf_hash(record))
        every = self.checkpoint_every
        if every is not None and not merkle.count % every:
            self.tree_heads.append((merkle.count, merkle.root()))

    def add_records(self, seqs: Sequence[int], records: Sequence[bytes]) -> None:
        """:meth:`add` for many records at once (the same bytes, chunks and tree heads):
        the Python work per record is a few list operations, the leaf hashes are one call."""
        if records:
            # "\n," r0 "\n," ... rN "\n,": the lines are all but its first and last byte
            # (one join, no copy of it to trim)
            joined = memoryview(b"\n,".join([b"", *records, b""]))
            try:
                lengths = [len(r) for r in records]
                self.add_lines(joined[1:-1], lengths, seqs, leaf_hashes(records))
            finally:
                joined.release()

    def add_lines(
        self,
        lines: bytes | memoryview,
        lengths: Sequence[int],
        seqs: Sequence[int],
        leaves: bytes,
    ) -> None:
        """:meth:`add` for many records at once, given as ``lines``: each record as
        ``,`` + record + newline, back to back (``lengths``: each record's length),
        with their Merkle leaf hashes (``leaves``: 32 bytes per record) computed
        elsewhere. Runs of records that fit the current chunk go on as one slice (a big
        one without a copy: ``lines`` must not change afterwards)."""
        count = len(lengths)
        if len(leaves) != 32 * count or len(seqs) != count:
            raise ValueError("one seq and one 32-byte leaf hash per record expected")
        view = memoryview(lines)
        limit = self.limit
        room_close = 2 + len(_CLOSE)  # the record's "," and newline, and the closing "]"
        pos = i = 0
        while i < count:
            current = self.current
            if current is None or not current.record_count:
                current = current or self._start()
                size = lengths[i]  # a chunk's first record, without the leading ","
                self._buf += view[pos + 1 : pos + size + 2]
                current.bytes += size + 1
                current.record_count = 1
                current.first_seq = current.last_seq = seqs[i]
                pos += size + 2
                i += 1
                continue
            j, end, total = i, pos, current.bytes
            if limit is None:
                j, end = count, len(lines)
                total += end - pos
            else:
                while j < count and total + lengths[j] + room_close <= limit:
                    total += lengths[j] + 2
                    end += lengths[j] + 2
                    j += 1
            if j == i:  # the next record would pass the limit
                self._close_current()
                continue
            self._put(view[pos:end])
            current.bytes = total
            current.record_count += j - i
            current.last_seq = seqs[j - 1]
            pos, i = end, j
        view.release()
        every = self.checkpoint_every
        merkle = self.merkle
        if every is None:
            merkle.extend(leaves)
            return
        start = 0
        while start < count:  # split the batch at each multiple of ``every``
            cut = min(count, start + every - merkle.count % every)
            merkle.extend(leaves[32 * start : 32 * cut])
            if not merkle.count % every:
                self.tree_heads.append((merkle.count, merkle.root()))
            start = cut

    def _put(self, lines: memoryview) -> None:
        """A run of the caller's lines: a big one goes to the I/O thread as it is (after
        what is buffered), not copied into the buffer (the caller's bytes do not change)."""
        if len(lines) < _DIRECT_BYTES:
            self._buf += lines
            return
        self.flush()
        self._io.submit((self._fd, lines, self._hash))

    def _place(self, seq: int, record: bytes) -> None:
        current = self.current
        limit = self.limit
        if (
            current is not None
            and limit is not None
            and (current.bytes + len(record) + 2 + len(_CLOSE) > limit)
        ):
            self._close_current()
            current = None
        buf = self._buf
        if current is None:
            current = self._start()
            buf += record
            current.bytes += len(record) + 1
        else:
            buf += b","
            buf += record
            current.bytes += len(record) + 2
        buf += b"\n"
        if not current.record_count:
            current.first_seq = seq
        current.record_count += 1
        current.last_seq = seq

    def flush(self) -> None:
        """Hand buffered lines to the I/O thread, which writes them to the OS."""
        if self._buf:
            # the buffer itself goes to the I/O thread (nothing here touches it again): a
            # copy of it would cost more than a new buffer
            data, self._buf = self._buf, bytearray()
            self._io.submit((self._fd, data, self._hash))

    def sync(self) -> None:
        """Flush and wait until the OS has every byte (live readers see them)."""
        self.flush()
        self._io.drain()

    def finish(self) -> list[ChunkInfo]:
        """Close the last chunk with ``]``, fsync every chunk; return all chunk infos.

        Chunks closed by this writer were fsynced in the background, as they
        closed; only the others (closed before a resume) are fsynced here."""
        if self.current is not None:
            self._close_current()
        if self._syncer is not None:
            self._syncer.drain()
        for info in self.closed_chunks:
            if info.file not in self._synced:
                self._fsync_path(self.directory / info.file)
        return self.closed_chunks

    def close(self) -> None:
        """Release the file handles and the threads (what was flushed is written first;
        closed chunks waiting for their fsync are closed all the same)."""
        try:
            self._io.drain()
        finally:
            self._close_fd()
            self._io.stop()
            if self._syncer is not None:
                self._syncer.stop()

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- checkpoints ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """State to resume from (waits until flushed bytes are written)."""
        self.sync()
        return {
            "index": self.index,
            "closed": [c.as_dict() for c in self.closed_chunks],
            "current": None if self.current is None else self.current.as_dict(),
            "current_sha256": self._hash.copy().hexdigest(),
            "merkle": self.merkle.state(),
            "records": self.merkle.count,
            "tree_heads": [(size, root.hex()) for size, root in self.tree_heads],
        }

    def restore(self, snap: dict[str, Any]) -> bool:
        """Resume from a snapshot: truncate the current chunk to its checkpointed size and
        remove later files. False if the files on disk do not match it (rebuild instead)."""
        closed = [ChunkInfo(**c) for c in snap["closed"]]
        for info in closed:
            try:
                found = os.lstat(self.directory / info.file)
            except FileNotFoundError:
                return False
            if not stat.S_ISREG(found.st_mode) or found.st_size != info.bytes:
                return False  # a link or special file is rebuilt over, never followed
        current = None if snap["current"] is None else ChunkInfo(**snap["current"])
        hasher = hashlib.sha256()
        if current is not None:
            try:
                fd = open_file(self.directory / current.file, os.O_RDWR)
            except OSError:  # missing, or a link or special file: rebuild
                return False
            with open(fd, "r+b") as fh:
                prefix = fh.read(current.bytes)
                if len(prefix) != current.bytes:
                    return False
                hasher.update(prefix)
                if hasher.hexdigest() != snap["current_sha256"]:
                    return False
                os.ftruncate(fh.fileno(), current.bytes)
        self.index = snap["index"]
        self.closed_chunks = closed
        self._synced.clear()  # finish() fsyncs the restored chunks
        self.current = current
        self._hash = hasher
        self.merkle = MerkleBuilder.from_state(snap["merkle"], snap["records"])
        self.tree_heads = [(size, bytes.fromhex(root)) for size, root in snap["tree_heads"]]
        # keep the closed chunks and the current one (index is the last of them, if any)
        self._remove_after(self.index if current is not None or closed else -1)
        if current is not None:
            self._open_fd(self.directory / current.file)
        return True

    def remove_all(self) -> None:
        """Delete every chunk file of this prefix (before a rebuild)."""
        self._io.drain()
        self._close_fd()
        self._synced.clear()
        self._remove_after(-1)

    # -- internals ------------------------------------------------------------------------

    def _remove_after(self, index: int) -> None:
        """Delete chunk files numbered above ``index`` (-1: all, including the unchunked one)."""
        name = self.prefix.name
        for path in self.directory.glob(f"{name}*.json"):
            number = path.name[len(name) + 1 : -len(".json")]
            unchunked = path.name == f"{name}.json"
            if (unchunked and index < 0) or (number.isdigit() and int(number) > index):
                path.unlink()

    def _start(self) -> ChunkInfo:
        if self.closed_chunks or self.current is not None:
            self.index += 1
        path = self.path(self.index)
        self._open_fd(path, truncate=True)
        self._hash = hashlib.sha256()
        self._buf += _OPEN
        self.current = ChunkInfo(path.name, "", len(_OPEN), 0, 0, 0)
        return self.current

    def _close_current(self) -> None:
        current = self.current
        assert current is not None
        if current.record_count == 0:
            return
        self._buf += _CLOSE
        current.bytes += len(_CLOSE)
        self.sync()
        current.sha256 = self._hash.hexdigest()
        # fsync it on the sync thread while the next chunk fills (it closes the fd)
        if self._syncer is None:
            self._syncer = Worker(
                "auditjournal-chunk-sync", sync_closed, _MAX_UNSYNCED, "cannot fsync export chunk"
            )
        fd, self._fd = self._fd, -1
        try:
            self._syncer.submit(fd)
        except BaseException:  # an earlier fsync failed: report that, leak nothing
            os.close(fd)
            raise
        self._synced.add(current.file)
        self.closed_chunks.append(current)
        self.current = None

    def _open_fd(self, path: Path, truncate: bool = False) -> None:
        self._io.drain()
        self._close_fd()
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        try:
            self._fd = open_file(path, flags)
        except OSError as exc:
            raise storage_error(exc, f"cannot open {path}") from exc

    @staticmethod
    def _fsync_path(path: Path) -> None:
        try:
            fd = open_file(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StorageError(f"cannot fsync {path}: {exc}") from exc


_BEFORE, _FIRST, _RECORDS, _CLOSED = range(4)  # where a chunk reader stands


class ChunkLines:
    """The one reader of chunk lines (every reader of chunks uses it: verify, the tail,
    extract, the typed reimport, the report).

    Feed it a chunk's bytes in order, as blocks of whole lines (:meth:`records`); it
    returns each record's bytes, without the leading ``,`` and the newline. ``closed``
    tells whether the ``]`` line was read.

    ``strict`` (verify) polices the layout: ``[`` first, the first record without a
    leading ``,``, every later one with it, nothing after ``]``. At the first line that
    breaks it, ``problem`` says what and no more records are returned. Otherwise (readers
    of an export that verify checks) ``[`` and ``]`` lines are skipped wherever they are
    and a leading ``,`` is dropped.
    """

    __slots__ = ("count", "problem", "state", "strict")

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.state = _BEFORE
        self.count = 0
        """Records returned so far."""
        self.problem = ""

    @property
    def closed(self) -> bool:
        return self.state == _CLOSED

    def records(
        self, data: bytes | bytearray, end: int, view: memoryview | None = None
    ) -> list[bytes | bytearray | memoryview]:
        """The records of the whole lines in ``data[:end]``: slices of ``view`` (a
        memoryview of ``data``: no copies; drop them before ``data`` is resized) if given,
        else of ``data``. (A list, not a generator: one resumption per record costs verify
        a few percent.)"""
        source: bytes | bytearray | memoryview = data if view is None else view
        out: list[bytes | bytearray | memoryview] = []
        add = out.append
        find = data.find
        strict = self.strict
        pos = 0
        while (newline := find(b"\n", pos, end)) >= 0:
            start, pos = pos, newline + 1
            if newline - start == 1 and data[start] in b"[]":
                bracket = data[start]
                if not strict:
                    if bracket == 0x5D:  # "]"
                        self.state = _CLOSED
                    continue
                if self.state == _BEFORE:
                    if bracket != 0x5B:
                        self.problem = "first line is not '['"
                        break
                    self.state = _FIRST
                    continue
                if self.state == _CLOSED:
                    self.problem = "content after the closing ']'"
                    break
                if bracket == 0x5D:
                    self.state = _CLOSED
                    continue
            if strict and self.state != _RECORDS:
                if self.state == _BEFORE:
                    self.problem = "first line is not '['"
                    break
                if self.state == _CLOSED:
                    self.problem = "content after the closing ']'"
                    break
                self.state = _RECORDS  # the first record: no leading ","
            elif data[start] == 0x2C:  # ","
                start += 1
            elif strict:
                self.problem = f"record line {self.count + len(out) + 1} lacks its leading ','"
                break
            add(source[start:newline])
        self.count += len(out)
        return out

    def byte_records(self, data: bytes, end: int) -> list[bytes]:
        """:meth:`records` of ``bytes``: each record as ``bytes``."""
        return cast("list[bytes]", self.records(data, end))


def iter_chunk_records(path: Path, block: int = 4 << 20) -> Iterator[bytes]:
    """The record lines of one chunk file (without separators), streamed in blocks.

    Only for reading exports that ``verify`` has checked; it does not police
    the layout (:class:`ChunkLines`). The file must be a regular file, not reached
    through a symbolic link (:func:`~auditjournal.fs.safeio.open_regular`).
    """
    lines = ChunkLines()
    carry = b""
    with open(open_regular(path, "chunk"), "rb") as fh:
        while data := fh.read(block):
            data = carry + data if carry else data
            end = data.rfind(b"\n") + 1
            carry = data[end:]
            yield from lines.byte_records(data, end)
