"""The live projectors of a run being recorded, seen from its recorder.

``AuditStore.start_run`` starts a live export and live SQL tables beside the
recorder: by default in a projector process (``process.py``), with
``projection="thread"`` as threads of the recorder's process (:class:`LiveExport`,
:class:`LiveSql`), which share its GIL. Either way the recorder applies backpressure
(:meth:`LiveProjectors.throttle`), and when the run completes it waits for them
(:meth:`LiveProjectors.finish`): the export's seal is recorded as
``export_sealed`` (or ``export_failed``, then :class:`ExportError` is raised).

A live export stopped by a full disk is not a failed export: at the run's end
it is started again from its checkpoint; if the disk is still full,
:class:`DiskFullError` is raised and ``finish`` may be called again later.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from ..errors import DatabaseError, DiskFullError, ExportError, JournalLockedError, StorageError
from ..export.projector import LIVE_STEP_EVENTS, ExportProjector, SealResult
from ..model.events import BaseEvent, ExportCheckpoint, ExportFailed
from ..sql.projector import SqlProjector

if TYPE_CHECKING:
    from ..journal.base import JournalWriter

__all__ = [
    "MAX_BEHIND",
    "THROTTLE_EVERY",
    "ExportFollower",
    "LiveExport",
    "LiveProjectors",
    "LiveSql",
    "LiveThread",
    "SqlFollower",
]

_log = logging.getLogger(__name__)  # under the "auditjournal" logger

THROTTLE_EVERY: Final = 64  # events between checks of the in-process projectors' backlog
MAX_BEHIND: Final = 200  # events a live projector may trail the journal by (~10 ms of work)
_THROTTLE_WAIT: Final = 0.25  # seconds a recorder yields at most per check
_LIVE_POLL: Final = 0.002  # seconds between looks at the journal of a live run, if not woken


class Follower(Protocol):
    """A live projector as the recorder drives it (a thread, or a part of a process)."""

    run_id: str
    max_behind: int
    """Events it may trail the journal by before the recorder waits for it."""

    def wake(self) -> None: ...
    def needs_wake(self) -> bool: ...
    def late(self, last_seq: int) -> bool: ...
    def alive(self) -> bool: ...
    def done_seq(self) -> int: ...
    def wait_progress(self, timeout: float, target: int = 0) -> None: ...
    def stop(self) -> None: ...


class ExportFollower(Follower, Protocol):
    def wait(self) -> SealResult: ...


class SqlFollower(Follower, Protocol):
    def finish(self, seq: int) -> int: ...


class LiveThread:
    """A live projector's background thread (:class:`LiveExport`, :class:`LiveSql`).

    It steps while there is work; then it waits for :meth:`wake` (the recorder
    wrote the journal and waits for it) or its poll interval. Each step that took
    something in is signalled to :meth:`wait_progress`, so the recorder and the
    projector never both sleep. A subclass says what a step is, when it is done,
    and how to close; it starts the thread at the end of its ``__init__``.
    """

    max_behind = MAX_BEHIND

    def __init__(self, name: str, poll_interval: float) -> None:
        self._poll_interval = poll_interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._advanced = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _step(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _done(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _loop(self) -> None:
        try:
            while not self._done():
                if self._step():
                    self._advanced.set()
                    continue
                if self._stop.is_set():
                    break
                self._wake.wait(self._poll_interval)
                self._wake.clear()
        except BaseException as exc:  # reported by the subclass's wait/finish
            self._error = exc
        finally:
            self._advanced.set()
            self._close()

    def wake(self) -> None:
        """New journal entries were written: look now, not at the next poll."""
        self._wake.set()

    def needs_wake(self) -> bool:
        """False: a thread looks every few milliseconds by itself (cheaper than waking it)."""
        return False

    def late(self, last_seq: int) -> bool:
        """False: a thread shares the recorder's GIL, so it trails by events, not time."""
        return False

    def wait_progress(self, timeout: float, target: int = 0) -> None:
        """Wait until the projector took in more (or stopped), at most ``timeout`` s
        (``target``, the seq the caller waits for, is a hint a process uses)."""
        self._advanced.wait(timeout)
        self._advanced.clear()

    def alive(self) -> bool:
        """True while the projector's thread runs (it stops once done, stopped or failed)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop following (the projection stays at its checkpoint, resumable)."""
        self._stop.set()
        self._wake.set()
        self._thread.join()


