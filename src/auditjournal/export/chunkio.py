"""The chunk writer's I/O helpers (:mod:`chunks`): a thread that writes (or fsyncs) the
blocks handed to it in order, and its stand-in that does the same in the caller's thread.

Writing and hashing a block release the GIL, so on a second core the I/O thread overlaps
with making the next records (a replay); a live projector's steps are small, and hands
its blocks to :class:`Inline` instead.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from ..fs.storage import storage_error

__all__ = ["Inline", "Worker", "sync_closed", "write_all", "write_block"]


class Worker:
    """A daemon thread that handles queued items in order, off the projecting thread.

    ``submit`` waits while ``max_queued`` items are unhandled, so a fast producer
    (the parallel replay) cannot pile up memory. The first error is kept and
    raised by the next ``submit`` or ``drain``; ``handle`` is told whether one
    happened (``ok``), so later items can be skipped or only cleaned up.
    """

    def __init__(
        self, name: str, handle: Callable[[Any, bool], None], max_queued: int, what: str
    ) -> None:
        self._handle = handle
        self._max_queued = max_queued
        self._what = what
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> None:
        self._raise()
        with self._idle:
            while self._pending >= self._max_queued:
                self._idle.wait()
            self._pending += 1
        self._queue.put(item)

    def drain(self) -> None:
        """Wait until every submitted item is handled."""
        with self._idle:
            while self._pending:
                self._idle.wait()
        self._raise()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._handle(item, self.error is None)
            except OSError as exc:
                self.error = storage_error(exc, self._what)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()


class Inline:
    """A :class:`Worker` that handles each item at once, in the caller's thread: for a
    live projector, whose small steps gain less from a second core (busy with the
    recorder) than the hand-over to a thread costs (~0.1 ms a step, issue 13)."""

    def __init__(self, handle: Callable[[Any, bool], None], what: str) -> None:
        self._handle = handle
        self._what = what
        self.error: BaseException | None = None

    def submit(self, item: Any) -> None:
        if self.error is not None:  # as a thread's: nothing lands after a failure
            error, self.error = self.error, None
            raise error
        try:
            self._handle(item, True)
        except OSError as exc:
            raise storage_error(exc, self._what) from None

    def drain(self) -> None:
        pass

    def stop(self) -> None:
        pass


def write_block(item: tuple[int, bytes | bytearray | memoryview, Any], ok: bool) -> None:
    """The I/O thread's part: hash a flushed block into its chunk's SHA-256 and write it
    (hashlib and ``write`` release the GIL). After a failure, later blocks must not land."""
    fd, data, hasher = item
    if ok:
        hasher.update(data)
        write_all(fd, data)


def sync_closed(fd: int, ok: bool) -> None:
    """The sync thread's part: fsync a closed chunk and close its file descriptor."""
    try:
        if ok:
            os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    done = 0
    while done < len(view):
        done += os.write(fd, view[done:])
