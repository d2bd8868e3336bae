"""The calls that record what a pipeline's nodes did outside it and what became of each
token: external calls (requests and responses pass the secret filter), sink artifacts and
token outcomes. A part of :class:`~.recorder.RunRecorder`, as :mod:`.calls`.

Thread-safety: as :class:`~.recorder.RunRecorder`.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from ..errors import (
    InvalidEventError,
    LifecycleError,
)
from ..model.events import (
    CALL_STATUSES,
    CALL_TYPES,
    TOKEN_OUTCOMES,
    ArtifactRecorded,
    CallRecorded,
    TokenOutcomeRecorded,
)
from .arguments import (
    check_choice,
    check_count,
    check_hash,
    check_names,
    check_number,
    check_text,
    check_time,
    json_object,
    json_value,
    optional_id,
)
from .callbase import MISSING, CallBase, text_or_none

__all__ = ["OutcomeCalls"]

_UTC = _dt.UTC
_now = _dt.datetime.now


class OutcomeCalls(CallBase):
    """External calls, artifacts, token outcomes: each appends one event or raises."""

    # -- calls, sinks and outcomes ----------------------------------------------------

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
        secret = self._secrets
        extra = check_names(secret_fields, "secret_fields")
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
        idempotency_key: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """What a sink wrote; ``sink_input`` (the rows it got) goes to the payload store.
        ``idempotency_key``: the sink's key for writing it once, if it has one."""
        when = check_time(occurred_at)
        idempotency_key = text_or_none(idempotency_key, "idempotency_key")
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
                    idempotency_key=idempotency_key,
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
