"""The tables of the Landscape-style baseline (``baseline.py``): Landscape's tables, foreign
keys, unique constraints and indexes, and the prebuilt statements the recorder runs."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True)),
    Column("config_hash", String(64), nullable=False),
    Column("settings_json", Text, nullable=False),
    Column("canonical_version", String(64), nullable=False),
    Column("status", String(32), nullable=False),
)

nodes = Table(
    "nodes",
    metadata,
    Column("node_id", String(64), primary_key=True),
    Column("run_id", String(64), ForeignKey("runs.run_id"), nullable=False),
    Column("plugin_name", String(128), nullable=False),
    Column("node_type", String(32), nullable=False),
    Column("plugin_version", String(32), nullable=False),
    Column("determinism", String(32), nullable=False),
    Column("config_hash", String(64), nullable=False),
    Column("config_json", Text, nullable=False),
    Column("input_schema_json", Text),
    Column("output_schema_json", Text),
    Column("sequence_in_pipeline", Integer),
    Column("registered_at", DateTime(timezone=True), nullable=False),
)

edges = Table(
    "edges",
    metadata,
    Column("edge_id", String(64), primary_key=True),
    Column("run_id", String(64), ForeignKey("runs.run_id"), nullable=False),
    Column("from_node_id", String(64), ForeignKey("nodes.node_id"), nullable=False),
    Column("to_node_id", String(64), ForeignKey("nodes.node_id"), nullable=False),
    Column("label", String(64), nullable=False),
    Column("default_mode", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("run_id", "from_node_id", "label"),
)

rows = Table(
    "rows",
    metadata,
    Column("row_id", String(64), primary_key=True),
    Column("run_id", String(64), ForeignKey("runs.run_id"), nullable=False),
    Column("source_node_id", String(64), ForeignKey("nodes.node_id"), nullable=False),
    Column("row_index", Integer, nullable=False),
    Column("source_data_hash", String(64), nullable=False),
    Column("source_data_ref", String(256)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("run_id", "row_index"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_id", String(64), primary_key=True),
    Column("row_id", String(64), ForeignKey("rows.row_id"), nullable=False),
    Column("fork_group_id", String(64)),
    Column("join_group_id", String(64)),
    Column("expand_group_id", String(64)),
    Column("branch_name", String(64)),
    Column("step_in_pipeline", Integer),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

node_states = Table(
    "node_states",
    metadata,
    Column("state_id", String(64), primary_key=True),
    Column("token_id", String(64), ForeignKey("tokens.token_id"), nullable=False),
    Column("run_id", String(64), ForeignKey("runs.run_id"), nullable=False),
    Column("node_id", String(64), ForeignKey("nodes.node_id"), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("input_hash", String(64), nullable=False),
    Column("input_data_ref", String(256)),
    Column("output_hash", String(64)),
    Column("output_data_ref", String(256)),
    Column("duration_ms", Float),
    Column("error_json", Text),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True)),
    UniqueConstraint("token_id", "node_id", "attempt"),
    UniqueConstraint("token_id", "step_index", "attempt"),
)

calls = Table(
    "calls",
    metadata,
    Column("call_id", String(64), primary_key=True),
    Column("state_id", String(64), ForeignKey("node_states.state_id"), nullable=False),
    Column("call_index", Integer, nullable=False),
    Column("call_type", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("request_ref", String(256)),
    Column("response_hash", String(64)),
    Column("response_ref", String(256)),
    Column("error_json", Text),
    Column("latency_ms", Float),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("state_id", "call_index"),
)

routing_events = Table(
    "routing_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("state_id", String(64), ForeignKey("node_states.state_id"), nullable=False),
    Column("edge_id", String(64), ForeignKey("edges.edge_id"), nullable=False),
    Column("routing_group_id", String(64), nullable=False),
    Column("ordinal", Integer, nullable=False),
    Column("mode", String(16), nullable=False),
    Column("reason_hash", String(64)),
    Column("reason_ref", String(256)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("routing_group_id", "ordinal"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("artifact_id", String(64), primary_key=True),
    Column("run_id", String(64), ForeignKey("runs.run_id"), nullable=False),
    Column("produced_by_state_id", String(64), ForeignKey("node_states.state_id"), nullable=False),
    Column("sink_node_id", String(64), ForeignKey("nodes.node_id"), nullable=False),
    Column("artifact_type", String(64), nullable=False),
    Column("path_or_uri", String(512), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("sink_input_hash", String(64)),
    Column("sink_input_ref", String(256)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

token_outcomes = Table(
    "token_outcomes",
    metadata,
    Column("outcome_id", String(64), primary_key=True),
    Column("run_id", String(64), ForeignKey("runs.run_id"), nullable=False, index=True),
    Column("token_id", String(64), ForeignKey("tokens.token_id"), nullable=False, index=True),
    Column("outcome", String(32), nullable=False),
    Column("is_terminal", Integer, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("sink_name", String(128)),
)

Index(
    "ix_token_outcomes_terminal_unique",
    token_outcomes.c.token_id,
    unique=True,
    sqlite_where=token_outcomes.c.is_terminal == 1,
)
Index("ix_nodes_run_id", nodes.c.run_id)
Index("ix_edges_run_id", edges.c.run_id)
Index("ix_rows_run_id", rows.c.run_id)
Index("ix_tokens_row_id", tokens.c.row_id)
Index("ix_node_states_token", node_states.c.token_id)
Index("ix_node_states_node", node_states.c.node_id)
Index("ix_calls_state", calls.c.state_id)
Index("ix_routing_events_state", routing_events.c.state_id)
Index("ix_routing_events_group", routing_events.c.routing_group_id)
Index("ix_artifacts_run", artifacts.c.run_id)

# Prebuilt statements (SQLAlchemy caches their compiled form).
INSERT_RUN = runs.insert()
INSERT_NODE = nodes.insert()
INSERT_EDGE = edges.insert()
INSERT_ROW = rows.insert()
INSERT_TOKEN = tokens.insert()
INSERT_STATE = node_states.insert()
INSERT_CALL = calls.insert()
INSERT_ROUTING = routing_events.insert()
INSERT_ARTIFACT = artifacts.insert()
INSERT_OUTCOME = token_outcomes.insert()
