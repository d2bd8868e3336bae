"""The one error hierarchy of auditjournal.

Every error the library raises on purpose derives from :class:`AuditJournalError`.
Subclasses are named after the rule that was broken; the CLI turns any of them
into one clear line and an exit code in one place (``auditjournal.cli``).
"""

from __future__ import annotations


class AuditJournalError(Exception):
    """Root of every error auditjournal raises on purpose."""


# -- input that cannot be recorded ------------------------------------------------


class CanonicalizationError(AuditJournalError, ValueError):
    """A value cannot be turned into canonical JSON (NaN, set, cycle, huge int, ...)."""


class InvalidIdError(AuditJournalError, ValueError):
    """An id is malformed or could escape the store's root directory."""


class InvalidRefError(AuditJournalError, ValueError):
    """A payload ref is not 64 lowercase hex characters."""


class InvalidEventError(AuditJournalError, ValueError):
    """An event or recorder call carries a bad value (unknown enum, bad type, ...)."""


class NaiveTimestampError(InvalidEventError):
    """An ``occurred_at`` without a timezone: the time it names is ambiguous."""


class InvalidSettingsError(InvalidEventError):
    """A setting (durability, a size, an export option, ...) has a wrong type or range."""


class PayloadTooLargeError(AuditJournalError, ValueError):
    """A payload exceeds the store's configured maximum size."""


# -- lifecycle rules --------------------------------------------------------------


class LifecycleError(AuditJournalError):
    """A recorder call breaks the order in which a run's events may happen."""


class UnknownIdError(LifecycleError, KeyError):
    """A call refers to a node, edge, row, token or state this run never recorded."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DuplicateIdError(LifecycleError):
    """A caller-given id is already used by this run."""


class StateAlreadyCompletedError(LifecycleError):
    """A node state was completed twice."""


class OperationAlreadyCompletedError(LifecycleError):
    """A source/sink operation was completed twice."""


class BatchAlreadyCompletedError(LifecycleError):
    """A member or status change for a batch that already completed or failed."""


class RunAlreadyCompletedError(LifecycleError):
    """An event was recorded after the run's ``run_completed`` event."""


class RunNotCompletedError(LifecycleError):
    """An operation that needs a completed run (a CSV export, ...) met an unfinished one."""


class RunExistsError(AuditJournalError):
    """A run with this id already has a journal."""


class RunNotFoundError(AuditJournalError):
    """No journal exists for this run id."""


# -- storage ----------------------------------------------------------------------


class StorageError(AuditJournalError):
    """The journal or payload store could not read or write its files."""

    recorded_event: object | None = None
    """For a failed recorder call: ``None`` if the call recorded nothing (retry it), else
    the event it did record, which is not yet durable and is written by the next flush
    that succeeds (do not record it again). See docs/durability.md, "Disk full"."""


class JournalClosedError(StorageError):
    """The journal was closed, or failed, and accepts no more appends."""


class JournalLockedError(StorageError):
    """Another process is already writing this run's journal."""


class JournalUnavailableError(StorageError):
    """The PostgreSQL journal server cannot be reached (a wrong URL, the server down or
    restarting, the connection lost); what was acknowledged before is not lost, and a
    call refused with it recorded nothing unless its ``recorded_event`` says otherwise."""


class DiskFullError(StorageError):
    """The disk is full (ENOSPC); nothing acknowledged before it was lost."""


class UnsafePathError(StorageError):
    """A path in the store or an export is a symbolic link, a special file (FIFO, device,
    socket) or a directory where a regular file belongs, or a name that would leave its
    directory; it is neither followed nor opened."""


class CorruptJournalError(StorageError):
    """A journal entry is damaged or out of chain somewhere other than a torn tail."""


class CorruptExportError(CorruptJournalError):
    """An export's chunk line is not a record (read by the export tail).

    A subclass of :class:`CorruptJournalError` only so that code written when the
    tail raised that still catches it; the journal itself is not damaged."""


