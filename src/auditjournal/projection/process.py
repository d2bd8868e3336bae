"""The live projectors of a run in their own process (``projection="process"``, the default).

A run's live export and live SQL tables cost about as much CPU per event as recording it; as
threads beside the recorder they share its GIL and the run is recorded at a fraction of its
speed. :class:`ProjectorProcess` runs both in one child process per run (forked by our own
single-threaded fork server, :class:`~auditjournal.fs.processes.ForkServer`, never by the
recorder), reading the journal once for both (:mod:`.shared`) and the payload packs from disk.

Between the two processes:

* a **wake pipe** (recorder -> projector): one byte means "the journal grew, look now"; the
  projector blocks on it when it has nothing left to read (and looks anyway every
  ``flush_interval``, the cadence at which the journal's group commit writes entries without the
  recorder). Its end of file tells the projector that the recorder is gone: it projects what was
  appended (sealing the export if the run completed) and exits;
* a **shared progress array** (a small shared mapping, :class:`~.child.Slot`): the seqs each
  projector has taken in, read by the recorder's backpressure
  (:meth:`~auditjournal.projection.live.LiveProjectors.throttle`) without a syscall; the target
  seq of the SQL tables; which parts to stop;
* an **event pipe** (projector -> recorder): "ready", a seal, a failure, the SQL tables caught
  up, and "progress" while the recorder says it waits for it.

The recorder still appends ``export_sealed`` / ``export_checkpoint`` itself, from the seal the
projector sends, so the journal's bytes do not depend on the mode. If the projector process
dies, the parts it had not finished are started again from their checkpoints (at most
``restarts`` times; then the export fails with :class:`ProjectorProcessError` as its cause and
the run records ``export_failed``).

Thread-safety: recording threads throttle at once; :meth:`ProjectorProcess.pump` lets one read.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import signal
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from typing import Any, Final

import msgspec

from ..errors import DatabaseError, ExportError, ProjectorProcessError
from ..export.projector import SealResult
from ..fs.processes import anonymous_file, fork_server
from . import child
from .child import (
    PROGRESS_BYTES,
    STOP_EXPORT,
    STOP_SQL,
    WAIT_EXPORT,
    WAIT_SQL,
    ProjectorSpec,
    Slot,
)

__all__ = ["ProcessExport", "ProcessSql", "ProjectorProcess", "ProjectorSpec"]

_log = logging.getLogger(__name__)  # under the "auditjournal" logger

RESTARTS: Final = 3  # times a dead projector process is started again, per run
MAX_LAG: Final = 0.02  # seconds a projector process may trail by before the recorder waits
MAX_BEHIND: Final = 1024  # events it may trail by (threads: 200; docs/decisions.md, issue 13)
# the SQL tables take in SQL_EVERY_EVENTS at once (child.py): bounds above that, below the
# shared read's MAX_HELD (the export waits for the tables beyond it)
SQL_MAX_LAG: Final = 0.25
SQL_MAX_BEHIND: Final = 2 * child.SQL_EVERY_EVENTS
_JOIN_TIMEOUT: Final = 10.0  # seconds a stopped projector may take to exit before it is killed
_PUMP: Final = 0.5  # seconds between looks at a projector process that says nothing


# -- the recorder's side -------------------------------------------------------------------


class _Part:
    """What the recorder knows of one projector in the process."""

    def __init__(self) -> None:
        self.result: Any = None
        """The export's SealResult, or the SQL tables' last seq, once finished."""
        self.error: BaseException | None = None
        self.stopped = False

    @property
    def running(self) -> bool:
        return self.result is None and self.error is None and not self.stopped


class ProjectorProcess:
    """A run's live projectors in a child process; :attr:`export` and :attr:`sql` are the
    recorder's handles (the interface of ``LiveExport`` / ``LiveSql``).

    Starting it waits until the child has opened its export (the export's lock is held
    from then on) and raises what stopped it from doing so; the child opens the SQL
    tables after that (a failure there is ``sql_failed``: the tables', not the start's).
    """

    def __init__(self, spec: ProjectorSpec, *, restarts: int | None = None) -> None:
        self.spec = spec
        self.run_id = spec.run_id
        self._export_part = _Part() if spec.export is not None else None
        self._sql_part = _Part() if spec.database_url is not None else None
        self.export = None if self._export_part is None else ProcessExport(self, self._export_part)
        self.sql = None if self._sql_part is None else ProcessSql(self, self._sql_part)
        self._restarts = RESTARTS if restarts is None else restarts
        self._pump_lock = threading.RLock()
        self._sql_target = -1
        self.pid = 0
        """The projector process's id (the current one, after a restart)."""
        self.cpu_seconds = 0.0
        """CPU time the projector processes that exited reported (user + system)."""
        self._progress: mmap.mmap | None = None
        self._shared: memoryview | None = None
        self._wake_fd = -1
        self._events: Connection | None = None
        self._launch(spec)

    # -- the child's lifetime ----------------------------------------------------------

    def _launch(self, spec: ProjectorSpec) -> None:
        wake_r, wake_w = os.pipe()
        events_r, events_w = os.pipe()
        progress_fd = anonymous_file(PROGRESS_BYTES)
        theirs = [wake_r, events_w, progress_fd]
        try:
            progress = mmap.mmap(progress_fd, PROGRESS_BYTES)
            shared = memoryview(progress).cast("q")
            shared[Slot.SQL_TARGET] = self._sql_target
            self.pid = fork_server().start(child.__name__, "serve", (spec,), theirs)
        except BaseException:
            for fd in (wake_w, events_r):
                os.close(fd)
            raise
        finally:
            for fd in theirs:  # only the child may hold its ends (end of file = gone)
                os.close(fd)
        os.set_blocking(wake_w, False)  # a full pipe already says "wake up"
        self._progress, self._shared = progress, shared
        self._wake_fd, self._events = wake_w, Connection(events_r, writable=False)
        while True:
            message = self._receive(None)
            if message is None:
                self._release()
                raise ProjectorProcessError(
                    f"the projector process of run {self.run_id!r} exited while starting"
                )
            if message[0] == "init_failed":
                self._release()
                raise message[1]
            if message[0] == "ready":
                return
            self._apply(message)  # pragma: no cover - nothing else comes before "ready"

    def _receive(self, timeout: float | None) -> tuple[Any, ...] | None:
        """The child's next message; ``()`` if none came in ``timeout``; None: it is gone."""
        events = self._events
        assert events is not None
        try:
            if not events.poll(timeout):
                return ()
            message: tuple[Any, ...] = events.recv()
        except (EOFError, OSError):
            return None
        return message

    def _apply(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "sealed" and self._export_part is not None:
            self._export_part.result = message[1]
        elif kind == "export_failed" and self._export_part is not None:
            self._export_part.error = message[1]
        elif kind == "sql_done" and self._sql_part is not None:
            self._sql_part.result = message[1]
        elif kind == "sql_failed" and self._sql_part is not None:
            self._sql_part.error = message[1]
        elif kind == "cpu":
            self.cpu_seconds += message[1]

    def pump(self, timeout: float | None) -> None:
        """Take in the child's messages (waiting at most ``timeout`` for the first); if
        it died, start its unfinished parts again from their checkpoints."""
        if not self._pump_lock.acquire(timeout=-1 if timeout is None else timeout):
            return  # another thread is taking the messages in
        try:
            if self._events is None:
                return
            message = self._receive(timeout)
            while message:
                self._apply(message)
                message = self._receive(0)
            if message is None:
                self._died()
        finally:
            self._pump_lock.release()

    def _died(self) -> None:
        self._release()
        parts = [p for p in (self._export_part, self._sql_part) if p is not None and p.running]
        if not parts:
            return
        while True:
            if self._restarts <= 0:
                error = ProjectorProcessError(
                    f"the projector process of run {self.run_id!r} died and was not started "
                    "again: it died too often"
                )
                for part in parts:
                    part.error = error
                return
            self._restarts -= 1
            _log.warning(
                "run %s: the projector process died; starting it again from its checkpoints",
                self.run_id,
            )
            export = self._export_part
            sql = self._sql_part
            spec = msgspec.structs.replace(
                self.spec,
                export=self.spec.export if export is not None and export.running else None,
                database_url=self.spec.database_url if sql is not None and sql.running else None,
            )
            try:
                self._launch(spec)
                return
            except ProjectorProcessError:
                continue  # it died again while starting
            except Exception as exc:  # it cannot open a projector now: that part failed
                for part in parts:
                    part.error = exc
                return

    def _release(self) -> None:
        """Let go of the child's pipes and progress (it is gone, or about to exit)."""
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._wake_fd >= 0:
            os.close(self._wake_fd)
            self._wake_fd = -1
        if self._shared is not None:
            self._shared.release()
            self._shared = None
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def _reap(self) -> None:
        """Once no part runs: the child exits by itself (or is told to); wait for it."""
        parts = (self._export_part, self._sql_part)
        if self._events is None or any(p is not None and p.running for p in parts):
            return
        self.wake()
        deadline = time.monotonic() + _JOIN_TIMEOUT
        # the pump's lock: another thread's pump may read the same pipe, see it end and let
        # go of it; only a child that is still there at the deadline is killed
        with self._pump_lock:
            while self._events is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:  # pragma: no cover - a projector that does not stop
                    _log.warning(
                        "run %s: the projector process did not stop; killing it", self.run_id
                    )
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGKILL)
                    break
                message = self._receive(remaining)
                if message is None:
                    break  # its end closed: it exited
                if message:
                    self._apply(message)
            self._release()

    # -- what the handles use ----------------------------------------------------------

    def wake(self) -> None:
        """New journal entries were written: the projector looks now."""
        if self._wake_fd >= 0:
            with contextlib.suppress(BlockingIOError):  # full: it is woken already
                try:
                    os.write(self._wake_fd, b"\0")
                except BrokenPipeError:  # its end is closed: it died (restarted here)
                    self.pump(0)

    def idle(self) -> bool:
        """The projector is blocked on its wake pipe (it needs a wake to see new entries)."""
        return self._shared is not None and self._shared[Slot.IDLE] == 1

    def done(self, slot: Slot) -> int:
        shared = self._shared
        return -1 if shared is None else int(shared[slot])

    def alive(self, part: _Part) -> bool:
        """The part runs (a dead child is started again here)."""
        if part.running:
            self.pump(0)
        return part.running and self._events is not None

    def wait_progress(self, slot: Slot, timeout: float, target: int = 0) -> None:
        """Until the part in ``slot`` reaches ``target`` (0: moves at all) or ``timeout`` s."""
        shared = self._shared
        if shared is None:
            return
        before = shared[slot]
        shared[Slot.WAIT_SEQ] = target  # (the child says "progress" once it is reached)
        shared[Slot.WAITING] = WAIT_SQL if slot == Slot.SQL_DONE else WAIT_EXPORT
        try:
            if shared[slot] == before:
                self.pump(timeout)
        finally:
            if self._shared is not None:
                self._shared[Slot.WAITING] = 0

    def wait_for(self, part: _Part) -> None:
        """Until ``part`` has finished (or failed); restarts a dead child, never hangs on one."""
        self.wake()
        while part.running:
            self.pump(_PUMP)

    def stop(self, part: _Part, bit: int) -> None:
        """Stop one part (resumable at its checkpoint); the child exits once none runs."""
        if not part.running:
            return
        part.stopped = True
        if self._shared is not None:
            self._shared[Slot.STOP] |= bit
        self._reap()

    def finish_sql(self, seq: int) -> None:
        self._sql_target = seq
        if self._shared is not None:
            self._shared[Slot.SQL_TARGET] = seq


