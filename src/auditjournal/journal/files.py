"""The run's append-only, hash-chained journal (file backend).

Layout: ``runs/<run_id>/journal/<first seq, 20 digits>.jsonl`` segments, rolled
by size, plus ``.lock`` (held by the one writer). Each line is one event's
JSON object with one extra member, ``chain``, appended last::

    {"type":"row_created","run_id":"r1","seq":7,...,"chain":"<64 hex>"}

``chain`` is ``sha256(previous chain || event bytes)`` where the event bytes
are the line without ``,"chain":"..."`` (i.e. the event's own JSON object) and
the chain before seq 1 is ``sha256("auditjournal/v1 genesis " || run_id)``. So a
removed, reordered, edited or foreign entry breaks the chain, and lines stay
plain JSON for ``tail -f``, ``grep`` and ``jq``.

Durability (see docs/durability.md for what survives what):

* ``always`` -- ``append`` returns after the entry (and the payloads it
  refers to) are written and fsynced; concurrent appenders share fsyncs.
* ``batch`` -- entries are buffered in memory; a flusher thread writes and
  fsyncs payloads, then entries, every ``flush_interval`` (10 ms by default).
* ``none`` -- the flusher writes every ``flush_interval`` but never fsyncs.

Thread-safety: ``Journal.append`` may be called from several threads; the
caller assigns ``seq`` under :meth:`Journal.lock` (see ``recorder``).
``JournalReader`` is for one thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from ..errors import AuditJournalError, CorruptJournalError, JournalClosedError, StorageError
from ..fs.safeio import open_regular
from ..fs.storage import (
    AppendFile,
    Durability,
    Flusher,
    fsync_dir,
    lock_file,
    storage_error,
    write_in_order,
)
from ..model.events import BaseEvent, Event, encode_event
from .lines import SUFFIX_LEN, decode_line, read_entry, seal, stored_chain

__all__ = [
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_SEGMENT_BYTES",
    "MIN_SEGMENT_BYTES",
    "Journal",
    "JournalPosition",
    "JournalReader",
    "Recovery",
    "genesis_chain",
    "journal_segments",
    "last_entry",
    "position_exists",
    "segment_name",
]

DEFAULT_SEGMENT_BYTES: Final = 64 << 20
MIN_SEGMENT_BYTES: Final = 4096
"""The smallest ``segment_bytes`` a store accepts (one page; every roll costs a file)."""
DEFAULT_FLUSH_INTERVAL: Final = 0.010
_MAX_BUFFER: Final = 8 << 20
_READ_CHUNK: Final = 1 << 20


def genesis_chain(run_id: str) -> bytes:
    """The chain value before the first entry; it ties a journal to its run."""
    return hashlib.sha256(b"auditjournal/v1 genesis " + run_id.encode()).digest()


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}.jsonl"


def journal_segments(directory: Path) -> list[tuple[int, Path]]:
    """The segment files of a journal directory as (first seq, path), in order."""
    found = []
    for path in directory.glob("*.jsonl"):
        if path.stem.isdigit():
            found.append((int(path.stem), path))
    return sorted(found)


@dataclass(frozen=True)
class Recovery:
    """What opening a journal for appending repaired after a crash."""

    segment: str
    bytes_dropped: int
    last_seq: int


@dataclass(frozen=True)
class JournalPosition:
    """Where a reader is: the next seq to read, the segment and offset it starts at,
    and the chain value of the entry before it. Projectors checkpoint this."""

    next_seq: int
    segment_first_seq: int
    offset: int
    chain: bytes


class Journal:
    """The writer of one run's journal. Exactly one per run at a time (``.lock``)."""

    def __init__(
        self,
        directory: Path,
        run_id: str,
        *,
        durability: Durability = "batch",
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        before_flush: Callable[[bool], None] | None = None,
        create: bool = True,
    ) -> None:
        self.directory = directory
        self.run_id = run_id
        self.durability: Durability = durability
        self.segment_bytes = segment_bytes
        self._before_flush = before_flush
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_file(directory / ".lock", f"journal of run {run_id!r}")
        self.lock = threading.Lock()
        """Held while assigning a seq and appending; callers validate under it."""
        self._io_lock = threading.Lock()
        self._retired: list[AppendFile] = []
        self._new_dirs = False
        try:
            self.recovery, self._file, self.next_seq, self._chain = self._open_tail(create)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.durable_seq = self.next_seq - 1
        self._closed = False
        self._write_error: Exception | None = None
        """The last flush failed with this (until one succeeds): appends are refused."""
        self._flusher: Flusher[Journal] | None = None
        if durability != "always":
            self._flusher = Flusher(self, Journal._background_flush, flush_interval)

    # -- appending ----------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    @property
    def head_chain(self) -> str:
        return self._chain.hex()

    def append(self, event: BaseEvent) -> None:
        """Append ``event`` (its ``seq`` must be :attr:`next_seq`); caller holds :attr:`lock`.

        Under ``always`` the caller must then call :meth:`commit` with the seq,
        *after* releasing the lock, so other threads can share the fsync.

        After a failed write (the disk is full, ...) an append first writes what
        is buffered and is refused -- before it takes a seq -- if that fails too:
        no append is accepted while the journal knows it cannot write.
        """
        if self._closed:
            raise JournalClosedError(f"journal of run {self.run_id!r} is closed")
        if event.seq != self.next_seq:
            raise ValueError(f"event seq {event.seq} is not the next seq {self.next_seq}")
        if self._write_error is not None:
            self._retry_failed_write(event.seq)
        line, chain = seal(encode_event(event), self._chain)
        file = self._file
        if file.size >= self.segment_bytes:
            file = self._roll()
        file.append(line)
        self._chain = chain  # only once appended: a failed roll must not advance the chain
        self.next_seq += 1

    @property
    def needs_flush(self) -> bool:
        """True when the caller should flush (always mode, or the buffer grew too big)."""
        return self.durability == "always" or self._file.pending > _MAX_BUFFER

    @property
    def write_failed(self) -> bool:
        """True while the last write failed (appends are refused until one succeeds)."""
        return self._write_error is not None

    def commit(self, seq: int) -> None:
        """Make entries up to ``seq`` durable per the policy (``always``: written + fsynced).

        A failure raises, but the entries stay buffered (they are in the journal,
        not yet durable) and are written by the next flush that succeeds.
        """
        if self.durable_seq >= seq:
            return
        self.flush(fsync=self.durability == "always")

    def write_behind(self) -> None:
        """Hand buffered entries to the OS now, without fsync, for a caller whose own
        append was already accepted: a failure is not raised here but kept, and the next
        :meth:`append` reports it (and is refused unless the write then succeeds)."""
        with contextlib.suppress(StorageError):  # kept in _write_error by flush()
            self.flush(fsync=False)

    def flush(self, *, fsync: bool) -> None:
        """Write buffered entries (after the payloads they refer to), optionally fsync."""
        with self._io_lock:
            with self.lock:
                files = [*self._retired, self._file]
                self._retired = []
                last = self.next_seq - 1
                work = [(f, f.take()) for f in files if f.pending]
                new_dirs, self._new_dirs = self._new_dirs, False
            if not work and not fsync:
                return
            try:
                if self._before_flush is not None:
                    self._before_flush(fsync)
            except BaseException as exc:
                self._put_back(work, files[:-1], new_dirs)
                self._failed(exc)
                raise
            try:
                write_in_order(work)
                current = files[-1]
                # not only what this flush wrote: a write without fsync (write_behind) may
                # have left bytes on the current segment that no fsync has covered yet
                if fsync and current.written > current.synced:
                    current.sync()
                for file in files[:-1]:
                    file.sync()
                    file.close()
                if fsync and new_dirs:
                    self._sync_directory()
            except BaseException as exc:
                self._put_back([], files[:-1], new_dirs)
                self._failed(exc)
                raise
            self._write_error = None
            if fsync:
                self.durable_seq = max(self.durable_seq, last)
            elif new_dirs:  # not synced yet: the next fsyncing flush does it
                with self.lock:
                    self._new_dirs = True

    def _sync_directory(self) -> None:
        try:
            fsync_dir(self.directory)
        except OSError as exc:
            raise storage_error(exc, f"cannot fsync {self.directory}") from exc

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, Exception):
            self._write_error = exc

    def _put_back(
        self,
        unwritten: list[tuple[AppendFile, bytearray]],
        retired: list[AppendFile],
        new_dirs: bool,
    ) -> None:
        """A flush failed: give back what it took, so the next flush writes it, in order
        (dropping it would leave a gap in the chain on disk)."""
        with self.lock:
            for file, data in unwritten:
                file.give_back(data)
            self._retired[0:0] = [f for f in retired if f.fd >= 0]
            self._new_dirs = self._new_dirs or new_dirs

    def _background_flush(self) -> None:
        self.flush(fsync=self.durability == "batch")

    def close(self) -> None:
        """Write and fsync everything, stop the flusher, release the writer lock.

        If the write fails (say, the disk is full) the journal stays open with
        everything buffered and the error is raised: call :meth:`close` again once
        the cause is gone, or :meth:`abandon` to let go of what is not written.
        """
        with self.lock:
            if self._closed:
                return
            self._closed = True  # from here on appends are refused: nothing can slip past
        try:
            self.flush(fsync=self.durability != "none")
        except BaseException:
            with self.lock:
                self._closed = False
            raise
        if self._flusher is not None:
            self._flusher.stop()
        self._release()

    def abandon(self) -> None:
        """Release the journal without writing what is still buffered (as a crash would:
        the entries on disk stay a valid journal, the unwritten tail is lost)."""
        if self._closed:
            return
        if self._flusher is not None:
            self._flusher.stop()
        self._release()

    def _release(self) -> None:
        self._closed = True
        self._file.close()
        for file in self._retired:
            file.close()
        os.close(self._lock_fd)

    def _retry_failed_write(self, seq: int) -> None:
        """The last write failed: write what is buffered now (without our lock, which a
        flush takes), and refuse the append -- it has no seq yet -- if that fails too."""
        error = self._write_error
        self.lock.release()
        try:
            self.flush(fsync=self.durability != "none")
        except StorageError as exc:
            raise _refused(exc) from error
        finally:
            self.lock.acquire()
        if self.next_seq != seq:  # another thread appended meanwhile: the caller's checks
            raise _refused(  # were made against an older state, so it must call again
                StorageError(f"journal of run {self.run_id!r} was written while this call waited")
            )

    def _roll(self) -> AppendFile:
        self._retired.append(self._file)
        path = self.directory / segment_name(self.next_seq)
        try:
            self._file = AppendFile(path, 0)
        except OSError as exc:
            self._file = self._retired.pop()
            raise storage_error(exc, f"cannot create {path}") from exc
        self._new_dirs = True
        return self._file

    # -- recovery -----------------------------------------------------------------------

    def _open_tail(self, create: bool) -> tuple[Recovery | None, AppendFile, int, bytes]:
        segments = journal_segments(self.directory)
        if not segments:
            if not create:
                raise CorruptJournalError(f"{self.directory} holds no journal segment")
            path = self.directory / segment_name(1)
            file = AppendFile(path, 0)
            fsync_dir(self.directory)
            return None, file, 1, genesis_chain(self.run_id)
        removed = self._drop_empty_tail_segments(segments)
        first_seq, path = segments[-1]
        prev_chain = genesis_chain(self.run_id)
        if len(segments) > 1:
            prev_seq, prev_chain = last_entry(segments[-2][1], self.run_id)
            if prev_seq != first_seq - 1:
                raise CorruptJournalError(
                    f"{path.name}: segment starts at seq {first_seq} "
                    f"but the previous segment ends at seq {prev_seq}"
                )
        with open(open_regular(path, "journal segment", os.O_RDWR), "r+b") as fh:
            data = fh.read()
            good, next_seq, chain = _scan(
                path, data, first_seq, prev_chain, self.run_id, final=True
            )
            dropped = len(data) - good
            if dropped:
                try:
                    os.ftruncate(fh.fileno(), good)
                except OSError as exc:
                    raise storage_error(exc, f"cannot truncate torn tail of {path}") from exc
        recovery = None
        if dropped:
            recovery = Recovery(path.name, dropped, next_seq - 1)
        elif removed:
            recovery = Recovery(removed[-1], 0, next_seq - 1)
        return recovery, AppendFile(path, good), next_seq, chain

    def _drop_empty_tail_segments(self, segments: list[tuple[int, Path]]) -> list[str]:
        """Remove empty segments at the end (never the first): a roll creates the next segment
        before the entries ahead of it are written, so a crash in between leaves it empty and
        named after entries that never reached the disk. It holds nothing; the next roll
        makes it again. Returns the names removed."""
        removed = []
        while len(segments) > 1 and segments[-1][1].lstat().st_size == 0:
            path = segments.pop()[1]
            try:
                path.unlink()
            except OSError as exc:
                raise storage_error(exc, f"cannot remove empty segment {path}") from exc
            removed.append(path.name)
        if removed:
            fsync_dir(self.directory)
        return removed


