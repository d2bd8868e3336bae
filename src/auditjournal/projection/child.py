"""The projector process's own side (:mod:`.process` has the recorder's side and the design).

Forked by the fork server (:func:`serve` is its entry point): it opens the run's export and
SQL projectors on one shared read of the journal (:mod:`.shared`), steps them, publishes
their progress in the shared array (:class:`Slot`) and reports seals and failures on the
event pipe; the end of the wake pipe means the recorder is gone.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import mmap
import os
import pickle
import select
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import msgspec

from ..errors import AuditJournalError
from ..export.projector import LIVE_STEP_EVENTS, ExportProjector
from ..model.settings import ExportSettings
from ..payloads.store import PayloadStore
from ..proofs.pgledger import open_ledger
from ..sql.projector import SqlProjector
from ..sql.schema import SqlDatabase
from ..sql.walcheckpoint import WalCheckpointer, file_of
from .shared import shared_journal

__all__ = [
    "PROGRESS_BYTES",
    "SQL_EVERY_EVENTS",
    "SQL_EVERY_SECONDS",
    "STOP_EXPORT",
    "STOP_SQL",
    "WAIT_EXPORT",
    "WAIT_SQL",
    "ProjectorSpec",
    "Slot",
    "serve",
]


class Slot(enum.IntEnum):
    """The shared progress array's slots (signed 64-bit each)."""

    EXPORT_DONE = 0  # last seq the export took in
    SQL_DONE = 1  # last seq the SQL tables hold
    SQL_TARGET = 2  # the recorder waits for the tables up to this seq (-1: not yet)
    STOP = 3  # bits: 1 stop the export, 2 stop the SQL tables (both stay resumable)
    WAITING = 4  # WAIT_* bits: the recorder waits for progress; send "progress" after a step
    IDLE = 5  # 1: the projector is blocked on the wake pipe
    WAIT_SEQ = 6  # the seq the recorder waits for (0: any progress)


PROGRESS_BYTES: Final = 8 * len(Slot)
STOP_EXPORT: Final = 1
STOP_SQL: Final = 2
WAIT_EXPORT: Final = 1  # Slot.WAITING: the recorder waits for the export
WAIT_SQL: Final = 2  # ... for the SQL tables (they step at once then)
# Beside a live export the SQL tables take in at least SQL_EVERY_EVENTS events at once, or
# what there is once SQL_EVERY_SECONDS passed since their last step: a transaction costs
# about 0.6 ms (SQLite), so the 64..300 events a projector keeping close behind finds at a
# time cost 11..18 us each, where 2,048 cost 9 (docs/decisions.md, issue 13).
SQL_EVERY_EVENTS: Final = 2048
SQL_EVERY_SECONDS: Final = 0.05


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


