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
    RunAlreadyCompletedError,
    RunExistsError,
    RunNotFoundError,
    StateAlreadyCompletedError,
    StorageError,
    UnknownIdError,
)
from .events import Event
from .export import ExportPaths, ExportProjector, LiveExport, SealResult, replay_export
from .journal import Journal, JournalPosition, JournalReader, Recovery
from .payloads import PayloadStore
from .recorder import RunRecorder
from .settings import ExportSettings
from .store import AuditStore

__version__ = "0.1.0"

__all__ = [
    "AuditJournalError",
    "AuditStore",
    "CanonicalizationError",
    "CorruptJournalError",
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
    "PayloadIntegrityError",
    "PayloadNotFoundError",
    "PayloadStore",
    "PayloadTooLargeError",
    "Recovery",
    "RunAlreadyCompletedError",
    "RunExistsError",
    "RunNotFoundError",
    "RunRecorder",
    "SealResult",
    "StateAlreadyCompletedError",
    "StorageError",
    "UnknownIdError",
    "__version__",
    "canonical_json",
    "replay_export",
    "stable_hash",
]
