"""The export projector (SPEC §4): every record type, field by field, from what was
recorded; payloads inlined or refs only; records in journal order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785

import auditjournal
from auditjournal import (
    AuditStore,
    ExportSettings,
)
from auditjournal.model.events import (
    ArtifactRecorded,
    CallRecorded,
    EdgeRegistered,
    ExportSealed,
    NodeRegistered,
    NodeStateCompleted,
    NodeStateStarted,
    RoutingEventRecorded,
    RowCreated,
    RunCompleted,
    RunStarted,
    TokenCreated,
    TokenOutcomeRecorded,
)
from auditjournal.model.landscape_records import LANDSCAPE_RECORD_TYPES
from export_reading import (
    ALL_PAYLOAD_FIELDS,
    PAYLOAD_FIELDS,
    export_records,
    ref_of,
    roundtrip,
    ts_of,
)
from export_runs import (
    CONFIG,
    FAIL_IN,
    IN1,
    OP_REQUEST,
    OUT1,
    REASON,
    REQUEST,
    RESPONSE,
    ROW0,
    ROW1,
    SINK_INPUT,
    record_everything,
)


def events_by(store: AuditStore, run_id: str) -> dict[str, Any]:
    """Journal events keyed by the id they introduce or complete."""
    out: dict[str, Any] = {}
    for event in store.read_journal(run_id):
        if isinstance(event, RunStarted):
            out["run_started"] = event
        elif isinstance(event, RunCompleted):
            out["run_completed"] = event
        elif isinstance(event, NodeRegistered):
            out[event.node_id] = event
        elif isinstance(event, EdgeRegistered):
            out[event.edge_id] = event
        elif isinstance(event, RowCreated):
            out[event.row_id] = event
        elif isinstance(event, TokenCreated):
            out[event.token_id] = event
        elif isinstance(event, NodeStateStarted):
            out["started:" + event.state_id] = event
        elif isinstance(event, NodeStateCompleted):
            out[event.state_id] = event
        elif isinstance(event, RoutingEventRecorded):
            out[event.routing_event_id] = event
        elif isinstance(event, CallRecorded):
            out[event.call_id] = event
        elif isinstance(event, ArtifactRecorded):
            out[event.artifact_id] = event
        elif isinstance(event, TokenOutcomeRecorded):
            out[event.outcome_id] = event
        elif isinstance(event, ExportSealed):
            out["export_sealed"] = event
    return out


def record_key(record: dict[str, Any]) -> str:
    kind = record["record_type"]
    key = {
        "run": None,
        "node": "node_id",
        "edge": "edge_id",
        "row": "row_id",
        "token": "token_id",
        "node_state": "state_id",
        "routing_event": "routing_event_id",
        "call": "call_id",
        "artifact": "artifact_id",
        "token_outcome": "outcome_id",
    }[kind]
    return "run" if key is None else record[key]


def expected_records(
    ids: dict[str, Any], ev: dict[str, Any], run_id: str, config: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """What each record must say, from what we recorded (seq/ts from the journal)."""

    def base(kind: str, key: str) -> dict[str, Any]:
        return {"record_type": kind, "run_id": run_id, "seq": ev[key].seq}

    def payload(value: Any) -> dict[str, Any]:
        return {"ref": ref_of(value), "data": roundtrip(value)}

    exp: dict[str, dict[str, Any]] = {}
    exp[ids["src"]] = base("node", ids["src"]) | {
        "node_id": ids["src"],
        "plugin_name": "csv_source",
        "plugin_version": "1.2.0",
        "node_type": "source",
        "determinism": "io_read",
        "config": {"path": "in.csv", "delimiter": ","},
        "config_hash": ref_of({"path": "in.csv", "delimiter": ","}),
        "input_schema": None,
        "output_schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
    }
    exp[ids["xf"]] = base("node", ids["xf"]) | {
        "node_id": "transform-upper",
        "plugin_name": "upper",
        "node_type": "transform",
        "determinism": "deterministic",
        "config": {"field": "text"},
        "input_schema": {"type": "object"},
        "output_schema": None,
    }
    exp[ids["gate"]] = base("node", ids["gate"]) | {"node_type": "gate", "config": {}}
    exp[ids["sink"]] = base("node", ids["sink"]) | {
        "node_type": "sink",
        "plugin_name": "csv_sink",
        "determinism": "io_write",
    }
    for edge, frm, to, label, mode in (
        ("e1", "src", "xf", "continue", "move"),
        ("e2", "xf", "gate", "continue", "copy"),
        ("e3", "gate", "sink", "high", "divert"),
    ):
        exp[ids[edge]] = base("edge", ids[edge]) | {
            "edge_id": ids[edge],
            "from_node_id": ids[frm],
            "to_node_id": ids[to],
            "label": label,
            "mode": mode,
        }
    assert ids["e3"] == "edge-high"
    for row, index, data in (("row0", 0, ROW0), ("row1", 1, ROW1)):
        p = payload(data)
        exp[ids[row]] = base("row", ids[row]) | {
            "row_id": ids[row],
            "source_node_id": ids["src"],
            "row_index": index,
            "source_data_hash": p["ref"],
            "source_data_ref": p["ref"],
            "source_data": p["data"],
        }
    assert ids["row1"] == "row-custom"
    exp[ids["tok0"]] = base("token", ids["tok0"]) | {
        "token_id": ids["tok0"],
        "row_id": ids["row0"],
        "parent_token_ids": [],
        "branch_name": None,
        "fork_group_id": None,
        "join_group_id": None,
        "expand_group_id": None,
    }
    exp[ids["tok1"]] = base("token", ids["tok1"]) | {
        "token_id": ids["tok1"],
        "row_id": ids["row0"],
        "parent_token_ids": [ids["tok0"]],
        "branch_name": "left",
        "fork_group_id": "fg-1",
        "join_group_id": "jg-1",
        "expand_group_id": "xg-1",
    }
    exp[ids["tok2"]] = base("token", ids["tok2"]) | {"row_id": ids["row1"]}

    def state(key: str, token: str, row: str, node: str, step: int, inp: Any) -> dict[str, Any]:
        p = payload(inp)
        return base("node_state", ids[key]) | {
            "state_id": ids[key],
            "token_id": ids[token],
            "row_id": ids[row],
            "node_id": ids[node],
            "step_index": step,
            "input_hash": p["ref"],
            "input_data_ref": p["ref"],
            "input_data": p["data"],
            "started_seq": ev["started:" + ids[key]].seq,
        }

    out1 = payload(OUT1)
    exp[ids["st1"]] = state("st1", "tok1", "row0", "xf", 1, IN1) | {
        "attempt": 2,
        "status": "completed",
        "output_hash": out1["ref"],
        "output_data_ref": out1["ref"],
        "output_data": out1["data"],
        "duration_ms": 3.25,
        "error": None,
        "success_reason": {"why": "ok"},
    }
    exp[ids["st_fail"]] = state("st_fail", "tok2", "row1", "xf", 1, FAIL_IN) | {
        "attempt": 0,
        "status": "failed",
        "output_hash": None,
        "output_data_ref": None,
        "output_data": None,
        "duration_ms": 1,
        "error": {"type": "ValueError", "msg": "x"},
        "success_reason": None,
    }
    exp[ids["st_gate"]] = state("st_gate", "tok1", "row0", "gate", 2, OUT1) | {
        "status": "completed",
        "output_data_ref": out1["ref"],
        "output_data": out1["data"],
        "duration_ms": None,
    }
    sink_p = payload(SINK_INPUT)
    exp[ids["st_sink"]] = state("st_sink", "tok1", "row0", "sink", 3, OUT1) | {
        "status": "completed",
        "output_data_ref": sink_p["ref"],
        "output_data": sink_p["data"],
    }
    reason = payload(REASON)
    exp[ids["rte"]] = base("routing_event", ids["rte"]) | {
        "routing_event_id": ids["rte"],
        "state_id": ids["st_gate"],
        "row_id": ids["row0"],
        "edge_id": ids["e3"],
        "mode": "divert",
        "routing_group_id": "rg-1",
        "ordinal": 1,
        "reason_hash": reason["ref"],
        "reason_ref": reason["ref"],
        "reason": reason["data"],
    }
    exp[ids["rte_noreason"]] = base("routing_event", ids["rte_noreason"]) | {
        "edge_id": ids["e2"],
        "mode": "move",
        "ordinal": 0,
        "reason_hash": None,
        "reason_ref": None,
        "reason": None,
    }
    req, resp = payload(REQUEST), payload(RESPONSE)
    exp[ids["call1"]] = base("call", ids["call1"]) | {
        "call_id": ids["call1"],
        "state_id": ids["st1"],
        "row_id": ids["row0"],
        "operation_id": None,
        "call_index": 0,
        "call_type": "llm",
        "status": "success",
        "latency_ms": 12.5,
        "request_hash": req["ref"],
        "request_ref": req["ref"],
        "request": req["data"],
        "response_hash": resp["ref"],
        "response_ref": resp["ref"],
        "response": resp["data"],
        "error": None,
    }
    op = payload(OP_REQUEST)
    exp[ids["call2"]] = base("call", ids["call2"]) | {
        "state_id": None,
        "row_id": None,
        "operation_id": "op-warmup",
        "call_index": 7,
        "call_type": "sql",
        "status": "error",
        "latency_ms": None,
        "request_ref": op["ref"],
        "request": op["data"],
        "response_hash": None,
        "response_ref": None,
        "response": None,
        "error": {"code": 42, "message": "no table"},
    }
    exp[ids["art"]] = base("artifact", ids["art"]) | {
        "artifact_id": ids["art"],
        "state_id": ids["st_sink"],
        "sink_node_id": ids["sink"],
        "artifact_type": "file",
        "path_or_uri": "out/high.csv",
        "content_hash": "c" * 64,
        "size_bytes": 123,
        "sink_input_hash": sink_p["ref"],
        "sink_input_ref": sink_p["ref"],
        "sink_input": sink_p["data"],
    }
    exp[ids["out1"]] = base("token_outcome", ids["out1"]) | {
        "outcome_id": ids["out1"],
        "token_id": ids["tok1"],
        "row_id": ids["row0"],
        "outcome": "routed",
        "sink_name": "high",
        "error_hash": None,
        "context": {"attempts": 1},
    }
    exp[ids["out0"]] = base("token_outcome", ids["out0"]) | {
        "token_id": ids["tok0"],
        "outcome": "forked",
        "sink_name": None,
        "context": None,
    }
    exp[ids["out2"]] = base("token_outcome", ids["out2"]) | {
        "token_id": ids["tok2"],
        "row_id": ids["row1"],
        "outcome": "failed",
        "error_hash": ref_of({"type": "ValueError", "msg": "x"}),
    }
    exp["run"] = {
        "record_type": "run",
        "run_id": run_id,
        "seq": ev["run_completed"].seq,
        "status": "completed",
        "error": None,
        "config": config,
        "config_hash": ref_of(config),
        "started_seq": 1,
    }
    return exp


TS_FIELDS = {
    "node": ("registered_at",),
    "edge": ("created_at",),
    "row": ("created_at",),
    "token": ("created_at",),
    "routing_event": ("created_at",),
    "call": ("created_at",),
    "artifact": ("created_at",),
    "token_outcome": ("recorded_at",),
}


@pytest.mark.parametrize("include_payloads", [True, False])
def test_every_record_type_round_trips(
    store: AuditStore, tmp_path: Path, include_payloads: bool
) -> None:
    settings = ExportSettings(include_payloads=include_payloads, chunk_size_bytes=1500)
    with store.start_run(config=CONFIG, export=settings) as run:
        ids = record_everything(run)
    rid = run.run_id
    ev = events_by(store, rid)
    records = export_records(store.export_dir(rid))
    parsed = [r for _, r in records]

    classic = set(auditjournal.model.records.RECORD_TYPES) - set(LANDSCAPE_RECORD_TYPES)
    # the calls' operation is still open at the end; the rest: test_landscape_model.py
    assert {r["record_type"] for r in parsed} == classic | {"operation"}
    parsed = [r for r in parsed if r["record_type"] in classic]
    for r in parsed:
        assert isinstance(r["seq"], int) and r["run_id"] == rid and "record_type" in r
    by_key = {}
    for r in parsed:
        key = record_key(r)
        assert key not in by_key, f"two records for {key}"
        by_key[key] = r
    expected = expected_records(ids, ev, rid, CONFIG)
    assert set(by_key) == set(expected)
    for key, want in expected.items():
        got = by_key[key]
        for field, value in want.items():
            if field in ALL_PAYLOAD_FIELDS and not include_payloads:
                continue
            assert field in got, f"{key}: no {field!r}"
            assert got[field] == value, f"{key}.{field}: {got[field]!r} != {value!r}"
        # seq is the seq of the completing event in the journal, timestamps are its ts
        for field in TS_FIELDS.get(got["record_type"], ()):
            assert ts_of(got[field]) == ev[key].ts
        # payload fields present exactly when inlined; refs always kept
        names = set(PAYLOAD_FIELDS.get(got["record_type"], ()))
        if include_payloads:
            assert names <= set(got)
        else:
            assert not (ALL_PAYLOAD_FIELDS & set(got)), f"{key} carries a payload field"
        for name in names:
            ref_field = {
                "source_data": "source_data_ref",
                "input_data": "input_data_ref",
                "output_data": "output_data_ref",
                "reason": "reason_ref",
                "request": "request_ref",
                "response": "response_ref",
                "sink_input": "sink_input_ref",
            }[name]
            ref = got[ref_field]
            if ref is not None:
                assert ref in store.payloads
                if include_payloads:
                    assert got[name] == json.loads(store.payloads.get(ref))
    state_rec = by_key[ids["st1"]]
    assert ts_of(state_rec["started_at"]) == ev["started:" + ids["st1"]].ts
    assert ts_of(state_rec["completed_at"]) == ev[ids["st1"]].ts
    run_rec = by_key["run"]
    assert ts_of(run_rec["started_at"]) == ev["run_started"].ts
    assert ts_of(run_rec["completed_at"]) == ev["run_completed"].ts
    export_settings = run_rec["settings"]["export"]
    assert export_settings["include_payloads"] is include_payloads
    assert export_settings["chunk_size_bytes"] == 1500
    assert export_settings["sign"] is None
    # the run record comes last; records appear in journal order
    assert parsed[-1]["record_type"] == "run"
    seqs = [r["seq"] for r in parsed]
    assert seqs == sorted(seqs)
    # the payload bytes are spliced in canonically: the row's line holds rfc8785 of ROW0
    if include_payloads:
        row_line = next(raw for raw, r in records if r.get("row_id") == ids["row0"] and
                        r["record_type"] == "row")  # fmt: skip
        assert b'"source_data":' + rfc8785.dumps(ROW0) in row_line
