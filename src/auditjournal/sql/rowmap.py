"""How each event becomes a row of the audit tables: the declaration (:data:`INSERTS`,
one :class:`Insert` per event type) and the reference mapping :func:`row_values`
(an event -> a dict of column values, as SQLAlchemy would be given them).

The SQL projector's fast path (:mod:`.rowbuild`) compiles the same declarations
into tuple builders; :func:`row_values` is what those must equal (tests compare
them), and what dialects without a fast path use.

Thread-safety: declarations and pure functions only.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import sqlalchemy as sa

from ..model.events import (
    ArtifactRecorded,
    BaseEvent,
    BatchCreated,
    BatchMemberAdded,
    BatchOutputRecorded,
    CallRecorded,
    CheckpointRecorded,
    EdgeRegistered,
    FieldResolutionRecorded,
    NodeRegistered,
    NodeStateCompleted,
    NodeStateStarted,
    OperationStarted,
    PreflightResultRecorded,
    RoutingEventRecorded,
    RowCreated,
    RunInterrupted,
    RunResumed,
    RunStarted,
    SchemaContractRecorded,
    SecretResolutionRecorded,
    TokenCreated,
    TokenOutcomeRecorded,
    TransformErrorRecorded,
    ValidationErrorRecorded,
)
from .landscape_tables import OPEN_OPERATION
from .schema import (
    artifacts,
    batch_members,
    batch_outputs,
    batches,
    calls,
    edges,
    field_resolutions,
    landscape_checkpoints,
    node_states,
    nodes,
    operations,
    preflight_results,
    routing_events,
    rows,
    run_interruptions,
    runs,
    schema_contracts,
    secret_resolutions,
    token_outcomes,
    tokens,
    transform_errors,
    validation_errors,
)

__all__ = [
    "APPENDED_AT",
    "COMPLETION_COLUMNS",
    "DROPPED",
    "HASH_ONLY",
    "INSERTS",
    "Insert",
    "completion_values",
    "json_text",
    "row_values",
    "utc",
]

_UTC = _dt.UTC


def json_text(value: Any) -> str | None:
    """Small JSON values as canonical (sorted, compact) JSON text."""
    return None if value is None else msgspec.json.encode(value, order="sorted").decode()


def utc(ts: _dt.datetime) -> _dt.datetime:
    return ts if ts.tzinfo is _UTC or ts.utcoffset() == _dt.timedelta(0) else ts.astimezone(_UTC)


@dataclass(frozen=True)
class Insert:
    """How an event becomes one row of ``table``: its fields are the columns, except
    ``ts`` (-> ``ts_column``), ``renamed`` fields, JSON fields (-> ``<name>json_text``) and
    fields the table has no column for (dropped: a newer event field waits for a schema
    version that has it)."""

    table: sa.Table
    ts_column: str | None
    renamed: tuple[tuple[str, str], ...] = ()
    json_fields: tuple[str, ...] = ()
    constants: tuple[tuple[str, Any], ...] = ()

    def dropped(self, event_type: type[BaseEvent]) -> tuple[str, ...]:
        mapped = {"ts", "occurred_at", *(old for old, _ in self.renamed), *self.json_fields}
        columns = set(self.table.c.keys())
        return tuple(
            f for f in event_type.__struct_fields__ if f not in mapped and f not in columns
        )


_OPEN_STATE: Final = tuple(
    (c, None)
    for c in (
        "output_hash",
        "output_data_ref",
        "duration_ms",
        "error_json",
        "success_reason_json",
        "completed_at",
        "seq",
        "appended_at",
        "output_data_retained",
        "context_after_json",
    )
)
INSERTS: Final[dict[type[BaseEvent], Insert]] = {
    RunStarted: Insert(
        runs,
        "started_at",
        renamed=(("seq", "started_seq"),),
        json_fields=("config", "settings", "redacted"),
        constants=(("status", "running"), ("appended_at", None)),
    ),
    NodeRegistered: Insert(
        nodes,
        "registered_at",
        json_fields=("config", "input_schema", "output_schema", "redacted", "schema_fields"),
    ),
    EdgeRegistered: Insert(edges, "created_at"),
    RowCreated: Insert(rows, "created_at"),
    TokenCreated: Insert(tokens, "created_at"),
    NodeStateStarted: Insert(
        node_states,
        "started_at",
        renamed=(("seq", "started_seq"), ("input_retained", "input_data_retained")),
        json_fields=("context_before",),
        constants=(("status", "open"), *_OPEN_STATE),
    ),
    RoutingEventRecorded: Insert(routing_events, "created_at"),
    CallRecorded: Insert(calls, "created_at", json_fields=("error", "redacted")),
    ArtifactRecorded: Insert(artifacts, "created_at"),
    TokenOutcomeRecorded: Insert(
        token_outcomes, "recorded_at", json_fields=("context", "expected_branches")
    ),
    OperationStarted: Insert(
        operations,
        "started_at",
        renamed=(("seq", "started_seq"),),
        constants=(("status", "open"), *OPEN_OPERATION),
    ),
    BatchCreated: Insert(
        batches,
        "created_at",
        renamed=(("seq", "created_seq"),),
        constants=(
            ("status", "draft"),
            ("trigger_type", None),
            ("trigger_reason", None),
            ("aggregation_state_id", None),
            ("completed_at", None),
            ("seq", None),
            ("appended_at", None),
        ),
    ),
    BatchMemberAdded: Insert(batch_members, None),
    BatchOutputRecorded: Insert(batch_outputs, "created_at"),
    ValidationErrorRecorded: Insert(validation_errors, "created_at"),
    TransformErrorRecorded: Insert(transform_errors, "created_at", json_fields=("error_details",)),
    CheckpointRecorded: Insert(landscape_checkpoints, "created_at"),
    SecretResolutionRecorded: Insert(secret_resolutions, "resolved_at"),
    PreflightResultRecorded: Insert(
        preflight_results, "created_at", json_fields=("result", "redacted")
    ),
    FieldResolutionRecorded: Insert(field_resolutions, None, json_fields=("mapping",)),
    SchemaContractRecorded: Insert(schema_contracts, None, json_fields=("contract",)),
    RunInterrupted: Insert(
        run_interruptions, "at", constants=(("kind", "interrupted"), ("writer_json", None))
    ),
    RunResumed: Insert(
        run_interruptions,
        "at",
        json_fields=("writer",),
        constants=(
            ("kind", "resumed"),
            ("last_seq", None),
            ("bytes_dropped", None),
            ("reason", None),
        ),
    ),
}
DROPPED: Final = {kind: spec.dropped(kind) for kind, spec in INSERTS.items()}
APPENDED_AT: Final = frozenset(s.table for s in INSERTS.values() if "appended_at" in s.table.c)


def row_values(spec: Insert, event: BaseEvent) -> dict[str, Any]:
    """The row ``event`` makes in ``spec.table``: column name -> value (as SQLAlchemy takes it)."""
    values = msgspec.structs.asdict(event)
    ts = utc(values.pop("ts"))
    occurred = values.pop("occurred_at")
    if spec.ts_column is not None:
        values[spec.ts_column] = ts if occurred is None else occurred
    if spec.table in APPENDED_AT:  # (a set: SQLAlchemy's column lookup costs more)
        values["appended_at"] = None if occurred is None else ts
    for old, new in spec.renamed:
        values[new] = values.pop(old)
    for name in spec.json_fields:
        value = values.pop(name)
        values[name + "_json"] = json_text(value) if value or name != "redacted" else None
    for name in DROPPED[type(event)]:
        del values[name]
    values.update(spec.constants)
    for fix, *args in HASH_ONLY.get(type(event), ()):
        _FIXES[fix](values, *args)
    return values


def _kept(values: dict[str, Any], slot: str, ref: str, hash_: str) -> None:
    """``<slot>_retained``: NULL when the data was kept, false for a hash without data."""
    values[slot + "_retained"] = False if values[ref] is None and values[hash_] else None


def _not_kept(values: dict[str, Any], flag: str, ref: str) -> None:
    """A required ref of a hash-only slot holds the hash: NULL in the table, as in the record."""
    if values[flag] is False:
        values[ref] = None
    else:
        values[flag] = None


def _retain_is_null(values: dict[str, Any], policy: str) -> None:
    if values[policy] == "retain":
        values[policy] = None


_FIXES: Final[dict[str, Callable[..., None]]] = {
    "kept": _kept,
    "not_kept": _not_kept,
    "retain_is_null": _retain_is_null,
}
HASH_ONLY: Final[dict[type[BaseEvent], tuple[tuple[str, ...], ...]]] = {
    NodeRegistered: (("retain_is_null", "payload_policy"),),
    RowCreated: (("not_kept", "source_data_retained", "source_data_ref"),),
    NodeStateStarted: (("not_kept", "input_data_retained", "input_data_ref"),),
    RoutingEventRecorded: (("kept", "reason", "reason_ref", "reason_hash"),),
    CallRecorded: (
        ("not_kept", "request_retained", "request_ref"),
        ("kept", "response", "response_ref", "response_hash"),
    ),
    ArtifactRecorded: (("kept", "sink_input", "sink_input_ref", "sink_input_hash"),),
}
"""The values of hash-only slots, after the renames (``(fix, *columns)``, applied in
order; :mod:`.rowbuild` reads the same declarations): ``not_kept`` -- a required ref
of a hash-only slot holds the hash: NULL in the table, as in the record, and the flag
NULL unless false; ``kept`` -- ``<slot>_retained`` is false for a hash without data,
else NULL; ``retain_is_null`` -- the default policy is NULL."""


COMPLETION_COLUMNS: Final = ("status", *(c for c, _ in _OPEN_STATE))
"""The columns ``node_state_completed`` sets: a started state's last columns (its
``constants``), in this order, so a state started and completed within one batch is
the started row with these replaced."""


def completion_values(e: NodeStateCompleted) -> dict[str, Any]:
    """The :data:`COMPLETION_COLUMNS` of a completed node state."""
    return {
        "status": e.status,
        "output_hash": e.output_hash,
        "output_data_ref": e.output_data_ref,
        "duration_ms": e.duration_ms,
        "error_json": json_text(e.error),
        "success_reason_json": json_text(e.success_reason),
        "completed_at": utc(e.ts) if e.occurred_at is None else e.occurred_at,
        "seq": e.seq,
        "appended_at": None if e.occurred_at is None else utc(e.ts),
        "output_data_retained": False if e.output_data_ref is None and e.output_hash else None,
        "context_after_json": json_text(e.context_after),
    }
