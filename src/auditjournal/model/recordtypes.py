"""The export's record types, declared once: one frozen Struct per ``record_type``.

Each Struct lists a record's fields in the order the CSV export writes them,
with their JSON types. A payload inlined with ``include_payloads`` is a
:data:`Payload` field (absent without payloads) named after its ``<name>_ref``
field. Any other field defaulting to UNSET is *conditional*: present only when it
carries a value (never ``null``), so an export of a journal recorded before the key
existed keeps its exact bytes (issue 14: ``appended_at`` in every record type, the
``*_retained: false`` flags, ``redacted``, the run's lists, ...); the CSV has a column
for it (an empty cell when absent). Derived from these: :data:`RECORD_TYPES`, the CSV columns
(:func:`record_columns`), the SQL lineage's payload map (:data:`PAYLOAD_FIELDS`),
verify's ref fields (:data:`REF_FIELDS`), the SQL JSON columns
(:func:`json_fields`), the conditional keys (:data:`CONDITIONAL_FIELDS`) and
``schemas/record.<type>.schema.json``.
:class:`~auditjournal.model.records.RecordMaker` (the hot path) builds the same
fields as plain dicts; tests/test_schemas.py holds every record it makes
to these declarations.
"""

from __future__ import annotations

import datetime as _dt
from typing import Annotated, Any, Final, Literal, get_args

import msgspec
import msgspec.inspect
from msgspec import UNSET, UnsetType

from .events import (
    BatchOutputType,
    BatchStatus,
    CallStatus,
    CallType,
    Determinism,
    EdgeMode,
    NodeStateStatus,
    NodeType,
    OperationStatus,
    OperationType,
    PayloadPolicy,
    ReproducibilityGrade,
    RunStatus,
    TokenOutcome,
    TriggerType,
)

__all__ = [
    "CONDITIONAL_FIELDS",
    "LANDSCAPE_RECORD_TYPES",
    "PAYLOAD_FIELDS",
    "RECORD_CLASSES",
    "RECORD_TYPES",
    "REF_FIELDS",
    "AnyRecord",
    "ArtifactRecord",
    "BatchMemberRecord",
    "BatchOutputRecord",
    "BatchRecord",
    "CallRecord",
    "CheckpointRecord",
    "EdgeRecord",
    "ExportRecord",
    "NodeRecord",
    "NodeStateRecord",
    "OperationRecord",
    "RoutingEventRecord",
    "RowRecord",
    "RunRecord",
    "TokenOutcomeRecord",
    "TokenRecord",
    "TransformErrorRecord",
    "ValidationErrorRecord",
    "json_fields",
    "record_columns",
    "required_columns",
]

_PAYLOAD_MARK: Final = {"payload": True}
Payload = Annotated[Any | UnsetType, msgspec.Meta(extra=_PAYLOAD_MARK)]
"""An inlined payload (only with ``include_payloads``; ``null`` when its ref is)."""
JsonObject = dict[str, Any]
Time = _dt.datetime


class ExportRecord(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="record_type", forbid_unknown_fields=True
):
    """What every record has: its type (the tag), its run and the seq that completed it;
    ``appended_at`` (the journal's time) when the event said when it happened
    (``occurred_at``, then the record's own time)."""

    run_id: str
    seq: int
    appended_at: Time | UnsetType = UNSET


class RunRecord(ExportRecord, frozen=True, kw_only=True, tag="run"):
    """The run, written last (``run_started``'s fields and ``run_completed``'s)."""

    started_seq: int
    started_at: _dt.datetime
    config: JsonObject
    config_hash: str
    settings: JsonObject
    canonical_version: str
    status: RunStatus
    error: JsonObject | None
    completed_at: _dt.datetime
    reproducibility_grade: ReproducibilityGrade | UnsetType = UNSET
    interruptions: list[JsonObject] | UnsetType = UNSET
    field_resolutions: list[JsonObject] | UnsetType = UNSET
    schema_contracts: list[JsonObject] | UnsetType = UNSET
    secret_resolutions: list[JsonObject] | UnsetType = UNSET
    preflight_results: list[JsonObject] | UnsetType = UNSET
    redacted: list[str] | UnsetType = UNSET


