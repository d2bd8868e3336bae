"""Low-level file plumbing shared by the journal and the payload store.

* :class:`AppendFile` buffers appends in memory and writes them with one
  syscall per flush, so the hot path (``append``/``put``) makes no syscall;
* :class:`Flusher` is the group-commit thread of ``batch``/``none`` durability;
* :func:`validate_id` / :func:`validate_ref` keep every path inside the root.

Thread-safety: ``AppendFile`` is not thread-safe by itself; its owner (a
journal or the payload store) serializes access with its own lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, Generic, Literal, TypeVar

from ..errors import (
    DiskFullError,
    InvalidIdError,
    InvalidRefError,
    JournalLockedError,
    StorageError,
    UnsafePathError,
)

__all__ = [
    "DURABILITY_MODES",
    "AppendFile",
    "Durability",
    "Flusher",
    "atomic_write",
    "file_size",
    "fsync_dir",
    "lock_file",
    "open_file",
    "read_file",
    "ref_digest",
    "validate_id",
    "validate_ref",
    "write_in_order",
]

Durability = Literal["always", "batch", "none"]
DURABILITY_MODES: Final = ("always", "batch", "none")

_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_WRITE_CHUNK: Final = 1 << 20
# never through a symbolic link; a FIFO with no reader fails (ENXIO) instead of blocking
_NO_LINK: Final = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NOT_FOLLOWED: Final = (errno.ELOOP, errno.ENXIO, errno.EISDIR)
T = TypeVar("T")


def validate_id(value: object, what: str = "id") -> str:
    """Accept 1-128 chars of ``[A-Za-z0-9._:@-]`` not starting with a symbol and not ``..``.

    That excludes ``/``, ``\\``, NUL, whitespace and a leading ``.`` so an id
    used as a path component can never escape its directory.
    """
    if type(value) is not str and isinstance(value, str):
        value = str.__str__(value)  # a StrEnum member, ...: its plain str
    if type(value) is not str or _ID_RE.fullmatch(value) is None or ".." in value:
        raise InvalidIdError(
            f"invalid {what} {value!r}: use 1-128 characters from A-Z a-z 0-9 . _ : @ -, "
            "starting with a letter or digit, without '..'"
        )
    return value


def validate_ref(ref: object) -> str:
    """Accept only a 64-character lowercase hex SHA-256 digest."""
    ref_digest(ref)
    return ref  # type: ignore[return-value]


def ref_digest(ref: object) -> bytes:
    """The 32-byte digest of a valid ref (64 lowercase hex characters), else InvalidRefError."""
    if type(ref) is str and len(ref) == 64:
        try:
            digest = bytes.fromhex(ref)
        except ValueError:
            pass
        else:
            if digest.hex() == ref:  # rejects upper case and anything fromhex tolerates
                return digest
    raise InvalidRefError(f"invalid payload ref {ref!r}: expected 64 lowercase hex characters")


def storage_error(exc: OSError, action: str) -> StorageError:
    """Map an OSError to the library's hierarchy (ENOSPC gets its own type)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return DiskFullError(f"{action}: {os.strerror(exc.errno)}")
    if exc.errno in _NOT_FOLLOWED:
        return UnsafePathError(
            f"{action}: a symbolic link, FIFO, directory or other special file is in the way "
            "(refused: files in the store are never reached through one)"
        )
    return StorageError(f"{action}: {exc}")


