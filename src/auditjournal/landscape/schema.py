"""The twenty Landscape tables, the columns this importer knows, and value conversion.

The mapping of ``docs/landscape.md`` as data: for each table, the columns it reads
(everything else a newer Landscape might add is reported as not mapped), and how a
table's rows belong to a run (directly by ``run_id``, or through a parent table).
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Final

from ..errors import LandscapeDataError

__all__ = ["KNOWN_COLUMNS", "TABLES", "json_value", "utc"]

KNOWN_COLUMNS: Final[dict[str, frozenset[str]]] = {
    name: frozenset(columns.split())
    for name, columns in {
        "runs": "run_id started_at completed_at config_hash settings_json reproducibility_grade "
        "canonical_version source_schema_json source_field_resolution_json status export_status "
        "export_error exported_at export_format export_sink schema_contract_json "
        "schema_contract_hash",
        "nodes": "node_id run_id plugin_name node_type plugin_version determinism config_hash "
        "config_json schema_hash sequence_in_pipeline registered_at schema_mode "
        "schema_fields_json input_contract_json output_contract_json",
        "edges": "edge_id run_id from_node_id to_node_id label default_mode created_at",
        "rows": "row_id run_id source_node_id row_index source_data_hash source_data_ref "
        "created_at",
        "tokens": "token_id row_id run_id fork_group_id join_group_id expand_group_id "
        "branch_name step_in_pipeline created_at",
        "token_parents": "token_id parent_token_id ordinal",
        "node_states": "state_id token_id run_id node_id step_index attempt status input_hash "
        "output_hash context_before_json context_after_json duration_ms error_json "
        "success_reason_json started_at completed_at",
        "routing_events": "event_id state_id edge_id routing_group_id ordinal mode reason_hash "
        "reason_ref created_at",
        "calls": "call_id state_id operation_id call_index call_type status request_hash "
        "request_ref response_hash response_ref error_json latency_ms created_at",
        "operations": "operation_id run_id node_id operation_type started_at completed_at "
        "status input_data_ref input_data_hash output_data_ref output_data_hash error_message "
        "duration_ms",
        "artifacts": "artifact_id run_id produced_by_state_id sink_node_id artifact_type "
        "path_or_uri content_hash size_bytes idempotency_key created_at",
        "token_outcomes": "outcome_id run_id token_id outcome is_terminal recorded_at "
        "sink_name batch_id fork_group_id join_group_id expand_group_id error_hash "
        "context_json expected_branches_json",
        "batches": "batch_id run_id aggregation_node_id aggregation_state_id trigger_reason "
        "trigger_type attempt status created_at completed_at",
        "batch_members": "batch_id token_id ordinal",
        "batch_outputs": "batch_output_id batch_id output_type output_id",
        "validation_errors": "error_id run_id node_id row_hash row_data_json error schema_mode "
        "destination created_at violation_type original_field_name normalized_field_name "
        "expected_type actual_type",
        "transform_errors": "error_id run_id token_id transform_id row_hash row_data_json "
        "error_details_json destination created_at",
        "checkpoints": "checkpoint_id run_id token_id node_id sequence_number "
        "aggregation_state_json coalesce_state_json created_at upstream_topology_hash "
        "checkpoint_node_config_hash format_version",
        "secret_resolutions": "resolution_id run_id timestamp env_var_name source vault_url "
        "secret_name fingerprint resolution_latency_ms",
        "preflight_results": "result_id run_id result_type name result_json created_at",
    }.items()
}
TABLES: Final = tuple(KNOWN_COLUMNS)
"""All twenty, in the order the report lists them."""

THROUGH: Final[dict[str, tuple[str, str, str]]] = {
    "token_parents": ("tokens", "token_id", "token_id"),
    "routing_events": ("node_states", "state_id", "state_id"),
    "batch_members": ("batches", "batch_id", "batch_id"),
    "batch_outputs": ("batches", "batch_id", "batch_id"),
}
"""Tables without ``run_id``: (parent table, column here, parent's key)."""


def utc(value: Any, table: str, row: str, column: str) -> _dt.datetime | None:
    """A Landscape time as an aware UTC datetime (naive text is UTC, floats are Unix time)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _dt.datetime.fromtimestamp(value, _dt.UTC)
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value)
        except ValueError:
            raise LandscapeDataError(f"{table} {row}: {column} is not a time: {value!r}") from None
    if not isinstance(value, _dt.datetime):
        raise LandscapeDataError(f"{table} {row}: {column} is not a time: {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=_dt.UTC)
    return value.astimezone(_dt.UTC)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_value(text: Any, table: str, row: str, column: str) -> Any:
    """A ``*_json`` column as a JSON value (NaN and Infinity refused); None stays None."""
    if text is None:
        return None
    if not isinstance(text, str):
        return text  # a JSON column of a PostgreSQL Landscape
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise LandscapeDataError(f"{table} {row}: {column} is not JSON: {exc}") from None
