"""The pack file format of the payload store, and the repair of a pack after a crash.

::

    pack-NNNNNN.dat   records: b"AJP1" | sha256 digest (32) | length (u64 LE) | data
    pack-NNNNNN.idx   entries: sha256 digest (32) | data offset (u64 LE) | length (u64 LE)

Thread-safety: plain functions; :func:`repair_pack` is for the one writer of a pack.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from ..fs.storage import AppendFile, open_file, storage_error

__all__ = [
    "ENTRY",
    "HEADER",
    "HEADER_SIZE",
    "LENGTHS",
    "MAGIC",
    "PackRecovery",
    "index_problem",
    "pack_header",
    "pack_lengths",
    "pack_records",
    "repair_pack",
]

MAGIC: Final = b"AJP1"
HEADER: Final = struct.Struct("<4s32sQ")
ENTRY: Final = struct.Struct("<32sQQ")
LENGTHS: Final = struct.Struct("<QQ")
HEADER_SIZE: Final = HEADER.size
pack_header = HEADER.pack
pack_lengths = LENGTHS.pack

Entry = tuple[bytes, int, int]
"""An index entry: digest, data offset, length."""


@dataclass(frozen=True)
class PackRecovery:
    """What opening a pack for writing repaired after a crash."""

    pack: str
    bytes_dropped: int
    entries_reindexed: int


def repair_pack(
    dat: AppendFile, idx: AppendFile, idx_raw: bytes
) -> tuple[list[Entry], PackRecovery | None]:
    """Make pack and index agree after a crash: drop a torn record at the pack's end,
    index the records the index lacks. ``idx_raw`` is the index file's bytes. Returns
    every entry of the pack and what was repaired (None: nothing)."""
    dat_size = os.fstat(dat.fd).st_size
    raw = idx_raw
    entries = []
    for digest, offset, size in ENTRY.iter_unpack(
        memoryview(raw)[: len(raw) - len(raw) % ENTRY.size]
    ):
        if offset + size > dat_size:
            break
        entries.append((digest, offset, size))
    position = entries[-1][1] + entries[-1][2] if entries else 0
    reindexed = 0
    with open(open_file(dat.path, os.O_RDONLY), "rb") as fh:
        fh.seek(position)
        tail = fh.read()
    view = memoryview(tail)
    cursor = 0
    while cursor + HEADER.size <= len(view):
        magic, digest, size = HEADER.unpack_from(view, cursor)
        start = cursor + HEADER.size
        if magic != MAGIC or start + size > len(view):
            break
        if hashlib.sha256(view[start : start + size]).digest() != digest:
            break
        entries.append((digest, position + start, size))
        reindexed += 1
        cursor = start + size
    good_dat = position + cursor
    dropped = dat_size - good_dat
    try:
        if dropped:
            os.ftruncate(dat.fd, good_dat)
        # Keep the index's good entries and append the re-indexed ones: rewriting it from
        # empty would hide every payload of the pack from readers if we crash meanwhile.
        kept = len(entries) - reindexed
        os.ftruncate(idx.fd, kept * ENTRY.size)
        idx.append(b"".join(d + LENGTHS.pack(o, s) for d, o, s in entries[kept:]))
        idx.write_out()
        dat.size = dat.written = good_dat
        os.fsync(idx.fd)
    except OSError as exc:
        raise storage_error(exc, f"cannot repair {dat.path}") from exc
    idx.size = idx.written = len(entries) * ENTRY.size
    recovery = None
    if dropped or reindexed or len(raw) != idx.size:
        recovery = PackRecovery(dat.path.name, dropped, reindexed)
    return entries, recovery


def pack_records(name: str, data: bytes) -> Iterator[tuple[str, int, int, bytes, bool]]:
    """Every record of the pack ``name`` with bytes ``data``: ``(pack name, offset,
    length, digest, intact)``; a damaged or torn record ends the scan (not intact)."""
    view = memoryview(data)
    cursor = 0
    while cursor < len(view):
        if cursor + HEADER.size > len(view):
            yield name, cursor, len(view) - cursor, b"", False
            break
        magic, digest, size = HEADER.unpack_from(view, cursor)
        start = cursor + HEADER.size
        if magic != MAGIC or start + size > len(view):
            yield name, cursor, len(view) - cursor, digest, False
            break
        intact = hashlib.sha256(view[start : start + size]).digest() == digest
        yield name, start, size, digest, intact
        cursor = start + size


def index_problem(name: str, raw: bytes, dat_size: int, head_at: Callable[[int], bytes]) -> str:
    """'' if the pack index ``raw`` (file ``name``) is well-formed, else what is wrong.

    A pack is a contiguous run of records, so its index must be too: entries in order,
    each data offset right after the previous record's data and header, every record
    inside the pack (``dat_size`` bytes), and each entry equal to the record header
    ``head_at(data offset)`` reads from the pack.
    """
    if len(raw) % ENTRY.size:
        return f"{name}: {len(raw)} bytes is not a whole number of entries"
    expected = HEADER_SIZE
    for i, (digest, offset, size) in enumerate(ENTRY.iter_unpack(raw)):
        if offset != expected or offset + size > dat_size:
            return f"{name}: entry {i} points at offset {offset}, expected {expected}"
        if head_at(offset) != pack_header(MAGIC, digest, size):
            return f"{name}: entry {i} does not match the record header in its pack"
        expected = offset + size + HEADER_SIZE
    return ""
