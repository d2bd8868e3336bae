"""The file journal backend: a run's journal is ``<root>/runs/<run_id>/journal/``,
segments ``<first seq, 20 digits>.jsonl`` rolled by size plus ``.lock`` (the writer
lease, an exclusive ``flock``). The writer is :class:`~.files.Journal`, the cursor
:class:`~.reader.JournalReader`; this module answers the rest of
:class:`~.base.RunJournal` from the segment files.

Thread-safety: :class:`FileRunJournal` and :class:`FileJournalBackend` hold no state
that changes; their methods may be called from any thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import AuditJournalError, CorruptJournalError, RunNotFoundError
from ..fs.safeio import inside, open_regular, real_dir
from ..fs.storage import Durability, lock_file, lock_held, validate_id
from ..model.events import BaseEvent, Event, decode_event
from .base import (
    JournalBackend,
    JournalHead,
    JournalPosition,
    RunJournal,
    genesis_chain,
)
from .files import DEFAULT_FLUSH_INTERVAL, DEFAULT_SEGMENT_BYTES, MIN_SEGMENT_BYTES, Journal
from .lines import CHAIN_TAIL, stored_chain
from .reader import JournalReader
from .segments import journal_segments, last_entry, last_line, segment_name

__all__ = [
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_SEGMENT_BYTES",
    "MIN_SEGMENT_BYTES",
    "FileJournalBackend",
    "FileRunJournal",
    "as_run_journal",
    "position_exists",
]


class FileRunJournal(RunJournal):
    """One run's journal directory. ``base`` and ``parts``: the directory is
    ``base/parts...``, each part created (when asked) as a real directory, never through
    a link; without them it is ``directory`` as given (created with its parents)."""

    def __init__(
        self,
        directory: Path,
        run_id: str,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        base: Path | None = None,
        parts: tuple[str, ...] = (),
    ) -> None:
        self.directory = directory
        self.run_id = run_id
        self.segment_bytes = segment_bytes
        self._base = base
        self._parts = parts

    def __repr__(self) -> str:
        return f"FileRunJournal({str(self.directory)!r}, {self.run_id!r})"

    @property
    def location(self) -> str:
        return str(self.directory)

    def exists(self) -> bool:
        return self.directory.is_dir()

    def created(self) -> bool:
        """True once a writer created it (it holds a segment, which may still be empty)."""
        return self.directory.exists() and any(self.directory.glob("*.jsonl"))

    def open_writer(
        self,
        *,
        create: bool,
        durability: Durability = "batch",
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        before_flush: Callable[[bool], None] | None = None,
        lock: threading.Lock | None = None,
    ) -> Journal:
        if self._base is not None:
            try:
                real_dir(self._base, *self._parts, create=create)
            except FileNotFoundError:
                raise RunNotFoundError(f"no run {self.run_id!r} in {self._base}") from None
        elif not create and not self.directory.is_dir():
            raise RunNotFoundError(f"no journal for run {self.run_id!r} at {self.directory}")
        return Journal(
            self.directory,
            self.run_id,
            durability=durability,
            flush_interval=flush_interval,
            segment_bytes=self.segment_bytes,
            before_flush=before_flush,
            create=create,
            lock=lock,
        )

    @contextmanager
    def lease(self) -> Iterator[None]:
        fd = lock_file(self.directory / ".lock", f"journal of run {self.run_id!r}")
        try:
            yield
        finally:
            os.close(fd)

    def cursor(self, position: JournalPosition | None = None) -> JournalReader:
        return JournalReader(self.directory, self.run_id, position)

    def cursor_at_seq(self, seq: int) -> JournalReader:
        return JournalReader.at_seq(self.directory, self.run_id, seq)

    def writer_active(self) -> bool:
        return lock_held(self.directory / ".lock")

    def head(self) -> JournalHead:
        found = self._last_line()
        if found is None:
            return JournalHead(0, genesis_chain(self.run_id))
        seq, chain = last_entry(*found)
        return JournalHead(seq, chain)

    def last_event(self) -> Event | None:
        found = self._last_line()
        return None if found is None else last_line(*found)[0]

    def _last_line(self) -> tuple[Path, str, int] | None:
        """The segment holding the last complete entry, the run id, and where that entry
        ends (a torn entry after it is left out), or None when there is none."""
        for _, path in reversed(journal_segments(self.directory)):
            with open(open_regular(path, "journal segment"), "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                start = max(0, size - (1 << 20))
                fh.seek(start)
                tail = fh.read(size - start)
            end = tail.rfind(b"\n")
            if end >= 0:
                return path, self.run_id, start + end + 1
        return None

    def position_exists(self, position: JournalPosition) -> bool:
        return position_exists(self.directory, self.run_id, position)

    def size_bytes(self) -> int:
        return sum(size for _, size in self._segment_sizes())

    def bytes_before(self, position: JournalPosition) -> int:
        return position.offset + sum(
            size for first, size in self._segment_sizes() if first < position.segment_first_seq
        )

    def _segment_sizes(self) -> list[tuple[int, int]]:
        return [(first, path.lstat().st_size) for first, path in journal_segments(self.directory)]

    def split(self, range_bytes: int) -> list[JournalPosition]:
        """Every segment's start and an entry boundary about every ``range_bytes`` within
        it, each with its next seq and the chain value before it."""
        segments = journal_segments(self.directory)
        if not segments or segments[0][0] != 1:
            raise CorruptJournalError(f"{self.directory}: the journal does not start at seq 1")
        starts: list[JournalPosition] = []
        previous: Path | None = None
        for first, path in segments:
            if previous is None:
                chain = genesis_chain(self.run_id)
            else:
                seq, chain = last_entry(previous, self.run_id)
                if seq != first - 1:
                    raise CorruptJournalError(f"{path.name} does not follow {previous.name}")
            starts.append(JournalPosition(first, first, 0, chain))
            starts.extend(_cuts(path, first, range_bytes))
            previous = path
        return starts

    def incomplete_tail(self, position: JournalPosition) -> str:
        last = self.directory / segment_name(position.segment_first_seq)
        if last.exists() and last.stat().st_size != position.offset:
            return (
                f"{last}: ends with an incomplete entry at offset {position.offset} "
                "(truncated or edited)"
            )
        return ""

    def where(self, position: JournalPosition | None = None) -> str:
        if position is not None:
            return str(self.directory / segment_name(position.segment_first_seq))
        segments = sorted(self.directory.glob("*.jsonl"))
        return str(segments[-1] if segments else self.directory)


def _cuts(path: Path, first: int, range_bytes: int) -> list[JournalPosition]:
    """Entry boundaries about every ``range_bytes`` in one segment (not its start)."""
    cuts: list[JournalPosition] = []
    with open(open_regular(path, "journal segment"), "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        cut = max(range_bytes, 4096)
        while cut < size:
            fh.seek(cut - CHAIN_TAIL)
            window = fh.read(1 << 16)
            while True:
                # the newline ending the entry before the cut (its chain value before it)
                end = window.find(b"\n", CHAIN_TAIL - 1)
                if end >= 0:
                    after = window.find(b"\n", end + 1)  # and the one ending the entry after
                    if after >= 0:
                        break
                more = fh.read(1 << 16)
                if not more:
                    return cuts  # the rest is the last range's
                window += more
            boundary = cut - CHAIN_TAIL + end + 1
            chain = stored_chain(window, end)
            try:
                entry: BaseEvent = decode_event(window[end + 1 : after + 1])
            except Exception as exc:
                raise CorruptJournalError(f"{path.name}: undecodable entry at {boundary}") from exc
            if entry.seq <= first:  # a cut is past the segment's first entry
                raise CorruptJournalError(f"{path.name}: seq {entry.seq} at offset {boundary}")
            cuts.append(JournalPosition(entry.seq, first, boundary, chain))
            cut = max(cut + range_bytes, boundary + CHAIN_TAIL)
    return cuts


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


class FileJournalBackend(JournalBackend):
    """The journals of a store at ``root``: ``<root>/runs/<run_id>/journal/``."""

    def __init__(self, root: Path, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.root = root
        self.segment_bytes = segment_bytes
        root.mkdir(parents=True, exist_ok=True)  # the caller's choice; below it, no links

    def journal(self, run_id: str) -> FileRunJournal:
        parts = ("runs", validate_id(run_id, "run id"), "journal")
        return FileRunJournal(
            inside(self.root, *parts),
            run_id,
            segment_bytes=self.segment_bytes,
            base=self.root,
            parts=parts,
        )

    def run_ids(self) -> list[str]:
        runs = self.root / "runs"
        if not runs.is_dir():
            return []
        return sorted(p.name for p in runs.iterdir() if (p / "journal").is_dir())


def as_run_journal(journal: Path | RunJournal, run_id: str) -> RunJournal:
    """``journal`` itself, or the file journal in directory ``journal``."""
    if isinstance(journal, RunJournal):
        return journal
    return FileRunJournal(Path(journal), run_id)
