"""The journal's events: frozen msgspec Structs in one tagged union.

Every event carries ``run_id``, ``ts`` (UTC) and ``seq``: its gapless position in
the run's journal, assigned when it is appended. Events that concern one row carry its
``row_id`` (the recorder knows it), so each export record about a row is
complete on its own. Large data never sits in an
event: the event carries the payload's sha256 ``*_hash`` and ``*_ref`` (the same
digest: payloads are stored content-addressed by the SHA-256 of their
canonical JSON, so the ref *is* the hash; both names are kept from the
Landscape model).

Schema evolution rules (msgspec's): a new field gets a default; a field's type
is never changed and a tag is never renamed. ``schemas/`` holds the JSON
Schema generated from :data:`Event` (``tools/gen_schemas.py``), checked by a
test.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Any, Final, Literal, get_args

import msgspec

__all__ = [
    "CALL_STATUSES",
    "CALL_TYPES",
    "DETERMINISM",
    "EDGE_MODES",
    "EVENT_TYPES",
    "NODE_STATE_STATUSES",
    "NODE_TYPES",
    "RUN_STATUSES",
    "TOKEN_OUTCOMES",
    "ArtifactRecorded",
    "BaseEvent",
    "BatchCreated",
    "BatchMemberAdded",
    "BatchOutputRecorded",
    "BatchUpdated",
    "CallRecorded",
    "CheckpointRecorded",
    "CsvExported",
    "CsvFile",
    "EdgeRegistered",
    "Event",
    "ExportFailed",
    "ExportSealed",
    "FieldResolutionRecorded",
    "NodeRegistered",
    "NodeStateCompleted",
    "NodeStateStarted",
    "OperationCompleted",
    "OperationStarted",
    "PreflightResultRecorded",
    "RoutingEventRecorded",
    "RowCreated",
    "RunCompleted",
    "RunInterrupted",
    "RunResumed",
    "RunStarted",
    "SchemaContractRecorded",
    "SecretResolutionRecorded",
    "TokenCreated",
    "TokenOutcomeRecorded",
    "TransformErrorRecorded",
    "ValidationErrorRecorded",
    "decode_event",
    "encode_event",
    "encode_event_into",
]

CANONICAL_VERSION: Final = "rfc8785-sha256-v1"

NodeType = Literal["source", "transform", "gate", "aggregation", "coalesce", "sink"]
Determinism = Literal[
    "deterministic", "seeded", "io_read", "io_write", "external_call", "non_deterministic"
]
EdgeMode = Literal["move", "copy", "divert"]
NodeStateStatus = Literal["completed", "failed", "pending"]
CallType = Literal["llm", "http", "http_redirect", "sql", "filesystem", "vector", "other"]
CallStatus = Literal["success", "error"]
TokenOutcome = Literal[
    "completed",
    "routed",
    "forked",
    "failed",
    "quarantined",
    "diverted",
    "consumed_in_batch",
    "coalesced",
    "expanded",
    "buffered",
]
RunStatus = Literal["completed", "failed", "interrupted"]
PayloadPolicy = Literal["retain", "hash_only"]
OperationType = Literal["source_load", "sink_write"]
OperationStatus = Literal["completed", "failed", "pending"]
BatchStatus = Literal["draft", "executing", "completed", "failed"]
TriggerType = Literal["count", "timeout", "condition", "end_of_source", "manual"]
BatchOutputType = Literal["token", "artifact"]
PreflightResultType = Literal["dependency_run", "commencement_gate", "readiness_check"]
ContractRole = Literal["run", "input", "output"]
ReproducibilityGrade = Literal["full_reproducible", "replay_reproducible", "attributable_only"]

NODE_TYPES: Final = frozenset(get_args(NodeType))
DETERMINISM: Final = frozenset(get_args(Determinism))
EDGE_MODES: Final = frozenset(get_args(EdgeMode))
NODE_STATE_STATUSES: Final = frozenset(get_args(NodeStateStatus))
CALL_TYPES: Final = frozenset(get_args(CallType))
CALL_STATUSES: Final = frozenset(get_args(CallStatus))
TOKEN_OUTCOMES: Final = frozenset(get_args(TokenOutcome))
RUN_STATUSES: Final = frozenset(get_args(RunStatus))
PAYLOAD_POLICIES: Final = frozenset(get_args(PayloadPolicy))
OPERATION_TYPES: Final = frozenset(get_args(OperationType))
OPERATION_STATUSES: Final = frozenset(get_args(OperationStatus))
BATCH_STATUSES: Final = frozenset(get_args(BatchStatus))
TRIGGER_TYPES: Final = frozenset(get_args(TriggerType))
BATCH_OUTPUT_TYPES: Final = frozenset(get_args(BatchOutputType))
PREFLIGHT_RESULT_TYPES: Final = frozenset(get_args(PreflightResultType))
CONTRACT_ROLES: Final = frozenset(get_args(ContractRole))
REPRODUCIBILITY_GRADES: Final = frozenset(get_args(ReproducibilityGrade))

JsonObject = dict[str, Any]


class BaseEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every event carries. ``seq`` is 0 until the journal assigns it."""

    run_id: str
    seq: int = 0
    ts: _dt.datetime
    occurred_at: _dt.datetime | None = None
    """When the thing happened, as the caller says (UTC). None: not said; ``ts`` (the
    journal's append time) stands for it. Order stays by ``seq``."""


