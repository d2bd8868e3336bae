"""Export records of the rest of the Landscape model (issue 14), declared once.

Record types (appended to :data:`~auditjournal.model.records.RECORD_TYPES`):

* ``operation``: a source load or sink write, written when it completes (at the
  end of the run with status ``open`` if it never did);
* ``batch``: an aggregation batch, written when it reaches ``completed`` or
  ``failed`` (at the end of the run with its last status otherwise);
* ``batch_member``, ``batch_output``, ``validation_error``, ``transform_error``,
  ``checkpoint``: one record per event.

Run-level facts (field resolutions, schema contracts, secret resolutions,
preflight results) are listed in the ``run`` record, each item with its ``seq``.

The record types are declared in :mod:`~auditjournal.model.recordtypes` (with the
others); :data:`FIELDS`, :data:`PAYLOAD_SLOTS` and :data:`CONDITIONAL` (the keys that
appear only when they carry a value, so an export of a journal recorded before these
keys existed keeps its exact bytes) are derived from those declarations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from .events import (
    BaseEvent,
    BatchCreated,
    BatchMemberAdded,
    BatchOutputRecorded,
    BatchUpdated,
    CheckpointRecorded,
    FieldResolutionRecorded,
    OperationCompleted,
    OperationStarted,
    PreflightResultRecorded,
    RunInterrupted,
    RunResumed,
    SchemaContractRecorded,
    SecretResolutionRecorded,
    TransformErrorRecorded,
    ValidationErrorRecorded,
)
from .recordtypes import (
    CONDITIONAL_FIELDS,
    LANDSCAPE_RECORD_TYPES,
    PAYLOAD_FIELDS,
    required_columns,
)

__all__ = [
    "CONDITIONAL",
    "FIELDS",
    "LANDSCAPE_RECORD_TYPES",
    "PAYLOAD_SLOTS",
    "RUN_LISTS",
    "STATEFUL_EVENTS",
    "LandscapeRecords",
]

FIELDS: Final[dict[str, tuple[str, ...]]] = {
    kind: required_columns(kind) for kind in LANDSCAPE_RECORD_TYPES
}
"""Each new record type's fields in CSV column order (payloads and ``appended_at`` not
included), from its declaration in :mod:`~auditjournal.model.recordtypes`."""

PAYLOAD_SLOTS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    kind: PAYLOAD_FIELDS[kind] for kind in LANDSCAPE_RECORD_TYPES if kind in PAYLOAD_FIELDS
}
"""Per new record type: (inlined payload field, its ref field)."""

RUN_LISTS: Final = (
    "interruptions",
    "field_resolutions",
    "schema_contracts",
    "secret_resolutions",
    "preflight_results",
)

CONDITIONAL: Final[dict[str, tuple[str, ...]]] = {
    kind: keys
    for kind, all_keys in CONDITIONAL_FIELDS.items()
    if (keys := tuple(k for k in all_keys if k != "appended_at"))
}
"""Keys of record types present only with a value (``*_retained`` only as ``false``: the
slot has a hash and no data), from the declarations; ``appended_at`` (conditional in
every record type: present when the event had ``occurred_at``) is left out here."""

STATEFUL_EVENTS: Final = frozenset(
    {
        OperationStarted,
        OperationCompleted,
        BatchCreated,
        BatchUpdated,
        FieldResolutionRecorded,
        SchemaContractRecorded,
        SecretResolutionRecorded,
        PreflightResultRecorded,
        RunInterrupted,
        RunResumed,
    }
)
"""Events whose record needs what came before them in the journal (the parallel
replay leaves runs with these to one process)."""

Record = dict[str, Any]


def _when(e: BaseEvent) -> Any:
    return e.occurred_at or e.ts


class LandscapeRecords:
    """The records of the new event types, as plain dicts (the maker encodes them).

    ``base(kind, event)`` makes a record's common fields; ``json`` prepares JSON
    values for the encoder (both from :class:`RecordMaker`).
    """

    def __init__(self, base: Callable[[str, BaseEvent], Record], json: Callable[[Any], Any]):
        self._base = base
        self._json = json
        self.open_operations: dict[str, Record] = {}
        self.open_batches: dict[str, Record] = {}
        self.lists: dict[str, list[Any]] = {}
        self.handlers: dict[type[BaseEvent], Callable[[Any], list[Record]]] = {
            OperationStarted: self._operation_started,
            OperationCompleted: self._operation_completed,
            BatchCreated: self._batch_created,
            BatchMemberAdded: self._batch_member,
            BatchUpdated: self._batch_updated,
            BatchOutputRecorded: self._batch_output,
            ValidationErrorRecorded: self._validation_error,
            TransformErrorRecorded: self._transform_error,
            CheckpointRecorded: self._checkpoint,
            FieldResolutionRecorded: self._field_resolution,
            SchemaContractRecorded: self._contract,
            SecretResolutionRecorded: self._secret,
            PreflightResultRecorded: self._preflight,
            RunInterrupted: self._interrupted,
            RunResumed: self._resumed,
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "open_operations": self.open_operations,
            "open_batches": self.open_batches,
            "lists": self.lists,
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.open_operations = dict(snapshot.get("open_operations", {}))
        self.open_batches = dict(snapshot.get("open_batches", {}))
        self.lists = {k: list(v) for k, v in snapshot.get("lists", {}).items()}

    def _record(self, kind: str, e: BaseEvent, **fields: Any) -> Record:
        r = self._base(kind, e)
        r.update(fields)
        if e.occurred_at is not None:
            r["appended_at"] = e.ts
        return r

    # -- operations --------------------------------------------------------------------

    def _operation_started(self, e: OperationStarted) -> list[Record]:
        self.open_operations[e.operation_id] = {
            "operation_id": e.operation_id,
            "node_id": e.node_id,
            "operation_type": e.operation_type,
            "input_hash": e.input_hash,
            "input_data_ref": e.input_data_ref,
            "started_seq": e.seq,
            "started_at": _when(e),
        }
        return []

    def _operation_completed(self, e: OperationCompleted) -> list[Record]:
        started = self.open_operations.pop(e.operation_id)
        return [
            self._record(
                "operation",
                e,
                **started,
                status=e.status,
                output_hash=e.output_hash,
                output_data_ref=e.output_data_ref,
                error_message=e.error_message,
                duration_ms=self._json(e.duration_ms),
                completed_at=_when(e),
            )
        ]

    # -- batches -----------------------------------------------------------------------

    def _batch_created(self, e: BatchCreated) -> list[Record]:
        self.open_batches[e.batch_id] = {
            "batch_id": e.batch_id,
            "aggregation_node_id": e.aggregation_node_id,
            "attempt": e.attempt,
            "status": "draft",
            "trigger_type": None,
            "trigger_reason": None,
            "aggregation_state_id": None,
            "created_seq": e.seq,
            "created_at": _when(e),
        }
        return []

    def _batch_updated(self, e: BatchUpdated) -> list[Record]:
        batch = self.open_batches[e.batch_id]
        batch["status"] = e.status
        for name in ("trigger_type", "trigger_reason", "aggregation_state_id"):
            value = getattr(e, name)
            if value is not None:
                batch[name] = value
        if e.status not in ("completed", "failed"):
            return []
        del self.open_batches[e.batch_id]
        return [self._record("batch", e, **batch, completed_at=_when(e))]

    def _batch_member(self, e: BatchMemberAdded) -> list[Record]:
        return [
            self._record(
                "batch_member",
                e,
                batch_id=e.batch_id,
                token_id=e.token_id,
                row_id=e.row_id,
                ordinal=e.ordinal,
            )
        ]

    def _batch_output(self, e: BatchOutputRecorded) -> list[Record]:
        return [
            self._record(
                "batch_output",
                e,
                batch_output_id=e.batch_output_id,
                batch_id=e.batch_id,
                output_type=e.output_type,
                output_id=e.output_id,
                created_at=_when(e),
            )
        ]

    # -- errors and checkpoints --------------------------------------------------------

    def _validation_error(self, e: ValidationErrorRecorded) -> list[Record]:
        return [
            self._record(
                "validation_error",
                e,
                validation_error_id=e.validation_error_id,
                node_id=e.node_id,
                row_id=e.row_id,
                row_hash=e.row_hash,
                row_data_ref=e.row_data_ref,
                row_data_canonical=e.row_data_canonical,
                error=e.error,
                schema_mode=e.schema_mode,
                destination=e.destination,
                violation_type=e.violation_type,
                original_field_name=e.original_field_name,
                normalized_field_name=e.normalized_field_name,
                expected_type=e.expected_type,
                actual_type=e.actual_type,
                created_at=_when(e),
            )
        ]

    def _transform_error(self, e: TransformErrorRecorded) -> list[Record]:
        return [
            self._record(
                "transform_error",
                e,
                transform_error_id=e.transform_error_id,
                token_id=e.token_id,
                row_id=e.row_id,
                node_id=e.node_id,
                state_id=e.state_id,
                row_hash=e.row_hash,
                row_data_ref=e.row_data_ref,
                row_data_canonical=e.row_data_canonical,
                error_details=self._json(e.error_details),
                destination=e.destination,
                created_at=_when(e),
            )
        ]

    def _checkpoint(self, e: CheckpointRecorded) -> list[Record]:
        return [
            self._record(
                "checkpoint",
                e,
                checkpoint_id=e.checkpoint_id,
                token_id=e.token_id,
                row_id=e.row_id,
                node_id=e.node_id,
                sequence_number=e.sequence_number,
                upstream_topology_hash=e.upstream_topology_hash,
                node_config_hash=e.node_config_hash,
                aggregation_state_ref=e.aggregation_state_ref,
                coalesce_state_ref=e.coalesce_state_ref,
                format_version=e.format_version,
                created_at=_when(e),
            )
        ]

    # -- run-level facts (listed in the run record) ------------------------------------

    def _add(self, name: str, item: dict[str, Any]) -> list[Record]:
        self.lists.setdefault(name, []).append(item)
        return []

    def _field_resolution(self, e: FieldResolutionRecorded) -> list[Record]:
        return self._add(
            "field_resolutions",
            {
                "seq": e.seq,
                "source_node_id": e.source_node_id,
                "mapping": e.mapping,
                "normalization_version": e.normalization_version,
            },
        )

    def _contract(self, e: SchemaContractRecorded) -> list[Record]:
        return self._add(
            "schema_contracts",
            {
                "seq": e.seq,
                "node_id": e.node_id,
                "role": e.role,
                "contract": e.contract,
                "contract_hash": e.contract_hash,
            },
        )

    def _secret(self, e: SecretResolutionRecorded) -> list[Record]:
        return self._add(
            "secret_resolutions",
            {
                "seq": e.seq,
                "secret_resolution_id": e.secret_resolution_id,
                "env_var_name": e.env_var_name,
                "source": e.source,
                "vault_url": e.vault_url,
                "secret_name": e.secret_name,
                "fingerprint": e.fingerprint,
                "resolution_latency_ms": e.resolution_latency_ms,
                "resolved_at": _when(e),
            },
        )

    def _preflight(self, e: PreflightResultRecorded) -> list[Record]:
        item = {
            "seq": e.seq,
            "preflight_result_id": e.preflight_result_id,
            "result_type": e.result_type,
            "name": e.name,
            "result": e.result,
            "created_at": _when(e),
        }
        if e.redacted:
            item["redacted"] = list(e.redacted)
        return self._add("preflight_results", item)

    def _interrupted(self, e: RunInterrupted) -> list[Record]:
        item = {
            "seq": e.seq,
            "kind": "interrupted",
            "last_seq": e.last_seq,
            "bytes_dropped": e.bytes_dropped,
            "reason": e.reason,
        }
        return self._add("interruptions", item | {"at": e.ts})

    def _resumed(self, e: RunResumed) -> list[Record]:
        return self._add(
            "interruptions", {"seq": e.seq, "kind": "resumed", "writer": e.writer, "at": e.ts}
        )

    # -- the end of the run ------------------------------------------------------------

    def finish(self, e: BaseEvent) -> list[Record]:
        """At ``run_completed``: operations never completed (status ``open``) and batches
        never finished (their last status), with the run_completed seq."""
        out = [
            self._base("operation", e)
            | started
            | {
                "status": "open",
                "output_hash": None,
                "output_data_ref": None,
                "error_message": None,
                "duration_ms": None,
                "completed_at": None,
            }
            for started in self.open_operations.values()
        ]
        out += [
            self._base("batch", e) | batch | {"completed_at": None}
            for batch in self.open_batches.values()
        ]
        self.open_operations.clear()
        self.open_batches.clear()
        return out

    def run_fields(self) -> dict[str, Any]:
        """The run-level lists for the run record (only those with items)."""
        return {name: self._json(items) for name, items in self.lists.items() if items}
