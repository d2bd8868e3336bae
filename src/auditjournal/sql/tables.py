"""The audit tables' declarations (Landscape vocabulary); :mod:`.schema` creates,
checks and upgrades them (and re-exports every name here).

Tables (every key starts with ``run_id``, because generated ids such as
``row-4`` repeat across runs): ``runs``, ``nodes``, ``edges``, ``rows``,
``tokens``, ``token_parents``, ``token_outcomes``, ``node_states``,
``routing_events``, ``calls``, ``artifacts``; the rest of the Landscape model
(issue 14): ``operations``, ``batches``, ``batch_members``, ``batch_outputs``,
``validation_errors``, ``transform_errors``, ``checkpoints``
(``landscape_checkpoints`` here), ``secret_resolutions``, ``preflight_results``,
``field_resolutions``, ``schema_contracts``; ``run_interruptions`` (a run's
``run_interrupted``/``run_resumed`` events, schema version 3); plus ``projection_checkpoints``
(per run: the last applied seq and the journal position after it) and
``schema_version``. Column names are the export record's field names
(:mod:`records`); small JSON values (config, error, ...) are canonical JSON
text in ``*_json`` columns; payloads stay in the payload store and the tables
hold their refs. Indexes serve lineage queries: by run and row, token, state
and node.

Thread-safety: declarations only.
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa

__all__ = [
    "TABLES",
    "artifacts",
    "batch_members",
    "batch_outputs",
    "batches",
    "calls",
    "checkpoints",
    "edges",
    "field_resolutions",
    "landscape_checkpoints",
    "metadata",
    "node_states",
    "nodes",
    "operations",
    "preflight_results",
    "routing_events",
    "rows",
    "run_interruptions",
    "runs",
    "schema_contracts",
    "schema_version",
    "secret_resolutions",
    "token_outcomes",
    "token_parents",
    "tokens",
    "transform_errors",
    "validation_errors",
]

# -- schema ------------------------------------------------------------------------------

metadata = sa.MetaData()


def _id(name: str, *, key: bool = False, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.String(128), primary_key=key, nullable=nullable and not key)


def _hash(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.String(64))


def _text(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Text)


def _int(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.BigInteger, nullable=nullable)


def _ts(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True))


def _enum(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.String(32), nullable=nullable)


def _table(name: str, key: str, *columns: sa.Column[Any], index: tuple[str, ...] = ()) -> sa.Table:
    table = sa.Table(name, metadata, _id("run_id", key=True), _id(key, key=True), *columns)
    for column in index:
        sa.Index(f"ix_{name}_{column}", table.c.run_id, table.c[column])
    return table


runs = sa.Table(
    "runs",
    metadata,
    _id("run_id", key=True),
    _enum("status"),  # running, then the run_completed status
    _text("config_json"),
    _hash("config_hash"),
    _text("settings_json"),
    _enum("canonical_version", nullable=True),
    _ts("started_at"),
    _int("started_seq"),
    _ts("completed_at"),
    _int("seq", nullable=True),
    _text("error_json"),
    _enum("export_status", nullable=True),  # sealed / failed
    _int("export_seq", nullable=True),
    _hash("manifest_sha256"),
    _int("export_chunk_count", nullable=True),
    _int("export_record_count", nullable=True),
    _text("export_path"),
    _hash("merkle_root"),
    _text("export_error"),
    _text("csv_out_dir"),
    _hash("csv_listing_sha256"),
    _enum("reproducibility_grade", nullable=True),
    _ts("appended_at"),
    _text("redacted_json"),
)
nodes = _table(
    "nodes",
    "node_id",
    _text("plugin_name"),
    _text("plugin_version"),
    _enum("node_type"),
    _enum("determinism"),
    _text("config_json"),
    _hash("config_hash"),
    _text("input_schema_json"),
    _text("output_schema_json"),
    _ts("registered_at"),
    _int("seq"),
    _ts("appended_at"),
    _enum("payload_policy", nullable=True),  # NULL: retain
    _hash("schema_hash"),
    _int("sequence_in_pipeline", nullable=True),
    _text("schema_mode"),
    _text("schema_fields_json"),
    _text("redacted_json"),  # NULL: nothing redacted
)
edges = _table(
    "edges",
    "edge_id",
    _id("from_node_id"),
    _id("to_node_id"),
    _text("label"),
    _enum("mode"),
    _ts("created_at"),
    _int("seq"),
    _ts("appended_at"),
)
rows = _table(
    "rows",
    "row_id",
    _id("source_node_id"),
    _int("row_index"),
    _hash("source_data_hash"),
    _hash("source_data_ref"),
    _ts("created_at"),
    _int("seq"),
    _ts("appended_at"),
    sa.Column("source_data_retained", sa.Boolean),  # NULL: retained; false: hash only
)
tokens = _table(
    "tokens",
    "token_id",
    _id("row_id"),
    _text("branch_name"),
    _text("fork_group_id"),
    _text("join_group_id"),
    _text("expand_group_id"),
    _ts("created_at"),
    _int("seq"),
    _ts("appended_at"),
    _int("step_in_pipeline", nullable=True),
    index=("row_id",),
)
token_parents = sa.Table(
    "token_parents",
    metadata,
    _id("run_id", key=True),
    _id("token_id", key=True),
    sa.Column("ordinal", sa.Integer, primary_key=True),
    _id("parent_token_id"),
    sa.Index("ix_token_parents_parent", "run_id", "parent_token_id"),
)
node_states = _table(
    "node_states",
    "state_id",
    _id("token_id"),
    _id("row_id"),
    _id("node_id"),
    _int("step_index"),
    _int("attempt"),
    _enum("status"),  # open until completed (completed / failed / pending)
    _hash("input_hash"),
    _hash("input_data_ref"),
    _hash("output_hash"),
    _hash("output_data_ref"),
    sa.Column("duration_ms", sa.Float),
    _text("error_json"),
    _text("success_reason_json"),
    _ts("started_at"),
    _int("started_seq"),
    _ts("completed_at"),
    _int("seq", nullable=True),
    _ts("appended_at"),
    sa.Column("input_data_retained", sa.Boolean),  # NULL: retained; false: hash only
    sa.Column("output_data_retained", sa.Boolean),  # NULL: retained; false: hash only
    _text("context_before_json"),
    _text("context_after_json"),
    index=("row_id", "token_id", "node_id"),
)
routing_events = _table(
    "routing_events",
    "routing_event_id",
    _id("state_id"),
    _id("row_id"),
    _id("edge_id"),
    _enum("mode"),
    _text("routing_group_id"),
    _int("ordinal"),
    _hash("reason_hash"),
    _hash("reason_ref"),
    _ts("created_at"),
    _int("seq"),
    _ts("appended_at"),
    sa.Column("reason_retained", sa.Boolean),  # NULL: retained; false: hash only
    index=("state_id", "row_id"),
)
calls = _table(
    "calls",
    "call_id",
    _id("state_id", nullable=True),
    _id("row_id", nullable=True),
    _text("operation_id"),
    _int("call_index"),
    _enum("call_type"),
    _enum("status"),
    sa.Column("latency_ms", sa.Float),
    _hash("request_hash"),
    _hash("request_ref"),
    _hash("response_hash"),
    _hash("response_ref"),
    _text("error_json"),
    _ts("created_at"),
    _int("seq"),
    _ts("appended_at"),
    sa.Column("request_retained", sa.Boolean),  # NULL: retained; false: hash only
    sa.Column("response_retained", sa.Boolean),  # NULL: retained; false: hash only
    _text("redacted_json"),
    index=("state_id", "row_id"),
)
artifacts = _table(
    "artifacts",
    "artifact_id",
    _id("state_id"),
    _id("sink_node_id"),
    _text("artifact_type"),
    _text("path_or_uri"),
    _text("content_hash"),
    _int("size_bytes"),
    _hash("sink_input_hash"),
    _hash("sink_input_ref"),
    _ts("created_at"),
    _int("seq"),
    _ts("appended_at"),
    sa.Column("sink_input_retained", sa.Boolean),  # NULL: retained; false: hash only
    _text("idempotency_key"),  # schema version 3
    index=("state_id",),
)
token_outcomes = _table(
    "token_outcomes",
    "outcome_id",
    _id("token_id"),
    _id("row_id"),
    _enum("outcome"),
    _text("sink_name"),
    _hash("error_hash"),
    _text("context_json"),
    _ts("recorded_at"),
    _int("seq"),
    _ts("appended_at"),
    _text("batch_id"),
    _text("fork_group_id"),
    _text("join_group_id"),
    _text("expand_group_id"),
    _text("expected_branches_json"),
    index=("token_id", "row_id", "batch_id"),
)
# -- the rest of the Landscape model (issue 14) -------------------------------------------

operations = _table(
    "operations",
    "operation_id",
    _id("node_id"),
    _enum("operation_type"),
    _enum("status"),  # open until completed
    _hash("input_hash"),
    _hash("input_data_ref"),
    _hash("output_hash"),
    _hash("output_data_ref"),
    _text("error_message"),
    sa.Column("duration_ms", sa.Float),
    _ts("started_at"),
    _int("started_seq"),
    _ts("completed_at"),
    _int("seq", nullable=True),
    _ts("appended_at"),
    index=("node_id",),
)
batches = _table(
    "batches",
    "batch_id",
    _id("aggregation_node_id"),
    _int("attempt"),
    _enum("status"),
    _enum("trigger_type", nullable=True),
    _text("trigger_reason"),
    _text("aggregation_state_id"),
    _ts("created_at"),
    _int("created_seq"),
    _ts("completed_at"),
    _int("seq", nullable=True),
    _ts("appended_at"),
    index=("aggregation_node_id",),
)
batch_members = sa.Table(
    "batch_members",
    metadata,
    _id("run_id", key=True),
    _id("batch_id", key=True),
    _id("token_id", key=True),
    _id("row_id"),
    _int("ordinal"),
    _int("seq"),
    _ts("appended_at"),
    sa.Index("ix_batch_members_token_id", "run_id", "token_id"),
    sa.Index("ix_batch_members_row_id", "run_id", "row_id"),
)
batch_outputs = _table(
    "batch_outputs",
    "batch_output_id",
    _id("batch_id"),
    _enum("output_type"),
    _id("output_id"),
    _ts("created_at"),
    _int("seq"),
    _ts("appended_at"),
    index=("batch_id",),
)
validation_errors = _table(
    "validation_errors",
    "validation_error_id",
    _id("node_id", nullable=True),
    _id("row_id", nullable=True),
    _hash("row_hash"),
    _hash("row_data_ref"),
    sa.Column("row_data_canonical", sa.Boolean),
    _text("error"),
    _text("schema_mode"),
    _text("destination"),
    _text("violation_type"),
    _text("original_field_name"),
    _text("normalized_field_name"),
    _text("expected_type"),
    _text("actual_type"),
    _ts("created_at"),
    _int("seq"),
    _ts("appended_at"),
    index=("row_id", "node_id", "row_hash"),
)
transform_errors = _table(
    "transform_errors",
    "transform_error_id",
    _id("token_id"),
    _id("row_id"),
    _id("node_id"),
    _id("state_id", nullable=True),
    _hash("row_hash"),
    _hash("row_data_ref"),
    sa.Column("row_data_canonical", sa.Boolean),
    _text("error_details_json"),
    _text("destination"),
    _ts("created_at"),
    _int("seq"),
    _ts("appended_at"),
    index=("row_id", "token_id"),
)
landscape_checkpoints = _table(
    "checkpoints",
    "checkpoint_id",
    _id("token_id"),
    _id("row_id"),
    _id("node_id"),
    _int("sequence_number"),
    _text("upstream_topology_hash"),
    _text("node_config_hash"),
    _hash("aggregation_state_ref"),
    _hash("coalesce_state_ref"),
    _int("format_version", nullable=True),
    _ts("created_at"),
    _int("seq"),
    _ts("appended_at"),
    index=("row_id", "token_id"),
)
"""Resume points of a run (Landscape's ``checkpoints``); :data:`checkpoints` is the
projector's own position table."""
secret_resolutions = _table(
    "secret_resolutions",
    "secret_resolution_id",
    _text("env_var_name"),
    _text("source"),
    _text("vault_url"),
    _text("secret_name"),
    _hash("fingerprint"),
    sa.Column("resolution_latency_ms", sa.Float),
    _ts("resolved_at"),
    _int("seq"),
    _ts("appended_at"),
)
preflight_results = _table(
    "preflight_results",
    "preflight_result_id",
    _enum("result_type"),
    _text("name"),
    _text("result_json"),
    _text("redacted_json"),
    _ts("created_at"),
    _int("seq"),
    _ts("appended_at"),
)
field_resolutions = sa.Table(
    "field_resolutions",
    metadata,
    _id("run_id", key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    _id("source_node_id", nullable=True),
    _text("mapping_json"),
    _text("normalization_version"),
)
schema_contracts = sa.Table(
    "schema_contracts",
    metadata,
    _id("run_id", key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    _id("node_id", nullable=True),
    _enum("role"),
    _text("contract_json"),
    _text("contract_hash"),
    sa.Index("ix_schema_contracts_node_id", "run_id", "node_id"),
)

run_interruptions = sa.Table(
    "run_interruptions",
    metadata,
    _id("run_id", key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    _enum("kind"),  # interrupted (its writer stopped), resumed (a new writer took over)
    _int("last_seq", nullable=True),  # interrupted: the stopped writer's last entry
    _int("bytes_dropped", nullable=True),  # interrupted: the torn tail recovery cut off
    _text("reason"),  # interrupted
    _text("writer_json"),  # resumed: host and pid of the new writer
    _ts("at"),
)

checkpoints = sa.Table(
    "projection_checkpoints",
    metadata,
    _id("run_id", key=True),
    _int("last_seq"),
    _int("segment_first_seq"),
    _int("segment_offset"),
    _hash("chain"),
)
schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

TABLES: Final = (
    runs,
    nodes,
    edges,
    rows,
    tokens,
    token_parents,
    node_states,
    routing_events,
    calls,
    artifacts,
    token_outcomes,
    operations,
    batches,
    batch_members,
    batch_outputs,
    validation_errors,
    transform_errors,
    landscape_checkpoints,
    secret_resolutions,
    preflight_results,
    field_resolutions,
    schema_contracts,
    run_interruptions,
)
"""The audit tables, parents before children (the order batches are inserted in)."""