def _refused(exc: StorageError) -> StorageError:
    """The same error, saying that the append it refuses recorded nothing."""
    refused = type(exc)(f"{exc} (this call was refused and recorded nothing; retry it)")
    refused.recorded_event = None
    return refused


def _scan(
    path: Path, data: bytes, seq: int, chain: bytes, run_id: str, *, final: bool
) -> tuple[int, int, bytes]:
    """Verify every complete line of ``data``; return (good bytes, next seq, chain).

    With ``final`` a torn tail (bytes after the last newline, ignoring NULs
    left by a crash) is tolerated; any damaged complete line is an error.
    """
    view = memoryview(data)
    scratch = bytearray()
    offset = 0
    end = len(data)
    while offset < end:
        newline = data.find(b"\n", offset)
        if newline < 0:
            if final:
                break
            raise CorruptJournalError(f"{path}: incomplete entry at offset {offset}")
        line = view[offset : newline + 1]
        try:
            chain = _check_entry(line, chain, seq, run_id, scratch)
        except ValueError as exc:
            if final and not data[offset:].replace(b"\0", b"").rstrip(b"\0").count(b"\n"):
                break
            raise CorruptJournalError(f"{path}: bad entry at offset {offset}: {exc}") from None
        seq += 1
        offset = newline + 1
    return offset, seq, chain


