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
* a **shared progress array** (a small shared mapping, :class:`_Slot`): the seqs each projector
  has taken in, read by the recorder's backpressure
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
import enum
import logging
import mmap
import os
import pickle
import select
import signal
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import msgspec

from ..errors import AuditJournalError, DatabaseError, ExportError, ProjectorProcessError
from ..export.projector import LIVE_STEP_EVENTS, ExportProjector, SealResult
from ..fs.processes import anonymous_file, fork_server
from ..model.settings import ExportSettings
from ..payloads.store import PayloadStore
from ..proofs.pgledger import open_ledger
from ..sql.projector import SqlProjector
from ..sql.schema import SqlDatabase
from .shared import shared_journal

__all__ = ["ProcessExport", "ProcessSql", "ProjectorProcess", "ProjectorSpec"]

_log = logging.getLogger(__name__)  # under the "auditjournal" logger

RESTARTS: Final = 3  # times a dead projector process is started again, per run
MAX_LAG: Final = 0.02  # seconds a projector process may trail by before the recorder waits
MAX_BEHIND: Final = 1024  # events it may trail by (threads: 200; docs/decisions.md, issue 13)
_JOIN_TIMEOUT: Final = 10.0  # seconds a stopped projector may take to exit before it is killed
_PUMP: Final = 0.5  # seconds between looks at a projector process that says nothing


class _Slot(enum.IntEnum):
    """The shared progress array's slots (signed 64-bit each)."""

    EXPORT_DONE = 0  # last seq the export took in
    SQL_DONE = 1  # last seq the SQL tables hold
    SQL_TARGET = 2  # the recorder waits for the tables up to this seq (-1: not yet)
    STOP = 3  # bits: 1 stop the export, 2 stop the SQL tables (both stay resumable)
    WAITING = 4  # 1: the recorder waits for progress; send "progress" after a step
    IDLE = 5  # 1: the projector is blocked on the wake pipe


_PROGRESS_BYTES: Final = 8 * len(_Slot)
_STOP_EXPORT: Final = 1
_STOP_SQL: Final = 2


class ProjectorSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the projector process needs to open a run's projectors by itself."""

    cwd: str  # the recorder's working directory: relative paths mean the same
    root: str
    run_id: str
    segment_bytes: int
    max_payload_bytes: int
    ledger_key: str | None
    idle_look: float  # seconds between looks at the journal when nobody wakes the projector
    export: ExportSettings | None = None
    export_prefix: str = ""
    database_url: str | None = None  # the SQL tables' database (None: no live SQL tables)
    journal_url: str | None = None  # a PostgreSQL journal's database: its ledger is there


# -- the projector process ---------------------------------------------------------------


class _Child:
    """The projector process's side: steps its parts, publishes progress, reports."""

    def __init__(self, spec: ProjectorSpec, shared: Any, events: Connection) -> None:
        os.chdir(spec.cwd)
        self.shared = shared
        self.events = events
        root = Path(spec.root)
        journal = shared_journal(root, spec.run_id, spec.segment_bytes)  # one read, both parts
        self.payloads = PayloadStore(root / "payloads", max_payload_bytes=spec.max_payload_bytes)
        self.export: ExportProjector | None = None
        self.sql: SqlProjector | None = None
        self.database: SqlDatabase | None = None
        if spec.export is not None:
            key = None if spec.ledger_key is None else Path(spec.ledger_key)
            self.export = ExportProjector(
                journal_dir=journal,
                run_id=spec.run_id,
                payloads=self.payloads,
                settings=spec.export,
                prefix=Path(spec.export_prefix),
                ledger=open_ledger(root, key, spec.journal_url),
            )
            shared[_Slot.EXPORT_DONE] = self.export.position.next_seq - 1
        if spec.database_url is not None:
            self.database = SqlDatabase(spec.database_url)
            self.sql = SqlProjector(database=self.database, journal_dir=journal, run_id=spec.run_id)
            shared[_Slot.SQL_DONE] = self.sql.applied_seq

    def step(self) -> bool:
        """One step of each part still running; True if either took something in."""
        moved = False
        stop = self.shared[_Slot.STOP]
        if self.export is not None:
            if stop & _STOP_EXPORT:
                self._end_export(None)
            else:
                moved = self._step_export()
        if self.sql is not None:
            if stop & _STOP_SQL:
                self._end_sql(None)
            else:
                moved = self._step_sql() or moved
        if moved and self.shared[_Slot.WAITING]:
            self.send(("progress",))
        return moved

    def send(self, message: tuple[Any, ...]) -> None:
        """Tell the recorder (if it is gone, there is nobody to tell: the work goes on)."""
        with contextlib.suppress(OSError):
            self.events.send(message)

    def _step_export(self) -> bool:
        export = self.export
        assert export is not None
        try:
            moved = export.step(LIVE_STEP_EVENTS) > 0
        except Exception as exc:
            self._end_export(("export_failed", _portable(exc)))
            return False
        self.shared[_Slot.EXPORT_DONE] = export.position.next_seq - 1
        if export.result is not None:
            self._end_export(("sealed", export.result))
        return moved

    def _step_sql(self) -> bool:
        sql = self.sql
        assert sql is not None
        try:
            moved = sql.step() > 0
        except Exception as exc:
            self._end_sql(("sql_failed", _portable(exc)))
            return False
        self.shared[_Slot.SQL_DONE] = sql.applied_seq
        target = self.shared[_Slot.SQL_TARGET]
        if target >= 0 and sql.applied_seq >= target:
            self._end_sql(("sql_done", sql.applied_seq))
        return moved

    def _end_export(self, message: tuple[Any, ...] | None) -> None:
        export, self.export = self.export, None
        assert export is not None
        try:
            export.close()
        finally:
            if message is not None:
                self.send(message)

    def _end_sql(self, message: tuple[Any, ...] | None) -> None:
        sql, self.sql = self.sql, None
        assert sql is not None
        try:
            sql.close()
        finally:
            if message is not None:
                self.send(message)

    def running(self) -> bool:
        return self.export is not None or self.sql is not None

    def close(self) -> None:
        for part in (self.export, self.sql, self.database):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.close()
        self.payloads.close()


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (it crosses the event pipe), else a stand-in."""
    try:
        copy: BaseException = pickle.loads(pickle.dumps(exc))
    except Exception:
        return AuditJournalError(f"{type(exc).__name__}: {exc}")
    return copy


def serve(spec: ProjectorSpec, wake_fd: int, events_fd: int, progress_fd: int) -> None:
    """The projector process's main function (forked by the fork server)."""
    events = Connection(events_fd, readable=False)
    progress = mmap.mmap(progress_fd, _PROGRESS_BYTES)
    os.close(progress_fd)
    shared = memoryview(progress).cast("q")
    try:
        _serve(spec, wake_fd, events, shared)
    finally:
        shared.release()
        progress.close()
        events.close()
        os.close(wake_fd)


