"""auditjournal: an event-sourced, append-only audit trail for data pipelines.

The data path reads left to right: recorder -> journal (+ payload store) ->
projectors -> export chunks / SQL tables -> verify / tail / extract.
"""

from __future__ import annotations

from .demo import run_demo
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
from .model.version import __version__
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