class LiveExport(LiveThread):
    """Runs a projector on a background thread while the run is recorded (in-process).

    It looks at the journal every ``_LIVE_POLL`` seconds, and at once when woken
    (:class:`LiveThread`).
    """

    def __init__(self, projector: ExportProjector) -> None:
        super().__init__(f"auditjournal-export-{projector.run_id}", _LIVE_POLL)
        self.projector = projector
        self.run_id = projector.run_id
        self._thread.start()

    def _step(self) -> bool:
        return self.projector.step(LIVE_STEP_EVENTS) > 0

    def _done(self) -> bool:
        return self.projector.result is not None

    def _close(self) -> None:
        self.projector.close()

    def wait(self) -> SealResult:
        """Block until the export is sealed; raise :class:`ExportError` if it failed.
        (The caller wrote ``run_completed`` to the journal: the projector looks at once.)"""
        self._wake.set()
        self._thread.join()
        if self._error is not None:
            raise ExportError(
                f"export of run {self.projector.run_id!r} failed: {self._error}"
            ) from self._error
        if self.projector.result is None:
            raise ExportError(f"export of run {self.projector.run_id!r} stopped before sealing")
        return self.projector.result

    def done_seq(self) -> int:
        """The last journal seq the export has taken in."""
        return self.projector.position.next_seq - 1


class LiveSql(LiveThread):
    """Runs a :class:`SqlProjector` on a background thread while the run is recorded."""

    def __init__(self, projector: SqlProjector, *, poll_interval: float = 0.005) -> None:
        super().__init__(f"auditjournal-sql-{projector.run_id}", poll_interval)
        self.projector = projector
        self.run_id = projector.run_id
        self._target: int | None = None
        self._thread.start()

    def _step(self) -> bool:
        return bool(self.projector.step())

    def _done(self) -> bool:
        target = self._target
        return target is not None and self.projector.applied_seq >= target

    def _close(self) -> None:
        self.projector.close()

    def finish(self, seq: int) -> int:
        """Block until the tables hold everything up to ``seq``, then stop the thread."""
        self._target = seq
        self._wake.set()
        self._thread.join()
        run_id = self.projector.run_id
        if self._error is not None:
            raise DatabaseError(
                f"SQL projection of run {run_id!r} failed (the journal is complete; rebuild "
                f"the tables with `auditjournal project` or `replay --db`): {self._error}"
            ) from self._error
        return self.projector.applied_seq

    def done_seq(self) -> int:
        """The last journal seq the tables hold."""
        return self.projector.applied_seq


