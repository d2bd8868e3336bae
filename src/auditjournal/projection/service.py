"""Projectors as a separate process: follow every run in a root as journals grow.

``auditjournal project ROOT [--follow]`` drives one :class:`ExportProjector`
per unsealed run. watchdog only wakes the loop ("something under runs/
changed"); each projector keeps its own journal position and reads to the
end. When a run's export is sealed the service appends ``export_sealed`` to
that run's journal, once the recorder has released it.

A run whose export another process is writing (its export lock is held,
e.g. by an in-process live export) is skipped and retried later.

With ``sql`` (the default) each run also gets a :class:`SqlProjector` that
keeps the SQL audit tables current, through ``export_sealed``; its
checkpoint makes it safe beside an in-process projector of the same run.

One broken run (a damaged journal, an export directory deleted under it, a
file that cannot be read) does not stop the others: its projectors are closed,
the problem is logged on the ``auditjournal`` logger and kept in
:attr:`ProjectionService.problems`, and every other run goes on. Following, the
run is tried again after :attr:`ProjectionService.retry_interval` seconds (the
problem may have been passing, e.g. a directory deleted while it was written).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import AuditJournalError, JournalLockedError, RunNotFoundError
from ..export.projector import LIVE_STEP_EVENTS, ExportProjector, SealResult
from ..journal.base import JournalCursor, RunJournal
from ..journal.pgbackend import Listener, PgDatabase, PgRunJournal
from ..model.events import ExportCheckpoint, ExportSealed, RunStarted
from ..model.settings import ExportSettings
from ..payloads.store import PayloadStore
from ..sql.projector import SqlProjector
from ..sql.schema import SqlDatabase
from .pgmirror import PgMirror

__all__ = ["ProjectionService", "recorded_export_settings"]

_log = logging.getLogger(__name__)  # under the "auditjournal" logger


class ProjectionSource(Protocol):
    """The parts of a store the service uses (:class:`~auditjournal.AuditStore` has them)."""

    root: Path
    payloads: PayloadStore
    pg: PgDatabase | None
    """The PostgreSQL journal, if the runs' journals are there (``journal(run_id)`` is
    then the local copy the projectors read, kept current by a :class:`PgMirror`)."""

    def run_ids(self) -> list[str]: ...
    def journal(self, run_id: str) -> RunJournal: ...
    def journal_reader(self, run_id: str) -> JournalCursor: ...
    def sql_database(self) -> SqlDatabase: ...
    def sql_projector(self, run_id: str, database: SqlDatabase | None = None) -> SqlProjector: ...
    def export_projector(self, run_id: str, export: ExportSettings) -> ExportProjector: ...
    def append_export_event(self, run_id: str, event: ExportSealed | ExportCheckpoint) -> bool: ...
    def now(self) -> dt.datetime: ...


def recorded_export_settings(store: ProjectionSource, run_id: str) -> ExportSettings:
    """The export settings the run was started with (defaults if it had no live export)."""
    reader = store.journal_reader(run_id)
    try:
        first = reader.poll(limit=1)
    finally:
        reader.close()
    described: dict[str, Any] = {}
    if first and isinstance(first[0], RunStarted):
        described = dict(first[0].settings.get("export") or {})
    known = {
        "include_payloads",
        "chunk_size_bytes",
        "sign",
        "signing_key_file",
        "checkpoint_every_records",
        "timestamp_url",
        "timestamp_required",
    }
    return ExportSettings(**{k: v for k, v in described.items() if k in known})


@dataclass
class _Job:
    run_id: str
    projector: ExportProjector | None = None
    done: bool = False
    sql: SqlProjector | None = None
    sql_done: bool = False
    problem: str | None = None
    """What went wrong the last time this run was projected (None: nothing)."""
    retry_at: float = 0.0
    logged: str | None = None
    """The last problem logged: a run that keeps failing the same way is logged once."""
    mirror: PgMirror | None = None
    """The local copy of the run's PostgreSQL journal this service keeps current."""

    def close(self) -> None:
        """Release the projectors (their locks and files); each is resumable later."""
        projector, self.projector = self.projector, None
        sql, self.sql = self.sql, None
        mirror, self.mirror = self.mirror, None
        for part in (projector, sql, mirror):
            if part is not None:
                try:
                    part.close()
                except Exception as exc:  # closing a broken run's files must not stop others
                    _log.debug("run %s: closing its projector failed: %s", self.run_id, exc)


