"""The file backend's cursor: reads a run's journal segments in seq order, verifying the
chain, and follows them as a writer appends.

Thread-safety: one ``JournalReader`` is for one thread.
"""

from __future__ import annotations

import os
import time
from operator import attrgetter
from pathlib import Path
from typing import BinaryIO, Final

from ..errors import CorruptJournalError
from ..fs.safeio import open_regular
from ..model.events import Event
from .base import JournalCursor, JournalPosition, genesis_chain
from .lines import check_lines, decode_lines, read_entry
from .segments import journal_segments, last_entry, segment_name

__all__ = ["JournalReader"]

_READ_CHUNK: Final = 1 << 20
_RACY_NS: Final = 100_000_000  # a directory mtime this old is past its clock tick (coarse)


class JournalReader(JournalCursor):
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
        self._next_path = ("", -1)  # (the path of a segment starting at seq, seq): a cache
        self._listed = -1  # the directory's mtime (ns) when a listing found no later data

    @property
    def position(self) -> JournalPosition:
        """Where the next read starts: a position to resume from (``JournalReader(position=)``)."""
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
            if self._listing_holds():
                return events  # at the live end: no segment came since a listing saw none
            if self._no_next_segment():
                if not self._later_segment_has_data():
                    return events  # at the live end (a partial line is still being written)
                chunk = self._fh.read(_READ_CHUNK)  # a writer fills a segment before the next
                if chunk:
                    self._buf = self._buf + chunk if self._buf else chunk
                    continue
                if self._no_next_segment():
                    raise CorruptJournalError(
                        f"{self._segment_path()}: entries from seq {self._seq} are missing "
                        "(a later segment holds entries)"
                    )
                # (the writer made the next segment, and a later one, since we looked)
            if self._buf:
                raise CorruptJournalError(
                    f"{self._segment_path()}: closed segment ends with an incomplete entry"
                )
            self.close()
            self._segment, self._offset = self._seq, 0

    def close(self) -> None:
        """Close the open segment; safe to call twice."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._buf = b""

    def _segment_path(self) -> Path:
        return self.directory / segment_name(self._segment)

    def _next_segment_path(self) -> Path:
        return self.directory / segment_name(self._seq)

    def _next_path_str(self) -> str:
        """:meth:`_next_segment_path` as a str, made once per seq (a live reader asks at
        every poll that reaches the end)."""
        path, seq = self._next_path
        if seq != self._seq:
            path = os.path.join(self.directory, segment_name(self._seq))
            self._next_path = (path, self._seq)
        return path

    def _no_next_segment(self) -> bool:
        """No segment starts at the next seq (or this segment holds no entry yet)."""
        return self._seq == self._segment or not os.path.lexists(self._next_path_str())

    def _listing_holds(self) -> bool:
        """The directory is as a trusted listing that found no later segment left it (see
        :meth:`_later_segment_has_data`): one stat where a live poll at the end made two."""
        try:
            return os.stat(self.directory).st_mtime_ns == self._listed
        except OSError:
            return False

    def _later_segment_has_data(self) -> bool:
        """True if a segment after the next expected entry holds bytes: entries are missing.

        A live reader asks at every poll that reaches the end, so the listing is skipped
        while the directory's mtime is the one of a listing that found no later segment --
        trusted only when that listing came more than _RACY_NS after the mtime (a file made
        in the same clock tick as the mtime, after the listing, would leave it unchanged)."""
        try:
            before = os.stat(self.directory).st_mtime_ns
        except OSError:
            before = -1
        if before >= 0 and before == self._listed:
            return False
        later = False  # (an empty one may fill without a change of the directory's mtime)
        for first, path in journal_segments(self.directory):
            if first > self._seq:
                later = True
                try:
                    if path.lstat().st_size:
                        return True
                except FileNotFoundError:
                    continue
        if not later and before >= 0 and time.time_ns() - before > _RACY_NS:
            self._listed = before
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
        slow = 0  # lines to read one by one (a batch that did not decode or was out of place)
        try:
            while room and (newline := find(b"\n", offset)) >= 0:
                if check_lines is not None and not slow:
                    stop, got_chains, array = check_lines(data, offset, chain, room)
                    if got_chains:
                        events = _in_place(array, len(got_chains), seq, run_id)
                        if events is not None:
                            out += events
                            if chains is not None:
                                chains += got_chains
                            seq += len(events)
                            chain = got_chains[-1]
                            offset = stop
                            room -= len(events)
                            continue
                        slow = len(got_chains)  # read_entry finds the line and words its problem
                    # else the line at offset is one read_entry must judge (below)
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
                slow = max(slow - 1, 0)
        finally:
            self._chain, self._seq = chain, seq
            view.release()
        if offset:
            self._offset += offset
            self._buf = data[offset:]


_SEQ: Final = attrgetter("seq")
_RUN_ID: Final = attrgetter("run_id")


def _in_place(array: bytes, count: int, seq: int, run_id: str) -> list[Event] | None:
    """The ``count`` events of ``array`` (from :func:`check_lines`) if each decodes and
    they are entries ``seq``, ``seq + 1``, ... of ``run_id``; else None (read them one by
    one: :func:`read_entry` and the seq check word the problem)."""
    events = decode_lines(array, count)
    if events is None or list(map(_SEQ, events)) != list(range(seq, seq + count)):
        return None
    if set(map(_RUN_ID, events)) != {run_id}:
        return None
    return events
