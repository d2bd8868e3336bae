"""Recorder methods for the rest of the Landscape model (issue 14).

Source loads and sink writes (operations), aggregation batches, rows rejected at
validation, transform errors, checkpoints, secret resolutions, preflight results,
field resolution and schema contracts. :class:`LandscapeMethods` is a mixin of
:class:`~auditjournal.recording.recorder.RunRecorder`: every method checks all its
arguments first, then validates the run's lifecycle under the run's lock and
appends exactly one event, or raises a typed error and appends nothing.

Payload slots (an operation's input/output, a rejected row's data, a checkpoint's
states) take one of three forms: the data (stored, ``*_hash`` = ``*_ref``), a
``*_ref`` already in the store, or a ``*_hash`` alone (the data was not retained).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from typing import TYPE_CHECKING, Any, Final

from ..errors import (
    BatchAlreadyCompletedError,
    CanonicalizationError,
    DuplicateIdError,
    InvalidEventError,
    LifecycleError,
    OperationAlreadyCompletedError,
    PayloadNotFoundError,
)
from ..model.canonical import canonical_json
from ..model.events import (
    BATCH_OUTPUT_TYPES,
    BATCH_STATUSES,
    CONTRACT_ROLES,
    OPERATION_STATUSES,
    OPERATION_TYPES,
    PREFLIGHT_RESULT_TYPES,
    TRIGGER_TYPES,
    BaseEvent,
    BatchCreated,
    BatchMemberAdded,
    BatchOutputRecorded,
    BatchUpdated,
    CheckpointRecorded,
    FieldResolutionRecorded,
    OperationCompleted,
    OperationStarted,
    PreflightResultRecorded,
    SchemaContractRecorded,
    SecretResolutionRecorded,
    TransformErrorRecorded,
    ValidationErrorRecorded,
)
from .arguments import (
    canonical_value,
    check_choice,
    check_count,
    check_hash,
    check_number,
    check_text,
    check_time,
    json_object,
    shown,
)

if TYPE_CHECKING:
    from ..journal.files import Journal
    from ..payloads.store import PayloadStore
    from .runstate import RunState
    from .store import AuditStore

__all__ = ["MISSING", "LandscapeMethods"]

_UTC = _dt.UTC
_now = _dt.datetime.now


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final[Any] = _Missing()
"""No data given for a payload slot (``None`` is data: JSON null)."""

_FINISHED_BATCH: Final = frozenset({"completed", "failed"})
_STAND_IN_REPR: Final = 10_000


def _text_or_none(value: object, what: str) -> str | None:
    return None if value is None else check_text(value, what)


class LandscapeMethods:
    """Operations, batches, errors, checkpoints and run-level facts (mixin of RunRecorder)."""

    run_id: str
    store: AuditStore
    _journal: Journal
    _lock: Any
    _payloads: PayloadStore

    if TYPE_CHECKING:

        def _open_state(self) -> RunState: ...
        def _emit(self, event: BaseEvent) -> None: ...
        def _commit(self) -> None: ...

    # -- payload slots -----------------------------------------------------------------

    def _slot(
        self,
        what: str,
        data: Any,
        ref: object,
        hash_: object,
        *,
        names: tuple[str, str] | None = None,
        hash_only: bool = False,
    ) -> tuple[str | None, str | None]:
        """(hash, ref) of a payload slot given as data, as a stored ref, or as a hash only
        (ref None). ``hash_only``: data is hashed, not stored (a node's payload policy)."""
        ref_name, hash_name = names or (f"{what}_ref", f"{what}_hash")
        given = (data is not MISSING) + (ref is not None) + (hash_ is not None)
        if given > 1:
            raise InvalidEventError(
                f"{what}: give the data, {ref_name} or {hash_name}, not more than one"
            )
        if data is not MISSING:
            if hash_only:
                return hashlib.sha256(canonical_value(data, what)).hexdigest(), None
            stored = self._payloads.put(data, what)
            return stored, stored
        if ref is not None:
            ref = check_hash(ref, ref_name)
            if ref not in self._payloads:
                raise PayloadNotFoundError(f"{ref_name} {ref} is not in this store's payloads")
            return ref, ref
        if hash_ is not None:
            return check_hash(hash_, hash_name), None
        return None, None

    def _rejected_data(self, data: Any, ref: object, hash_: object) -> tuple[str, str | None, bool]:
        """(row_hash, row_data_ref, canonical) of a rejected row's data. Data with no
        canonical form (NaN, a set, ...) is stored as a stand-in: its repr and the reason."""
        canonical = True
        if data is not MISSING and ref is None:
            try:
                canonical_json(data)
            except (CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
                canonical = False
                data = {"__repr__": repr(data)[:_STAND_IN_REPR], "__error__": str(exc)[:500]}
        if data is not MISSING and hash_ is not None:  # the pipeline's own hash of the data
            row_hash = check_hash(hash_, "row_hash")
            stored, _ = self._slot("row_data", data, None, None)
            return row_hash, stored, canonical
        digest, stored = self._slot("row_data", data, ref, hash_)
        if digest is None:
            raise InvalidEventError("a rejected row needs its data, row_data_ref or row_hash")
        return digest, stored, canonical

    def _base(self, occurred_at: _dt.datetime | None) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seq": self._journal.next_seq,
            "ts": _now(_UTC),
            "occurred_at": occurred_at,
        }

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
        error_message = _text_or_none(error_message, "error_message")
        duration = check_number(duration_ms, "duration_ms")
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
        trigger_reason = _text_or_none(trigger_reason, "trigger_reason")
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

    def record_validation_error(
        self,
        *,
        error: str,
        schema_mode: str,
        destination: str,
        data: Any = MISSING,
        row_data_ref: str | None = None,
        row_hash: str | None = None,
        node_id: str | None = None,
        row_id: str | None = None,
        violation_type: str | None = None,
        original_field_name: str | None = None,
        normalized_field_name: str | None = None,
        expected_type: str | None = None,
        actual_type: str | None = None,
        validation_error_id: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """A row rejected at source validation: its data (kept even when it has no
        canonical form, as a stand-in), the schema mode, the error and where it was
        sent (a sink name or ``discard``). Returns the validation error id."""
        when = check_time(occurred_at)
        error = check_text(error, "error")
        schema_mode = check_text(schema_mode, "schema_mode")
        destination = check_text(destination, "destination")
        violation_type = _text_or_none(violation_type, "violation_type")
        original_field_name = _text_or_none(original_field_name, "original_field_name")
        normalized_field_name = _text_or_none(normalized_field_name, "normalized_field_name")
        expected_type = _text_or_none(expected_type, "expected_type")
        actual_type = _text_or_none(actual_type, "actual_type")
        row_digest, ref, canonical = self._rejected_data(data, row_data_ref, row_hash)
        with self._lock:
            state = self._open_state()
            if node_id is not None:
                state.need(state.nodes, node_id, "node")
            if row_id is not None:
                state.need(state.rows, row_id, "row")
            validation_error_id = state.new_id("verr", validation_error_id, state.validation_errors)
            self._emit(
                ValidationErrorRecorded(
                    **self._base(when),
                    validation_error_id=validation_error_id,
                    node_id=node_id,
                    row_id=row_id,
                    row_hash=row_digest,
                    row_data_ref=ref,
                    row_data_canonical=canonical,
                    error=error,
                    schema_mode=schema_mode,
                    destination=destination,
                    violation_type=violation_type,
                    original_field_name=original_field_name,
                    normalized_field_name=normalized_field_name,
                    expected_type=expected_type,
                    actual_type=actual_type,
                )
            )
        self._commit()
        return validation_error_id

    def record_transform_error(
        self,
        *,
        token_id: str,
        node_id: str,
        destination: str,
        data: Any = MISSING,
        row_data_ref: str | None = None,
        row_hash: str | None = None,
        error_details: dict[str, Any] | None = None,
        state_id: str | None = None,
        transform_error_id: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """A node's error for a token, with the token's data and where it was sent."""
        when = check_time(occurred_at)
        destination = check_text(destination, "destination")
        details = None if error_details is None else json_object(error_details, "error_details")
        row_digest, ref, canonical = self._rejected_data(data, row_data_ref, row_hash)
        with self._lock:
            state = self._open_state()
            state.need(state.tokens, token_id, "token")
            state.need(state.nodes, node_id, "node")
            if state_id is not None:
                state.need(state.states, state_id, "node state")
            transform_error_id = state.new_id("terr", transform_error_id, state.transform_errors)
            self._emit(
                TransformErrorRecorded(
                    **self._base(when),
                    transform_error_id=transform_error_id,
                    token_id=token_id,
                    row_id=state.tokens[token_id],
                    node_id=node_id,
                    state_id=state_id,
                    row_hash=row_digest,
                    row_data_ref=ref,
                    row_data_canonical=canonical,
                    error_details=details,
                    destination=destination,
                )
            )
        self._commit()
        return transform_error_id

    # -- checkpoints -------------------------------------------------------------------

    def record_checkpoint(
        self,
        *,
        token_id: str,
        node_id: str,
        sequence_number: int,
        upstream_topology_hash: str,
        node_config_hash: str,
        aggregation_state: Any = MISSING,
        coalesce_state: Any = MISSING,
        format_version: int | None = None,
        checkpoint_id: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """A resume point: the last token through ``node_id``, the graph's hashes, and
        the aggregation / coalesce state (any JSON; stored as payloads)."""
        when = check_time(occurred_at)
        sequence_number = check_count(sequence_number, "sequence_number")
        upstream_topology_hash = check_text(upstream_topology_hash, "upstream_topology_hash")
        node_config_hash = check_text(node_config_hash, "node_config_hash")
        if format_version is not None:
            format_version = check_count(format_version, "format_version")
        _, agg_ref = self._slot("aggregation_state", aggregation_state, None, None)
        _, coalesce_ref = self._slot("coalesce_state", coalesce_state, None, None)
        with self._lock:
            state = self._open_state()
            state.need(state.tokens, token_id, "token")
            state.need(state.nodes, node_id, "node")
            checkpoint_id = state.new_id("cp", checkpoint_id, state.checkpoints)
            self._emit(
                CheckpointRecorded(
                    **self._base(when),
                    checkpoint_id=checkpoint_id,
                    token_id=token_id,
                    row_id=state.tokens[token_id],
                    node_id=node_id,
                    sequence_number=sequence_number,
                    upstream_topology_hash=upstream_topology_hash,
                    node_config_hash=node_config_hash,
                    aggregation_state_ref=agg_ref,
                    coalesce_state_ref=coalesce_ref,
                    format_version=format_version,
                )
            )
        self._commit()
        return checkpoint_id

    # -- run-level facts ---------------------------------------------------------------

    def record_secret_resolution(
        self,
        *,
        env_var_name: str,
        source: str,
        fingerprint: str,
        vault_url: str | None = None,
        secret_name: str | None = None,
        resolution_latency_ms: float | None = None,
        secret_resolution_id: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """A secret the run loaded: where from, and its HMAC-SHA256 fingerprint (64
        lowercase hex digits; anything else is refused, since it could be the secret)."""
        when = check_time(occurred_at)
        env_var_name = check_text(env_var_name, "env_var_name")
        source = check_text(source, "source")
        if type(fingerprint) is not str or not _is_hex64(fingerprint):
            raise InvalidEventError(
                "fingerprint must be an HMAC-SHA256 hex digest (64 lowercase hex characters); "
                "the value given is not shown, as it may be the secret itself"
            )
        vault_url = _text_or_none(vault_url, "vault_url")
        secret_name = _text_or_none(secret_name, "secret_name")
        latency = check_number(resolution_latency_ms, "resolution_latency_ms")
        with self._lock:
            state = self._open_state()
            secret_resolution_id = state.new_id(
                "secret", secret_resolution_id, state.secret_resolutions
            )
            self._emit(
                SecretResolutionRecorded(
                    **self._base(when),
                    secret_resolution_id=secret_resolution_id,
                    env_var_name=env_var_name,
                    source=source,
                    fingerprint=fingerprint,
                    vault_url=vault_url,
                    secret_name=secret_name,
                    resolution_latency_ms=latency,
                )
            )
        self._commit()
        return secret_resolution_id

    def record_preflight_result(
        self,
        *,
        result_type: str,
        name: str,
        result: dict[str, Any],
        preflight_result_id: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """A dependency run, commencement gate or readiness check evaluated before the run."""
        when = check_time(occurred_at)
        result_type = check_choice(result_type, PREFLIGHT_RESULT_TYPES, "result_type")
        name = check_text(name, "name")
        if not isinstance(result, dict):
            raise InvalidEventError(f"result must be a JSON object, got {shown(result)}")
        result, paths = self.store.secret_filter.filter(result)
        value = json_object(result, "result")
        with self._lock:
            state = self._open_state()
            preflight_result_id = state.new_id("pre", preflight_result_id, state.preflight_results)
            self._emit(
                PreflightResultRecorded(
                    **self._base(when),
                    preflight_result_id=preflight_result_id,
                    result_type=result_type,  # type: ignore[arg-type]
                    name=name,
                    result=value,
                    redacted=("result",) if paths else (),
                )
            )
        self._commit()
        return preflight_result_id

    def record_field_resolution(
        self,
        *,
        mapping: dict[str, str],
        normalization_version: str | None = None,
        source_node_id: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> None:
        """How the source resolved its headers (original header -> recorded field name);
        once per source."""
        when = check_time(occurred_at)
        if not isinstance(mapping, dict):
            raise InvalidEventError(f"mapping must be a dict of str to str, got {shown(mapping)}")
        checked = {
            check_text(k, "mapping key"): check_text(v, "mapping value") for k, v in mapping.items()
        }
        normalization_version = _text_or_none(normalization_version, "normalization_version")
        with self._lock:
            state = self._open_state()
            if source_node_id is not None:
                state.need(state.nodes, source_node_id, "node")
            if source_node_id in state.field_resolutions:
                raise LifecycleError(
                    f"the field resolution of source {source_node_id!r} is already recorded"
                )
            self._emit(
                FieldResolutionRecorded(
                    **self._base(when),
                    source_node_id=source_node_id,
                    mapping=checked,
                    normalization_version=normalization_version,
                )
            )
        self._commit()

    def record_schema_contract(
        self,
        *,
        contract: dict[str, Any],
        contract_hash: str | None = None,
        node_id: str | None = None,
        role: str = "run",
        occurred_at: _dt.datetime | None = None,
    ) -> str:
        """A schema contract: the run's (``node_id`` None, role ``run``) or a node's
        ``input``/``output`` contract. ``contract_hash`` is the pipeline's own hash of
        it (default: SHA-256 of its canonical JSON). Once per (node, role); returns the hash."""
        when = check_time(occurred_at)
        role = check_choice(role, CONTRACT_ROLES, "role")
        value = json_object(contract, "contract")
        if value is None:
            raise InvalidEventError("contract must be a JSON object, got None")
        if contract_hash is None:
            contract_hash = hashlib.sha256(canonical_json(value)).hexdigest()
        else:
            contract_hash = check_text(contract_hash, "contract_hash")
        if (node_id is None) != (role == "run"):
            raise InvalidEventError("the run's contract has no node_id; a node's has a role")
        with self._lock:
            state = self._open_state()
            if node_id is not None:
                state.need(state.nodes, node_id, "node")
            if (node_id, role) in state.contracts:
                raise LifecycleError(f"the {role} contract of {node_id or 'the run'} is recorded")
            self._emit(
                SchemaContractRecorded(
                    **self._base(when),
                    node_id=node_id,
                    role=role,  # type: ignore[arg-type]
                    contract=value,
                    contract_hash=contract_hash,
                )
            )
        self._commit()
        return contract_hash


def _is_hex64(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)
