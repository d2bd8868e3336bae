"""auditjournal: an event-sourced, append-only audit trail for data pipelines.

The data path reads left to right: recorder -> journal (+ payload store) ->
projectors -> export chunks / SQL tables -> verify / tail / extract.
"""

from __future__ import annotations

from .canonical import canonical_json, stable_hash
from .errors import (
    AuditJournalError,
    CanonicalizationError,
    CorruptJournalError,
    DatabaseError,
    DiskFullError,
    DuplicateIdError,
    ExportError,
    InvalidEventError,
    InvalidIdError,
    InvalidRefError,
    JournalClosedError,
    JournalLockedError,
    LifecycleError,
    PayloadIntegrityError,
    PayloadNotFoundError,
    PayloadTooLargeError,
    RowNotFoundError,
    RunAlreadyCompletedError,
    RunExistsError,
    RunNotFoundError,
    SchemaVersionError,
    StateAlreadyCompletedError,
    StorageError,
    UnknownIdError,
)
from .events import Event
from .export import ExportPaths, ExportProjector, LiveExport, SealResult, replay_export
from .journal import Journal, JournalPosition, JournalReader, Recovery
from .lineage import explain_row, list_runs, show_run
from .payloads import PayloadStore
from .recorder import RunRecorder
from .settings import ExportSettings
from .sqlproj import LiveSql, SqlProjector, replay_sql
from .sqlschema import SqlDatabase
from .store import AuditStore

__version__ = "0.1.0"

__all__ = [
    "AuditJournalError",
    "AuditStore",
    "CanonicalizationError",
    "CorruptJournalError",
    "DatabaseError",
    "DiskFullError",
    "DuplicateIdError",
    "Event",
    "ExportError",
    "ExportPaths",
    "ExportProjector",
    "ExportSettings",
    "InvalidEventError",
    "InvalidIdError",
    "InvalidRefError",
    "Journal",
    "JournalClosedError",
    "JournalLockedError",
    "JournalPosition",
    "JournalReader",
    "LifecycleError",
    "LiveExport",
    "LiveSql",
    "PayloadIntegrityError",
    "PayloadNotFoundError",
    "PayloadStore",
    "PayloadTooLargeError",
    "Recovery",
    "RowNotFoundError",
    "RunAlreadyCompletedError",
    "RunExistsError",
    "RunNotFoundError",
    "RunRecorder",
    "SchemaVersionError",
    "SealResult",
    "SqlDatabase",
    "SqlProjector",
    "StateAlreadyCompletedError",
    "StorageError",
    "UnknownIdError",
    "__version__",
    "canonical_json",
    "explain_row",
    "list_runs",
    "replay_export",
    "replay_sql",
    "show_run",
    "stable_hash",
]
