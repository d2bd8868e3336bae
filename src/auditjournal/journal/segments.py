"""The file backend's segments: ``<first seq, 20 digits>.jsonl`` files of one journal
directory, and the last entry of a closed one.

Thread-safety: plain functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from ..errors import CorruptJournalError
from ..fs.safeio import open_regular
from .lines import LINE_END, SUFFIX_LEN, decode_line

__all__ = ["HEX_TAIL", "journal_segments", "last_entry", "segment_name"]

HEX_TAIL: Final = 64 + len(LINE_END)
"""Bytes from the start of a line's chain hex to its end (the hex, ``"}`` and newline)."""


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}.jsonl"


def journal_segments(directory: Path) -> list[tuple[int, Path]]:
    """The segment files of a journal directory as (first seq, path), in order."""
    found = []
    for path in directory.glob("*.jsonl"):
        if path.stem.isdigit():
            found.append((int(path.stem), path))
    return sorted(found)


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
        chain = bytes.fromhex(last[-HEX_TAIL : -len(LINE_END)].decode("ascii"))
    except ValueError as exc:  # UnicodeDecodeError is one
        raise CorruptJournalError(f"{path}: bad last entry: {exc}") from None
    if len(last) < SUFFIX_LEN or event.run_id != run_id or len(chain) != 32:
        raise CorruptJournalError(f"{path}: last entry is not a chained entry of run {run_id!r}")
    return event.seq, chain