class LiveProjectors:
    """A run's live export and live SQL tables, if it has them."""

    def __init__(self) -> None:
        self.export: ExportFollower | None = None
        self.sql: SqlFollower | None = None
        self.restart_export: Callable[[], ExportFollower] | None = None
        """A new live export resuming from the checkpoint (after a full disk stopped it)."""
        self.restart_sql: Callable[[], SqlFollower] | None = None
        """New live SQL tables resuming from their checkpoint (after they stopped)."""
        self.on_sealed: Callable[[SealResult], None] | None = None
        """Told the seal once ``export_sealed`` is recorded (the run's OpenLineage end
        event); it must not raise, and may be told again after a retried ``finish``."""
        self._sealed: SealResult | None = None
        self._seal_recorded = False
        self._checkpoints_recorded = 0

    def throttle(self, journal: JournalWriter) -> None:
        """Backpressure: keep each projector within its ``max_behind`` events.

        Without it a fast recorder would leave them ever further behind (live-export
        lag and memory growing through the run). When one falls behind, the recorder
        makes the backlog visible (writes the journal, no fsync) and yields until it
        is halfway caught up, or ``_THROTTLE_WAIT`` passes. The projector is woken
        at once and signals its progress, so neither side sleeps while the other waits.
        A projector process that caught up and waits on its pipe is woken as soon as it
        trails at all, so that it keeps close behind what the group commit has written;
        one that trails by less than ``max_behind`` events but by more than its time
        bound (:meth:`Follower.late`) is waited for too, until its backlog is halved.
        """
        last = journal.last_seq
        for live in (self.export, self.sql):
            if live is None:
                continue
            behind = last - live.done_seq()
            if behind <= 0 or not live.alive():
                continue
            bound = live.max_behind
            late = live.late(last)
            if behind <= bound and not late:
                if live.needs_wake():
                    # it has taken in all that was written and waits: hand it what is
                    # buffered now, not at the next group commit (else both sides take
                    # turns waiting); never waiting here for a flush's fsync
                    journal.write_behind(wait=False)
                    live.wake()
                continue
            journal.write_behind()
            if journal.write_failed:
                return  # nothing new reaches the disk now; the next call reports it
            live.wake()
            deadline = time.monotonic() + _THROTTLE_WAIT
            target = last - min(behind, bound) // 2
            while live.done_seq() < target and live.alive() and time.monotonic() < deadline:
                live.wait_progress(0.005, target)

    def finish(
        self,
        run_id: str,
        append_export_event: Callable[[BaseEvent], BaseEvent],
        last_seq: Callable[[], int],
    ) -> SealResult | None:
        """After ``run_completed``: wait for the export's seal and record it, then wait
        until the SQL tables hold every event (:class:`DatabaseError` if their
        projection failed; the journal is complete either way).

        After a :class:`StorageError` (the disk is full: the export could not be
        written, or ``export_sealed`` not recorded) it may be called again; it goes
        on where it stopped and records nothing twice.
        """
        try:
            result = self._seal(run_id, append_export_event)
        except StorageError:
            raise  # to be called again: the SQL tables keep following meanwhile
        except BaseException:
            with contextlib.suppress(DatabaseError):
                self._finish_sql(last_seq)
            raise
        if result is not None and self.on_sealed is not None:
            self.on_sealed(result)
        self._finish_sql(last_seq)
        return result

    def _finish_sql(self, last_seq: Callable[[], int]) -> None:
        """Wait until the tables hold every event. Tables that stopped during the run (say,
        their database's disk ran full) are started once more from their checkpoint."""
        sql, self.sql = self.sql, None
        if sql is None:
            return
        try:
            sql.finish(last_seq())
        except DatabaseError as exc:
            if self.restart_sql is None:
                raise
            _log.warning("the live SQL tables stopped (%s); starting them again", exc)
            self.restart_sql().finish(last_seq())

    def _seal(
        self, run_id: str, append_export_event: Callable[[BaseEvent], BaseEvent]
    ) -> SealResult | None:
        """Wait for the export's seal (restarting it once if a full disk stopped it) and
        record ``export_sealed``; record ``export_failed`` if it failed otherwise."""
        now = _dt.datetime.now(_dt.UTC)
        if self._sealed is None:
            if self.export is None:
                return None  # no live export (or another process took it over)
            try:
                self._sealed = self._wait_export()
            except ExportError as exc:
                self.export = None
                append_export_event(ExportFailed(run_id=run_id, ts=now, error=str(exc)[:2000]))
                raise
            if self._sealed is None:
                return None
        result = self._sealed
        while self._checkpoints_recorded < len(result.checkpoints):
            size, root = result.checkpoints[self._checkpoints_recorded]
            event = ExportCheckpoint(
                run_id=run_id,
                ts=now,
                tree_size=size,
                root=root,
                export_path=result.checkpoint_path(size),
            )
            try:
                append_export_event(event)
            except StorageError as exc:
                self._checkpoints_recorded += exc.recorded_event is not None
                raise
            self._checkpoints_recorded += 1
        if not self._seal_recorded:
            try:
                append_export_event(result.sealed_event(run_id, now))
            except StorageError as exc:
                self._seal_recorded = exc.recorded_event is not None  # recorded, not written
                raise
            self._seal_recorded = True
        self.export = None
        return result

    def _wait_export(self) -> SealResult | None:
        """The live export's seal. One that a full disk stopped is started again from its
        checkpoint (the space may be back); :class:`DiskFullError` if it stops again."""
        export = self.export
        assert export is not None
        try:
            return export.wait()
        except ExportError as exc:
            if not isinstance(exc.__cause__, DiskFullError) or self.restart_export is None:
                raise
            first = exc
        run_id = export.run_id
        try:
            self.export = export = self.restart_export()
        except JournalLockedError:
            self.export = None  # `auditjournal project` took it over when it stopped
            _log.warning(
                "run %s: the live export stopped (%s); another process now writes it and "
                "seals it once this recorder is closed",
                run_id,
                first.__cause__,
            )
            return None
        try:
            return export.wait()
        except ExportError as exc:
            if isinstance(exc.__cause__, DiskFullError):
                raise DiskFullError(
                    f"the export of run {run_id!r} could not be written: {exc.__cause__}"
                ) from exc
            raise

    def stop(self) -> None:
        """An unfinished run: both stay at their checkpoints, resumable."""
        if self.export is not None:
            self.export.stop()
            self.export = None
        if self.sql is not None:
            self.sql.stop()
            self.sql = None
