"""The calls that record a pipeline's graph (nodes, edges), its data (rows, tokens) and
what each node did (node states, routing decisions). Each validates its arguments first
(:mod:`.arguments`), stores big data in the payload store outside the run's lock, then --
under the lock -- checks the call against the run's state, takes the next seq and
appends one event.

:class:`PipelineCalls` is a part of :class:`~.recorder.RunRecorder`; external calls,
artifacts and token outcomes are :class:`~.outcomes.OutcomeCalls`.

Thread-safety: as :class:`~.recorder.RunRecorder`.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import msgspec

from ..errors import (
    InvalidEventError,
    StateAlreadyCompletedError,
)
from ..model.events import (
    DETERMINISM,
    EDGE_MODES,
    NODE_STATE_STATUSES,
    NODE_TYPES,
    PAYLOAD_POLICIES,
    EdgeRegistered,
    NodeRegistered,
    NodeStateCompleted,
    NodeStateStarted,
    RoutingEventRecorded,
    RowCreated,
    TokenCreated,
)
from .arguments import (
    check_choice,
    check_count,
    check_number,
    check_sequence,
    check_text,
    check_time,
    json_object,
    json_schema,
    json_value,
    optional_id,
    shown,
)
from .callbase import MISSING, CallBase, PayloadSink

__all__ = ["PayloadSink", "PipelineCalls"]

_UTC = _dt.UTC
_now = _dt.datetime.now


class PipelineCalls(CallBase):
    """Graph, rows, tokens, node states, routing: each appends one event or raises."""

    # -- graph -------------------------------------------------------------------------

    def register_node(
        self,
        *,
        plugin_name: str,
        node_type: str,
        plugin_version: str = "0",
        config: dict[str, Any] | None = None,
        determinism: str = "deterministic",
        input_schema: dict[str, Any] | None = None,
        output_schema: dict[str, Any] | None = None,
        node_id: str | None = None,
        payload_policy: str = "retain",
        config_hash: str | None = None,
        secret_fields: list[str] | tuple[str, ...] = (),
        schema_hash: str | None = None,
        sequence_in_pipeline: int | None = None,
        schema_mode: str | None = None,
        schema_fields: list[dict[str, Any]] | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """Register a plugin instance; returns its node id. ``payload_policy="hash_only"``:
        its states' input and output data are hashed, not stored.

        ``config`` passes the secret filter (``secret_fields``: more names for this
        call). ``config_hash``: the pipeline's own hash of the config; it must be the
        recorded config's hash unless the filter changed the config (then it is kept,
        and ``redacted`` says so)."""
        when = check_time(occurred_at)
        payload_policy = check_choice(payload_policy, PAYLOAD_POLICIES, "payload_policy")
        node_type = check_choice(node_type, NODE_TYPES, "node_type")
        determinism = check_choice(determinism, DETERMINISM, "determinism")
        plugin_name = check_text(plugin_name, "plugin_name")
        plugin_version = check_text(plugin_version, "plugin_version")
        config_bytes, config_digest, redacted = self._filtered_config(
            config, config_hash, secret_fields
        )
        schema_hash = None if schema_hash is None else check_text(schema_hash, "schema_hash")
        schema_mode = None if schema_mode is None else check_text(schema_mode, "schema_mode")
        if sequence_in_pipeline is not None:
            sequence_in_pipeline = check_count(sequence_in_pipeline, "sequence_in_pipeline")
        fields = json_value(schema_fields, "schema_fields")
        if fields is not None and not (
            isinstance(fields, list) and all(isinstance(f, dict) for f in fields)
        ):
            raise InvalidEventError(f"schema_fields must be a list of objects, got {shown(fields)}")
        in_schema = json_schema(input_schema, "input_schema")
        out_schema = json_schema(output_schema, "output_schema")
        with self._lock:
            state = self._open_state()
            node_id = state.new_id("node", node_id, state.nodes)
            self._emit(
                NodeRegistered(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    occurred_at=when,
                    node_id=node_id,
                    plugin_name=plugin_name,
                    plugin_version=plugin_version,
                    node_type=node_type,  # type: ignore[arg-type]
                    determinism=determinism,  # type: ignore[arg-type]
                    config=msgspec.json.decode(config_bytes),
                    config_hash=config_digest,
                    input_schema=in_schema,
                    output_schema=out_schema,
                    payload_policy=payload_policy,  # type: ignore[arg-type]
                    redacted=redacted,
                    schema_hash=schema_hash,
                    sequence_in_pipeline=sequence_in_pipeline,
                    schema_mode=schema_mode,
                    schema_fields=fields,
                )
            )
        self._commit()
        return node_id

    def register_edge(
        self,
        *,
        from_node_id: str,
        to_node_id: str,
        label: str,
        mode: str = "move",
        edge_id: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """Connect two registered nodes; returns the edge id."""
        when = check_time(occurred_at)
        mode = check_choice(mode, EDGE_MODES, "edge mode")
        label = check_text(label, "label")
        with self._lock:
            state = self._open_state()
            state.need(state.nodes, from_node_id, "node")
            state.need(state.nodes, to_node_id, "node")
            edge_id = state.new_id("edge", edge_id, state.edges)
            self._emit(
                EdgeRegistered(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    occurred_at=when,
                    edge_id=edge_id,
                    from_node_id=from_node_id,
                    to_node_id=to_node_id,
                    label=label,
                    mode=mode,  # type: ignore[arg-type]
                )
            )
        self._commit()
        return edge_id

    # -- rows and tokens ---------------------------------------------------------------

    def create_row(
        self,
        *,
        source_node_id: str,
        row_index: int,
        data: Any = MISSING,
        row_id: str | None = None,
        source_data_ref: str | None = None,
        source_data_hash: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """Record a source row; its data goes to the payload store (or give a stored
        ``source_data_ref``, or only its ``source_data_hash``). Returns the row id."""
        when = check_time(occurred_at)
        row_index = check_count(row_index, "row_index")
        digest, kept = self._slot(
            "data", data, source_data_ref, source_data_hash,
            names=("source_data_ref", "source_data_hash"),
        )  # fmt: skip
        if digest is None:
            raise InvalidEventError("create_row needs data, source_data_ref or source_data_hash")
        with self._lock:
            state = self._open_state()
            state.need(state.nodes, source_node_id, "node")
            row_id = state.new_id("row", row_id, state.rows)
            self._emit(
                RowCreated(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    occurred_at=when,
                    row_id=row_id,
                    source_node_id=source_node_id,
                    row_index=row_index,
                    source_data_hash=digest,
                    source_data_ref=digest,
                    source_data_retained=kept is not None,
                )
            )
        self._commit()
        return row_id

    def create_token(
        self,
        *,
        row_id: str,
        parent_token_ids: list[str] | tuple[str, ...] = (),
        branch_name: str | None = None,
        fork_group_id: str | None = None,
        join_group_id: str | None = None,
        expand_group_id: str | None = None,
        token_id: str | None = None,
        step_in_pipeline: int | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """Create a token (a row instance on a path); returns its id."""
        when = check_time(occurred_at)
        if step_in_pipeline is not None:
            step_in_pipeline = check_count(step_in_pipeline, "step_in_pipeline")
        parent_token_ids = check_sequence(parent_token_ids, "parent_token_ids")
        if branch_name is not None:
            branch_name = check_text(branch_name, "branch_name")
        fork_group_id = optional_id(fork_group_id, "fork_group_id")
        join_group_id = optional_id(join_group_id, "join_group_id")
        expand_group_id = optional_id(expand_group_id, "expand_group_id")
        with self._lock:
            state = self._open_state()
            state.need(state.rows, row_id, "row")
            for parent in parent_token_ids:
                state.need(state.tokens, parent, "token")
            token_id = state.new_id("tok", token_id, state.tokens)
            self._emit(
                TokenCreated(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    occurred_at=when,
                    token_id=token_id,
                    row_id=row_id,
                    parent_token_ids=parent_token_ids,
                    branch_name=branch_name,
                    fork_group_id=fork_group_id,
                    join_group_id=join_group_id,
                    expand_group_id=expand_group_id,
                    step_in_pipeline=step_in_pipeline,
                )
            )
        self._commit()
        return token_id

    # -- node states -------------------------------------------------------------------

    def begin_node_state(
        self,
        *,
        token_id: str,
        node_id: str,
        step_index: int,
        input_data: Any = MISSING,
        attempt: int = 0,
        state_id: str | None = None,
        input_data_ref: str | None = None,
        input_hash: str | None = None,
        context_before: dict[str, Any] | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """A node starts processing a token; returns the state id. The input: its data
        (stored, or only hashed under the node's ``hash_only`` policy), a stored
        ``input_data_ref``, or only its ``input_hash``."""
        when = check_time(occurred_at)
        step_index = check_count(step_index, "step_index")
        attempt = check_count(attempt, "attempt")
        before = None if context_before is None else json_object(context_before, "context_before")
        digest, kept = self._slot(
            "input_data", input_data, input_data_ref, input_hash,
            names=("input_data_ref", "input_hash"),
            hash_only=type(node_id) is str and node_id in self._state.hash_only_nodes,
        )  # fmt: skip
        if digest is None:
            raise InvalidEventError(
                "begin_node_state needs input_data, input_data_ref or input_hash"
            )
        with self._lock:
            state = self._open_state()
            state.need(state.tokens, token_id, "token")
            state.need(state.nodes, node_id, "node")
            state_id = state.new_id("st", state_id, state.states)
            self._emit(
                NodeStateStarted(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    occurred_at=when,
                    state_id=state_id,
                    token_id=token_id,
                    row_id=state.tokens[token_id],
                    node_id=node_id,
                    step_index=step_index,
                    attempt=attempt,
                    input_hash=digest,
                    input_data_ref=digest,
                    input_retained=kept is not None,
                    context_before=before,
                )
            )
        self._commit()
        return state_id

    def complete_node_state(
        self,
        state_id: str,
        *,
        status: str,
        output_data: Any = None,
        duration_ms: float | None = None,
        error: dict[str, Any] | None = None,
        success_reason: dict[str, Any] | None = None,
        output_data_ref: str | None = None,
        output_hash: str | None = None,
        context_after: dict[str, Any] | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> None:
        """Finish a node state (completed / failed / pending); a state completes once."""
        when = check_time(occurred_at)
        status = check_choice(status, NODE_STATE_STATUSES, "node state status")
        duration = check_number(duration_ms, "duration_ms")
        after = None if context_after is None else json_object(context_after, "context_after")
        policy_hash_only = False
        if output_data is not None and self._state.hash_only_nodes:
            with self._lock:
                node = self._state.state_nodes.get(state_id) if type(state_id) is str else None
            policy_hash_only = node in self._state.hash_only_nodes
        digest, ref = self._slot(
            "output_data", MISSING if output_data is None else output_data,
            output_data_ref, output_hash,
            names=("output_data_ref", "output_hash"), hash_only=policy_hash_only,
        )  # fmt: skip
        error_value = None if error is None else json_object(error, "error")
        reason_value = (
            None if success_reason is None else json_object(success_reason, "success_reason")
        )
        with self._lock:
            state = self._open_state()
            state.need(state.states, state_id, "node state")
            if state_id in state.closed_states:
                raise StateAlreadyCompletedError(f"node state {state_id!r} is already completed")
            self._emit(
                NodeStateCompleted(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    occurred_at=when,
                    state_id=state_id,
                    status=status,  # type: ignore[arg-type]
                    output_hash=digest,
                    output_data_ref=ref,
                    duration_ms=duration,
                    error=error_value,
                    success_reason=reason_value,
                    context_after=after,
                )
            )
        self._commit()

    def record_routing_event(
        self,
        *,
        state_id: str,
        edge_id: str,
        mode: str = "move",
        reason: Any = None,
        routing_group_id: str | None = None,
        ordinal: int = 0,
        routing_event_id: str | None = None,
        reason_ref: str | None = None,
        reason_hash: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """A gate's decision for a state: which edge, and why. Returns its id."""
        when = check_time(occurred_at)
        mode = check_choice(mode, EDGE_MODES, "routing mode")
        ordinal = check_count(ordinal, "ordinal")
        routing_group_id = optional_id(routing_group_id, "routing_group_id")
        digest, ref = self._slot(
            "reason", MISSING if reason is None else reason, reason_ref, reason_hash
        )
        with self._lock:
            state = self._open_state()
            state.need(state.states, state_id, "node state")
            state.need(state.edges, edge_id, "edge")
            routing_event_id = state.new_id("rte", routing_event_id, state.routing_events)
            self._emit(
                RoutingEventRecorded(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    occurred_at=when,
                    routing_event_id=routing_event_id,
                    state_id=state_id,
                    row_id=state.states.row_of(state_id),
                    edge_id=edge_id,
                    mode=mode,  # type: ignore[arg-type]
                    routing_group_id=routing_group_id or routing_event_id,
                    ordinal=ordinal,
                    reason_hash=digest,
                    reason_ref=ref,
                )
            )
        self._commit()
        return routing_event_id
