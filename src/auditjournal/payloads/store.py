"""Content-addressed payload store: append-only pack files with an index.

Layout under ``<root>/payloads/``::

    pack-000001.dat   records: b"AJP1" | sha256 digest (32) | length (u64 LE) | data
    pack-000001.idx   entries: sha256 digest (32) | data offset (u64 LE) | length (u64 LE)

One file per payload costs a create + fsync + rename each (about 2,400/s on
this kind of disk), so payloads are appended to a few large pack files
instead, buffered in memory and written with one syscall per group commit.
The ``.idx`` beside each pack is derived data: it lets a store open without
reading the packs, and it is rebuilt from the pack's tail after a crash.

A ref is the lowercase hex SHA-256 of the payload's canonical JSON bytes, so
identical content is stored once. Every read re-hashes the bytes
(:class:`PayloadIntegrityError` on mismatch).

Several processes may share one store: each writer holds an exclusive
``flock`` on the pack it appends to (others pick or create another pack);
readers see other writers' payloads once those are flushed (a miss re-reads
the indexes).

Thread-safety: all public methods may be called from several threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import msgspec

from ..errors import (
    CanonicalizationError,
    PayloadIntegrityError,
    PayloadNotFoundError,
    PayloadTooLargeError,
    StorageError,
)
from ..fs.digests import sha256_digest as _digest
from ..fs.storage import (
    AppendFile,
    file_size,
    open_file,
    read_file,
    ref_digest,
    storage_error,
    write_in_order,
)
from ..model.canonical import MAX_VALUE_DEPTH, PURE_PYTHON_ENV, canonical_json
from . import packindex
from .packindex import CompactIndex
from .packs import (
    ENTRY,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    PackRecovery,
    index_problem,
    pack_header,
    pack_lengths,
    pack_records,
    repair_pack,
)
from .readahead import ReadAhead

__all__ = ["DEFAULT_MAX_PAYLOAD_BYTES", "PackRecovery", "PayloadStore"]


_in_window: Callable[..., bytes | None] | None
_lookup: object | None  # the same read for the compiled record loop (window_source)
try:  # setup.py, optional: get()'s usual case in a replay, compiled (_window_accel.c)
    from ._window_accel import in_window as _in_window
    from ._window_accel import lookup as _lookup
except ImportError:  # pragma: no cover - a build without a C compiler or OpenSSL headers
    _in_window = _lookup = None
if os.environ.get(PURE_PYTHON_ENV) or not packindex.layout_is(HEADER_SIZE, 28, 26):
    _in_window = _lookup = None  # (it knows the header size and the index's bit fields)
DEFAULT_PACK_BYTES: Final = 256 << 20
DEFAULT_MAX_PAYLOAD_BYTES: Final = 64 << 20
_RACY_NS: Final = 100_000_000  # a directory mtime this old is past its clock tick (coarse)


class _Writer:
    """The pack this store appends to, with its index file; owned under the store lock."""

    def __init__(self, number: int, dat: AppendFile, idx: AppendFile) -> None:
        self.number = number
        self.dat = dat
        self.idx = idx

    def close(self) -> None:
        self.dat.close()
        self.idx.close()


class PayloadStore:
    """Content-addressed, deduplicating, integrity-checked payload storage."""

    def __init__(
        self,
        directory: Path | str,
        *,
        pack_bytes: int = DEFAULT_PACK_BYTES,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pack_bytes = pack_bytes
        self.max_payload_bytes = max_payload_bytes
        self.recoveries: list[PackRecovery] = []
        self._lock = threading.Lock()
        self._fd_lock = threading.Lock()
        self._io_lock = threading.Lock()  # keeps flushes (take + write) in order
        self._sync_lock = threading.Lock()  # their fsyncs, after the writes (flush())
        # payloads this store wrote, and the few the compact table cannot hold
        self._index: dict[bytes, tuple[int, int, int]] = {}
        # payloads loaded from the packs' .idx files: 16 bytes each (packindex.py)
        self._table = CompactIndex()
        self._idx_read: dict[int, int] = {}  # pack number -> bytes of its .idx loaded
        self._listing: tuple[int, int, list[int]] = (-1, -1, [])  # (dir mtime, when, packs)
        self._read_fds: dict[int, int] = {}
        self._writer: _Writer | None = None  # the pack being appended to
        self._retired: list[_Writer] = []  # full packs with bytes still to flush
        self._recent: dict[bytes, bytes] | None = None  # see keep_recent()
        self._ahead = ReadAhead(self._read_some)  # the window get() reads through
        self._recent_bytes = 0
        self._recent_cap = 0
        self._closed = False
        self.refresh()

    # -- writing ----------------------------------------------------------------------

    def put(self, obj: Any, what: str = "payload") -> str:
        """Store the canonical JSON of ``obj``; return its ref.

        ``obj`` may nest :data:`MAX_VALUE_DEPTH` levels: the export record that
        inlines it is one level deeper. A :class:`CanonicalizationError` names
        ``what`` (the recorder's argument) and the path inside it.
        """
        try:
            data = canonical_json(obj, max_depth=MAX_VALUE_DEPTH)
        except CanonicalizationError as exc:
            raise CanonicalizationError(f"{what}: {exc}") from None
        return self.put_canonical(data)

    def put_canonical(self, data: bytes) -> str:
        """Store bytes that are already canonical JSON; return their ref (sha256 hex)."""
        if type(data) is not bytes:  # kept by reference until written: not a mutable buffer
            data = bytes(data)
        size = len(data)
        if size > self.max_payload_bytes:
            raise PayloadTooLargeError(
                f"payload of {size:,} bytes exceeds the limit of {self.max_payload_bytes:,} bytes"
            )
        digest = _digest(data)
        index = self._index
        if digest in index:  # dedup without the lock: entries are only ever added
            return digest.hex()
        with self._lock:
            if digest not in index and (not self._table.count or self._loaded(digest) is None):
                writer = self._writer
                needed = HEADER_SIZE + size
                if writer is None or writer.dat.size + needed > self.pack_bytes:
                    writer = self._roll(needed)
                start = writer.dat.append_record(pack_header(MAGIC, digest, size), data)
                writer.idx.append(digest + pack_lengths(start, size))
                index[digest] = (writer.number, start, size)
                if self._recent is not None:
                    self._remember(digest, data)
        return digest.hex()

    def keep_recent(self, cap_bytes: int = 8 << 20) -> None:
        """Keep the payloads this process wrote last (up to ``cap_bytes``) in memory.

        For in-process projectors that trail the recorder by a few hundred
        events: :meth:`get_recent` then serves them without a syscall (which,
        under the GIL, would hand the interpreter to the recording thread).
        """
        with self._lock:
            if self._recent is None:
                self._recent = {}
            self._recent_cap = max(self._recent_cap, cap_bytes)

    def _remember(self, digest: bytes, data: bytes) -> None:
        recent = self._recent
        assert recent is not None
        recent[digest] = data
        self._recent_bytes += len(data)
        while self._recent_bytes > self._recent_cap and recent:
            self._recent_bytes -= len(recent.pop(next(iter(recent))))

    @property
    def keeps_recent(self) -> bool:
        """Whether :meth:`get_recent` serves payloads from memory (:meth:`keep_recent`)."""
        return self._recent is not None

    def get_recent(self, ref: str) -> bytes:
        """Like :meth:`get`, but served from memory when this process wrote the payload
        recently (those bytes were hashed when they were put; nothing was read)."""
        recent = self._recent
        if recent is not None:
            data = recent.get(bytes.fromhex(ref))
            if data is not None:
                return data
        return self.get(ref)

    def flush(self, *, fsync: bool) -> None:
        """Hand buffered payloads to the OS (and fsync them when asked): pack, then index.
        The fsyncs follow the writes outside the lock that orders them: a flush without
        fsync (a hand-over to the projector) never waits for another's fsync."""
        with self._io_lock:
            with self._lock:
                retired, current = list(self._retired), self._writer
                writers = [*retired, current] if current else retired
                self._retired.clear()
                work = [(w, w.dat.take(), w.idx.take()) for w in writers if w.dat.pending or fsync]
            try:
                write_in_order([s for w, d, i in work for s in ((w.dat, d), (w.idx, i))])
            except BaseException:
                self._put_back(retired)
                raise
        if not fsync and not retired:
            return
        # Only packs retired before the take: one retired since may hold new bytes. The
        # current pack, if closed meanwhile, was retired and made durable by another flush.
        synced = [*retired, *([current] if fsync and current and current.dat.fd >= 0 else [])]
        with self._sync_lock:
            try:
                for writer in synced:
                    writer.dat.sync()
                    writer.idx.sync()
                for writer in retired:  # durable now: let go
                    writer.close()
            except BaseException:
                self._put_back(retired)
                raise

    def _put_back(self, retired: list[_Writer]) -> None:
        with self._lock:  # the next flush retries, in order
            self._retired[0:0] = [w for w in retired if w.dat.fd >= 0]

    def forked_reader(self) -> None:
        """Make this copy of the store, in a process just forked from its owner, a reader.

        The owner flushed before forking. Locks another thread of the owner held at
        the fork would never be released here, so they are replaced; the pack
        writers are dropped (a reader must never write, and the owner keeps them).
        """
        self._lock = threading.Lock()
        self._fd_lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._writer = None
        self._retired = []
        self._ahead.clear()
        self._closed = True  # close() must not touch the owner's packs

    def close(self) -> None:
        """Write and fsync what is buffered, release the pack lock and read handles."""
        if self._closed:
            return
        self.flush(fsync=True)
        with self._lock:
            self._closed = True
            for writer in (self._writer, *self._retired):
                if writer is not None:
                    writer.close()
            self._writer = None
            self._retired.clear()
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()

    # -- reading ----------------------------------------------------------------------

    def get(self, ref: str) -> bytes:
        """The payload's canonical JSON bytes, re-hashed against ``ref`` before returning."""
        window = self._ahead.window
        if _in_window is not None and window is not None:
            data = _in_window(ref, *self._table.columns(), *window)
            if data is not None:  # else the Python path decides (it checks all again)
                return data
        digest = ref_digest(ref)
        if digest not in self._index:
            first = self._table.first(digest)
            loaded = None if first is None else self._get_loaded(digest, ref, first)
            if loaded is not None:
                return loaded
        number, offset, size = self._locate(digest, ref)
        data = self._read(number, offset, size)
        if _digest(data) != digest:
            raise PayloadIntegrityError(
                f"payload {ref} in pack-{number:06d}.dat at offset {offset} does not match its hash"
            )
        return data

    @property
    def window_sources(self) -> Callable[[], tuple[object, ...] | None] | None:
        """:meth:`window_source` for the compiled record loop, or None where the compiled
        read is not built (a source that is always None would cost a call per payload)."""
        return self.window_source if _lookup is not None else None

    def window_source(self) -> tuple[object, ...] | None:
        """The compiled read of :meth:`get` with the table and window it reads, for the
        compiled record loop (``_payload_window.h``); None: no window yet."""
        window = self._ahead.window
        if _lookup is None or window is None:
            return None
        return (_lookup, *self._table.columns(), *window)

    def check_stored(self, ref: str) -> None:
        """Raise unless the pack record of ``ref`` is intact: its header (magic, digest,
        length) as well as its data. For ``verify``; ``get`` only checks the data."""
        digest = ref_digest(ref)
        number, offset, size = self._locate(digest, ref)
        start = offset - HEADER.size
        raw = self._read(number, start, HEADER.size + size) if start >= 0 else b""
        if (
            len(raw) != HEADER.size + size
            or HEADER.unpack_from(raw) != (MAGIC, digest, size)
            or _digest(memoryview(raw)[HEADER.size :]) != digest
        ):
            raise PayloadIntegrityError(
                f"pack-{number:06d}.dat: the record of payload {ref} at offset {max(start, 0)} "
                "is damaged (header or data)"
            )

    def check_indexes(self) -> str:
        """'' if every pack index is well-formed (:func:`packs.index_problem`: one small
        ``pread`` per payload), else the first problem. For ``verify``."""
        self.flush(fsync=False)
        for number in self._pack_numbers():
            try:
                raw = read_file(self._idx_path(number))
                dat_size = file_size(self._dat_path(number))
            except FileNotFoundError:
                return f"pack-{number:06d}: its .dat or .idx file is missing"
            except StorageError as exc:  # a link or special file, unreadable
                return str(exc)
            problem = index_problem(
                f"pack-{number:06d}.idx", raw, dat_size, self._header_reader(number)
            )
            if problem:
                return problem
        return ""

    def _header_reader(self, number: int) -> Callable[[int], bytes]:
        return lambda offset: self._read_some(number, offset - HEADER_SIZE, HEADER_SIZE)

    def get_json(self, ref: str) -> Any:
        """The payload decoded from JSON."""
        return msgspec.json.decode(self.get(ref))

    def __contains__(self, ref: object) -> bool:
        digest = ref_digest(ref)
        if digest in self._index or self._loaded(digest) is not None:
            return True
        self.refresh()
        return digest in self._index or self._loaded(digest) is not None

    def refs(self) -> Iterator[str]:
        """Every ref in the store (from the packs' indexes, plus this store's unflushed ones)."""
        self.flush(fsync=False)
        seen: set[bytes] = set()
        for number in self._pack_numbers():
            try:
                raw = read_file(self._idx_path(number))
            except FileNotFoundError:
                continue
            whole = len(raw) - len(raw) % ENTRY.size  # a torn last entry is not a ref
            for digest, _offset, _size in ENTRY.iter_unpack(raw[:whole]):
                if digest not in seen:
                    seen.add(digest)
                    yield digest.hex()
        for digest in list(self._index):
            if digest not in seen:
                yield digest.hex()

    def refresh(self, *, quick: bool = False) -> None:
        """Load index entries other writers have flushed since we last looked; an ``.idx``
        whose size is what was loaded is not opened. ``quick`` (a live export's reads,
        about once a step): the packs listed last time if the directory's mtime is the
        one that listing saw, 100 ms before it (a pack made in the same coarse clock
        tick leaves the mtime as it was); a payload still missing gets a full refresh."""
        with self._lock:
            own = {w.number for w in (self._writer, *self._retired) if w is not None}
            numbers = self._listed_packs() if quick else self._pack_numbers()
            sizes: dict[int, int] = {}
            for number in numbers:
                if number not in own:  # our own packs: the in-memory index is ahead of the file
                    with contextlib.suppress(FileNotFoundError):
                        sizes[number] = file_size(self._idx_path(number))
            unloaded = sum(size - self._idx_read.get(n, 0) for n, size in sizes.items())
            self._table.reserve(self._table.count + max(unloaded, 0) // ENTRY.size)
            for number, size in sizes.items():
                if size != self._idx_read.get(number, 0):
                    self._load_index(number)

    def _listed_packs(self) -> list[int]:
        """The pack numbers, listed again only if the directory may have changed."""
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except OSError:  # gone: the full listing finds nothing, as before
            return self._pack_numbers()
        listed_mtime, listed_at, numbers = self._listing
        if mtime != listed_mtime or listed_at - mtime <= _RACY_NS:  # (the time before listing)
            self._listing = (mtime, time.time_ns(), numbers := self._pack_numbers())
        return numbers

    # -- internals --------------------------------------------------------------------

    def _loaded(self, digest: bytes) -> tuple[int, int, int] | None:
        """A location from the compact table, confirmed by the record header's digest."""
        for number, offset, size in self._table.candidates(digest):
            if offset >= HEADER_SIZE:
                head = self._read_some(number, offset - HEADER_SIZE, HEADER_SIZE)
                if head[4:36] == digest:
                    return number, offset, size
        return None

    def _get_loaded(self, digest: bytes, ref: str, first: tuple[int, int, int]) -> bytes | None:
        """``get`` for a payload of the compact table (``first``: its first candidate
        there): header and data in one ``pread``."""
        data = self._fetch_candidate(first, digest, ref)
        if data is None:  # another payload with the same digest prefix: try the others
            for location in self._table.candidates(digest):
                if location != first:
                    data = self._fetch_candidate(location, digest, ref)
                    if data is not None:
                        break
        return data

    def _fetch_candidate(
        self, location: tuple[int, int, int], digest: bytes, ref: str
    ) -> bytes | None:
        number, offset, size = location
        if offset < HEADER_SIZE:
            return None
        buf, at = self._ahead.read(number, offset - HEADER_SIZE, HEADER_SIZE + size)
        if buf[at + 4 : at + 36] != digest:  # the record header's digest
            return None
        data = buf[at + HEADER_SIZE : at + HEADER_SIZE + size]
        if len(data) != size or _digest(data) != digest:
            raise PayloadIntegrityError(
                f"payload {ref} in pack-{number:06d}.dat at offset {offset} does not match its hash"
            )
        return data

    def _locate(self, digest: bytes, ref: str) -> tuple[int, int, int]:
        loc = self._index.get(digest) or self._loaded(digest)
        if loc is None:
            self.refresh(quick=True)
            loc = self._index.get(digest) or self._loaded(digest)
        if loc is None:
            self.refresh()
            loc = self._index.get(digest) or self._loaded(digest)
            if loc is None:
                raise PayloadNotFoundError(f"no payload with ref {ref} in {self.directory}")
        for writer in (self._writer, *self._retired):
            if (
                writer is not None
                and loc[0] == writer.number
                and loc[1] + loc[2] > writer.dat.written
            ):
                self.flush(fsync=False)
        return loc

    def _read_some(self, number: int, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes (fewer at the end of the pack)."""
        return os.pread(self._read_fd(number), size, offset)

    def _read_fd(self, number: int) -> int:
        fd = self._read_fds.get(number)
        if fd is None:
            with self._fd_lock:  # not self._lock: put_canonical reads while holding it
                fd = self._read_fds.get(number)
                if fd is None:
                    try:
                        fd = open_file(self._dat_path(number), os.O_RDONLY)
                    except OSError as exc:
                        raise storage_error(exc, f"cannot open pack-{number:06d}.dat") from None
                    self._read_fds[number] = fd
        return fd

    def _read(self, number: int, offset: int, size: int) -> bytes:
        """Exactly ``size`` bytes, or PayloadIntegrityError (the pack is cut short)."""
        data = self._read_some(number, offset, size)
        if len(data) != size:
            raise PayloadIntegrityError(
                f"pack-{number:06d}.dat is truncated: payload at offset {offset} is incomplete"
            )
        return data

    def _pack_numbers(self) -> list[int]:
        numbers = []
        for path in self.directory.glob("pack-*.dat"):
            stem = path.stem[5:]
            if stem.isdigit():
                numbers.append(int(stem))
        return sorted(numbers)

    def _dat_path(self, number: int) -> Path:
        return self.directory / f"pack-{number:06d}.dat"

    def _idx_path(self, number: int) -> Path:
        return self.directory / f"pack-{number:06d}.idx"

    def _load_index(self, number: int) -> None:
        """Read new, complete entries of a pack's index (caller holds the lock)."""
        done = self._idx_read.get(number, 0)
        try:
            with open(open_file(self._idx_path(number), os.O_RDONLY), "rb") as fh:
                fh.seek(done)
                raw = fh.read()
            dat_size = file_size(self._dat_path(number))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise storage_error(exc, f"cannot read pack-{number:06d}.idx") from None
        usable = len(raw) - len(raw) % ENTRY.size
        taken, unfit = self._table.load(memoryview(raw)[:usable], number, dat_size)
        for digest, offset, size in unfit:
            self._index.setdefault(digest, (number, offset, size))
        self._idx_read[number] = done + taken * ENTRY.size

    def _roll(self, needed: int) -> _Writer:
        """Lock a pack with room for ``needed`` bytes (or create one) (caller holds the lock)."""
        if self._writer is not None:
            self._retired.append(self._writer)  # written, synced and closed by the next flush
            self._writer = None
        numbers = self._pack_numbers()
        for number in reversed(numbers):
            writer = self._try_claim(number, needed)
            if writer is not None:
                return writer
        number = (numbers[-1] if numbers else 0) + 1
        while True:
            try:
                fd = os.open(self._dat_path(number), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                number += 1
                continue
            os.close(fd)
            writer = self._try_claim(number, 0)
            if writer is not None:
                return writer
            number += 1

    def _try_claim(self, number: int, needed: int) -> _Writer | None:
        path = self._dat_path(number)
        try:
            size = file_size(path)
            if size >= self.pack_bytes or (size and size + needed > self.pack_bytes):
                return None
        except FileNotFoundError:
            return None
        try:
            dat = AppendFile(path, 0)
        except OSError as exc:
            raise storage_error(exc, f"cannot open {path}") from None
        try:
            fcntl.flock(dat.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            dat.close()
            return None
        try:
            idx = AppendFile(self._idx_path(number), 0)
            self._recover(number, dat, idx)
        except BaseException:
            dat.close()
            raise
        writer = _Writer(number, dat, idx)
        self._writer = writer
        return writer

    def _recover(self, number: int, dat: AppendFile, idx: AppendFile) -> None:
        """Make pack and index agree after a crash; index the pack's unindexed tail."""
        entries, recovery = repair_pack(dat, idx, read_file(self._idx_path(number)))
        if recovery is not None:
            self.recoveries.append(recovery)
        for digest, offset, size in entries:
            if not self._table.add(digest, number, offset, size):
                self._index.setdefault(digest, (number, offset, size))
        self._idx_read[number] = idx.size

    def iter_records(self) -> Iterator[tuple[str, int, int, bytes, bool]]:
        """Scan every pack: ``(pack name, offset, length, digest, intact)`` per record.

        For ``verify``: unlike ``get`` it reads the packs themselves, not the index.
        """
        self.flush(fsync=False)
        for number in self._pack_numbers():
            yield from pack_records(f"pack-{number:06d}.dat", read_file(self._dat_path(number)))
