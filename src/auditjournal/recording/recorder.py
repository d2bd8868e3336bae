"""The write side's front door: :class:`AuditStore` and :class:`RunRecorder`.

A pipeline calls a :class:`RunRecorder`; each call validates the run's
lifecycle, stores big data in the payload store, and appends one immutable
event to the run's journal. Every argument is checked first (:mod:`arguments`:
its declared type, and what the export and every verifier can carry); a
rejected call raises a typed error naming the argument and appends nothing,
so nothing recorded before it is lost. The one exception is a write that fails
after the event took its seq (``always`` durability, ``complete()``): the
error's ``recorded_event`` then names the event, recorded but not yet durable
(docs/durability.md, "Disk full").

Thread-safety: one ``RunRecorder`` may be shared by several threads. Payloads
are canonicalized and stored outside the run's lock; validation, seq
assignment and the append happen under it, so events are totally ordered
and validated against everything before them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import socket
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import msgspec

from ..errors import (
    DatabaseError,
    ExportError,
    InvalidEventError,
    LifecycleError,
    RunAlreadyCompletedError,
    StateAlreadyCompletedError,
    StorageError,
)
from ..journal.files import Journal
from ..model.events import (
    CALL_STATUSES,
    CALL_TYPES,
    DETERMINISM,
    EDGE_MODES,
    EXPORT_EVENT_TYPES,
    NODE_STATE_STATUSES,
    NODE_TYPES,
    PAYLOAD_POLICIES,
    REPRODUCIBILITY_GRADES,
    RUN_STATUSES,
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
    RunCompleted,
    RunInterrupted,
    RunResumed,
    RunStarted,
    TokenCreated,
    TokenOutcomeRecorded,
)
from ..projection.live import THROTTLE_EVERY, LiveProjectors
from .arguments import (
    check_choice,
    check_count,
    check_hash,
    check_number,
    check_sequence,
    check_text,
    check_time,
    json_object,
    json_object_bytes,
    json_schema,
    json_value,
    optional_id,
    shown,
)
from .landscape import MISSING, LandscapeMethods
from .runstate import RunState

if TYPE_CHECKING:
    from ..export.projector import SealResult
    from .store import AuditStore

__all__ = ["RunRecorder"]

_UTC = _dt.UTC
_now = _dt.datetime.now


class RunRecorder(LandscapeMethods):
    """Records one run. Every method appends exactly one event or raises and appends nothing."""

    def __init__(self, store: AuditStore, run_id: str, journal: Journal, state: RunState) -> None:
        self.store = store
        self.export_result: SealResult | None = None
        """Set when the live export was sealed."""
        self.live = LiveProjectors()
        """The run's in-process projectors (live export, live SQL tables), if any."""
        self.run_id = run_id
        self.recovery = journal.recovery
        self._journal = journal
        self._lock = journal.lock
        self._payloads = store.payloads
        self._state = state
        self._always = journal.durability == "always"
        self._closed = False
        self._until_throttle = THROTTLE_EVERY
        self._unsynced = threading.local()  # always: this thread's event awaiting its fsync
        self._completion: RunCompleted | None = None  # run_completed, once appended here
        self._finished = False  # complete() went through to the end

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

    def record_call(
        self,
        *,
        call_type: str,
        status: str,
        request: Any = MISSING,
        response: Any = None,
        latency_ms: float | None = None,
        error: dict[str, Any] | None = None,
        state_id: str | None = None,
        operation_id: str | None = None,
        call_index: int | None = None,
        call_id: str | None = None,
        request_ref: str | None = None,
        request_hash: str | None = None,
        response_ref: str | None = None,
        response_hash: str | None = None,
        secret_fields: list[str] | tuple[str, ...] = (),
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """An external call made while processing a state (or an operation). Returns its id."""
        when = check_time(occurred_at)
        call_type = check_choice(call_type, CALL_TYPES, "call_type")
        status = check_choice(status, CALL_STATUSES, "call status")
        if (state_id is None) == (operation_id is None):
            raise InvalidEventError("record_call needs exactly one of state_id or operation_id")
        operation_id = optional_id(operation_id, "operation_id")
        latency = check_number(latency_ms, "latency_ms")
        if call_index is not None:
            call_index = check_count(call_index, "call_index")
        secret = self.store.secret_filter
        extra = check_sequence(secret_fields, "secret_fields")
        redacted: tuple[str, ...] = ()
        if request is not MISSING:
            request, paths = secret.filter(request, extra)
            redacted += ("request",) if paths else ()
        if response is not None:
            response, paths = secret.filter(response, extra)
            redacted += ("response",) if paths else ()
        if error is not None:
            error, paths = secret.filter(error, extra)
            redacted += ("error",) if paths else ()
        request_digest, request_kept = self._slot("request", request, request_ref, request_hash)
        if request_digest is None:
            raise InvalidEventError("record_call needs request, request_ref or request_hash")
        response_digest, response_kept = self._slot(
            "response", MISSING if response is None else response, response_ref, response_hash
        )
        error_value = None if error is None else json_object(error, "error")
        with self._lock:
            state = self._open_state()
            if state_id is not None:
                state.need(state.states, state_id, "node state")
            else:
                state.need(state.operations, operation_id or "", "operation")
            index = state.next_call_index(state_id or operation_id or "", call_index)
            call_id = state.new_id("call", call_id, state.calls)
            self._emit(
                CallRecorded(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    occurred_at=when,
                    call_id=call_id,
                    state_id=state_id,
                    row_id=None if state_id is None else state.states.row_of(state_id),
                    operation_id=operation_id,
                    call_index=index,
                    call_type=call_type,  # type: ignore[arg-type]
                    status=status,  # type: ignore[arg-type]
                    latency_ms=latency,
                    request_hash=request_digest,
                    request_ref=request_digest,
                    request_retained=request_kept is not None,
                    response_hash=response_digest,
                    response_ref=response_kept,
                    error=error_value,
                    redacted=redacted,
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
        sink_input_ref: str | None = None,
        sink_input_hash: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """What a sink wrote; ``sink_input`` (the rows it got) goes to the payload store."""
        when = check_time(occurred_at)
        artifact_type = check_text(artifact_type, "artifact_type")
        path_or_uri = check_text(path_or_uri, "path_or_uri")
        content_hash = check_hash(content_hash, "content_hash")
        size_bytes = check_count(size_bytes, "size_bytes")
        digest, ref = self._slot(
            "sink_input", MISSING if sink_input is None else sink_input, sink_input_ref,
            sink_input_hash,
        )  # fmt: skip
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
                    occurred_at=when,
                    artifact_id=artifact_id,
                    state_id=state_id,
                    sink_node_id=sink_node_id,
                    artifact_type=artifact_type,
                    path_or_uri=path_or_uri,
                    content_hash=content_hash,
                    size_bytes=size_bytes,
                    sink_input_hash=digest,
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
        batch_id: str | None = None,
        fork_group_id: str | None = None,
        join_group_id: str | None = None,
        expand_group_id: str | None = None,
        expected_branches: list[Any] | dict[str, Any] | None = None,
        error_hash: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """The state of a token (one terminal outcome; ``buffered`` is not terminal).

        ``batch_id`` must name a recorded batch; the group ids say which fork, join or
        expansion the outcome belongs to; ``expected_branches`` is any JSON list or
        object (``["a", "b"]``, ``{"count": 3}``). ``error`` is stored as a payload
        whose ref becomes ``error_hash``; ``error_hash`` alone records a hash of an
        error kept elsewhere (opaque text, as the pipeline computed it).
        """
        when = check_time(occurred_at)
        fork_group_id = optional_id(fork_group_id, "fork_group_id")
        join_group_id = optional_id(join_group_id, "join_group_id")
        expand_group_id = optional_id(expand_group_id, "expand_group_id")
        branches = json_value(expected_branches, "expected_branches")
        if error_hash is not None:
            error_hash = check_text(error_hash, "error_hash")
            if error is not None:
                raise InvalidEventError("record_token_outcome takes error or error_hash, not both")
        outcome = check_choice(outcome, TOKEN_OUTCOMES, "token outcome")
        if sink_name is not None:
            sink_name = check_text(sink_name, "sink_name")
        error_ref = None if error is None else self._payloads.put(error, "error")
        context_value = None if context is None else json_object(context, "context")
        with self._lock:
            state = self._open_state()
            state.need(state.tokens, token_id, "token")
            if batch_id is not None:
                state.need(state.batches, batch_id, "batch")
            if outcome != "buffered" and token_id in state.finished_tokens:
                raise LifecycleError(f"token {token_id!r} already has a terminal outcome")
            outcome_id = state.new_id("out", outcome_id, state.outcomes)
            self._emit(
                TokenOutcomeRecorded(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    occurred_at=when,
                    outcome_id=outcome_id,
                    token_id=token_id,
                    row_id=state.tokens[token_id],
                    outcome=outcome,  # type: ignore[arg-type]
                    sink_name=sink_name,
                    error_hash=error_ref or error_hash,
                    context=context_value,
                    batch_id=batch_id,
                    fork_group_id=fork_group_id,
                    join_group_id=join_group_id,
                    expand_group_id=expand_group_id,
                    expected_branches=branches,
                )
            )
        self._commit()
        return outcome_id

    # -- ending ------------------------------------------------------------------------

    def complete(
        self,
        status: str = "completed",
        *,
        error: dict[str, Any] | None = None,
        reproducibility_grade: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> None:
        """Append ``run_completed``; afterwards only export events are accepted.

        ``reproducibility_grade`` (``full_reproducible``, ``replay_reproducible``,
        ``attributable_only``) is recorded as given (None: not graded).

        With a live export, waits until it is sealed and appends ``export_sealed``
        (or ``export_failed``, then raises :class:`ExportError`). With live SQL
        tables, then waits until they hold every event (:class:`DatabaseError`
        if their projection failed; the journal is complete either way).

        A :class:`StorageError` (say :class:`DiskFullError`: the journal or the
        live export could not be written) leaves the run to be finished: call
        ``complete()`` again with the same status once there is room. It goes on
        where it stopped (writes ``run_completed``, seals the export, records
        ``export_sealed``) and records nothing twice. The error's
        ``recorded_event`` is the ``run_completed`` event, or ``None`` if the call
        was refused before recording it.
        """
        status = check_choice(status, RUN_STATUSES, "run status")
        error_value = None if error is None else json_object(error, "error")
        when = check_time(occurred_at)
        if reproducibility_grade is not None:
            reproducibility_grade = check_choice(
                reproducibility_grade, REPRODUCIBILITY_GRADES, "reproducibility_grade"
            )
        with self._lock:
            if self._completion is not None:
                self._check_retry(status, error_value)
            else:
                self._open_state()
                completion = RunCompleted(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    occurred_at=when,
                    status=status,  # type: ignore[arg-type]
                    error=error_value,
                    reproducibility_grade=reproducibility_grade,  # type: ignore[arg-type]
                )
                self._emit(completion)
                self._completion = completion
        self._finish_completion(self._completion)

    def _check_retry(self, status: str, error: Any) -> None:
        """complete() again after it failed: only to finish the same run_completed."""
        completion = self._completion
        assert completion is not None
        if self._finished or self._closed:
            raise RunAlreadyCompletedError(
                f"run {self.run_id!r} has completed; only export events may follow"
            )
        if status != completion.status or (error is not None and error != completion.error):
            raise RunAlreadyCompletedError(
                f"run {self.run_id!r} already recorded run_completed with status "
                f"{completion.status!r}; call complete({completion.status!r}) to finish it"
            )

    def _finish_completion(self, completion: RunCompleted | None) -> None:
        """Write run_completed, seal the live export and record it, wait for the SQL tables.
        A StorageError leaves it to a later complete(); any other error ends it."""
        assert completion is not None
        try:
            self._journal.flush(fsync=self._journal.durability != "none")
            self.export_result = self.live.finish(
                self.run_id, self.append_export_event, lambda: self._journal.last_seq
            )
        except StorageError as exc:
            error = type(exc)(
                f"{exc} [run_completed (seq {completion.seq}) is recorded; call "
                f"complete({completion.status!r}) again once there is room, to finish the run]"
            )
            error.recorded_event = completion
            raise error from exc
        except BaseException:
            self._finished = True
            raise
        self._finished = True

    @property
    def completed(self) -> bool:
        return self._state.completed

    @property
    def last_seq(self) -> int:
        return self._journal.last_seq

    def append_export_event(self, event: BaseEvent) -> BaseEvent:
        """Append an export event (only these are accepted after ``run_completed``)."""
        if type(event) not in EXPORT_EVENT_TYPES:
            raise InvalidEventError(f"{type(event).__name__} is not an export event")
        with self._lock:
            if self._closed:
                raise RunAlreadyCompletedError(f"recorder of run {self.run_id!r} is closed")
            if not self._state.completed:
                raise LifecycleError(
                    f"run {self.run_id!r} has not completed; export events come after run_completed"
                )
            event = msgspec.structs.replace(
                event, run_id=self.run_id, seq=self._journal.next_seq, ts=_now(_UTC)
            )
            self._emit(event)
        try:
            self._journal.flush(fsync=self._journal.durability != "none")
        except StorageError as exc:
            raise _not_durable(exc, event) from exc
        return event

    def close(self) -> None:
        """Write and fsync what is buffered and release the journal (the run stays as it is).

        If the journal cannot be written (a full disk) this raises and the recorder
        stays open with everything buffered: close (or complete) it again once
        there is room.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._journal.close()
        except BaseException:
            with self._lock:
                self._closed = False
            raise
        self.live.stop()  # an unfinished run: the projectors stay resumable
        if self in self.store._recorders:
            self.store._recorders.remove(self)

    def _abandon(self) -> None:
        """Let go of everything without writing what is still buffered (a failed start)."""
        with self._lock:
            self._closed = True
        self.live.stop()
        self._journal.abandon()
        if self in self.store._recorders:
            self.store._recorders.remove(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._state.completed and not self._closed:
                if exc is None:
                    self.complete("completed")
                else:
                    status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                    # a lone surrogate (a file name decoded with surrogateescape, say) has no
                    # UTF-8 form: escaped, so that the failure itself can be recorded
                    message = str(exc)[:2000].encode("utf-8", "backslashreplace").decode()
                    # an export failure is recorded as export_failed; the body's error is the news
                    with contextlib.suppress(ExportError, DatabaseError):
                        self.complete(
                            status, error={"type": type(exc).__name__, "message": message}
                        )
        except StorageError:
            raise  # the recorder stays open: complete() again once there is room, then close()
        except BaseException:
            self.close()
            raise
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _emit_run_started(
        self,
        config_bytes: bytes,
        settings: dict[str, Any],
        occurred_at: _dt.datetime | None = None,
        config_hash: str | None = None,
        redacted: tuple[str, ...] = (),
    ) -> None:
        with self._lock:
            self._emit(
                RunStarted(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    occurred_at=occurred_at,
                    config=msgspec.json.decode(config_bytes),
                    config_hash=config_hash or self._hash(config_bytes),
                    settings=settings,
                    redacted=redacted,
                )
            )
        self._commit()

    def _emit_resumed(self, reason: str) -> None:
        """A new writer takes over a stopped run (``store.resume_run``)."""
        with self._lock:
            self._open_state()
            last = self._journal.last_seq
            self._emit(
                RunInterrupted(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    last_seq=last,
                    bytes_dropped=0 if self.recovery is None else self.recovery.bytes_dropped,
                    reason=reason,
                )
            )
            self._emit(
                RunResumed(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    writer={"host": socket.gethostname(), "pid": os.getpid()},
                )
            )
        self._journal.flush(fsync=self._journal.durability != "none")

    def _filtered_config(
        self, config: object, given_hash: object, secret_fields: object, what: str = "config"
    ) -> tuple[bytes, str, tuple[str, ...]]:
        """(canonical bytes of the filtered config, its config_hash, redacted slots)."""
        extra = check_sequence(secret_fields, "secret_fields")
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise InvalidEventError(
                f"{what} must be a JSON object (a dict with str keys), got {shown(config)}"
            )
        filtered, paths = self.store.secret_filter.filter(config, extra)
        data = json_object_bytes(filtered, what)
        digest = self._hash(data)
        if given_hash is None:
            return data, digest, (what,) if paths else ()
        given = check_text(given_hash, "config_hash")
        if not paths and given != digest:
            raise InvalidEventError(
                f"config_hash {given!r} is not the hash of this {what} ({digest}); "
                "give the hash of its canonical JSON, or none"
            )
        return data, given, (what,) if paths else ()

    def _open_state(self) -> RunState:
        """The run's state, if it still accepts events (caller holds the lock)."""
        if self._state.completed:
            raise RunAlreadyCompletedError(
                f"run {self.run_id!r} has completed; only export events may follow"
            )
        if self._closed:
            raise RunAlreadyCompletedError(f"recorder of run {self.run_id!r} is closed")
        return self._state

    def _emit(self, event: BaseEvent) -> None:
        """Append and apply (caller holds the lock and has validated)."""
        self._journal.append(event)
        self._state.apply(event)
        if self._always:
            self._unsynced.event = event

    def _commit(self) -> None:
        """After an append: under ``always`` make it durable (a failure: recorded, not yet
        durable); else write a big buffer behind (a failure refuses the next call)."""
        journal = self._journal
        if self._always:
            event = self._unsynced.event
            try:
                journal.commit(event.seq)
            except StorageError as exc:
                raise _not_durable(exc, event) from exc
        elif journal.needs_flush:
            journal.write_behind()
        self._until_throttle -= 1
        if not self._until_throttle:
            self._until_throttle = THROTTLE_EVERY
            self.live.throttle(journal)

    @staticmethod
    def _hash(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def __repr__(self) -> str:
        return f"RunRecorder(run_id={self.run_id!r}, last_seq={self._journal.last_seq})"

    @property
    def known_ids(self) -> dict[str, int]:
        """How many ids of each kind the run has (for diagnostics)."""
        return self._state.counts()


def _not_durable(exc: StorageError, event: BaseEvent) -> StorageError:
    """``exc`` for a call whose ``event`` is in the journal but could not be written."""
    error = type(exc)(
        f"{exc} (seq {event.seq}, {type(event).__name__}, is recorded but not yet durable: "
        "it is written by the next flush that succeeds; do not record it again)"
    )
    error.recorded_event = event
    return error