def _check_entry(
    line: memoryview, prev_chain: bytes, seq: int, run_id: str, scratch: bytearray
) -> bytes:
    event, chain = read_entry(line, prev_chain, scratch)
    if event.seq != seq:
        raise ValueError(f"seq {event.seq} where {seq} was expected")
    if event.run_id != run_id:
        raise ValueError(f"entry belongs to run {event.run_id!r}, not {run_id!r}")
    return chain


def last_entry(path: Path, run_id: str, end: int | None = None) -> tuple[int, bytes]:
    """Seq and chain of a closed segment's last line, or of the line ending at byte ``end``
    (full checks are the reader's job)."""
    with open(open_regular(path, "journal segment"), "rb") as fh:
        size = fh.seek(0, os.SEEK_END) if end is None else end
        start = max(0, size - (1 << 20))
        fh.seek(start)
        tail = fh.read(size - start)
    lines = tail.rstrip(b"\n").rsplit(b"\n", 1)
    last = lines[-1] + b"\n"
    if len(tail) != size - start or not tail.endswith(b"\n"):
        raise CorruptJournalError(f"{path}: closed segment ends with an incomplete entry")
    try:
        event = decode_line(last)
        chain = stored_chain(last, len(last) - 1)
    except ValueError as exc:  # UnicodeDecodeError is one
        raise CorruptJournalError(f"{path}: bad last entry: {exc}") from None
    if len(last) < SUFFIX_LEN or event.run_id != run_id or len(chain) != 32:
        raise CorruptJournalError(f"{path}: last entry is not a chained entry of run {run_id!r}")
    return event.seq, chain