class PayloadNotFoundError(StorageError, KeyError):
    """No payload with this ref is in the store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ExportError(AuditJournalError):
    """The export could not be written or sealed (the run itself stays recorded)."""


class EmptySelectionError(AuditJournalError, ValueError):
    """An extract was asked for no records (no row, token, node or seq given)."""


class ExportNotFoundError(AuditJournalError):
    """No sealed export (manifest) where one was expected."""


class MalformedEvidenceError(AuditJournalError, ValueError):
    """A file read as evidence (manifest, bundle, listing, checkpoint, chunk record) is not
    what its format allows: not JSON, of the wrong shape, too big or nested too deep."""


class DuplicateMemberError(MalformedEvidenceError):
    """A JSON object in evidence names a member twice (parsers disagree on which one counts)."""


class SigningKeyError(AuditJournalError):
    """A signing or verification key is missing, unreadable or of the wrong kind."""


class SignatureError(AuditJournalError):
    """A manifest signature is absent, malformed or does not verify."""


class ConsistencyProofError(AuditJournalError):
    """A consistency proof does not show that the older tree is a prefix of the newer one."""


class MalformedNoteError(AuditJournalError, ValueError):
    """A signed note breaks the C2SP signed-note format (the message says where)."""


class MalformedCheckpointError(MalformedNoteError):
    """A checkpoint's text is not origin, tree size, root hash and extension lines."""


class UnverifiedNoteError(SignatureError):
    """A signed note carries no signature by any of the trusted keys."""


class InvalidNoteSignatureError(SignatureError):
    """A signed note's signature by a trusted key does not verify."""


class TimestampError(AuditJournalError):
    """An RFC 3161 trusted timestamp could not be obtained or does not hold."""


class TimestampAuthorityError(TimestampError):
    """The time-stamping authority could not be reached or gave no usable token."""


class TimestampVerificationError(TimestampError):
    """A stored timestamp token does not prove the time of this data."""


class MissingExtraError(AuditJournalError):
    """A feature needs an optional extra that is not installed (the message names it)."""


class UnsupportedSchemaError(AuditJournalError, ValueError):
    """A JSON Schema construct has no faithful typed form (the message names its JSON path)."""


class ReconstructionError(AuditJournalError, ValueError):
    """Typed values cannot be rebuilt from an export (no schema, no payloads, or a mismatch)."""


class PayloadIntegrityError(StorageError):
    """Stored payload bytes do not hash to their ref, or a pack file is damaged."""


class DatabaseError(AuditJournalError):
    """The SQL database of the audit tables could not be reached or refused a statement."""


class ProjectorProcessError(AuditJournalError):
    """A run's projector process died, or could not be started (again)."""


class SchemaVersionError(DatabaseError):
    """The database holds audit tables of another schema version (or foreign tables)."""


class RowNotFoundError(AuditJournalError):
    """No row with this id in the run's audit tables."""


class ValidationErrorNotFoundError(RowNotFoundError):
    """No validation error with this id in the run's audit tables."""


class ExportInvalidError(AuditJournalError):
    """A sealed export did not verify, so nothing may be built on it (lineage events, ...)."""


class OutputPathError(AuditJournalError, ValueError):
    """An output path would overwrite a file of the export it is made from."""


class LineageEmitError(AuditJournalError):
    """OpenLineage events could not be written to their file or sent to their endpoint."""


class ExportIncompleteError(AuditJournalError):
    """A sealed export lacks a file its manifest lists (a chunk was removed or lost)."""


# -- importing Landscape databases (issue 14) ----------------------------------------


class LandscapeError(AuditJournalError):
    """Importing a Landscape database failed."""


class NotALandscapeDatabaseError(LandscapeError):
    """The database lacks Landscape tables (or cannot be opened read-only)."""


class LandscapeDataError(LandscapeError):
    """A Landscape row cannot be recorded faithfully (names table, row and column)."""


class RunAlreadyImportedError(RunExistsError, LandscapeError):
    """The run is already in the store."""


class RunStillRunningError(LandscapeError):
    """Landscape still marks the run running, and importing it as interrupted was not asked."""
