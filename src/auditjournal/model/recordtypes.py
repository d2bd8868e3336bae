"""The export's record types, declared once: one frozen Struct per ``record_type``.

Each Struct lists a record's fields in the order the CSV export writes them,
with their JSON types. A payload inlined with ``include_payloads`` is a field
defaulting to UNSET (absent without payloads) named after its ``<name>_ref``
field. Derived from these: :data:`RECORD_TYPES`, the CSV columns
(:func:`record_columns`), the SQL lineage's payload map (:data:`PAYLOAD_FIELDS`),
verify's ref fields (:data:`REF_FIELDS`), the SQL JSON columns
(:func:`json_fields`) and ``schemas/record.<type>.schema.json``.
:class:`~auditjournal.model.records.RecordMaker` (the hot path) builds the same
fields as plain dicts; tests/test_record_types.py holds every record it makes
to these declarations.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Final, Literal, get_args

import msgspec
import msgspec.inspect
from msgspec import UNSET, UnsetType

from .events import (
    CallStatus,
    CallType,
    Determinism,
    EdgeMode,
    NodeStateStatus,
    NodeType,
    RunStatus,
    TokenOutcome,
)

__all__ = [
    "PAYLOAD_FIELDS",
    "RECORD_CLASSES",
    "RECORD_TYPES",
    "REF_FIELDS",
    "AnyRecord",
    "ArtifactRecord",
    "CallRecord",
    "EdgeRecord",
    "ExportRecord",
    "NodeRecord",
    "NodeStateRecord",
    "RoutingEventRecord",
    "RowRecord",
    "RunRecord",
    "TokenOutcomeRecord",
    "TokenRecord",
    "json_fields",
    "record_columns",
]

Payload = Any | UnsetType
JsonObject = dict[str, Any]


class ExportRecord(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="record_type", forbid_unknown_fields=True
):
    """What every record has: its type (the tag), its run and the seq that completed it."""

    run_id: str
    seq: int


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
    source_data_ref: str
    created_at: _dt.datetime
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


class TokenOutcomeRecord(ExportRecord, frozen=True, kw_only=True, tag="token_outcome"):
    outcome_id: str
    token_id: str
    row_id: str
    outcome: TokenOutcome
    sink_name: str | None
    error_hash: str | None
    context: JsonObject | None
    recorded_at: _dt.datetime


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
    input_data_ref: str
    started_seq: int
    started_at: _dt.datetime
    status: NodeStateStatus | Literal["open"]
    output_hash: str | None
    output_data_ref: str | None
    duration_ms: float | None
    error: JsonObject | None
    success_reason: JsonObject | None
    completed_at: _dt.datetime | None
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
    request_ref: str
    response_hash: str | None
    response_ref: str | None
    error: JsonObject | None
    created_at: _dt.datetime
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
    sink_input: Payload = UNSET


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
)
"""Any export record (decode a chunk line with ``msgspec.json.decode(line, type=AnyRecord)``)."""

RECORD_CLASSES: Final[dict[str, type[ExportRecord]]] = {
    str(cls.__struct_config__.tag): cls for cls in get_args(AnyRecord)
}
"""Record type name -> its declaration, in the order of :data:`RECORD_TYPES`."""

RECORD_TYPES: Final = tuple(RECORD_CLASSES)
"""The record types (``record_type`` values), in the CSV export's file order."""


def _payloads(cls: type[ExportRecord]) -> tuple[tuple[str, str], ...]:
    fields = msgspec.structs.fields(cls)
    names = {f.name for f in fields}
    out = tuple((f.name, f"{f.name}_ref") for f in fields if f.default is UNSET)
    for _, ref in out:
        if ref not in names:  # pragma: no cover - a declaration error, caught at import
            raise TypeError(f"{cls.__name__}: a payload field needs its {ref} field")
    return out


PAYLOAD_FIELDS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    kind: found for kind, cls in RECORD_CLASSES.items() if (found := _payloads(cls))
}
"""Record type -> its inlined payloads as (payload field, ref field) pairs."""

REF_FIELDS: Final = tuple(ref for pairs in PAYLOAD_FIELDS.values() for _, ref in pairs)
"""Every field naming a payload ref (the events that carry payloads use the same names)."""


def record_columns(kind: str) -> tuple[str, ...]:
    """The fields of a record type without its inlined payloads: ``record_type``,
    ``run_id``, ``seq``, the entity's fields, in declaration order (the CSV columns)."""
    payloads = {name for name, _ in PAYLOAD_FIELDS.get(kind, ())}
    fields = RECORD_CLASSES[kind].__struct_fields__
    return ("record_type", *(f for f in fields if f not in payloads))


def json_fields(kind: str) -> tuple[str, ...]:
    """The fields of a record type that hold a JSON object (stored as JSON text in SQL)."""
    info = msgspec.inspect.type_info(RECORD_CLASSES[kind])
    assert isinstance(info, msgspec.inspect.StructType)
    out = []
    for f in info.fields:
        kinds = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        if any(isinstance(t, msgspec.inspect.DictType) for t in kinds):
            out.append(f.name)
    return tuple(out)