class _Child:
    """The projector process's side: steps its parts, publishes progress, reports."""

    def __init__(self, spec: ProjectorSpec, shared: Any, events: Connection) -> None:
        os.chdir(spec.cwd)
        self.shared = shared
        self.events = events
        self.spec = spec
        root = Path(spec.root)
        journal = shared_journal(root, spec.run_id, spec.segment_bytes)  # one read, both parts
        self.journal = journal
        self.payloads = PayloadStore(root / "payloads", max_payload_bytes=spec.max_payload_bytes)
        self.export: ExportProjector | None = None
        self.sql: SqlProjector | None = None
        self.database: SqlDatabase | None = None
        self.checkpointer: WalCheckpointer | None = None  # SQLite: the log's, off this thread
        self._sql_due = 0.0  # (monotonic) when the SQL tables step again at the latest
        self.orphaned = False  # the recorder is gone: take in what it appended, then exit
        if spec.export is not None:
            key = None if spec.ledger_key is None else Path(spec.ledger_key)
            self.export = ExportProjector(
                journal_dir=journal,
                run_id=spec.run_id,
                payloads=self.payloads,
                settings=spec.export,
                prefix=Path(spec.export_prefix),
                ledger=open_ledger(root, key, spec.journal_url),
                io_thread=False,  # small steps beside a busy recorder (docs/decisions.md)
            )
            shared[Slot.EXPORT_DONE] = self.export.position.next_seq - 1

    def open_sql(self) -> None:
        """Open the SQL tables' projector (after "ready": the recorder does not wait for
        it; a failure is the tables' own, reported as ``sql_failed``, the export goes on).
        The recorder checked the database before starting the run, as threads open
        their SQL projector only once ``run_started`` is written."""
        url = self.spec.database_url
        if url is None:
            return
        try:
            self.database = SqlDatabase(url)
            if self.export is not None and file_of(self.database.engine) is not None:
                # beside a live export: a commit that checkpoints would hold it back
                self.checkpointer = WalCheckpointer(self.database.engine)
            self.sql = SqlProjector(
                database=self.database, journal_dir=self.journal, run_id=self.spec.run_id
            )
        except Exception as exc:
            self.send(("sql_failed", _portable(exc)))
            return
        self.shared[Slot.SQL_DONE] = self.sql.applied_seq

    def step(self) -> bool:
        """One step of each part still running; True if either took something in."""
        moved = False
        stop = self.shared[Slot.STOP]
        if self.export is not None:
            if stop & STOP_EXPORT:
                self._end_export(None)
            else:
                moved = self._step_export()
        if self.sql is not None:
            if stop & STOP_SQL:
                self._end_sql(None)
            elif self.sql.writing or self._sql_now():
                moved = self._step_sql() or moved
                if self.sql is not None and self.sql.writing:
                    moved = self._gather_sql() or moved  # the next batch's, meanwhile
            else:
                moved = self._gather_sql() or moved
        if moved and self.shared[Slot.WAITING] and self._wait_over():
            self.send(("progress",))
        return moved

    def _wait_over(self) -> bool:
        """The part the recorder waits for reached the seq it waits for. Said at every
        step that moved, "progress" woke the recorder ~8 times a wait to look and wait
        again (2.6 % of the child's time went to sending it); it still looks every 5 ms."""
        shared = self.shared
        done = Slot.SQL_DONE if shared[Slot.WAITING] & WAIT_SQL else Slot.EXPORT_DONE
        return bool(shared[done] >= shared[Slot.WAIT_SEQ])

    def _sql_now(self) -> bool:
        """Whether the SQL tables step now (see SQL_EVERY_EVENTS): always without a live
        export, when the recorder waits for them, or at the end (the run's, or the
        recorder's: an orphan exits once a step takes in nothing). Not when it waits for
        the export: a batch then only held the export back further (docs/decisions.md)."""
        sql = self.sql
        assert sql is not None
        return (
            self._sql_at_once()
            or self.shared[Slot.EXPORT_DONE] - sql.applied_seq >= SQL_EVERY_EVENTS
            or time.monotonic() >= self._sql_due
        )

    def _sql_at_once(self) -> bool:
        """The tables take in what there is at once, unsliced: without a live export,
        once orphaned, or when the recorder waits for them (the run's end included)."""
        shared = self.shared
        return bool(
            self.export is None
            or self.orphaned
            or shared[Slot.SQL_TARGET] >= 0
            or shared[Slot.WAITING] & WAIT_SQL
        )

    def idle_for(self, longest: float) -> float:
        """How long to wait for a wake-up at most: until the SQL tables are due to take
        in what the export took in before them."""
        sql = self.sql
        if sql is None or self.shared[Slot.EXPORT_DONE] <= sql.applied_seq:
            return longest
        return max(0.0, min(longest, self._sql_due - time.monotonic()))

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
        self.shared[Slot.EXPORT_DONE] = export.position.next_seq - 1
        if export.result is not None:
            self._end_export(("sealed", export.result))
        return moved

    def _step_sql(self) -> bool:
        sql = self.sql
        assert sql is not None
        try:
            if self._sql_at_once():
                moved = sql.step() > 0  # at once: nothing to keep going beside, or awaited
            else:  # a slice at a time between the export's steps
                # what was gathered (following the export): no batch of rows made at once
                if not sql.writing and not sql.begin_write(max(sql.gathered, LIVE_STEP_EVENTS)):
                    moved = False
                else:
                    applied = sql.write_some()
                    if applied is None:
                        return True  # rows remain: the loop goes on
                    moved = applied > 0
        except Exception as exc:
            self._end_sql(("sql_failed", _portable(exc)))
            return False
        self._sql_due = time.monotonic() + SQL_EVERY_SECONDS
        if moved and self.checkpointer is not None:
            self.checkpointer.poke()
        self.shared[Slot.SQL_DONE] = sql.applied_seq
        target = self.shared[Slot.SQL_TARGET]
        if target >= 0 and sql.applied_seq >= target:
            self._end_sql(("sql_done", sql.applied_seq))
        return moved

    def _gather_sql(self) -> bool:
        """Between the tables' steps, make the rows of what the export just took in; the
        step then writes them a slice at a time (``SqlProjector.write_some``) between the
        export's steps: a whole batch at once held the export back ~20 ms, and the
        recorder waited for it (docs/decisions.md, issue 13)."""
        sql = self.sql
        assert sql is not None
        try:
            return sql.gather(LIVE_STEP_EVENTS) > 0
        except Exception as exc:
            self._end_sql(("sql_failed", _portable(exc)))
            return False

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
        for part in (self.export, self.sql, self.checkpointer, self.database):
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


GC_YOUNG_THRESHOLD: Final = 10_000


def _collect_less() -> None:
    """The projectors allocate a batch's events and rows, and drop them together: with
    the default threshold (700) the cyclic collector ran ~4 times per 1,000 events, and
    its full collections walked every object of SQLAlchemy and the projectors (about
    0.7 µs per event of the SQL projector's ~10 on the reference workload). What is
    open now stays for the process's life: frozen, out of every collection; and the
    young generation is collected less often (most of a batch is freed before)."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def serve(spec: ProjectorSpec, wake_fd: int, events_fd: int, progress_fd: int) -> None:
    """The projector process's main function (forked by the fork server)."""
    events = Connection(events_fd, readable=False)
    progress = mmap.mmap(progress_fd, PROGRESS_BYTES)
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
    child.send(("ready",))  # the export holds its lock: the run may start
    child.open_sql()  # meanwhile (~35 ms on SQLite, most of the start with the defaults)
    _collect_less()
    try:
        while child.running():
            if child.step():
                continue
            if child.orphaned:
                break  # the recorder is gone and everything it appended is taken in
            shared[Slot.IDLE] = 1
            readable, _, _ = select.select([wake_fd], [], [], child.idle_for(spec.idle_look))
            shared[Slot.IDLE] = 0
            if readable and not os.read(wake_fd, 4096):
                child.orphaned = True  # end of file: look once more, then exit
    finally:
        child.close()
        child.send(("cpu", time.process_time()))  # for the recorder's figures (the bench)