class RunStarted(BaseEvent, frozen=True, kw_only=True, tag="run_started"):
    """A run began: its resolved configuration and how payloads are canonicalized."""

    config: JsonObject
    config_hash: str
    settings: JsonObject = {}
    canonical_version: str = CANONICAL_VERSION
    redacted: tuple[str, ...] = ()
    """Which of its JSON slots the secret filter changed (``config``, ``request``, ...)."""


class NodeRegistered(BaseEvent, frozen=True, kw_only=True, tag="node_registered"):
    """A plugin instance (source, transform, gate, ...) joined the run's graph."""

    node_id: str
    plugin_name: str
    plugin_version: str
    node_type: NodeType
    determinism: Determinism = "deterministic"
    config: JsonObject = {}
    config_hash: str = ""
    input_schema: JsonObject | None = None
    output_schema: JsonObject | None = None
    payload_policy: PayloadPolicy = "retain"
    """``hash_only``: the node's state inputs/outputs are hashed, not stored."""
    schema_hash: str | None = None
    sequence_in_pipeline: int | None = None
    schema_mode: str | None = None
    schema_fields: list[JsonObject] | None = None
    redacted: tuple[str, ...] = ()
    """Which of its JSON slots the secret filter changed (``config``, ``request``, ...)."""


class EdgeRegistered(BaseEvent, frozen=True, kw_only=True, tag="edge_registered"):
    """A connection between two nodes, with its label and routing mode."""

    edge_id: str
    from_node_id: str
    to_node_id: str
    label: str
    mode: EdgeMode


class RowCreated(BaseEvent, frozen=True, kw_only=True, tag="row_created"):
    """A source produced a row; its data is in the payload store."""

    row_id: str
    source_node_id: str
    row_index: int
    source_data_hash: str
    source_data_ref: str
    source_data_retained: bool = True
    """False: only the hash was recorded (``source_data_ref`` then repeats it)."""


class TokenCreated(BaseEvent, frozen=True, kw_only=True, tag="token_created"):
    """A row instance on a path through the graph (fork/coalesce/expand make more)."""

    token_id: str
    row_id: str
    parent_token_ids: tuple[str, ...] = ()
    branch_name: str | None = None
    fork_group_id: str | None = None
    join_group_id: str | None = None
    expand_group_id: str | None = None
    step_in_pipeline: int | None = None