class _Handle:
    """The recorder's handle on one part of a :class:`ProjectorProcess`."""

    _slot: Slot
    _stop_bit: int
    max_behind = MAX_BEHIND
    max_lag = MAX_LAG

    def __init__(self, host: ProjectorProcess, part: _Part) -> None:
        self.host = host
        self.run_id = host.run_id
        self._part = part
        self._marks: deque[tuple[int, float]] = deque()
        """(last seq, when) at each throttle while it trailed: how long ago it fell behind."""

    def late(self, last_seq: int) -> bool:
        """It trails by more than ``max_lag`` seconds (called every throttle interval)."""
        now = time.monotonic()
        marks = self._marks
        marks.append((last_seq, now))
        done = self.done_seq()
        while marks and marks[0][0] <= done:
            marks.popleft()  # taken in (it may have caught up since the caller looked)
        return bool(marks) and now - marks[0][1] > self.max_lag

    def wake(self) -> None:
        self.host.wake()

    def needs_wake(self) -> bool:
        return self.host.idle()

    def alive(self) -> bool:
        return self.host.alive(self._part)

    def done_seq(self) -> int:
        return self.host.done(self._slot)

    def wait_progress(self, timeout: float, target: int = 0) -> None:
        self.host.wait_progress(self._slot, timeout, target)

    def stop(self) -> None:
        """Stop following (the projection stays at its checkpoint, resumable)."""
        self.host.stop(self._part, self._stop_bit)