def _serve(spec: ProjectorSpec, wake_fd: int, events: Connection, shared: Any) -> None:
    try:
        child = _Child(spec, shared, events)
    except Exception as exc:
        with contextlib.suppress(OSError):
            events.send(("init_failed", _portable(exc)))
        return
    child.send(("ready",))
    orphaned = False
    try:
        while child.running():
            if child.step():
                continue
            if orphaned:
                break  # the recorder is gone and everything it appended is taken in
            shared[_Slot.IDLE] = 1
            readable, _, _ = select.select([wake_fd], [], [], spec.idle_look)
            shared[_Slot.IDLE] = 0
            if readable and not os.read(wake_fd, 4096):
                orphaned = True  # end of file: look once more, then exit
    finally:
        child.close()
        child.send(("cpu", time.process_time()))  # for the recorder's figures (the bench)


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

    Starting it waits until the child has opened its projectors (the export's lock is
    held from then on) and raises what stopped it from doing so.
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
        progress_fd = anonymous_file(_PROGRESS_BYTES)
        theirs = [wake_r, events_w, progress_fd]
        try:
            progress = mmap.mmap(progress_fd, _PROGRESS_BYTES)
            shared = memoryview(progress).cast("q")
            shared[_Slot.SQL_TARGET] = self._sql_target
            self.pid = fork_server().start(__name__, "serve", (spec,), theirs)
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
        while self._events is not None and time.monotonic() < deadline:
            message = self._receive(max(deadline - time.monotonic(), 0))
            if message is None:
                break  # its end closed: it exited
            if message:
                self._apply(message)
        else:  # pragma: no cover - a projector that does not stop
            _log.warning("run %s: the projector process did not stop; killing it", self.run_id)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
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
        return self._shared is not None and self._shared[_Slot.IDLE] == 1

    def done(self, slot: _Slot) -> int:
        shared = self._shared
        return -1 if shared is None else int(shared[slot])

    def alive(self, part: _Part) -> bool:
        """The part runs (a dead child is started again here)."""
        if part.running:
            self.pump(0)
        return part.running and self._events is not None

    def wait_progress(self, slot: _Slot, timeout: float) -> None:
        shared = self._shared
        if shared is None:
            return
        before = shared[slot]
        shared[_Slot.WAITING] = 1
        try:
            if shared[slot] == before:
                self.pump(timeout)
        finally:
            if self._shared is not None:
                self._shared[_Slot.WAITING] = 0

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
            self._shared[_Slot.STOP] |= bit
        self._reap()

    def finish_sql(self, seq: int) -> None:
        self._sql_target = seq
        if self._shared is not None:
            self._shared[_Slot.SQL_TARGET] = seq


class _Handle:
    """The recorder's handle on one part of a :class:`ProjectorProcess`."""

    _slot: _Slot
    _stop_bit: int
    max_behind = MAX_BEHIND

    def __init__(self, host: ProjectorProcess, part: _Part) -> None:
        self.host = host
        self.run_id = host.run_id
        self._part = part
        self._marks: deque[tuple[int, float]] = deque()
        """(last seq, when) at each throttle while it trailed: how long ago it fell behind."""

    def late(self, last_seq: int) -> bool:
        """It trails by more than ``MAX_LAG`` seconds (called every throttle interval)."""
        now = time.monotonic()
        marks = self._marks
        marks.append((last_seq, now))
        done = self.done_seq()
        while marks and marks[0][0] <= done:
            marks.popleft()  # taken in (it may have caught up since the caller looked)
        return bool(marks) and now - marks[0][1] > MAX_LAG

    def wake(self) -> None:
        self.host.wake()

    def needs_wake(self) -> bool:
        return self.host.idle()

    def alive(self) -> bool:
        return self.host.alive(self._part)

    def done_seq(self) -> int:
        return self.host.done(self._slot)

    def wait_progress(self, timeout: float) -> None:
        self.host.wait_progress(self._slot, timeout)

    def stop(self) -> None:
        """Stop following (the projection stays at its checkpoint, resumable)."""
        self.host.stop(self._part, self._stop_bit)


class ProcessExport(_Handle):
    """The recorder's handle on the live export in a :class:`ProjectorProcess`."""

    _slot = _Slot.EXPORT_DONE
    _stop_bit = _STOP_EXPORT

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

    _slot = _Slot.SQL_DONE
    _stop_bit = _STOP_SQL

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