@dataclass
class ProjectionService:
    """Projects the exports of all (or some) runs of a store."""

    store: ProjectionSource
    run_ids: list[str] | None = None
    settings: ExportSettings | None = None
    on_sealed: Callable[[str, SealResult], None] | None = None
    sql: bool = True
    database: SqlDatabase | None = None
    """Where the SQL tables go (default: the store's database)."""
    step_events: int = 4096
    """Events per projector step; records become readable at the end of a step."""
    retry_interval: float = 10.0
    """Following: seconds before a run whose projection failed is tried again."""
    problems: dict[str, str] = field(default_factory=dict)
    """Runs that could not be projected (run id -> what went wrong), as of now."""
    _jobs: dict[str, _Job] = field(default_factory=dict)

    def run(
        self, *, follow: bool, stop: threading.Event | None = None, idle_wait: float = 0.5
    ) -> int:
        """Project until every run is sealed and recorded (``follow``: until ``stop``).
        Returns how many exports were sealed."""
        if self.run_ids is not None:
            for run_id in self.run_ids:  # a run named on purpose must exist
                if self.store.pg is not None:
                    self.store.pg.head(run_id)  # RunNotFoundError
                elif not self.store.journal(run_id).exists():
                    raise RunNotFoundError(f"no run {run_id!r} in {self.store.root}")
        wake = threading.Event()
        observer = self._watch(wake) if follow else None
        listening = threading.Event()
        if follow and self.store.pg is not None:
            self._listen(wake, listening)
        if follow:  # small steps: live tails see records within milliseconds
            self.step_events = min(self.step_events, LIVE_STEP_EVENTS)
        sealed = 0
        try:
            while stop is None or not stop.is_set():
                progressed, newly = self._round(retry=follow)
                sealed += newly
                if progressed:
                    continue
                if not follow and all(
                    (job.done and job.sql_done) or job.problem is not None
                    for job in self._jobs.values()
                ):
                    break
                if not follow and not self._pending_possible():
                    break
                wake.wait(idle_wait)
                wake.clear()
        finally:
            listening.set()
            if observer is not None:
                observer.stop()
                observer.join()
            for job in self._jobs.values():
                job.close()
        return sealed

    def _pending_possible(self) -> bool:
        """Without --follow: wait only for runs that are sealed but not yet recorded."""
        return any(
            job.projector is not None and job.projector.sealed and not job.done
            for job in self._jobs.values()
        )

    def _round(self, *, retry: bool) -> tuple[bool, int]:
        """One step of every run; a run that fails is set aside (``retry``: for a while)."""
        progressed = False
        sealed = 0
        wanted = self.run_ids if self.run_ids is not None else self.store.run_ids()
        for run_id in wanted:
            job = self._jobs.setdefault(run_id, _Job(run_id, sql_done=not self.sql))
            if job.problem is not None:
                if not retry or time.monotonic() < job.retry_at:
                    continue
                _log.debug("run %s: trying again after: %s", run_id, job.problem)
            try:
                moved, newly = self._advance(job)
            except Exception as exc:  # one run's trouble must not stop the others
                self._set_aside(job, exc)
                continue
            if job.problem is not None:
                job.problem = None
                self.problems.pop(run_id, None)
            progressed = progressed or moved
            sealed += newly
        return progressed, sealed

    def _listen(self, wake: threading.Event, done: threading.Event) -> None:
        """Wake the loop on the PostgreSQL journal's NOTIFY (and every second regardless)."""
        assert self.store.pg is not None
        listener = Listener(self.store.pg)

        def loop() -> None:
            try:
                while not done.is_set():
                    listener.wait(1.0)
                    wake.set()
            finally:
                listener.close()

        threading.Thread(target=loop, name="auditjournal-listen", daemon=True).start()

    def _copy(self, job: _Job) -> bool:
        """Bring the local copy of a PostgreSQL journal up to date (another process of this
        root may be keeping it: then that one does)."""
        store = self.store
        assert store.pg is not None
        if job.mirror is None:
            try:
                job.mirror = PgMirror(
                    PgRunJournal(store.pg, job.run_id), store.journal(job.run_id), store.payloads
                )
            except JournalLockedError:
                return False
        return job.mirror.sync() > 0

    def _advance(self, job: _Job) -> tuple[bool, int]:
        """Step the run's SQL and export projectors; record a seal. (progressed, sealed)"""
        copied = self.store.pg is not None and self._copy(job)
        progressed = self._step_sql(job) or copied
        if job.done:
            return progressed, 0
        if job.projector is None:
            job.projector = self._projector(job.run_id)
            if job.projector is None:
                return progressed, 0
        if job.projector.step(self.step_events):
            progressed = True
        if not job.projector.sealed:
            return progressed, 0
        outcome = self._record_seal(job)
        return progressed or outcome is not None, int(outcome is True)

    def _set_aside(self, job: _Job, exc: Exception) -> None:
        """Close a failed run's projectors, log and keep the problem, try again later."""
        problem = str(exc) or type(exc).__name__
        job.close()  # done / sql_done stay true: what was finished stays finished
        job.retry_at = time.monotonic() + self.retry_interval
        if problem != job.logged:
            job.logged = problem
            expected = isinstance(exc, AuditJournalError | OSError)
            _log.warning(
                "run %s cannot be projected (other runs go on): %s",
                job.run_id,
                problem,
                exc_info=None if expected else exc,
            )
        job.problem = problem
        self.problems[job.run_id] = problem

    def _step_sql(self, job: _Job) -> bool:
        """Move the run's tables on; done once they hold the run and its seal."""
        if job.sql_done:
            return False
        if job.sql is None:
            database = self.database or self.store.sql_database()
            job.sql = self.store.sql_projector(job.run_id, database)
        moved = job.sql.step()
        if not moved and job.done and job.sql.run_completed:
            job.sql.close()
            job.sql = None
            job.sql_done = True
        return moved > 0

    def _projector(self, run_id: str) -> ExportProjector | None:
        settings = self.settings or recorded_export_settings(self.store, run_id)
        try:
            return self.store.export_projector(run_id, settings)
        except JournalLockedError:
            return None  # another process is writing this export

    def _record_seal(self, job: _Job) -> bool | None:
        """True: sealed now and recorded; False: the journal already had this seal;
        None: the recorder still holds the journal (try again next round)."""
        projector = job.projector
        assert projector is not None and projector.result is not None
        result = projector.result
        try:
            for size, root in result.checkpoints:  # recorded once: the same event is skipped
                self.store.append_export_event(
                    job.run_id,
                    ExportCheckpoint(
                        run_id=job.run_id,
                        ts=self.store.now(),
                        tree_size=size,
                        root=root,
                        export_path=result.checkpoint_path(size),
                    ),
                )
            recorded = self.store.append_export_event(
                job.run_id, result.sealed_event(job.run_id, self.store.now())
            )
        except JournalLockedError:
            return None
        projector.close()
        job.projector = None
        job.done = True
        if recorded and self.on_sealed is not None:
            self.on_sealed(job.run_id, result)
        return recorded

    def _watch(self, wake: threading.Event) -> Any:
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is a dependency; polling still works
            return None

        class _Wake(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                wake.set()

        observer = Observer()
        observer.schedule(_Wake(), str(self.store.root / "runs"), recursive=True)
        observer.daemon = True
        observer.start()
        return observer