class NodeStateStarted(BaseEvent, frozen=True, kw_only=True, tag="node_state_started"):
    """A node began processing a token; its input is in the payload store."""

    state_id: str
    token_id: str
    row_id: str
    node_id: str
    step_index: int
    attempt: int = 0
    input_hash: str
    input_data_ref: str
    input_retained: bool = True
    """False: only the hash was recorded (``input_data_ref`` then repeats it)."""
    context_before: JsonObject | None = None


class NodeStateCompleted(BaseEvent, frozen=True, kw_only=True, tag="node_state_completed"):
    """A node finished (or failed, or parked) processing a token."""

    state_id: str
    status: NodeStateStatus
    output_hash: str | None = None
    output_data_ref: str | None = None
    duration_ms: float | None = None
    error: JsonObject | None = None
    success_reason: JsonObject | None = None
    context_after: JsonObject | None = None


class RoutingEventRecorded(BaseEvent, frozen=True, kw_only=True, tag="routing_event_recorded"):
    """A gate sent a token along an edge, and why."""

    routing_event_id: str
    state_id: str
    row_id: str
    edge_id: str
    mode: EdgeMode
    routing_group_id: str
    ordinal: int = 0
    reason_hash: str | None = None
    reason_ref: str | None = None


class CallRecorded(BaseEvent, frozen=True, kw_only=True, tag="call_recorded"):
    """An external call (LLM, HTTP, SQL, ...) made while processing, with request/response."""

    call_id: str
    state_id: str | None = None
    row_id: str | None = None
    operation_id: str | None = None
    call_index: int
    call_type: CallType
    status: CallStatus
    latency_ms: float | None = None
    request_hash: str
    request_ref: str
    request_retained: bool = True
    """False: only the hash was recorded (``request_ref`` then repeats it)."""
    response_hash: str | None = None
    response_ref: str | None = None
    error: JsonObject | None = None
    redacted: tuple[str, ...] = ()
    """Which of its JSON slots the secret filter changed (``config``, ``request``, ...)."""


class ArtifactRecorded(BaseEvent, frozen=True, kw_only=True, tag="artifact_recorded"):
    """A sink wrote something: where, its content hash and size, and what went in."""

    artifact_id: str
    state_id: str
    sink_node_id: str
    artifact_type: str
    path_or_uri: str
    content_hash: str
    size_bytes: int
    sink_input_hash: str | None = None
    sink_input_ref: str | None = None
    idempotency_key: str | None = None
    """The sink's key for writing this artifact once (Landscape's ``idempotency_key``)."""


class TokenOutcomeRecorded(BaseEvent, frozen=True, kw_only=True, tag="token_outcome_recorded"):
    """The terminal state of a token (completed, routed, failed, quarantined, ...)."""

    outcome_id: str
    token_id: str
    row_id: str
    outcome: TokenOutcome
    sink_name: str | None = None
    error_hash: str | None = None
    context: JsonObject | None = None
    batch_id: str | None = None
    fork_group_id: str | None = None
    join_group_id: str | None = None
    expand_group_id: str | None = None
    expected_branches: list[Any] | JsonObject | None = None


class RunCompleted(BaseEvent, frozen=True, kw_only=True, tag="run_completed"):
    """The run ended; after this only export events may be appended."""

    status: RunStatus
    error: JsonObject | None = None
    reproducibility_grade: ReproducibilityGrade | None = None


# -- the rest of the Landscape model (issue 14) -------------------------------------------


class OperationStarted(BaseEvent, frozen=True, kw_only=True, tag="operation_started"):
    """A source began loading or a sink began writing (calls may belong to it)."""

    operation_id: str
    node_id: str
    operation_type: OperationType
    input_hash: str | None = None
    input_data_ref: str | None = None
    """None with a hash: the data was not retained."""


class OperationCompleted(BaseEvent, frozen=True, kw_only=True, tag="operation_completed"):
    """A source load or sink write ended."""

    operation_id: str
    status: OperationStatus
    output_hash: str | None = None
    output_data_ref: str | None = None
    error_message: str | None = None
    duration_ms: float | None = None