class NodeRecord(ExportRecord, frozen=True, kw_only=True, tag="node"):
    node_id: str
    plugin_name: str
    plugin_version: str
    node_type: NodeType
    determinism: Determinism
    config: JsonObject
    config_hash: str
    input_schema: JsonObject | None
    output_schema: JsonObject | None
    registered_at: _dt.datetime
    payload_policy: PayloadPolicy | UnsetType = UNSET
    redacted: list[str] | UnsetType = UNSET
    schema_hash: str | UnsetType = UNSET
    sequence_in_pipeline: int | UnsetType = UNSET
    schema_mode: str | UnsetType = UNSET
    schema_fields: list[JsonObject] | UnsetType = UNSET


class EdgeRecord(ExportRecord, frozen=True, kw_only=True, tag="edge"):
    edge_id: str
    from_node_id: str
    to_node_id: str
    label: str
    mode: EdgeMode
    created_at: _dt.datetime


class RowRecord(ExportRecord, frozen=True, kw_only=True, tag="row"):
    row_id: str
    source_node_id: str
    row_index: int
    source_data_hash: str
    source_data_ref: str | None
    created_at: _dt.datetime
    source_data_retained: bool | UnsetType = UNSET
    source_data: Payload = UNSET


class TokenRecord(ExportRecord, frozen=True, kw_only=True, tag="token"):
    token_id: str
    row_id: str
    parent_token_ids: list[str]
    branch_name: str | None
    fork_group_id: str | None
    join_group_id: str | None
    expand_group_id: str | None
    created_at: _dt.datetime
    step_in_pipeline: int | UnsetType = UNSET


class TokenOutcomeRecord(ExportRecord, frozen=True, kw_only=True, tag="token_outcome"):
    outcome_id: str
    token_id: str
    row_id: str
    outcome: TokenOutcome
    sink_name: str | None
    error_hash: str | None
    context: JsonObject | None
    recorded_at: _dt.datetime
    batch_id: str | UnsetType = UNSET
    fork_group_id: str | UnsetType = UNSET
    join_group_id: str | UnsetType = UNSET
    expand_group_id: str | UnsetType = UNSET
    expected_branches: list[Any] | JsonObject | UnsetType = UNSET


class NodeStateRecord(ExportRecord, frozen=True, kw_only=True, tag="node_state"):
    """A node state, written when it completes (``seq``: its completion), or with status
    ``open`` at the run's end if it never did."""

    state_id: str
    token_id: str
    row_id: str
    node_id: str
    step_index: int
    attempt: int
    input_hash: str
    input_data_ref: str | None
    started_seq: int
    started_at: _dt.datetime
    status: NodeStateStatus | Literal["open"]
    output_hash: str | None
    output_data_ref: str | None
    duration_ms: float | None
    error: JsonObject | None
    success_reason: JsonObject | None
    completed_at: _dt.datetime | None
    input_data_retained: bool | UnsetType = UNSET
    output_data_retained: bool | UnsetType = UNSET
    context_before: JsonObject | UnsetType = UNSET
    context_after: JsonObject | UnsetType = UNSET
    input_data: Payload = UNSET
    output_data: Payload = UNSET


class RoutingEventRecord(ExportRecord, frozen=True, kw_only=True, tag="routing_event"):
    routing_event_id: str
    state_id: str
    row_id: str
    edge_id: str
    mode: EdgeMode
    routing_group_id: str
    ordinal: int
    reason_hash: str | None
    reason_ref: str | None
    created_at: _dt.datetime
    reason_retained: bool | UnsetType = UNSET
    reason: Payload = UNSET


