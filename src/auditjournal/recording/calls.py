"""The calls that record a pipeline: its graph (nodes, edges), its data (rows, tokens),
what each node did (node states, routing decisions, external calls, artifacts) and each
token's outcome. Each validates its arguments first (:mod:`.arguments`), stores big data
in the payload store outside the run's lock, then -- under the lock -- checks the call
against the run's state, takes the next seq and appends one event.

:class:`PipelineCalls` is the part of :class:`~.recorder.RunRecorder` that holds them;
the recorder provides the lock, the state, the journal and how an event is emitted and
committed (the run's lifecycle).

Thread-safety: as :class:`~.recorder.RunRecorder`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import threading
from typing import Any, Protocol

import msgspec

from ..errors import InvalidEventError, LifecycleError, StateAlreadyCompletedError
from ..journal.base import JournalWriter
from ..model.events import (
    CALL_STATUSES,
    CALL_TYPES,
    DETERMINISM,
    EDGE_MODES,
    NODE_STATE_STATUSES,
    NODE_TYPES,
    TOKEN_OUTCOMES,
    ArtifactRecorded,
    BaseEvent,
    CallRecorded,
    EdgeRegistered,
    NodeRegistered,
    NodeStateCompleted,
    NodeStateStarted,
    RoutingEventRecorded,
    RowCreated,
    TokenCreated,
    TokenOutcomeRecorded,
)
from .arguments import (
    check_choice,
    check_count,
    check_hash,
    check_number,
    check_sequence,
    check_text,
    json_object,
    json_object_bytes,
    json_schema,
    optional_id,
)
from .runstate import RunState

__all__ = ["PayloadSink", "PipelineCalls"]

_UTC = _dt.UTC
_now = _dt.datetime.now


class PayloadSink(Protocol):
    """Where the calls' payloads go: the store's :class:`~auditjournal.payloads.store.
    PayloadStore`, or the PostgreSQL writer's buffer (sent with the events' batch)."""

    def put(self, obj: Any, what: str = "payload") -> str: ...


class PipelineCalls:
    """Every method appends exactly one event or raises and appends nothing."""

    run_id: str
    _lock: threading.Lock
    _journal: JournalWriter
    _payloads: PayloadSink

    def _open_state(self) -> RunState:  # pragma: no cover - the recorder's
        raise NotImplementedError

    def _emit(self, event: BaseEvent) -> None:  # pragma: no cover - the recorder's
        raise NotImplementedError

    def _commit(self) -> None:  # pragma: no cover - the recorder's
        raise NotImplementedError

    @staticmethod
    def _hash(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

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
    ) -> str:
        """Register a plugin instance; returns its node id."""
        node_type = check_choice(node_type, NODE_TYPES, "node_type")
        determinism = check_choice(determinism, DETERMINISM, "determinism")
        plugin_name = check_text(plugin_name, "plugin_name")
        plugin_version = check_text(plugin_version, "plugin_version")
        config_bytes = b"{}" if config is None else json_object_bytes(config, "config")
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
                    node_id=node_id,
                    plugin_name=plugin_name,
                    plugin_version=plugin_version,
                    node_type=node_type,  # type: ignore[arg-type]
                    determinism=determinism,  # type: ignore[arg-type]
                    config=msgspec.json.decode(config_bytes),
                    config_hash=self._hash(config_bytes),
                    input_schema=in_schema,
                    output_schema=out_schema,
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
    ) -> str:
        """Connect two registered nodes; returns the edge id."""
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
        self, *, source_node_id: str, row_index: int, data: Any, row_id: str | None = None
    ) -> str:
        """Record a source row; its data goes to the payload store. Returns the row id."""
        row_index = check_count(row_index, "row_index")
        ref = self._payloads.put(data, "data")
        with self._lock:
            state = self._open_state()
            state.need(state.nodes, source_node_id, "node")
            row_id = state.new_id("row", row_id, state.rows)
            self._emit(
                RowCreated(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    row_id=row_id,
                    source_node_id=source_node_id,
                    row_index=row_index,
                    source_data_hash=ref,
                    source_data_ref=ref,
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
    ) -> str:
        """Create a token (a row instance on a path); returns its id."""
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
                    token_id=token_id,
                    row_id=row_id,
                    parent_token_ids=parent_token_ids,
                    branch_name=branch_name,
                    fork_group_id=fork_group_id,
                    join_group_id=join_group_id,
                    expand_group_id=expand_group_id,
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
        input_data: Any,
        attempt: int = 0,
        state_id: str | None = None,
    ) -> str:
        """A node starts processing a token; returns the state id."""
        step_index = check_count(step_index, "step_index")
        attempt = check_count(attempt, "attempt")
        ref = self._payloads.put(input_data, "input_data")
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
                    state_id=state_id,
                    token_id=token_id,
                    row_id=state.tokens[token_id],
                    node_id=node_id,
                    step_index=step_index,
                    attempt=attempt,
                    input_hash=ref,
                    input_data_ref=ref,
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
    ) -> None:
        """Finish a node state (completed / failed / pending); a state completes once."""
        status = check_choice(status, NODE_STATE_STATUSES, "node state status")
        duration = check_number(duration_ms, "duration_ms")
        ref = None if output_data is None else self._payloads.put(output_data, "output_data")
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
                    state_id=state_id,
                    status=status,  # type: ignore[arg-type]
                    output_hash=ref,
                    output_data_ref=ref,
                    duration_ms=duration,
                    error=error_value,
                    success_reason=reason_value,
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
    ) -> str:
        """A gate's decision for a state: which edge, and why. Returns its id."""
        mode = check_choice(mode, EDGE_MODES, "routing mode")
        ordinal = check_count(ordinal, "ordinal")
        routing_group_id = optional_id(routing_group_id, "routing_group_id")
        ref = None if reason is None else self._payloads.put(reason, "reason")
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
                    routing_event_id=routing_event_id,
                    state_id=state_id,
                    row_id=state.states.row_of(state_id),
                    edge_id=edge_id,
                    mode=mode,  # type: ignore[arg-type]
                    routing_group_id=routing_group_id or routing_event_id,
                    ordinal=ordinal,
                    reason_hash=ref,
                    reason_ref=ref,
                )
            )
        self._commit()
        return routing_event_id

    def record_call(
        self,
        *,
        call_type: str,
        status: str,
        request: Any,
        response: Any = None,
        latency_ms: float | None = None,
        error: dict[str, Any] | None = None,
        state_id: str | None = None,
        operation_id: str | None = None,
        call_index: int | None = None,
        call_id: str | None = None,
    ) -> str:
        """An external call made while processing a state (or an operation). Returns its id."""
        call_type = check_choice(call_type, CALL_TYPES, "call_type")
        status = check_choice(status, CALL_STATUSES, "call status")
        if (state_id is None) == (operation_id is None):
            raise InvalidEventError("record_call needs exactly one of state_id or operation_id")
        operation_id = optional_id(operation_id, "operation_id")
        latency = check_number(latency_ms, "latency_ms")
        if call_index is not None:
            call_index = check_count(call_index, "call_index")
        request_ref = self._payloads.put(request, "request")
        response_ref = None if response is None else self._payloads.put(response, "response")
        error_value = None if error is None else json_object(error, "error")
        with self._lock:
            state = self._open_state()
            if state_id is not None:
                state.need(state.states, state_id, "node state")
            index = state.next_call_index(state_id or operation_id or "", call_index)
            call_id = state.new_id("call", call_id, state.calls)
            self._emit(
                CallRecorded(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    call_id=call_id,
                    state_id=state_id,
                    row_id=None if state_id is None else state.states.row_of(state_id),
                    operation_id=operation_id,
                    call_index=index,
                    call_type=call_type,  # type: ignore[arg-type]
                    status=status,  # type: ignore[arg-type]
                    latency_ms=latency,
                    request_hash=request_ref,
                    request_ref=request_ref,
                    response_hash=response_ref,
                    response_ref=response_ref,
                    error=error_value,
                )
            )
        self._commit()
        return call_id

    # -- sinks and outcomes ------------------------------------------------------------

    def record_artifact(
        self,
        *,
        state_id: str,
        sink_node_id: str,
        artifact_type: str,
        path_or_uri: str,
        content_hash: str,
        size_bytes: int,
        sink_input: Any = None,
        artifact_id: str | None = None,
    ) -> str:
        """What a sink wrote; ``sink_input`` (the rows it got) goes to the payload store."""
        artifact_type = check_text(artifact_type, "artifact_type")
        path_or_uri = check_text(path_or_uri, "path_or_uri")
        content_hash = check_hash(content_hash, "content_hash")
        size_bytes = check_count(size_bytes, "size_bytes")
        ref = None if sink_input is None else self._payloads.put(sink_input, "sink_input")
        with self._lock:
            state = self._open_state()
            state.need(state.states, state_id, "node state")
            state.need(state.nodes, sink_node_id, "node")
            artifact_id = state.new_id("art", artifact_id, state.artifacts)
            self._emit(
                ArtifactRecorded(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    artifact_id=artifact_id,
                    state_id=state_id,
                    sink_node_id=sink_node_id,
                    artifact_type=artifact_type,
                    path_or_uri=path_or_uri,
                    content_hash=content_hash,
                    size_bytes=size_bytes,
                    sink_input_hash=ref,
                    sink_input_ref=ref,
                )
            )
        self._commit()
        return artifact_id

    def record_token_outcome(
        self,
        *,
        token_id: str,
        outcome: str,
        sink_name: str | None = None,
        error: Any = None,
        context: dict[str, Any] | None = None,
        outcome_id: str | None = None,
    ) -> str:
        """The terminal state of a token; a token gets one terminal outcome."""
        outcome = check_choice(outcome, TOKEN_OUTCOMES, "token outcome")
        if sink_name is not None:
            sink_name = check_text(sink_name, "sink_name")
        error_ref = None if error is None else self._payloads.put(error, "error")
        context_value = None if context is None else json_object(context, "context")
        with self._lock:
            state = self._open_state()
            state.need(state.tokens, token_id, "token")
            if outcome != "buffered" and token_id in state.finished_tokens:
                raise LifecycleError(f"token {token_id!r} already has a terminal outcome")
            outcome_id = state.new_id("out", outcome_id, state.outcomes)
            self._emit(
                TokenOutcomeRecorded(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    outcome_id=outcome_id,
                    token_id=token_id,
                    row_id=state.tokens[token_id],
                    outcome=outcome,  # type: ignore[arg-type]
                    sink_name=sink_name,
                    error_hash=error_ref,
                    context=context_value,
                )
            )
        self._commit()
        return outcome_id
