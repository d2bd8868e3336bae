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

Thread-safety: one caller appends at a time (it assigns ``seq``; the recorder does,
under its own lock); flushes may run from any thread. The reader is :mod:`.reader`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

from ..errors import CorruptJournalError, JournalClosedError, StorageError
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
from ..model.events import BaseEvent, encode_event
from .base import JournalHead, JournalPosition, JournalWriter, Recovery, genesis_chain
from .lines import read_entry, seal
from .reader import JournalReader
from .segments import journal_segments, last_entry, segment_name

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
    "segment_name",
]

DEFAULT_SEGMENT_BYTES: Final = 64 << 20
MIN_SEGMENT_BYTES: Final = 4096
"""The smallest ``segment_bytes`` a store accepts (one page; every roll costs a file)."""
DEFAULT_FLUSH_INTERVAL: Final = 0.010
_MAX_BUFFER: Final = 8 << 20


class Journal(JournalWriter):
    """The writer of one run's journal (file backend). Exactly one per run at a time: the
    writer lease is ``.lock``, an exclusive ``flock`` held until :meth:`close`."""

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
        lock: threading.Lock | None = None,
    ) -> None:
        self.directory = directory
        self.run_id = run_id
        self.durability: Durability = durability
        self.segment_bytes = segment_bytes
        self._before_flush = before_flush
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_file(directory / ".lock", f"journal of run {run_id!r}")
        self._lock = threading.Lock() if lock is None else lock
        """Held while appending and while a flush takes what is buffered."""
        self._caller_locks = lock is not None
        """The caller holds ``_lock`` around each append (its own lock, given to us)."""
        if lock is not None:  # then append is _append, one Python frame less an event
            self.append = self._append  # type: ignore[method-assign]
        self._io_lock = threading.Lock()
        """Held while a flush writes (keeps the writes in order); its fsyncs come after."""
        self._sync_lock = threading.Lock()
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
        """The seq of the last event appended (0 before the first)."""
        return self.next_seq - 1

    @property
    def head(self) -> JournalHead:
        """The last seq and its chain hash, read together under the writer's lock."""
        with self._lock:
            return JournalHead(self.next_seq - 1, self._chain)

    @property
    def head_chain(self) -> str:
        """The chain hash of the last event appended, hex (the genesis value before the first)."""
        return self._chain.hex()

    def append(self, event: BaseEvent) -> None:
        """Append ``event`` (its ``seq`` must be :attr:`next_seq`), one caller at a time
        (holding the ``lock`` it gave the writer, if it gave one).

        Under ``always`` the caller must then call :meth:`commit` with the seq,
        *after* releasing its own lock, so other threads can share the fsync.

        After a failed write (the disk is full, ...) an append first writes what
        is buffered and is refused -- before it takes a seq -- if that fails too:
        no append is accepted while the journal knows it cannot write.
        """
        if self._caller_locks:
            self._append(event)
        else:
            with self._lock:
                self._append(event)

    def _append(self, event: BaseEvent) -> None:
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

    def write_behind(self, *, wait: bool = True) -> None:
        """Hand buffered entries to the OS now, without fsync, for a caller whose own
        append was already accepted: a failure is not raised here but kept, and the next
        :meth:`append` reports it (and is refused unless the write then succeeds).
        ``wait=False``: nothing if a flush is under way (it may be waiting for its fsync)."""
        if not wait and self._io_lock.locked():
            return  # a flush is writing now; what it did not take waits for the next
        with contextlib.suppress(StorageError):  # kept in _write_error by flush()
            self.flush(fsync=False)

    def flush(self, *, fsync: bool) -> None:
        """Write buffered entries (after the payloads they refer to), optionally fsync.

        The fsyncs (payloads first, then entries) come after the writes, outside the lock
        that keeps the writes in order: a write without fsync (the recorder handing its
        entries to a projector, :meth:`write_behind`) does not wait for a group commit's
        fsync, which makes durable all that was written before it. A segment retired in
        the meantime and closed by another flush was made durable by that flush."""
        with self._io_lock:
            with self._lock:
                files = [*self._retired, self._file]
                self._retired = []
                last = self.next_seq - 1
                work = [(f, f.take()) for f in files if f.pending]
                new_dirs, self._new_dirs = self._new_dirs, False
            retired = files[:-1]
            if not work and not fsync and not retired:
                if new_dirs:
                    with self._lock:
                        self._new_dirs = True
                return
            try:
                if work and self._before_flush is not None:
                    self._before_flush(False)  # the payloads reach the OS before the entries
            except BaseException as exc:
                self._put_back(work, retired, new_dirs)
                self._failed(exc)
                raise
            try:
                write_in_order(work)
            except BaseException as exc:
                self._put_back([], retired, new_dirs)
                self._failed(exc)
                raise
        if fsync or retired:
            self._sync(files[-1], retired, new_dirs, fsync)
        self._write_error = None
        if fsync:
            self.durable_seq = max(self.durable_seq, last)
        elif new_dirs:  # not synced yet: the next fsyncing flush does it
            with self._lock:
                self._new_dirs = True

    def _sync(
        self, current: AppendFile, retired: list[AppendFile], new_dirs: bool, fsync: bool
    ) -> None:
        """:meth:`flush`'s fsyncs: the payloads, then (with ``fsync``) the current segment
        -- not only what this flush wrote: a write without fsync may have left bytes on it
        that no fsync has covered yet -- and every retired one, which is then closed."""
        with self._sync_lock:
            try:
                if fsync and self._before_flush is not None:
                    self._before_flush(True)
                if fsync and current.fd >= 0 and current.written > current.synced:
                    current.sync()
                for file in retired:
                    file.sync()
                    file.close()
                if fsync and new_dirs:
                    self._sync_directory()
            except BaseException as exc:
                self._put_back([], retired, new_dirs)
                self._failed(exc)
                raise

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
        unwritten: list[tuple[AppendFile, bytes]],
        retired: list[AppendFile],
        new_dirs: bool,
    ) -> None:
        """A flush failed: give back what it took, so the next flush writes it, in order
        (dropping it would leave a gap in the chain on disk)."""
        with self._lock:
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
        with self._lock:
            if self._closed:
                return
            self._closed = True  # from here on appends are refused: nothing can slip past
        try:
            self.flush(fsync=self.durability != "none")
        except BaseException:
            with self._lock:
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
        self._lock.release()
        try:
            self.flush(fsync=self.durability != "none")
        except StorageError as exc:
            raise _refused(exc) from error
        finally:
            self._lock.acquire()
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
