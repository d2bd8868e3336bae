"""The file backend's segments: ``<first seq, 20 digits>.jsonl`` files of one journal
directory, and the last entry of a closed one (or of one up to a given end).

Thread-safety: plain functions.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CorruptJournalError
from ..fs.safeio import open_regular
from ..model.events import Event
from .lines import SUFFIX_LEN, decode_line, stored_chain

__all__ = ["journal_segments", "last_entry", "last_line", "segment_name"]


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}.jsonl"


def journal_segments(directory: Path) -> list[tuple[int, Path]]:
    """The segment files of a journal directory as (first seq, path), in order."""
    # os.listdir, not Path.glob: a live projector lists the directory at every poll, and
    # glob's pattern machinery cost ~1 % of the projector process
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []  # as glob said: no journal (yet)
    found = []
    for name in names:
        stem = name[:-6]
        if name.endswith(".jsonl") and stem.isdigit():
            found.append((int(stem), directory / name))
    return sorted(found)


def last_entry(path: Path, run_id: str, end: int | None = None) -> tuple[int, bytes]:
    """Seq and chain of a closed segment's last line, or of the line ending at byte ``end``
    (full checks are the reader's job)."""
    event, chain = last_line(path, run_id, end)
    return event.seq, chain


def last_line(path: Path, run_id: str, end: int | None = None) -> tuple[Event, bytes]:
    """The event and chain of a closed segment's last line, or of the line ending at byte
    ``end`` (decoded, not chain-verified)."""
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
    return event, chain
