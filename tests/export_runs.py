"""The runs the export tests record: one that uses every recorder method, a small
repetitive one, and a replay of a run's journal into a directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import auditjournal
from auditjournal import (
    AuditStore,
    ExportSettings,
    RunRecorder,
)


def replay(store: AuditStore, run_id: str, settings: ExportSettings, prefix: Path) -> Any:
    return auditjournal.replay_export(
        journal_dir=store.journal_dir(run_id),
        run_id=run_id,
        payloads=store.payloads,
        settings=settings,
        prefix=prefix,
    )


ROW0 = {
    "id": 1,
    "name": "Zoë 😀",
    "amount": 12.5,
    "tiny": 1e-7,
    "flag": True,
    "none": None,
    "tags": ["a", "b"],
    "nested": {"z": 1, "a": [1, 2, {"k": "v"}], "é": "accent"},
    "\ufb01": "sorts after the emoji key in UTF-16",
    "\U0001f600": "emoji key",
}
ROW1 = {"id": 2, "name": "second", "amount": -3, "big": 2**53 - 1}
IN1 = {"text": "hello", "n": 3}
OUT1 = {"text": "HELLO", "n": 3, "score": 0.1}
REQUEST = {"model": "m", "prompt": "classify: hello", "temperature": 0.0}
RESPONSE = {"label": "greeting", "tokens": 17}
REASON = {"rule": "score > 0.05", "score": 0.1}
SINK_INPUT = [{"id": 1, "text": "HELLO"}, {"id": 2, "text": "SECOND"}]
FAIL_IN = {"text": "bad"}
OP_REQUEST = {"sql": "select 1"}


def record_everything(run: RunRecorder) -> dict[str, Any]:
    """Record one run with every record type; return what was passed in and the ids."""
    ids: dict[str, Any] = {}
    ids["src"] = run.register_node(
        plugin_name="csv_source",
        node_type="source",
        plugin_version="1.2.0",
        config={"path": "in.csv", "delimiter": ","},
        determinism="io_read",
        output_schema={"type": "object", "properties": {"id": {"type": "integer"}}},
    )
    ids["xf"] = run.register_node(
        plugin_name="upper",
        node_type="transform",
        config={"field": "text"},
        input_schema={"type": "object"},
        node_id="transform-upper",
    )
    ids["gate"] = run.register_node(plugin_name="threshold", node_type="gate")
    ids["sink"] = run.register_node(
        plugin_name="csv_sink", node_type="sink", determinism="io_write"
    )
    ids["e1"] = run.register_edge(from_node_id=ids["src"], to_node_id=ids["xf"], label="continue")
    ids["e2"] = run.register_edge(
        from_node_id=ids["xf"], to_node_id=ids["gate"], label="continue", mode="copy"
    )
    ids["e3"] = run.register_edge(
        from_node_id=ids["gate"], to_node_id=ids["sink"], label="high", mode="divert",
        edge_id="edge-high",
    )  # fmt: skip
    ids["row0"] = run.create_row(source_node_id=ids["src"], row_index=0, data=ROW0)
    ids["row1"] = run.create_row(
        source_node_id=ids["src"], row_index=1, data=ROW1, row_id="row-custom"
    )
    ids["tok0"] = run.create_token(row_id=ids["row0"])
    ids["tok1"] = run.create_token(
        row_id=ids["row0"],
        parent_token_ids=[ids["tok0"]],
        branch_name="left",
        fork_group_id="fg-1",
        join_group_id="jg-1",
        expand_group_id="xg-1",
    )
    ids["tok2"] = run.create_token(row_id=ids["row1"])
    ids["st1"] = run.begin_node_state(
        token_id=ids["tok1"], node_id=ids["xf"], step_index=1, input_data=IN1, attempt=2
    )
    ids["call1"] = run.record_call(
        state_id=ids["st1"],
        call_type="llm",
        status="success",
        request=REQUEST,
        response=RESPONSE,
        latency_ms=12.5,
    )
    run.begin_operation(node_id=ids["src"], operation_type="source_load", operation_id="op-warmup")
    ids["call2"] = run.record_call(
        operation_id="op-warmup",
        call_type="sql",
        status="error",
        request=OP_REQUEST,
        error={"code": 42, "message": "no table"},
        call_index=7,
    )
    run.complete_node_state(
        ids["st1"],
        status="completed",
        output_data=OUT1,
        duration_ms=3.25,
        success_reason={"why": "ok"},
    )
    ids["st_fail"] = run.begin_node_state(
        token_id=ids["tok2"], node_id=ids["xf"], step_index=1, input_data=FAIL_IN
    )
    run.complete_node_state(
        ids["st_fail"], status="failed", duration_ms=1, error={"type": "ValueError", "msg": "x"}
    )
    ids["st_gate"] = run.begin_node_state(
        token_id=ids["tok1"], node_id=ids["gate"], step_index=2, input_data=OUT1
    )
    run.complete_node_state(ids["st_gate"], status="completed", output_data=OUT1)
    ids["rte"] = run.record_routing_event(
        state_id=ids["st_gate"],
        edge_id=ids["e3"],
        mode="divert",
        reason=REASON,
        routing_group_id="rg-1",
        ordinal=1,
    )
    ids["rte_noreason"] = run.record_routing_event(state_id=ids["st_gate"], edge_id=ids["e2"])
    ids["st_sink"] = run.begin_node_state(
        token_id=ids["tok1"], node_id=ids["sink"], step_index=3, input_data=OUT1
    )
    ids["art"] = run.record_artifact(
        state_id=ids["st_sink"],
        sink_node_id=ids["sink"],
        artifact_type="file",
        path_or_uri="out/high.csv",
        content_hash="c" * 64,
        size_bytes=123,
        sink_input=SINK_INPUT,
    )
    run.complete_node_state(ids["st_sink"], status="completed", output_data=SINK_INPUT)
    ids["out1"] = run.record_token_outcome(
        token_id=ids["tok1"], outcome="routed", sink_name="high", context={"attempts": 1}
    )
    ids["out0"] = run.record_token_outcome(token_id=ids["tok0"], outcome="forked")
    ids["out2"] = run.record_token_outcome(
        token_id=ids["tok2"], outcome="failed", error={"type": "ValueError", "msg": "x"}
    )
    return ids


CONFIG = {"pipeline": "everything", "rows": 2, "ratio": 0.5}


def small_run(run: RunRecorder, rows: int, text: int = 50) -> None:
    src = run.register_node(plugin_name="src", node_type="source")
    xf = run.register_node(plugin_name="xf", node_type="transform")
    run.register_edge(from_node_id=src, to_node_id=xf, label="continue")
    for i in range(rows):
        row = run.create_row(source_node_id=src, row_index=i, data={"i": i, "t": "x" * text})
        tok = run.create_token(row_id=row)
        st_id = run.begin_node_state(token_id=tok, node_id=xf, step_index=1, input_data={"i": i})
        run.complete_node_state(st_id, status="completed", output_data={"o": i * 2})
        run.record_token_outcome(token_id=tok, outcome="completed", sink_name="out")