class CallRecord(ExportRecord, frozen=True, kw_only=True, tag="call"):
    call_id: str
    state_id: str | None
    row_id: str | None
    operation_id: str | None
    call_index: int
    call_type: CallType
    status: CallStatus
    latency_ms: float | None
    request_hash: str
    request_ref: str | None
    response_hash: str | None
    response_ref: str | None
    error: JsonObject | None
    created_at: _dt.datetime
    request_retained: bool | UnsetType = UNSET
    response_retained: bool | UnsetType = UNSET
    redacted: list[str] | UnsetType = UNSET
    request: Payload = UNSET
    response: Payload = UNSET


class ArtifactRecord(ExportRecord, frozen=True, kw_only=True, tag="artifact"):
    artifact_id: str
    state_id: str
    sink_node_id: str
    artifact_type: str
    path_or_uri: str
    content_hash: str
    size_bytes: int
    sink_input_hash: str | None
    sink_input_ref: str | None
    created_at: _dt.datetime
    idempotency_key: str | UnsetType = UNSET
    sink_input_retained: bool | UnsetType = UNSET
    sink_input: Payload = UNSET


# -- the rest of the Landscape model (issue 14) -------------------------------------------


class OperationRecord(ExportRecord, frozen=True, kw_only=True, tag="operation"):
    """A source load or sink write, written when it completes (at the end of the run
    with status ``open`` if it never did)."""

    operation_id: str
    node_id: str
    operation_type: OperationType
    status: OperationStatus | Literal["open"]
    input_hash: str | None
    input_data_ref: str | None
    output_hash: str | None
    output_data_ref: str | None
    error_message: str | None
    duration_ms: float | None
    started_seq: int
    started_at: _dt.datetime
    completed_at: _dt.datetime | None
    input_data: Payload = UNSET
    output_data: Payload = UNSET


class BatchRecord(ExportRecord, frozen=True, kw_only=True, tag="batch"):
    """An aggregation batch, written when it reaches ``completed`` or ``failed`` (at the
    end of the run with its last status otherwise)."""

    batch_id: str
    aggregation_node_id: str
    attempt: int
    status: BatchStatus
    trigger_type: TriggerType | None
    trigger_reason: str | None
    aggregation_state_id: str | None
    created_seq: int
    created_at: _dt.datetime
    completed_at: _dt.datetime | None


class BatchMemberRecord(ExportRecord, frozen=True, kw_only=True, tag="batch_member"):
    batch_id: str
    token_id: str
    row_id: str
    ordinal: int


class BatchOutputRecord(ExportRecord, frozen=True, kw_only=True, tag="batch_output"):
    batch_output_id: str
    batch_id: str
    output_type: BatchOutputType
    output_id: str
    created_at: _dt.datetime


class ValidationErrorRecord(ExportRecord, frozen=True, kw_only=True, tag="validation_error"):
    validation_error_id: str
    node_id: str | None
    row_id: str | None
    row_hash: str
    row_data_ref: str | None
    row_data_canonical: bool
    error: str
    schema_mode: str
    destination: str
    violation_type: str | None
    original_field_name: str | None
    normalized_field_name: str | None
    expected_type: str | None
    actual_type: str | None
    created_at: _dt.datetime
    row_data: Payload = UNSET


class TransformErrorRecord(ExportRecord, frozen=True, kw_only=True, tag="transform_error"):
    transform_error_id: str
    token_id: str
    row_id: str
    node_id: str
    state_id: str | None
    row_hash: str
    row_data_ref: str | None
    row_data_canonical: bool
    error_details: JsonObject | None
    destination: str
    created_at: _dt.datetime
    row_data: Payload = UNSET


class CheckpointRecord(ExportRecord, frozen=True, kw_only=True, tag="checkpoint"):
    checkpoint_id: str
    token_id: str
    row_id: str
    node_id: str
    sequence_number: int
    upstream_topology_hash: str
    node_config_hash: str
    aggregation_state_ref: str | None
    coalesce_state_ref: str | None
    format_version: int | None
    created_at: _dt.datetime
    aggregation_state: Payload = UNSET
    coalesce_state: Payload = UNSET


