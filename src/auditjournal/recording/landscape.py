"""Recorder calls for the rest of the Landscape model (issue 14): rows rejected at
validation, transform errors, checkpoints, secret resolutions, preflight results, field
resolution and schema contracts. A part of :class:`~.recorder.RunRecorder`: every method
checks all its arguments first, then validates the run's lifecycle under the run's lock
and appends exactly one event, or raises a typed error and appends nothing.

Thread-safety: as :class:`~.recorder.RunRecorder`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from typing import Any

from ..errors import (
    InvalidEventError,
    LifecycleError,
)
from ..model.canonical import canonical_json
from ..model.events import (
    CONTRACT_ROLES,
    PREFLIGHT_RESULT_TYPES,
    CheckpointRecorded,
    FieldResolutionRecorded,
    PreflightResultRecorded,
    SchemaContractRecorded,
    SecretResolutionRecorded,
    TransformErrorRecorded,
    ValidationErrorRecorded,
)
from .arguments import (
    check_choice,
    check_count,
    check_number,
    check_text,
    check_time,
    json_object,
    shown,
)
from .callbase import MISSING, CallBase, text_or_none

__all__ = ["LandscapeFacts"]

_UTC = _dt.UTC
_now = _dt.datetime.now


class LandscapeFacts(CallBase):
    """Errors, checkpoints and run-level facts (a mixin of RunRecorder)."""

    # -- errors, checkpoints, run-level facts -----------------------------------------

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
        violation_type = text_or_none(violation_type, "violation_type")
        original_field_name = text_or_none(original_field_name, "original_field_name")
        normalized_field_name = text_or_none(normalized_field_name, "normalized_field_name")
        expected_type = text_or_none(expected_type, "expected_type")
        actual_type = text_or_none(actual_type, "actual_type")
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
        vault_url = text_or_none(vault_url, "vault_url")
        secret_name = text_or_none(secret_name, "secret_name")
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
        result, paths = self._secrets.filter(result)
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
        normalization_version = text_or_none(normalization_version, "normalization_version")
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
