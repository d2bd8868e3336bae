"""auditjournal: an event-sourced, append-only audit trail for data pipelines.

The data path reads left to right: recorder -> journal (+ payload store) ->
projectors -> export chunks / SQL tables -> verify / tail / extract.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AuditJournalError,
    BatchAlreadyCompletedError,
    CanonicalizationError,
    CorruptExportError,
    CorruptJournalError,
    DatabaseError,
    DiskFullError,
    DuplicateIdError,
    DuplicateMemberError,
    EmptySelectionError,
    ExportError,
    ExportNotFoundError,
    InvalidEventError,
    InvalidIdError,
    InvalidRefError,
    InvalidSettingsError,
    JournalClosedError,
    JournalLockedError,
    LifecycleError,
    MalformedEvidenceError,
    NaiveTimestampError,
    OperationAlreadyCompletedError,
    PayloadIntegrityError,
    PayloadNotFoundError,
    PayloadTooLargeError,
    ProjectorProcessError,
    ReconstructionError,
    RowNotFoundError,
    RunAlreadyCompletedError,
    RunExistsError,
    RunNotCompletedError,
    RunNotFoundError,
    SchemaVersionError,
    SignatureError,
    SigningKeyError,
    StateAlreadyCompletedError,
    StorageError,
    UnknownIdError,
    UnsafePathError,
    UnsupportedSchemaError,
    ValidationErrorNotFoundError,
)
from .model.version import __version__

if TYPE_CHECKING:
    from .demo import run_demo
    from .evidence.consistency import ConsistencyReport, prove_consistency, verify_consistency_file
    from .evidence.extract import Selection, extract_bundle, read_bundle, verify_bundle
    from .evidence.reimport import TypedRow, load_rows
    from .evidence.verify import VerifyReport, verify_export
    from .evidence.verify_store import StoreReport, verify_store
    from .export.manifest import ExportPaths
    from .export.projector import ExportProjector, SealResult
    from .export.replay import replay_export
    from .export.tail import ExportTail, TailFilter
    from .journal.files import Journal, JournalPosition, JournalReader, Recovery
    from .model.canonical import canonical_json, stable_hash
    from .model.events import Event
    from .model.settings import ExportSettings, OpenLineageSettings
    from .model.typed import decode_typed, schema_types
    from .payloads.store import PayloadStore
    from .projection.live import LiveExport, LiveSql
    from .projection.service import ProjectionService
    from .proofs.ledger import Ledger, LedgerEntry
    from .proofs.merkle import MerkleBuilder
    from .proofs.signing import check_signature, generate_keypair
    from .recording.recorder import RunRecorder
    from .recording.store import AuditStore
    from .sql.csvexport import CsvResult, export_csv
    from .sql.lineage import explain_row, explain_validation_error, list_runs, show_run
    from .sql.projector import SqlProjector, replay_sql
    from .sql.schema import SqlDatabase

_LAZY: dict[str, str] = {
    "run_demo": ".demo",
    "ConsistencyReport": ".evidence.consistency",
    "prove_consistency": ".evidence.consistency",
    "verify_consistency_file": ".evidence.consistency",
    "Selection": ".evidence.extract",
    "extract_bundle": ".evidence.extract",
    "read_bundle": ".evidence.extract",
    "verify_bundle": ".evidence.extract",
    "TypedRow": ".evidence.reimport",
    "load_rows": ".evidence.reimport",
    "VerifyReport": ".evidence.verify",
    "verify_export": ".evidence.verify",
    "StoreReport": ".evidence.verify_store",
    "verify_store": ".evidence.verify_store",
    "ExportPaths": ".export.manifest",
    "ExportProjector": ".export.projector",
    "SealResult": ".export.projector",
    "replay_export": ".export.replay",
    "ExportTail": ".export.tail",
    "TailFilter": ".export.tail",
    "Journal": ".journal.files",
    "JournalPosition": ".journal.files",
    "JournalReader": ".journal.files",
    "Recovery": ".journal.files",
    "canonical_json": ".model.canonical",
    "stable_hash": ".model.canonical",
    "Event": ".model.events",
    "ExportSettings": ".model.settings",
    "OpenLineageSettings": ".model.settings",
    "decode_typed": ".model.typed",
    "schema_types": ".model.typed",
    "PayloadStore": ".payloads.store",
    "LiveExport": ".projection.live",
    "LiveSql": ".projection.live",
    "ProjectionService": ".projection.service",
    "Ledger": ".proofs.ledger",
    "LedgerEntry": ".proofs.ledger",
    "MerkleBuilder": ".proofs.merkle",
    "check_signature": ".proofs.signing",
    "generate_keypair": ".proofs.signing",
    "RunRecorder": ".recording.recorder",
    "AuditStore": ".recording.store",
    "CsvResult": ".sql.csvexport",
    "export_csv": ".sql.csvexport",
    "explain_row": ".sql.lineage",
    "explain_validation_error": ".sql.lineage",
    "list_runs": ".sql.lineage",
    "show_run": ".sql.lineage",
    "SqlProjector": ".sql.projector",
    "replay_sql": ".sql.projector",
    "SqlDatabase": ".sql.schema",
}
"""Where each public name is defined: imported on first use (:func:`__getattr__`), so that
``import auditjournal`` (and so every command line start, ``auditjournal verify`` among
them) does not import the recorder, the projectors and SQLAlchemy before it needs them."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AuditJournalError",
    "AuditStore",
    "BatchAlreadyCompletedError",
    "CanonicalizationError",
    "ConsistencyReport",
    "CorruptExportError",
    "CorruptJournalError",
    "CsvResult",
    "DatabaseError",
    "DiskFullError",
    "DuplicateIdError",
    "DuplicateMemberError",
    "EmptySelectionError",
    "Event",
    "ExportError",
    "ExportNotFoundError",
    "ExportPaths",
    "ExportProjector",
    "ExportSettings",
    "ExportTail",
    "InvalidEventError",
    "InvalidIdError",
    "InvalidRefError",
    "InvalidSettingsError",
    "Journal",
    "JournalClosedError",
    "JournalLockedError",
    "JournalPosition",
    "JournalReader",
    "Ledger",
    "LedgerEntry",
    "LifecycleError",
    "LiveExport",
    "LiveSql",
    "MalformedEvidenceError",
    "MerkleBuilder",
    "NaiveTimestampError",
    "OpenLineageSettings",
    "OperationAlreadyCompletedError",
    "PayloadIntegrityError",
    "PayloadNotFoundError",
    "PayloadStore",
    "PayloadTooLargeError",
    "ProjectionService",
    "ProjectorProcessError",
    "ReconstructionError",
    "Recovery",
    "RowNotFoundError",
    "RunAlreadyCompletedError",
    "RunExistsError",
    "RunNotCompletedError",
    "RunNotFoundError",
    "RunRecorder",
    "SchemaVersionError",
    "SealResult",
    "Selection",
    "SignatureError",
    "SigningKeyError",
    "SqlDatabase",
    "SqlProjector",
    "StateAlreadyCompletedError",
    "StorageError",
    "StoreReport",
    "TailFilter",
    "TypedRow",
    "UnknownIdError",
    "UnsafePathError",
    "UnsupportedSchemaError",
    "ValidationErrorNotFoundError",
    "VerifyReport",
    "__version__",
    "canonical_json",
    "check_signature",
    "decode_typed",
    "explain_row",
    "explain_validation_error",
    "export_csv",
    "extract_bundle",
    "generate_keypair",
    "list_runs",
    "load_rows",
    "prove_consistency",
    "read_bundle",
    "replay_export",
    "replay_sql",
    "run_demo",
    "schema_types",
    "show_run",
    "stable_hash",
    "verify_bundle",
    "verify_consistency_file",
    "verify_export",
    "verify_store",
]