AnyRecord = (
    RunRecord
    | NodeRecord
    | EdgeRecord
    | RowRecord
    | TokenRecord
    | TokenOutcomeRecord
    | NodeStateRecord
    | RoutingEventRecord
    | CallRecord
    | ArtifactRecord
    | OperationRecord
    | BatchRecord
    | BatchMemberRecord
    | BatchOutputRecord
    | ValidationErrorRecord
    | TransformErrorRecord
    | CheckpointRecord
)
"""Any export record (decode a chunk line with ``msgspec.json.decode(line, type=AnyRecord)``)."""

RECORD_CLASSES: Final[dict[str, type[ExportRecord]]] = {
    str(cls.__struct_config__.tag): cls for cls in get_args(AnyRecord)
}
"""Record type name -> its declaration, in the order of :data:`RECORD_TYPES`."""

RECORD_TYPES: Final = tuple(RECORD_CLASSES)
"""The record types (``record_type`` values), in the CSV export's file order."""

LANDSCAPE_RECORD_TYPES: Final = RECORD_TYPES[RECORD_TYPES.index("operation") :]
"""The record types issue 14 added (the rest of the Landscape model)."""


def _is_payload(field: msgspec.inspect.Field) -> bool:
    kind = field.type
    return isinstance(kind, msgspec.inspect.Metadata) and kind.extra == _PAYLOAD_MARK


def _fields(cls: type[ExportRecord]) -> tuple[msgspec.inspect.Field, ...]:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return info.fields


def _payloads(cls: type[ExportRecord]) -> tuple[tuple[str, str], ...]:
    fields = _fields(cls)
    names = {f.name for f in fields}
    out = tuple((f.name, f"{f.name}_ref") for f in fields if _is_payload(f))
    for _, ref in out:
        if ref not in names:  # pragma: no cover - a declaration error, caught at import
            raise TypeError(f"{cls.__name__}: a payload field needs its {ref} field")
    return out


PAYLOAD_FIELDS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    kind: found for kind, cls in RECORD_CLASSES.items() if (found := _payloads(cls))
}
"""Record type -> its inlined payloads as (payload field, ref field) pairs."""

REF_FIELDS: Final = tuple(
    dict.fromkeys(ref for pairs in PAYLOAD_FIELDS.values() for _, ref in pairs)
)
"""Every field naming a payload ref (the events that carry payloads use the same names)."""

_COMMON_CONDITIONAL: Final = tuple(
    f.name for f in _fields(ExportRecord) if f.default is UNSET or not f.required
)

CONDITIONAL_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    kind: tuple(
        f.name
        for f in _fields(cls)
        if not f.required and not _is_payload(f) and f.name not in _COMMON_CONDITIONAL
    )
    + _COMMON_CONDITIONAL
    for kind, cls in RECORD_CLASSES.items()
}
"""Record type -> its conditional keys (present only with a value), ``appended_at`` last."""


def record_columns(kind: str) -> tuple[str, ...]:
    """The fields of a record type without its inlined payloads: ``record_type``,
    ``run_id``, ``seq``, the entity's fields in declaration order, its conditional keys
    (``appended_at`` last): the CSV columns."""
    payloads = {name for name, _ in PAYLOAD_FIELDS.get(kind, ())}
    skip = payloads | set(CONDITIONAL_FIELDS[kind])
    fields = RECORD_CLASSES[kind].__struct_fields__
    return ("record_type", *(f for f in fields if f not in skip), *CONDITIONAL_FIELDS[kind])


def required_columns(kind: str) -> tuple[str, ...]:
    """:func:`record_columns` without the conditional keys (what every record has)."""
    conditional = set(CONDITIONAL_FIELDS[kind])
    return tuple(c for c in record_columns(kind) if c not in conditional)


def json_fields(kind: str) -> tuple[str, ...]:
    """The fields of a record type that hold a JSON object (stored as JSON text in SQL)."""
    out = []
    for f in _fields(RECORD_CLASSES[kind]):
        kinds = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        if any(isinstance(t, msgspec.inspect.DictType) for t in kinds):
            out.append(f.name)
    return tuple(out)
