"""Recorder calls for source loads and sink writes (operations) and aggregation batches
(issue 14's Landscape model). A part of :class:`~.recorder.RunRecorder`: every method
checks all its arguments first, then validates the run's lifecycle under the run's lock
and appends exactly one event, or raises a typed error and appends nothing.

Thread-safety: as :class:`~.recorder.RunRecorder`.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Final

from ..errors import (
    BatchAlreadyCompletedError,
    DuplicateIdError,
    InvalidEventError,
    OperationAlreadyCompletedError,
)
from ..model.events import (
    BATCH_OUTPUT_TYPES,
    BATCH_STATUSES,
    OPERATION_STATUSES,
    OPERATION_TYPES,
    TRIGGER_TYPES,
    BatchCreated,
    BatchMemberAdded,
    BatchOutputRecorded,
    BatchUpdated,
    OperationCompleted,
    OperationStarted,
)
from .arguments import (
    check_choice,
    check_count,
    check_number,
    check_time,
)
from .callbase import MISSING, CallBase, text_or_none

__all__ = ["OperationCalls"]

_UTC = _dt.UTC
_now = _dt.datetime.now

_FINISHED_BATCH: Final = frozenset({"completed", "failed"})


class OperationCalls(CallBase):
    """Operations and batches (a mixin of RunRecorder)."""

    # -- operations --------------------------------------------------------------------

    def begin_operation(
        self,
        *,
        node_id: str,
        operation_type: str,
        input_data: Any = MISSING,
        input_data_ref: str | None = None,
        input_hash: str | None = None,
        operation_id: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """A source starts loading (``source_load``) or a sink starts writing
        (``sink_write``); calls may then name it. Returns the operation id."""
        when = check_time(occurred_at)
        operation_type = check_choice(operation_type, OPERATION_TYPES, "operation_type")
        if input_data is not MISSING:  # a source's options may hold credentials
            input_data, _ = self._secrets.filter(input_data)
        in_hash, in_ref = self._slot("input_data", input_data, input_data_ref, input_hash)
        with self._lock:
            state = self._open_state()
            state.need(state.nodes, node_id, "node")
            wanted = "source" if operation_type == "source_load" else "sink"
            if state.nodes[node_id] != wanted:
                raise InvalidEventError(
                    f"a {operation_type} operation belongs to a {wanted} node; "
                    f"{node_id!r} is a {state.nodes[node_id]}"
                )
            operation_id = state.new_id("op", operation_id, state.operations)
            self._emit(
                OperationStarted(
                    **self._base(when),
                    operation_id=operation_id,
                    node_id=node_id,
                    operation_type=operation_type,  # type: ignore[arg-type]
                    input_hash=in_hash,
                    input_data_ref=in_ref,
                )
            )
        self._commit()
        return operation_id

    def complete_operation(
        self,
        operation_id: str,
        *,
        status: str,
        output_data: Any = MISSING,
        output_data_ref: str | None = None,
        output_hash: str | None = None,
        error_message: str | None = None,
        duration_ms: float | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> None:
        """End an operation (completed / failed / pending); an operation completes once."""
        when = check_time(occurred_at)
        status = check_choice(status, OPERATION_STATUSES, "operation status")
        error_message = text_or_none(error_message, "error_message")
        duration = check_number(duration_ms, "duration_ms")
        if output_data is not MISSING:
            output_data, _ = self._secrets.filter(output_data)
        out_hash, out_ref = self._slot("output_data", output_data, output_data_ref, output_hash)
        with self._lock:
            state = self._open_state()
            state.need(state.operations, operation_id, "operation")
            if operation_id in state.closed_operations:
                raise OperationAlreadyCompletedError(
                    f"operation {operation_id!r} is already completed"
                )
            self._emit(
                OperationCompleted(
                    **self._base(when),
                    operation_id=operation_id,
                    status=status,  # type: ignore[arg-type]
                    output_hash=out_hash,
                    output_data_ref=out_ref,
                    error_message=error_message,
                    duration_ms=duration,
                )
            )
        self._commit()

    # -- batches -----------------------------------------------------------------------

    def create_batch(
        self,
        *,
        aggregation_node_id: str,
        attempt: int = 0,
        batch_id: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """An aggregation node opens a batch (status ``draft``); returns its id."""
        when = check_time(occurred_at)
        attempt = check_count(attempt, "attempt")
        with self._lock:
            state = self._open_state()
            state.need(state.nodes, aggregation_node_id, "node")
            batch_id = state.new_id("batch", batch_id, state.batches)
            self._emit(
                BatchCreated(
                    **self._base(when),
                    batch_id=batch_id,
                    aggregation_node_id=aggregation_node_id,
                    attempt=attempt,
                )
            )
        self._commit()
        return batch_id

    def add_batch_member(
        self,
        *,
        batch_id: str,
        token_id: str,
        ordinal: int | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> int:
        """A token is consumed into a batch; returns its ordinal (None: the next one)."""
        when = check_time(occurred_at)
        if ordinal is not None:
            ordinal = check_count(ordinal, "ordinal")
        with self._lock:
            state = self._open_state()
            state.need(state.batches, batch_id, "batch")
            state.need(state.tokens, token_id, "token")
            self._batch_open(batch_id)
            ordinals = state.batch_ordinals[batch_id]
            if token_id in state.batch_members[batch_id]:
                raise DuplicateIdError(f"token {token_id!r} is already in batch {batch_id!r}")
            if ordinal is None:
                ordinal = max(ordinals, default=-1) + 1
            elif ordinal in ordinals:
                raise DuplicateIdError(f"ordinal {ordinal} is already used in batch {batch_id!r}")
            self._emit(
                BatchMemberAdded(
                    **self._base(when),
                    batch_id=batch_id,
                    token_id=token_id,
                    row_id=state.tokens[token_id],
                    ordinal=ordinal,
                )
            )
        self._commit()
        return ordinal

    def update_batch(
        self,
        batch_id: str,
        *,
        status: str,
        trigger_type: str | None = None,
        trigger_reason: str | None = None,
        aggregation_state_id: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> None:
        """A batch changes status (``executing``, ``completed``, ``failed``); after a
        ``completed`` or ``failed`` it takes no members and no other status."""
        when = check_time(occurred_at)
        status = check_choice(status, BATCH_STATUSES, "batch status")
        if trigger_type is not None:
            trigger_type = check_choice(trigger_type, TRIGGER_TYPES, "trigger_type")
        trigger_reason = text_or_none(trigger_reason, "trigger_reason")
        with self._lock:
            state = self._open_state()
            state.need(state.batches, batch_id, "batch")
            if aggregation_state_id is not None:
                state.need(state.states, aggregation_state_id, "node state")
            self._batch_open(batch_id)
            self._emit(
                BatchUpdated(
                    **self._base(when),
                    batch_id=batch_id,
                    status=status,  # type: ignore[arg-type]
                    trigger_type=trigger_type,  # type: ignore[arg-type]
                    trigger_reason=trigger_reason,
                    aggregation_state_id=aggregation_state_id,
                )
            )
        self._commit()

    def record_batch_output(
        self,
        *,
        batch_id: str,
        output_type: str,
        output_id: str,
        batch_output_id: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """What a batch produced: a token or an artifact of this run. Returns its id."""
        when = check_time(occurred_at)
        output_type = check_choice(output_type, BATCH_OUTPUT_TYPES, "output_type")
        with self._lock:
            state = self._open_state()
            state.need(state.batches, batch_id, "batch")
            known = state.tokens if output_type == "token" else state.artifacts
            state.need(known, output_id, output_type)
            batch_output_id = state.new_id("bout", batch_output_id, state.batch_outputs)
            self._emit(
                BatchOutputRecorded(
                    **self._base(when),
                    batch_output_id=batch_output_id,
                    batch_id=batch_id,
                    output_type=output_type,  # type: ignore[arg-type]
                    output_id=output_id,
                )
            )
        self._commit()
        return batch_output_id

    def _batch_open(self, batch_id: str) -> None:
        status = self._open_state().batches[batch_id]
        if status in _FINISHED_BATCH:
            raise BatchAlreadyCompletedError(f"batch {batch_id!r} is already {status}")

    # -- rejected rows -----------------------------------------------------------------
