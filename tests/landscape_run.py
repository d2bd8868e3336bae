"""A run that records every event of the rest of the Landscape model (issue 14).

Shared by the tests of export, CSV, SQL, lineage and extract: an operation with a
call, an aggregation batch with members, a produced token and a batch output, a
validation error (with non-canonical data), a transform error, a checkpoint, a
secret resolution, a preflight result, a field resolution, contracts, outcomes
with their group ids, and original times (``occurred_at``) on some of them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from auditjournal import RunRecorder

T0 = dt.datetime(2026, 11, 30, 10, 52, 24, 166639, tzinfo=dt.UTC)
PLUS_ONE = dt.timezone(dt.timedelta(hours=1))
LANDSCAPE_PAYLOAD_FIELDS = {"input_data", "output_data", "row_data", "aggregation_state"}
LANDSCAPE_PAYLOAD_FIELDS |= {"coalesce_state"}


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def record_landscape(run: RunRecorder, prefix: str = "") -> dict[str, Any]:
    """Record the new events (nodes of their own); returns the ids it used."""
    p = prefix
    src = run.register_node(
        plugin_name="csv", node_type="source", node_id=f"{p}l-src", occurred_at=at(0)
    )
    agg = run.register_node(plugin_name="batch_stats", node_type="aggregation", node_id=f"{p}l-agg")
    sink = run.register_node(plugin_name="json", node_type="sink", node_id=f"{p}l-sink")
    run.record_field_resolution(
        mapping={"  Amount (USD)  ": "amount_usd", "Customer ID!!": "customer_id"},
        normalization_version="1.0.0",
        source_node_id=src,
    )
    run.record_schema_contract(contract={"mode": "FLEXIBLE", "fields": []}, contract_hash="0620")
    run.record_schema_contract(contract={"mode": "OBSERVED"}, node_id=src, role="output")
    run.record_secret_resolution(
        env_var_name="API_KEY",
        source="keyvault",
        fingerprint="ab" * 32,
        vault_url="https://vault.example",
        secret_name="api-key",
        resolution_latency_ms=12.5,
        secret_resolution_id=f"{p}sec-1",
        occurred_at=at(0.5),
    )
    run.record_preflight_result(
        result_type="readiness_check",
        name="db reachable",
        result={"ok": True, "latency": 0.25},
        preflight_result_id=f"{p}pre-1",
    )
    load = run.begin_operation(
        node_id=src,
        operation_type="source_load",
        input_data={"path": "in.csv"},
        operation_id=f"{p}op-load",
        occurred_at=at(1),
    )
    run.record_call(
        operation_id=load, call_type="vector", status="success", request={"q": [0.5, 1]}
    )
    tokens, rows = [], []
    for index in range(3):
        row = run.create_row(
            source_node_id=src, row_index=index, data={"id": index}, row_id=f"{p}l-row{index}"
        )
        rows.append(row)
        tokens.append(run.create_token(row_id=row, token_id=f"{p}l-tok{index}", step_in_pipeline=0))
    run.complete_operation(
        load,
        status="completed",
        output_hash=hashlib.sha256(b"not kept").hexdigest(),
        duration_ms=3.5,
        occurred_at=at(2).astimezone(PLUS_ONE),
    )
    write = run.begin_operation(node_id=sink, operation_type="sink_write", operation_id=f"{p}op-w")
    batch = run.create_batch(aggregation_node_id=agg, batch_id=f"{p}batch-1", occurred_at=at(3))
    for token in tokens[:2]:
        run.record_token_outcome(token_id=token, outcome="buffered", batch_id=batch)
        run.add_batch_member(batch_id=batch, token_id=token)
        run.record_token_outcome(token_id=token, outcome="consumed_in_batch", batch_id=batch)
    flush = run.begin_node_state(token_id=tokens[0], node_id=agg, step_index=1, input_data=[1, 2])
    run.complete_node_state(flush, status="completed", output_data={"sum": 3})
    run.update_batch(batch, status="executing", trigger_type="count")
    run.update_batch(batch, status="completed", aggregation_state_id=flush, occurred_at=at(4))
    produced = run.create_token(
        row_id=rows[1],
        parent_token_ids=[tokens[1]],
        expand_group_id=f"{p}xg-1",
        token_id=f"{p}l-made",
        step_in_pipeline=1,
    )
    run.record_batch_output(
        batch_id=batch, output_type="token", output_id=produced, batch_output_id=f"{p}bo-1"
    )
    still_open = run.create_batch(aggregation_node_id=agg, batch_id=f"{p}batch-2", attempt=1)
    run.update_batch(still_open, status="executing", trigger_reason="end of source")
    run.record_validation_error(
        error="JSON parse error at line 2",
        schema_mode="parse",
        destination="quarantine",
        data={"value": float("nan")},
        node_id=src,
        row_id=rows[2],
        violation_type="type_mismatch",
        validation_error_id=f"{p}verr-1",
        occurred_at=at(5),
    )
    run.record_validation_error(
        error="missing field",
        schema_mode="fixed",
        destination="discard",
        data={"__raw_line__": "x"},
        validation_error_id=f"{p}verr-2",
    )
    run.record_transform_error(
        token_id=tokens[2],
        node_id=agg,
        destination="errors",
        data={"id": 2},
        error_details={"type": "ValueError", "message": "bad"},
        transform_error_id=f"{p}terr-1",
    )
    run.record_checkpoint(
        token_id=tokens[2],
        node_id=agg,
        sequence_number=9,
        upstream_topology_hash="t" * 64,
        node_config_hash="c" * 64,
        aggregation_state='{"buffer": [1.0]}',
        format_version=4,
        checkpoint_id=f"{p}cp-1",
    )
    run.record_token_outcome(
        token_id=tokens[2],
        outcome="diverted",
        sink_name="quarantine",
        error_hash="7b3f68595e04e337",
        expected_branches={"count": 2},
        fork_group_id=f"{p}fg-1",
        occurred_at=at(6),
    )
    run.record_token_outcome(token_id=produced, outcome="completed", sink_name="output")
    return {
        "src": src,
        "agg": agg,
        "sink": sink,
        "load": load,
        "write": write,
        "batch": batch,
        "open_batch": still_open,
        "tokens": tokens,
        "rows": rows,
        "produced": produced,
        "flush": flush,
    }