def position_exists(directory: Path, run_id: str, position: JournalPosition) -> bool:
    """True if a reader of this journal can stand at ``position`` (a checkpoint's): the
    entry before it has seq ``next_seq - 1`` and stores ``position.chain`` (the genesis
    chain before seq 1), and ends at ``offset`` of the segment ``segment_first_seq`` or,
    at offset 0, ends the segment before it."""
    if position.next_seq == 1:
        return (position.segment_first_seq, position.offset, position.chain) == (
            1,
            0,
            genesis_chain(run_id),
        )
    try:
        if position.offset:
            path = directory / segment_name(position.segment_first_seq)
            seq, chain = last_entry(path, run_id, position.offset)
        else:
            earlier = [p for f, p in journal_segments(directory) if f < position.segment_first_seq]
            if position.segment_first_seq != position.next_seq or not earlier:
                return False
            seq, chain = last_entry(earlier[-1], run_id)
    except (OSError, AuditJournalError):
        return False
    return seq == position.next_seq - 1 and chain == position.chain


class JournalReader:
    """Reads a run's journal in seq order, verifying the chain, and follows it as it grows.

    ``poll()`` returns what was appended since the last call; an entry that is
    still being written (no newline yet) is left for the next poll.
    """

    def __init__(
        self, directory: Path, run_id: str, position: JournalPosition | None = None
    ) -> None:
        self.directory = directory
        self.run_id = run_id
        if position is None:
            position = JournalPosition(1, 1, 0, genesis_chain(run_id))
        self._seq = position.next_seq
        self._segment = position.segment_first_seq
        self._offset = position.offset
        self._chain = position.chain
        self._fh: BinaryIO | None = None
        self._buf = b""
        self._scratch = bytearray()  # for re-encoding each event (journalline.read_entry)

    @property
    def position(self) -> JournalPosition:
        return JournalPosition(self._seq, self._segment, self._offset, self._chain)

    @classmethod
    def at_seq(cls, directory: Path, run_id: str, seq: int) -> JournalReader:
        """A reader whose next entry is ``seq`` (verifies the chain from the segment start)."""
        start = 1
        previous: Path | None = None  # the segment before ``start``: its last entry's chain
        current: Path | None = None
        for first, path in journal_segments(directory):
            if first > seq:
                break
            start, previous, current = first, current, path
        if start == 1 or previous is None:
            reader = cls(directory, run_id)
        else:
            prev_seq, chain = last_entry(previous, run_id)
            if prev_seq != start - 1:
                raise CorruptJournalError(
                    f"{directory / segment_name(start)}: segment starts at seq {start} "
                    f"but the previous segment ends at seq {prev_seq}"
                )
            reader = cls(directory, run_id, JournalPosition(start, start, 0, chain))
        while reader._seq < seq:
            if not reader.poll(limit=seq - reader._seq):
                break
        return reader

    def poll(self, limit: int | None = None, chains: list[bytes] | None = None) -> list[Event]:
        """Entries appended since the last poll (at most ``limit``), in seq order.

        With ``chains`` given, each returned entry's chain value is appended to it.
        """
        events: list[Event] = []
        while True:
            if self._fh is None and not self._open_segment():
                return events
            self._consume(events, limit, chains)
            if limit is not None and len(events) >= limit:
                return events
            assert self._fh is not None
            chunk = self._fh.read(_READ_CHUNK)
            if chunk:
                self._buf = self._buf + chunk if self._buf else chunk
                continue
            if self._seq == self._segment or not os.path.lexists(self._next_segment_path()):
                if not self._later_segment_has_data():
                    return events  # at the live end (a partial line is still being written)
                chunk = self._fh.read(_READ_CHUNK)  # a writer fills a segment before the next
                if chunk:
                    self._buf = self._buf + chunk if self._buf else chunk
                    continue
                raise CorruptJournalError(
                    f"{self._segment_path()}: entries from seq {self._seq} are missing "
                    "(a later segment holds entries)"
                )
            if self._buf:
                raise CorruptJournalError(
                    f"{self._segment_path()}: closed segment ends with an incomplete entry"
                )
            self.close()
            self._segment, self._offset = self._seq, 0

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._buf = b""

    def _segment_path(self) -> Path:
        return self.directory / segment_name(self._segment)

    def _next_segment_path(self) -> Path:
        return self.directory / segment_name(self._seq)

    def _later_segment_has_data(self) -> bool:
        """True if a segment after the next expected entry holds bytes: entries are missing."""
        for first, path in journal_segments(self.directory):
            if first > self._seq:
                try:
                    if path.lstat().st_size:
                        return True
                except FileNotFoundError:
                    continue
        return False

    def _open_segment(self) -> bool:
        try:
            fd = open_regular(self._segment_path(), "journal segment")
            self._fh = open(fd, "rb")  # noqa: SIM115 - kept across polls
        except FileNotFoundError:
            if self._segment != 1 or self._offset != 0:
                raise CorruptJournalError(f"{self._segment_path()}: segment is missing") from None
            if not journal_segments(self.directory):
                return False  # the journal has not been created yet
            # a starting writer may have created the first segment between our open and the
            # listing: look once more before calling it missing
            try:
                self._fh = open(self._segment_path(), "rb")  # noqa: SIM115 - kept across polls
            except FileNotFoundError:
                raise CorruptJournalError(f"{self._segment_path()}: segment is missing") from None
        self._fh.seek(self._offset)
        self._buf = b""
        return True

    def _consume(self, out: list[Event], limit: int | None, chains: list[bytes] | None) -> None:
        data = self._buf
        view = memoryview(data)
        find = data.find
        offset = 0
        chain, seq, run_id = self._chain, self._seq, self.run_id
        scratch = self._scratch
        room = -1 if limit is None else limit - len(out)  # entries still wanted (-1: all)
        try:
            while room and (newline := find(b"\n", offset)) >= 0:
                line = view[offset : newline + 1]
                try:
                    event, chain = read_entry(line, chain, scratch)
                    if event.seq != seq or event.run_id != run_id:
                        raise ValueError(f"seq {event.seq} of run {event.run_id!r} out of place")
                except ValueError as exc:
                    where = f"{self._segment_path()}: bad entry at offset {self._offset + offset}"
                    raise CorruptJournalError(f"{where}: {exc}") from None
                out.append(event)
                if chains is not None:
                    chains.append(chain)
                seq += 1
                offset = newline + 1
                room -= 1
        finally:
            self._chain, self._seq = chain, seq
            view.release()
        if offset:
            self._offset += offset
            self._buf = data[offset:]

    def __iter__(self) -> Iterator[Event]:
        """Everything complete now, then stop (use :meth:`follow` to wait for more)."""
        while True:
            batch = self.poll(limit=4096)
            if not batch:
                return
            yield from batch

    def follow(
        self,
        *,
        until: Callable[[Event], bool] | None = None,
        poll_interval: float = 0.005,
        timeout: float | None = None,
    ) -> Iterator[Event]:
        """Yield entries as they are appended; stop after one for which ``until`` is true."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = self.poll(limit=4096)
            for event in batch:
                yield event
                if until is not None and until(event):
                    return
            if not batch:
                if deadline is not None and time.monotonic() > deadline:
                    return
                time.sleep(poll_interval)
