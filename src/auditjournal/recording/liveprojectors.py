"""Starting a run's live projectors, in a projector process or as threads (the store's
``projection`` setting; see ``projection/process.py`` and ``projection/live.py``).

They are opened before the run's journal exists, so that the export's lock is held
before the run is visible on disk (``auditjournal project``, which skips exports in use,
never takes a live one over), and handed to the recorder once ``run_started`` is
written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, Literal, Protocol

from ..errors import InvalidSettingsError
from ..export.projector import ExportProjector
from ..fs.safeio import real_dir
from ..model.settings import ExportSettings
from ..payloads.store import PayloadStore
from ..projection.live import LiveExport, LiveProjectors, LiveSql
from ..projection.process import ProcessExport, ProcessSql, ProjectorProcess, ProjectorSpec
from ..proofs.ledger import Ledger
from ..sql.projector import SqlProjector

__all__ = ["PROJECTION_ENV", "PROJECTION_MODES", "LiveStart", "Projection", "projection_mode"]

Projection = Literal["process", "thread"]
PROJECTION_MODES: Final = ("process", "thread")
PROJECTION_ENV: Final = "AUDITJOURNAL_PROJECTION"
"""The default of ``AuditStore.open(projection=...)`` when it is not given ("process")."""


def projection_mode(explicit: object) -> Projection:
    """The projection mode: the one given, else ``$AUDITJOURNAL_PROJECTION``, else process."""
    mode = explicit if explicit is not None else os.environ.get(PROJECTION_ENV) or "process"
    if mode == "process" or mode == "thread":
        return mode
    raise InvalidSettingsError(
        f"projection must be one of {list(PROJECTION_MODES)}, got {mode!r}"
        + (f" (from ${PROJECTION_ENV})" if explicit is None else "")
    )


class LiveSource(Protocol):
    """The parts of a store the live projectors are made from (``AuditStore`` has them)."""

    root: Path
    projection: Projection
    segment_bytes: int
    flush_interval: float
    database_url: str
    journal_url: str | None
    ledger: Ledger
    payloads: PayloadStore

    def export_prefix(self, run_id: str, settings: ExportSettings) -> Path: ...
    def export_projector(
        self, run_id: str, export: ExportSettings, *, prefix: Path | None = None, live: bool = False
    ) -> ExportProjector: ...
    def sql_projector(self, run_id: str) -> SqlProjector: ...


class LiveStart:
    """A run's live projectors, opened (the export's lock taken) but not yet following."""

    def __init__(
        self, store: LiveSource, run_id: str, export: ExportSettings | None, sql: bool
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._export = export
        self._sql = sql
        self._projector: ExportProjector | None = None
        self._host: ProjectorProcess | None = None
        if store.projection == "process":
            if export is not None or sql:
                self._host = ProjectorProcess(self._spec(export, sql))
        elif export is not None:
            self._projector = store.export_projector(run_id, export, live=True)

    def _spec(self, export: ExportSettings | None, sql: bool) -> ProjectorSpec:
        store = self._store
        prefix = ""
        if export is not None:
            if export.path_prefix is None:  # created here, never through a link
                real_dir(store.root, "runs", self._run_id, "export")
            prefix = str(store.export_prefix(self._run_id, export))
        key = store.ledger.key_file
        return ProjectorSpec(
            cwd=os.getcwd(),
            root=str(store.root),
            run_id=self._run_id,
            segment_bytes=store.segment_bytes,
            max_payload_bytes=store.payloads.max_payload_bytes,
            ledger_key=None if key is None else str(key),
            idle_look=store.flush_interval,
            export=export,
            export_prefix=prefix,
            database_url=store.database_url if sql else None,
            journal_url=store.journal_url,
        )

    def attach(self, live: LiveProjectors) -> None:
        """Hand the projectors to the recorder (``run_started`` is written)."""
        store, run_id, export = self._store, self._run_id, self._export
        host, self._host = self._host, None
        if host is not None:
            live.export, live.sql = host.export, host.sql
            if export is not None:
                live.restart_export = lambda: _only(ProjectorProcess(self._spec(export, False)))
            if self._sql:
                live.restart_sql = lambda: _only_sql(ProjectorProcess(self._spec(None, True)))
            host.wake()
            return
        projector, self._projector = self._projector, None
        if projector is not None:
            assert export is not None
            live.export = LiveExport(projector)
            live.restart_export = lambda: LiveExport(
                store.export_projector(run_id, export, live=True)
            )
        if self._sql:
            live.sql = LiveSql(store.sql_projector(run_id))
            live.restart_sql = lambda: LiveSql(store.sql_projector(run_id))

    def close(self) -> None:
        """The run did not start: let go of what was opened (resumable, nothing sealed)."""
        projector, self._projector = self._projector, None
        if projector is not None:
            projector.close()
        host, self._host = self._host, None
        if host is not None:
            for follower in (host.export, host.sql):
                if follower is not None:
                    follower.stop()


def _only(host: ProjectorProcess) -> ProcessExport:
    assert host.export is not None
    return host.export


def _only_sql(host: ProjectorProcess) -> ProcessSql:
    assert host.sql is not None
    return host.sql
