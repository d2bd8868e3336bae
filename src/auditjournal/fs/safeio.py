"""Opening and parsing files that someone else may have written: evidence and the store.

Every reader of evidence (verify, extract, verify-bundle, tail, the typed
reimport, the export projector's checkpoint, the journal) and every writer
inside the store goes through these helpers, so the rules live in one place:

* Only regular files are opened, and never through a symbolic link
  (``O_NOFOLLOW``). ``O_NONBLOCK`` makes opening a FIFO return at once, so a
  FIFO is refused instead of hanging the reader; a directory, device or socket
  is refused as well (:class:`UnsafePathError`).
* Directories inside the store are created and entered only if they are real
  directories, not symbolic links (:func:`real_dir`): a link planted in a store
  would send a run's data outside its root.
* Whole-file reads are bounded (the ``MAX_*`` sizes below), so a huge file is a
  clear error, not an exhausted memory.
* JSON is strict: an object naming a member twice is refused
  (:class:`DuplicateMemberError`). Parsers disagree on which of the two counts
  (msgspec, Python's json and jq keep the last, others the first), so a verdict
  reached on one reading would not hold for another. Nesting deeper than the
  parser can take is :class:`MalformedEvidenceError`, not a ``RecursionError``.
* Names that evidence gives for files (a manifest's chunks) must be plain names
  in their directory (:func:`plain_name`).

The root directory a caller names (``AuditStore.open(root)``, the export given
to ``verify``) is the caller's choice and may itself be reached through links;
everything below it is held to these rules.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, Final, TypeVar, overload

import msgspec

from ..errors import (
    AuditJournalError,
    DuplicateMemberError,
    MalformedEvidenceError,
    StorageError,
    UnsafePathError,
)
from ..model.canonical import canonical_json
from .storage import open_file

__all__ = [
    "MAX_BUNDLE_BYTES",
    "MAX_CHECKPOINT_BYTES",
    "MAX_LISTING_BYTES",
    "MAX_MANIFEST_BYTES",
    "check_canonical",
    "decode_strict",
    "inside",
    "open_regular",
    "plain_name",
    "read_regular",
    "real_dir",
    "reject_duplicate_members",
]

MAX_MANIFEST_BYTES: Final = 256 << 20  # ~1M chunks listed
MAX_LISTING_BYTES: Final = 256 << 20
MAX_CHECKPOINT_BYTES: Final = 256 << 20
MAX_BUNDLE_BYTES: Final = 1 << 30

_GENERIC: Final = msgspec.json.Decoder()
_COMPACT: Final = msgspec.json.Encoder()
T = TypeVar("T")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _refused(path: Path | str, what: str, kind: str) -> UnsafePathError:
    return UnsafePathError(f"{path}: {what} is {kind} (refused: only regular files are read)")


def open_regular(path: Path | str, what: str, flags: int = os.O_RDONLY) -> int:
    """A file descriptor for the regular file at ``path``, opened with ``flags``.

    The last component must not be a symbolic link; a FIFO, device, socket or
    directory is refused without blocking (:class:`UnsafePathError`). A missing
    file raises ``FileNotFoundError`` (callers say what that means for them);
    any other failure is a :class:`StorageError`.
    """
    try:
        return open_file(Path(path), flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refused(path, what, "a symbolic link") from None
        if exc.errno in (errno.EISDIR, errno.ENXIO, errno.ENODEV):
            try:
                kind = _kind(os.lstat(path).st_mode)
            except OSError:
                kind = "not a regular file"
            raise _refused(path, what, kind) from None
        raise StorageError(f"cannot open {what} {path}: {exc.strerror}") from None


def read_regular(path: Path | str, what: str, limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (see :func:`open_regular`), at most
    ``limit`` of them (a bigger file is :class:`MalformedEvidenceError`)."""
    fd = open_regular(path, what)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise MalformedEvidenceError(
                f"{path}: {what} is {size:,} bytes, more than the {limit:,} accepted"
            )
        parts = []
        total = 0
        while chunk := os.read(fd, max(size - total, 1 << 20)):
            parts.append(chunk)
            total += len(chunk)
            if total > limit:  # it grew while being read
                raise MalformedEvidenceError(
                    f"{path}: {what} is more than the {limit:,} bytes accepted"
                )
    except OSError as exc:
        raise StorageError(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return b"".join(parts)


def real_dir(base: Path, *parts: str, create: bool = True) -> Path:
    """``base / parts...``, each part a real directory (created if ``create``), not a link.

    ``base`` itself is the caller's choice and is not checked. Raises
    :class:`UnsafePathError` for a part that is a symbolic link or not a
    directory, ``FileNotFoundError`` for a missing one when not creating.
    """
    path = base
    for part in parts:
        path = path / part
        if create:
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
            except OSError as exc:
                raise StorageError(f"cannot create directory {path}: {exc.strerror}") from None
        mode = os.lstat(path).st_mode
        if not stat.S_ISDIR(mode):
            raise UnsafePathError(
                f"{path} is {_kind(mode)}, not a directory (refused: never followed)"
            )
    return path


def inside(base: Path, *parts: str) -> Path:
    """``base / parts...`` where each part that exists is a real directory, not a link
    (:class:`UnsafePathError`); parts that do not exist yet are fine (nothing is created)."""
    path = base
    for part in parts:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return base.joinpath(*parts)
        if not stat.S_ISDIR(mode):
            raise UnsafePathError(
                f"{path} is {_kind(mode)}, not a directory (refused: never followed)"
            )
    return path


def plain_name(name: object, what: str) -> str:
    """``name`` if it is a plain file name in its directory: no ``/``, no NUL, not
    empty, not starting with ``.`` (so not ``..`` either); else :class:`UnsafePathError`."""
    if (
        type(name) is not str
        or not name
        or name.startswith(".")
        or "/" in name
        or "\0" in name
        or len(name.encode("utf-8", "replace")) > 255
    ):
        raise UnsafePathError(f"{what} {name!r} is not a plain file name (refused)")
    return name


@overload
def decode_strict(data: bytes | memoryview, what: str) -> Any: ...


@overload
def decode_strict(data: bytes | memoryview, what: str, type_: type[T]) -> T: ...


def decode_strict(data: bytes | memoryview, what: str, type_: Any = Any) -> Any:
    """``data`` decoded as JSON of ``type_``, refusing duplicate member names anywhere.

    Malformed JSON, a value of the wrong shape and nesting too deep for the
    parser are :class:`MalformedEvidenceError`; a repeated member name is
    :class:`DuplicateMemberError`.
    """
    try:
        value = msgspec.json.decode(data, type=type_)
    except RecursionError:
        raise MalformedEvidenceError(f"{what} is nested too deeply") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedEvidenceError(f"{what} is malformed: {exc}") from None
    reject_duplicate_members(data, what)
    return value


def reject_duplicate_members(data: bytes | memoryview, what: str) -> None:
    """Raise :class:`DuplicateMemberError` if an object in the JSON text ``data`` names a
    member twice (``data`` must be valid JSON; see :func:`decode_strict`).

    Compact JSON written by msgspec (checkpoints, journal lines) is settled by
    re-encoding: a decoder keeps one of two equal names, so the re-encoding of a
    text with a repeat is shorter than the text. Anything else is parsed again
    with every object's member list in view.
    """
    try:
        if _COMPACT.encode(_GENERIC.decode(data)) == data:
            return
        json.loads(bytes(data).decode("utf-8"), object_pairs_hook=_unique_members(what))
    except RecursionError:
        raise MalformedEvidenceError(f"{what} is nested too deeply") from None
    except AuditJournalError:
        raise
    except (msgspec.DecodeError, ValueError) as exc:
        raise MalformedEvidenceError(f"{what} is malformed: {exc}") from None


def _unique_members(what: str) -> Any:
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        value = dict(pairs)
        if len(value) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise DuplicateMemberError(
                        f"{what} names member {key!r} twice in one object "
                        "(readers disagree on which one counts)"
                    )
                seen.add(key)
        return value

    return unique


def check_canonical(line: bytes | memoryview, value: Any, what: str) -> None:
    """Raise unless ``line`` is exactly the RFC 8785 canonical JSON of ``value`` (its
    parsed form): what a record line of an export must be, so that anyone can re-derive
    its bytes, and its Merkle leaf, from the value. A repeated member name fails this
    too (the parsed value has it once) and is reported as :class:`DuplicateMemberError`.
    """
    try:
        if canonical_json(value) == line:
            return
    except AuditJournalError:
        pass  # a value canonical JSON refuses: not a record line we could have written
    reject_duplicate_members(line, what)
    raise MalformedEvidenceError(
        f"{what} is not the canonical JSON of its value (members unsorted, "
        "whitespace, or numbers or strings written another way)"
    )