def open_file(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` for a file inside the store: only a regular file, never through a symbolic
    link. Raises ``OSError`` as ``os.open`` does (a link or special file as ELOOP, ENXIO or
    EISDIR, which :func:`storage_error` turns into :class:`UnsafePathError`)."""
    fd = os.open(path, flags | _NO_LINK, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.ENXIO, f"{path} is not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def fsync_dir(path: Path) -> None:
    """Make a directory entry (a new or renamed file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new file.

    ``durable`` also fsyncs the file and its directory (survives power loss).
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.unlink(missing_ok=True)  # left by a crash of a process with this pid
        fd = open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with open(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise storage_error(exc, f"cannot write {path}") from exc
    if durable:
        fsync_dir(path.parent)


def read_file(path: Path) -> bytes:
    """The bytes of a regular file in the store (:func:`open_file`). ``FileNotFoundError``
    if it is missing; any other failure as :func:`storage_error` types it."""
    try:
        with open(open_file(path, os.O_RDONLY), "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise storage_error(exc, f"cannot read {path}") from None


def file_size(path: Path) -> int:
    """The size of a regular file in the store, not through a link (``FileNotFoundError`` if
    missing, :class:`UnsafePathError` for a link or special file)."""
    found = os.lstat(path)
    if not stat.S_ISREG(found.st_mode):
        raise UnsafePathError(f"{path} is not a regular file (refused: never followed)")
    return found.st_size


def lock_file(path: Path, what: str) -> int:
    """Take an exclusive, non-blocking ``flock`` on ``path``; the fd holds it until closed."""
    try:
        fd = open_file(path, os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        raise storage_error(exc, f"cannot open lock file {path}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalLockedError(f"{what} is in use by another process ({path})") from None
    return fd


class AppendFile:
    """An append-only file with an in-memory tail buffer.

    ``size`` counts every byte appended (buffered or not); ``written`` counts
    the bytes handed to the OS. A failed write is undone with ``ftruncate``
    and the buffer is kept, so a later flush can retry and nothing appended
    is dropped.
    """

    __slots__ = ("_parts", "fd", "path", "pending", "size", "synced", "written")

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.fd = open_file(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self.size = size
        self.written = size
        self.synced = size
        """Bytes known to be on disk: up to here as of the last successful :meth:`sync`."""
        # the appended pieces, joined once when taken: a bytearray grown piece by piece
        # is reallocated (and copied) every ~12 % of growth, ~8 copies of each byte
        # between two flushes (~7 % of the recorder's time on the reference workload)
        self._parts: list[bytes] = []
        self.pending = 0
        """Bytes buffered, not yet taken (an attribute: read after every append)."""

    def append(self, data: bytes | bytearray | memoryview) -> int:
        """Buffer ``data`` (a mutable buffer is copied); return the offset it starts at."""
        offset = self.size
        if type(data) is not bytes:
            data = bytes(data)
        self._parts.append(data)
        size = len(data)
        self.pending += size
        self.size += size
        return offset

    def append_record(self, header: bytes, data: bytes) -> int:
        """Buffer ``header`` then ``data`` (both ``bytes``); return the offset ``data``
        starts at."""
        parts = self._parts
        parts.append(header)
        parts.append(data)
        start = self.size + len(header)
        end = start + len(data)
        self.pending += end - self.size
        self.size = end
        return start

    def take(self) -> bytes:
        """Remove and return the buffered bytes (for a caller that writes them later).

        One copy (the pieces joined); appends go to a fresh list.
        """
        parts = self._parts
        self._parts = []
        self.pending = 0
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def give_back(self, data: bytes | bytearray) -> None:
        """Return bytes taken earlier but not written, ahead of anything appended since."""
        self._parts.insert(0, bytes(data))
        self.pending += len(data)

    def write_out(self, data: bytes | bytearray | None = None) -> None:
        """Write the buffer (or ``data`` taken earlier) to the OS, in order."""
        if data is None:
            data = self.take()
        view = memoryview(data)
        done = 0
        try:
            while done < len(view):
                done += os.write(self.fd, view[done : done + _WRITE_CHUNK])
        except OSError as exc:
            os.ftruncate(self.fd, self.written)
            self.give_back(data)  # keep it for the retry, ahead of newer bytes
            raise storage_error(exc, f"cannot write {self.path}") from exc
        self.written += done

    def sync(self) -> None:
        written = self.written
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise storage_error(exc, f"cannot fsync {self.path}") from exc
        self.synced = written

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def write_in_order(steps: Sequence[tuple[AppendFile, bytes | bytearray]]) -> None:
    """Write bytes taken from several files, in order. If one write fails, its bytes and
    those of every later step are given back, so a retry writes them all, in order."""
    for index, (file, data) in enumerate(steps):
        try:
            file.write_out(data)  # gives back its own bytes if it fails
        except BaseException:
            for later, rest in steps[index + 1 :]:
                later.give_back(rest)
            raise


class Flusher(Generic[T]):
    """A daemon thread that calls ``flush`` every ``interval`` seconds (group commit).

    It holds only a weak reference to its owner so a forgotten store can be
    collected. A failed flush does not stop it (it tries again next interval);
    the owner's ``flush`` keeps the error and reports it on its next call.
    """

    def __init__(self, owner: T, flush: Callable[[T], None], interval: float) -> None:
        self._owner = weakref.ref(owner)
        self._flush = flush
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="auditjournal-flusher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            owner = self._owner()
            if owner is None:
                return
            with contextlib.suppress(Exception):  # kept and reported by the owner's flush
                self._flush(owner)
            del owner

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


def lock_held(path: Path) -> bool:
    """Whether a process holds the ``flock`` that :func:`lock_file` takes on ``path``
    (False if there is no such file). Probes with a shared, non-blocking lock on a
    read-only descriptor, so it also works on a read-only copy and takes nothing away."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError as exc:  # a link planted there, a file we may not read: say so
        raise storage_error(exc, f"cannot probe lock file {path}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing also releases the probe's own lock
    return False