class BatchCreated(BaseEvent, frozen=True, kw_only=True, tag="batch_created"):
    """An aggregation node opened a batch."""

    batch_id: str
    aggregation_node_id: str
    attempt: int = 0


class BatchMemberAdded(BaseEvent, frozen=True, kw_only=True, tag="batch_member_added"):
    """A token was consumed into a batch (``ordinal``: its place in the batch)."""

    batch_id: str
    token_id: str
    row_id: str
    ordinal: int


class BatchUpdated(BaseEvent, frozen=True, kw_only=True, tag="batch_updated"):
    """A batch changed status (flushed by ``aggregation_state_id``, triggered by ...)."""

    batch_id: str
    status: BatchStatus
    trigger_type: TriggerType | None = None
    trigger_reason: str | None = None
    aggregation_state_id: str | None = None


class BatchOutputRecorded(BaseEvent, frozen=True, kw_only=True, tag="batch_output_recorded"):
    """What a batch produced: a token or an artifact."""

    batch_output_id: str
    batch_id: str
    output_type: BatchOutputType
    output_id: str


class ValidationErrorRecorded(
    BaseEvent, frozen=True, kw_only=True, tag="validation_error_recorded"
):
    """A row rejected at source validation: its data, the schema mode, the error, where it went."""

    validation_error_id: str
    node_id: str | None = None
    row_id: str | None = None
    row_hash: str
    row_data_ref: str | None = None
    row_data_canonical: bool = True
    """False: the data had no canonical form; a stand-in (its repr) was stored."""
    error: str
    schema_mode: str
    destination: str
    violation_type: str | None = None
    original_field_name: str | None = None
    normalized_field_name: str | None = None
    expected_type: str | None = None
    actual_type: str | None = None


class TransformErrorRecorded(BaseEvent, frozen=True, kw_only=True, tag="transform_error_recorded"):
    """A node's error for a token, with the token's data and where it was sent."""

    transform_error_id: str
    token_id: str
    row_id: str
    node_id: str
    state_id: str | None = None
    row_hash: str
    row_data_ref: str | None = None
    row_data_canonical: bool = True
    error_details: JsonObject | None = None
    destination: str


class CheckpointRecorded(BaseEvent, frozen=True, kw_only=True, tag="checkpoint_recorded"):
    """A resume point of a long run."""

    checkpoint_id: str
    token_id: str
    row_id: str
    node_id: str
    sequence_number: int
    upstream_topology_hash: str
    node_config_hash: str
    aggregation_state_ref: str | None = None
    coalesce_state_ref: str | None = None
    format_version: int | None = None


class SecretResolutionRecorded(
    BaseEvent, frozen=True, kw_only=True, tag="secret_resolution_recorded"
):
    """A secret the run loaded, and from where: its HMAC fingerprint only, never the value."""

    secret_resolution_id: str
    env_var_name: str
    source: str
    fingerprint: str
    vault_url: str | None = None
    secret_name: str | None = None
    resolution_latency_ms: float | None = None


class PreflightResultRecorded(
    BaseEvent, frozen=True, kw_only=True, tag="preflight_result_recorded"
):
    """A dependency run, commencement gate or readiness check evaluated before the run."""

    preflight_result_id: str
    result_type: PreflightResultType
    name: str
    result: JsonObject
    redacted: tuple[str, ...] = ()
    """Which of its JSON slots the secret filter changed (``config``, ``request``, ...)."""


class FieldResolutionRecorded(
    BaseEvent, frozen=True, kw_only=True, tag="field_resolution_recorded"
):
    """How a source resolved its headers: original header -> recorded field name."""

    source_node_id: str | None = None
    mapping: dict[str, str]
    normalization_version: str | None = None


class SchemaContractRecorded(BaseEvent, frozen=True, kw_only=True, tag="schema_contract_recorded"):
    """A schema contract (the run's, or a node's input/output) and its hash."""

    node_id: str | None = None
    role: ContractRole = "run"
    contract: JsonObject
    contract_hash: str