class ProcessExport(_Handle):
    """The recorder's handle on the live export in a :class:`ProjectorProcess`."""

    _slot = Slot.EXPORT_DONE
    _stop_bit = STOP_EXPORT

    def wait(self) -> SealResult:
        """Block until the export is sealed; :class:`ExportError` if it failed (its cause:
        what stopped it, :class:`ProjectorProcessError` if the process kept dying)."""
        part = self._part
        self.host.wait_for(part)
        self.host._reap()
        if part.error is not None:
            raise ExportError(f"export of run {self.run_id!r} failed: {part.error}") from part.error
        if not isinstance(part.result, SealResult):
            raise ExportError(f"export of run {self.run_id!r} stopped before sealing")
        return part.result


class ProcessSql(_Handle):
    """The recorder's handle on the live SQL tables in a :class:`ProjectorProcess`."""

    _slot = Slot.SQL_DONE
    _stop_bit = STOP_SQL
    max_behind = SQL_MAX_BEHIND
    max_lag = SQL_MAX_LAG

    def needs_wake(self) -> bool:
        """Beside a running export the child steps the tables on its own clock (child.py,
        SQL_EVERY_SECONDS): they trail by design, and waking it on their account each
        throttle interval only made it look again and find nothing new for the export."""
        export = self.host._export_part
        return (export is None or not export.running) and self.host.idle()

    def finish(self, seq: int) -> int:
        """Block until the tables hold everything up to ``seq``; the child then lets go."""
        part = self._part
        if part.running:
            self.host.finish_sql(seq)
            self.host.wait_for(part)
        self.host._reap()
        if part.error is not None:
            raise DatabaseError(
                f"SQL projection of run {self.run_id!r} failed (the journal is complete; "
                f"rebuild the tables with `auditjournal project` or `replay --db`): {part.error}"
            ) from part.error
        if part.stopped:
            raise DatabaseError(f"SQL projection of run {self.run_id!r} was stopped")
        result: int = part.result
        return result