class RunInterrupted(BaseEvent, frozen=True, kw_only=True, tag="run_interrupted"):
    """Appended by the process that resumes (or finishes) a run whose writer stopped."""

    last_seq: int
    """The stopped writer's last entry."""
    bytes_dropped: int = 0
    """A torn tail the journal's recovery cut off (an entry the writer never finished)."""
    reason: str = "writer stopped"


class RunResumed(BaseEvent, frozen=True, kw_only=True, tag="run_resumed"):
    """A new writer took the run over after :class:`RunInterrupted`."""

    writer: JsonObject = {}


class ExportSealed(BaseEvent, frozen=True, kw_only=True, tag="export_sealed"):
    """The export was sealed: its manifest's sha256 makes the export part of the trail."""

    manifest_sha256: str
    chunk_count: int
    record_count: int
    export_path: str = ""
    merkle_root: str = ""


class ExportCheckpoint(BaseEvent, frozen=True, kw_only=True, tag="export_checkpoint"):
    """A live checkpoint of the export (its Merkle tree head at ``tree_size`` records) was
    written to ``export_path``; recorded when the export is sealed, before ``export_sealed``."""

    tree_size: int
    root: str
    export_path: str = ""


class ExportFailed(BaseEvent, frozen=True, kw_only=True, tag="export_failed"):
    """Sealing the export failed; the run itself stays recorded."""

    error: str
    export_path: str = ""


class CsvFile(msgspec.Struct, frozen=True, kw_only=True):
    """One file of a CSV export."""

    file: str
    sha256: str
    bytes: int
    rows: int


class CsvExported(BaseEvent, frozen=True, kw_only=True, tag="csv_exported"):
    """A CSV export of the run was written: its files and their sha256 (like export_sealed)."""

    out_dir: str
    files: tuple[CsvFile, ...]
    listing_sha256: str


Event = (
    RunStarted
    | NodeRegistered
    | EdgeRegistered
    | RowCreated
    | TokenCreated
    | NodeStateStarted
    | NodeStateCompleted
    | RoutingEventRecorded
    | CallRecorded
    | ArtifactRecorded
    | TokenOutcomeRecorded
    | RunCompleted
    | OperationStarted
    | OperationCompleted
    | BatchCreated
    | BatchMemberAdded
    | BatchUpdated
    | BatchOutputRecorded
    | ValidationErrorRecorded
    | TransformErrorRecorded
    | CheckpointRecorded
    | SecretResolutionRecorded
    | PreflightResultRecorded
    | FieldResolutionRecorded
    | SchemaContractRecorded
    | RunInterrupted
    | RunResumed
    | ExportSealed
    | ExportFailed
    | CsvExported
    | ExportCheckpoint
)
"""The tagged union of every event type; ``type`` is the tag."""

EVENT_TYPES: Final[dict[str, type[BaseEvent]]] = {
    str(cls.__struct_config__.tag): cls for cls in get_args(Event)
}

EXPORT_EVENT_TYPES: Final = frozenset({ExportSealed, ExportFailed, CsvExported, ExportCheckpoint})
"""The only events a journal accepts after ``run_completed``."""

_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final[msgspec.json.Decoder[Event]] = msgspec.json.Decoder(Event)


encode_event: Final[Callable[[BaseEvent], bytes]] = _ENCODER.encode
"""``encode_event(event)``: the event's JSON bytes as the journal stores them (field
order is stable). The encoder's own method: no Python frame on the append path."""


encode_event_into: Final = _ENCODER.encode_into
"""``encode_event_into(event, buffer)``: :func:`encode_event` into a reused ``bytearray``
(its contents replaced), so a reader re-encoding every event allocates nothing."""


def decode_event(data: bytes | bytearray | memoryview) -> Event:
    """Decode and validate one event (unknown extra fields, like ``chain``, are ignored)."""
    return _DECODER.decode(data)
