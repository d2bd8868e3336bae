"""The export (SPEC §4): records, chunk files, rollover, manifest, sealing, replay, resume.

Everything the auditor relies on is re-derived here with our own code (``json``,
``hashlib``, ``rfc8785``) instead of the package's helpers, so a bug in the
package cannot vouch for itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import auditjournal
import auditjournal.export.projector as export_module
from auditjournal import (
    AuditStore,
    ExportSettings,
    InvalidEventError,
    RunAlreadyCompletedError,
    RunRecorder,
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

PREFIX = "audit_trail"
CHUNK_RE = re.compile(r"^audit_trail\.(\d{3,})\.json$")
PAYLOAD_FIELDS = {
    "row": ("source_data",),
    "node_state": ("input_data", "output_data"),
    "routing_event": ("reason",),
    "call": ("request", "response"),
    "artifact": ("sink_input",),
}
ALL_PAYLOAD_FIELDS = {name for names in PAYLOAD_FIELDS.values() for name in names}


# -- helpers: our own reading of the export ------------------------------------------------


def ref_of(value: Any) -> str:
    """The ref of a plain-JSON payload, computed with the reference RFC 8785 library."""
    return hashlib.sha256(rfc8785.dumps(value)).hexdigest()


def roundtrip(value: Any) -> Any:
    return json.loads(json.dumps(value))


def ts_of(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def chunk_paths(directory: Path) -> list[Path]:
    """Numbered chunk files of the default prefix, in numeric order."""
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := CHUNK_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def record_lines(data: bytes) -> list[bytes]:
    """The record bytes of a chunk's lines (leading ',' and line end stripped), format-checked."""
    assert data.endswith(b"\n"), "every line of a chunk ends with a newline"
    lines = data[:-1].split(b"\n")
    assert lines[0] == b"[", f"first line is {lines[0][:40]!r}, not '['"
    records = []
    body = lines[1:-1] if lines[-1] == b"]" else lines[1:]
    for index, line in enumerate(body):
        if index == 0:
            assert not line.startswith(b","), "the first record line has no leading ','"
            records.append(line)
        else:
            assert line.startswith(b","), f"record line {index + 1} lacks its leading ','"
            records.append(line[1:])
    return records


def read_sealed_chunk(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data.endswith(b"\n]\n"), f"{path.name} is not closed with ']'"
    records = record_lines(data)
    assert records, f"{path.name} holds no record"
    json.loads(data)  # the whole chunk is one valid JSON array
    for raw in records:
        assert raw == rfc8785.dumps(json.loads(raw)), f"record is not canonical: {raw[:80]!r}"
    return records


def export_records(directory: Path) -> list[tuple[bytes, dict[str, Any]]]:
    """Every record of a sealed export, in export order: (line bytes, parsed)."""
    manifest = json.loads((directory / f"{PREFIX}.manifest.json").read_bytes())
    out = []
    for chunk in manifest["chunks"]:
        out += [(raw, json.loads(raw)) for raw in read_sealed_chunk(directory / chunk["file"])]
    return out


def export_files(directory: Path) -> dict[str, bytes]:
    """The auditor's files: chunks, manifest and sha256 listing (not checkpoints or locks)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name.startswith(PREFIX + ".")
    }


def assert_same_files(got: Path, want: Path) -> None:
    a, b = export_files(got), export_files(want)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], f"{name} differs between {got} and {want}"


def journal_lines(store: AuditStore, run_id: str) -> list[dict[str, Any]]:
    """The raw journal lines (with their ``chain`` member), parsed with json."""
    lines = []
    for segment in sorted(store.journal_dir(run_id).glob("*.jsonl")):
        lines += [json.loads(line) for line in segment.read_bytes().splitlines()]
    return lines


def journal_bytes(store: AuditStore, run_id: str) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(store.journal_dir(run_id).glob("*.jsonl")))


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 Merkle Tree Hash, written out recursively."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def replay(store: AuditStore, run_id: str, settings: ExportSettings, prefix: Path) -> Any:
    return auditjournal.replay_export(
        journal_dir=store.journal_dir(run_id),
        run_id=run_id,
        payloads=store.payloads,
        settings=settings,
        prefix=prefix,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    with AuditStore.open(tmp_path / "audit") as s:
        yield s


# -- a pipeline that uses every recorder method --------------------------------------------

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

CONFIG = {"pipeline": "everything", "rows": 2, "ratio": 0.5}


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


# -- chunk format --------------------------------------------------------------------------


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


def test_chunk_files_format_and_names(store: AuditStore) -> None:
    with store.start_run(export=ExportSettings(chunk_size_bytes=1000)) as run:
        small_run(run, rows=12)
    directory = store.export_dir(run.run_id)
    paths = chunk_paths(directory)
    assert len(paths) > 3, "1000-byte chunks must roll over"
    assert [p.name for p in paths] == [f"audit_trail.{i:03d}.json" for i in range(len(paths))]
    assert not (directory / "audit_trail.json").exists()
    total = 0
    for path in paths:
        data = path.read_bytes()
        lines = data.split(b"\n")
        assert lines[0] == b"[" and lines[-2] == b"]" and lines[-1] == b""
        assert not lines[1].startswith(b",")
        assert all(line.startswith(b",") for line in lines[2:-2])
        for line in lines[1:-2]:
            raw = line.removeprefix(b",")
            assert raw == rfc8785.dumps(json.loads(raw))
            assert raw.startswith(b"{") and raw.endswith(b"}")
        total += len(read_sealed_chunk(path))
    manifest = json.loads((directory / "audit_trail.manifest.json").read_bytes())
    assert total == manifest["total_record_count"] == 3 + 12 * 4 + 1


def test_unchunked_export_is_one_file(store: AuditStore) -> None:
    with store.start_run(export=ExportSettings(chunk_size_bytes=None)) as run:
        small_run(run, rows=30)
    directory = store.export_dir(run.run_id)
    assert chunk_paths(directory) == []
    assert sorted(export_files(directory)) == [
        "audit_trail.json",
        "audit_trail.manifest.json",
        "audit_trail.sha256",
    ]
    manifest = json.loads((directory / "audit_trail.manifest.json").read_bytes())
    assert manifest["chunk_size_bytes"] is None and manifest["chunk_count"] == 1
    assert [c["file"] for c in manifest["chunks"]] == ["audit_trail.json"]
    records = read_sealed_chunk(directory / "audit_trail.json")
    assert len(records) == manifest["total_record_count"] == 3 + 30 * 4 + 1
    listing = (directory / "audit_trail.sha256").read_text()
    digest = hashlib.sha256((directory / "audit_trail.json").read_bytes()).hexdigest()
    assert listing == f"{digest}  audit_trail.json\n"


def test_chunk_names_grow_beyond_three_digits(store: AuditStore, tmp_path: Path) -> None:
    with store.start_run(export=None) as run:
        small_run(run, rows=260, text=10)
    out = tmp_path / "many" / PREFIX
    result = replay(store, run.run_id, ExportSettings(chunk_size_bytes=64), out)
    assert result is not None and result.chunk_count > 1000
    names = [p.name for p in chunk_paths(out.parent)]
    assert names[999:1001] == ["audit_trail.999.json", "audit_trail.1000.json"]
    manifest = json.loads((out.parent / "audit_trail.manifest.json").read_bytes())
    assert [c["file"] for c in manifest["chunks"]] == names


# -- rollover (property) -------------------------------------------------------------------


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    chunk_size=st.integers(min_value=200, max_value=20_000),
    sizes=st.lists(st.integers(min_value=0, max_value=6_000), min_size=1, max_size=25),
    include_payloads=st.booleans(),
)
def test_rollover_respects_the_limit(
    chunk_size: int, sizes: list[int], include_payloads: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with AuditStore.open(root / "audit") as s:
            with s.start_run(export=None) as run:
                src = run.register_node(plugin_name="src", node_type="source")
                xf = run.register_node(plugin_name="xf", node_type="transform")
                run.register_edge(from_node_id=src, to_node_id=xf, label="continue")
                for i, size in enumerate(sizes):
                    row = run.create_row(
                        source_node_id=src, row_index=i, data={"i": i, "t": "é" * size}
                    )
                    tok = run.create_token(row_id=row)
                    sid = run.begin_node_state(
                        token_id=tok, node_id=xf, step_index=1, input_data={"t": "a" * size}
                    )
                    run.complete_node_state(sid, status="completed", output_data={"o": i})
            rid = run.run_id
            settings_ = ExportSettings(
                include_payloads=include_payloads, chunk_size_bytes=chunk_size
            )
            chunked = root / "chunked" / PREFIX
            whole = root / "whole" / PREFIX
            result = replay(s, rid, settings_, chunked)
            replay(
                s,
                rid,
                ExportSettings(include_payloads=include_payloads, chunk_size_bytes=None),
                whole,
            )
            assert result is not None
            paths = chunk_paths(chunked.parent)
            assert len(paths) == result.chunk_count
            all_records: list[bytes] = []
            previous: list[bytes] | None = None
            previous_size = 0
            for path in paths:
                records = read_sealed_chunk(path)  # valid JSON, canonical, records whole
                size = path.stat().st_size
                assert size <= chunk_size or len(records) == 1, (
                    f"{path.name}: {size} bytes > {chunk_size} with {len(records)} records"
                )
                if previous is not None:
                    # a chunk is only closed when the next record would not have fit
                    assert previous_size + len(records[0]) + 2 > chunk_size
                previous, previous_size = records, size
                all_records += records
            single = read_sealed_chunk(whole.parent / "audit_trail.json")
            assert all_records == single
            assert len(all_records) == 3 + 3 * len(sizes) + 1
            seqs = [json.loads(r)["seq"] for r in all_records]
            assert seqs == sorted(seqs)


def test_rollover_boundary_is_exact(store: AuditStore, tmp_path: Path) -> None:
    """A chunk of exactly ``chunk_size_bytes`` (counting ``]``) is allowed; one byte less
    and its last record moves to the next chunk."""
    with store.start_run(export=None) as run:
        small_run(run, rows=3)
    rid = run.run_id
    whole = tmp_path / "whole" / PREFIX
    replay(store, rid, ExportSettings(chunk_size_bytes=None), whole)
    records = read_sealed_chunk(whole.parent / "audit_trail.json")
    for k in range(1, 6):
        exact = len(b"[\n") + sum(len(r) + 1 for r in records[:k]) + (k - 1) + len(b"]\n")
        for limit, expect in ((exact, k), (exact - 1, k - 1)):
            if expect == 0:
                continue
            out = tmp_path / f"b{k}-{limit}" / PREFIX
            replay(store, rid, ExportSettings(chunk_size_bytes=limit), out)
            first = out.parent / "audit_trail.000.json"
            assert len(read_sealed_chunk(first)) == expect, (k, limit)
            if expect == k:
                assert first.stat().st_size == limit


# -- live, unsealed chunk ------------------------------------------------------------------


def wait_for_records(path: Path, count: int, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        data = path.read_bytes() if path.exists() else b""
        if data.count(b"\n") - 1 >= count:
            return data
        time.sleep(0.01)
    raise AssertionError(f"{path} did not reach {count} records: {data[-200:]!r}")


def test_unsealed_chunk_is_readable_line_by_line(store: AuditStore) -> None:
    settings_ = ExportSettings(chunk_size_bytes=None)
    run = store.start_run(export=settings_)
    try:
        src = run.register_node(plugin_name="src", node_type="source")
        xf = run.register_node(plugin_name="xf", node_type="transform")
        run.register_edge(from_node_id=src, to_node_id=xf, label="continue")
        row = run.create_row(source_node_id=src, row_index=0, data={"a": 1})
        tok = run.create_token(row_id=row)
        done = run.begin_node_state(token_id=tok, node_id=xf, step_index=1, input_data={"a": 1})
        run.complete_node_state(done, status="completed", output_data={"b": 2})
        still_open = run.begin_node_state(
            token_id=tok, node_id=xf, step_index=2, input_data={"b": 2}
        )
        run._journal.flush(fsync=False)
        path = store.export_dir(run.run_id) / "audit_trail.json"
        data = wait_for_records(path, 6)  # 2 nodes, edge, row, token, completed state
        time.sleep(0.05)
        assert path.read_bytes() == data, "nothing more may be written for the open state"
        assert b"]" not in data.split(b"\n")
        assert data.endswith(b"\n")
        lines = data[:-1].split(b"\n")
        assert lines[0] == b"["
        parsed = []
        for index, line in enumerate(lines[1:]):
            assert line.startswith(b",") == (index > 0)
            parsed.append(json.loads(line.removeprefix(b",")))
        assert [r["record_type"] for r in parsed] == [
            "node",
            "node",
            "edge",
            "row",
            "token",
            "node_state",
        ]
        assert parsed[-1]["state_id"] == done
        assert all(r.get("state_id") != still_open for r in parsed)
        assert not (store.export_dir(run.run_id) / "audit_trail.manifest.json").exists()
        run.complete_node_state(still_open, status="completed")
    finally:
        run.complete()
        run.close()
    sealed = path.read_bytes()
    assert sealed.startswith(data) and sealed.endswith(b"\n]\n")


def test_unsealed_rolled_chunks_are_closed_current_is_open(store: AuditStore) -> None:
    run = store.start_run(export=ExportSettings(chunk_size_bytes=700))
    try:
        small_run(run, rows=6)
        run._journal.flush(fsync=False)
        directory = store.export_dir(run.run_id)
        expected = 3 + 6 * 4
        deadline = time.monotonic() + 10
        while True:
            paths = chunk_paths(directory)
            count = sum(p.read_bytes().count(b"\n") for p in paths) - len(paths)
            count -= sum(p.read_bytes().endswith(b"]\n") for p in paths)
            if count >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert count == expected
        assert len(paths) > 2
        for path in paths[:-1]:
            read_sealed_chunk(path)
        current = paths[-1].read_bytes()
        assert not current.endswith(b"]\n") and current.endswith(b"\n")
        for raw in record_lines(current):
            assert raw == rfc8785.dumps(json.loads(raw))
    finally:
        run.complete()
        run.close()


# -- manifest, recomputed independently ----------------------------------------------------


def check_manifest(directory: Path, store: AuditStore, rid: str, settings_: ExportSettings) -> Any:
    manifest_bytes = (directory / "audit_trail.manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    files = sorted(
        (p for p in directory.iterdir() if CHUNK_RE.match(p.name) or p.name == "audit_trail.json"),
        key=lambda p: int(CHUNK_RE.match(p.name).group(1)) if CHUNK_RE.match(p.name) else -1,
    )
    chunks = []
    leaves: list[bytes] = []
    for path in files:
        data = path.read_bytes()
        records = read_sealed_chunk(path)
        seqs = [json.loads(r)["seq"] for r in records]
        chunks.append(
            {
                "file": path.name,
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
                "record_count": len(records),
                "first_seq": seqs[0],
                "last_seq": seqs[-1],
            }
        )
        leaves += records
    lines = journal_lines(store, rid)
    completed = [line for line in lines if line["type"] == "run_completed"]
    assert len(completed) == 1
    head = completed[0]
    assert manifest["format"] == "auditjournal-export/1"
    assert manifest["run_id"] == rid
    assert manifest["run_status"] == head["status"]
    assert manifest["chunks"] == chunks
    assert manifest["chunk_count"] == len(chunks)
    assert manifest["total_record_count"] == len(leaves)
    assert manifest["include_payloads"] is settings_.include_payloads
    assert manifest["chunk_size_bytes"] == settings_.chunk_size_bytes
    assert manifest["journal_head"] == {"seq": head["seq"], "chain": head["chain"]}
    assert manifest["merkle_root"] == mth(leaves).hex()
    assert ts_of(manifest["sealed_at"]) == ts_of(head["ts"])
    assert manifest_bytes.endswith(b"\n")
    listing = (directory / "audit_trail.sha256").read_text()
    assert listing == "".join(f"{c['sha256']}  {c['file']}\n" for c in chunks)
    return manifest


def test_mth_reference_values() -> None:
    """Our own MTH against RFC 6962 test vectors (certificate-transparency, 8 leaves)."""
    leaves = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ]
    roots = {
        1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    }
    for n, root in roots.items():
        assert mth(leaves[:n]).hex() == root
    assert mth([]).hex() == hashlib.sha256(b"").hexdigest()
    assert auditjournal.proofs.merkle.merkle_root(
        [auditjournal.proofs.merkle.leaf_hash(x) for x in leaves[:5]]
    ) == mth(leaves[:5])


@pytest.mark.parametrize("chunk_size", [None, 900, 5000])
def test_manifest_recomputed_independently(store: AuditStore, chunk_size: int | None) -> None:
    settings_ = ExportSettings(chunk_size_bytes=chunk_size)
    with store.start_run(config=CONFIG, export=settings_) as run:
        record_everything(run)
        small_run(run, rows=7)
    directory = store.export_dir(run.run_id)
    manifest = check_manifest(directory, store, run.run_id, settings_)
    assert manifest["run_status"] == "completed"
    if chunk_size == 900:
        assert manifest["chunk_count"] > 5


def test_sha256sum_check_passes(store: AuditStore) -> None:
    sha256sum = shutil.which("sha256sum")
    if sha256sum is None:
        pytest.skip("sha256sum is not installed")
    with store.start_run(export=ExportSettings(chunk_size_bytes=800)) as run:
        small_run(run, rows=5)
    directory = store.export_dir(run.run_id)
    ok = subprocess.run(
        [sha256sum, "-c", "audit_trail.sha256"], cwd=directory, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    names = [p.name for p in chunk_paths(directory)]
    assert len(names) > 1
    assert ok.stdout.splitlines() == [f"{name}: OK" for name in names]
    with open(directory / names[1], "ab") as fh:
        fh.write(b" ")
    bad = subprocess.run(
        [sha256sum, "-c", "audit_trail.sha256"], cwd=directory, capture_output=True, text=True
    )
    assert bad.returncode != 0 and f"{names[1]}: FAILED" in bad.stdout


# -- export_sealed and lifecycle -----------------------------------------------------------


def test_export_sealed_event_follows_run_completed(store: AuditStore) -> None:
    with store.start_run(export=ExportSettings(chunk_size_bytes=1000)) as run:
        small_run(run, rows=4)
    rid = run.run_id
    events = list(store.read_journal(rid))
    assert isinstance(events[-2], RunCompleted)
    sealed = events[-1]
    assert isinstance(sealed, ExportSealed) and sealed.seq == events[-2].seq + 1
    directory = store.export_dir(rid)
    manifest_bytes = (directory / "audit_trail.manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    assert sealed.manifest_sha256 == hashlib.sha256(manifest_bytes).hexdigest()
    assert sealed.chunk_count == manifest["chunk_count"] == len(chunk_paths(directory))
    assert sealed.record_count == manifest["total_record_count"] == 3 + 4 * 4 + 1
    assert sealed.merkle_root == manifest["merkle_root"]
    assert Path(sealed.export_path).resolve() == (directory / "audit_trail.manifest.json").resolve()
    result = run.export_result
    assert result is not None
    assert result.manifest_sha256 == sealed.manifest_sha256
    assert result.record_count == sealed.record_count
    assert result.run_status == "completed"
    # the export itself does not contain export_sealed: the journal head is run_completed
    assert manifest["journal_head"]["seq"] == events[-2].seq


def test_failed_run_is_sealed_with_open_states(store: AuditStore) -> None:
    settings_ = ExportSettings(chunk_size_bytes=2000)
    with pytest.raises(RuntimeError, match="boom"), store.start_run(export=settings_) as run:
        src = run.register_node(plugin_name="src", node_type="source")
        xf = run.register_node(plugin_name="xf", node_type="transform")
        run.register_edge(from_node_id=src, to_node_id=xf, label="continue")
        row = run.create_row(source_node_id=src, row_index=0, data={"a": 1})
        tok = run.create_token(row_id=row)
        first = run.begin_node_state(token_id=tok, node_id=xf, step_index=1, input_data=[1])
        done = run.begin_node_state(token_id=tok, node_id=xf, step_index=2, input_data=[2])
        run.complete_node_state(done, status="completed", output_data=[3])
        second = run.begin_node_state(token_id=tok, node_id=xf, step_index=3, input_data=[4])
        raise RuntimeError("boom")
    rid = run.run_id
    events = list(store.read_journal(rid))
    completed = next(e for e in events if isinstance(e, RunCompleted))
    assert completed.status == "failed"
    assert isinstance(events[-1], ExportSealed)
    assert run.export_result is not None and run.export_result.run_status == "failed"
    directory = store.export_dir(rid)
    manifest = check_manifest(directory, store, rid, settings_)
    assert manifest["run_status"] == "failed"
    records = [r for _, r in export_records(directory)]
    assert records[-1]["record_type"] == "run"
    assert records[-1]["status"] == "failed"
    assert records[-1]["error"] == {"type": "RuntimeError", "message": "boom"}
    states = {r["state_id"]: r for r in records if r["record_type"] == "node_state"}
    assert states[done]["status"] == "completed"
    for open_id, payload in ((first, [1]), (second, [4])):
        r = states[open_id]
        assert r["status"] == "open"
        assert r["seq"] == completed.seq
        assert r["input_data"] == payload
        assert r["output_data"] is None and r["output_data_ref"] is None
        assert r["completed_at"] is None
    # open states come right before the run record, in the order they were started
    assert [r.get("state_id") for r in records[-3:-1]] == [first, second]
    # and a replay gives the same bytes
    replay(store, rid, settings_, directory.parent / "replay" / PREFIX)
    assert_same_files(directory.parent / "replay", directory)


def test_interrupted_run_status(store: AuditStore) -> None:
    with pytest.raises(KeyboardInterrupt), store.start_run(export=ExportSettings()) as run:
        run.register_node(plugin_name="src", node_type="source")
        raise KeyboardInterrupt
    manifest = json.loads((store.export_dir(run.run_id) / "audit_trail.manifest.json").read_bytes())
    assert manifest["run_status"] == "interrupted"


def test_run_without_rows_is_sealed(store: AuditStore) -> None:
    settings_ = ExportSettings()
    with store.start_run(export=settings_) as run:
        src = run.register_node(plugin_name="src", node_type="source")
        sink = run.register_node(plugin_name="sink", node_type="sink")
        run.register_edge(from_node_id=src, to_node_id=sink, label="continue")
    directory = store.export_dir(run.run_id)
    manifest = check_manifest(directory, store, run.run_id, settings_)
    records = [r for _, r in export_records(directory)]
    assert [r["record_type"] for r in records] == ["node", "node", "edge", "run"]
    assert manifest["total_record_count"] == 4 and manifest["chunk_count"] == 1


def test_run_with_nothing_but_start_and_end(store: AuditStore) -> None:
    with store.start_run(export=ExportSettings()) as run:
        pass
    directory = store.export_dir(run.run_id)
    records = [r for _, r in export_records(directory)]
    assert [r["record_type"] for r in records] == ["run"]
    check_manifest(directory, store, run.run_id, ExportSettings())


def test_nothing_but_export_events_after_run_completed(store: AuditStore) -> None:
    run = store.start_run(export=ExportSettings())
    try:
        src = run.register_node(plugin_name="src", node_type="source")
        xf = run.register_node(plugin_name="xf", node_type="transform")
        edge = run.register_edge(from_node_id=src, to_node_id=xf, label="continue")
        row = run.create_row(source_node_id=src, row_index=0, data={"a": 1})
        tok = run.create_token(row_id=row)
        sid = run.begin_node_state(token_id=tok, node_id=xf, step_index=1, input_data={})
        run.complete(status="completed")
        assert run.completed and run.export_result is not None
        before = journal_bytes(store, run.run_id)
        last_seq = run.last_seq
        attempts = [
            lambda: run.register_node(plugin_name="late", node_type="sink"),
            lambda: run.register_edge(from_node_id=src, to_node_id=xf, label="late"),
            lambda: run.create_row(source_node_id=src, row_index=1, data={"b": 2}),
            lambda: run.create_token(row_id=row),
            lambda: run.begin_node_state(token_id=tok, node_id=xf, step_index=2, input_data={}),
            lambda: run.complete_node_state(sid, status="completed"),
            lambda: run.record_routing_event(state_id=sid, edge_id=edge),
            lambda: run.record_call(state_id=sid, call_type="http", status="success", request={}),
            lambda: run.record_artifact(
                state_id=sid,
                sink_node_id=xf,
                artifact_type="file",
                path_or_uri="x",
                content_hash="c" * 64,
                size_bytes=1,
            ),
            lambda: run.record_token_outcome(token_id=tok, outcome="completed"),
            lambda: run.complete(status="failed"),
        ]
        for attempt in attempts:
            with pytest.raises(RunAlreadyCompletedError):
                attempt()
        late_row = RowCreated(
            run_id=run.run_id,
            ts=dt.datetime.now(dt.UTC),
            row_id="late",
            source_node_id=src,
            row_index=9,
            source_data_hash="0" * 64,
            source_data_ref="0" * 64,
        )
        late_end = RunCompleted(run_id=run.run_id, ts=dt.datetime.now(dt.UTC), status="failed")
        for event in (late_row, late_end):
            with pytest.raises(InvalidEventError):
                run.append_export_event(event)
        run._journal.flush(fsync=False)
        assert run.last_seq == last_seq
        assert journal_bytes(store, run.run_id) == before
    finally:
        run.close()
    types = [type(e).__name__ for e in store.read_journal(run.run_id)]
    assert types[-2:] == ["RunCompleted", "ExportSealed"]
    assert types.count("RunCompleted") == 1


# -- replay --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings_",
    [
        ExportSettings(chunk_size_bytes=1200),
        ExportSettings(chunk_size_bytes=None),
        ExportSettings(include_payloads=False, chunk_size_bytes=700),
    ],
    ids=["chunked", "single", "refs-only"],
)
def test_replay_is_byte_identical(
    store: AuditStore, tmp_path: Path, settings_: ExportSettings
) -> None:
    with store.start_run(config=CONFIG, export=settings_) as run:
        record_everything(run)
        small_run(run, rows=10)
    rid = run.run_id
    live = store.export_dir(rid)
    out = tmp_path / "replay" / PREFIX
    result = auditjournal.replay_export(
        journal_dir=store.journal_dir(rid),
        run_id=rid,
        payloads=store.payloads,
        settings=settings_,
        prefix=out,
    )
    assert result is not None
    assert result.manifest_sha256 == run.export_result.manifest_sha256  # type: ignore[union-attr]
    live_files = export_files(live)
    assert len(live_files) >= 3
    assert_same_files(out.parent, live)
    # replaying again over the previous replay gives the same files again
    replay(store, rid, settings_, out)
    assert_same_files(out.parent, live)


def test_replay_with_other_settings_differs_but_is_valid(store: AuditStore, tmp_path: Path) -> None:
    settings_ = ExportSettings(chunk_size_bytes=1500)
    with store.start_run(config=CONFIG, export=settings_) as run:
        record_everything(run)
        small_run(run, rows=10)
    rid = run.run_id
    live = store.export_dir(rid)
    live_records = [r for _, r in export_records(live)]
    live_manifest = json.loads((live / "audit_trail.manifest.json").read_bytes())
    for other in (
        ExportSettings(include_payloads=False, chunk_size_bytes=1500),
        ExportSettings(chunk_size_bytes=4000),
        ExportSettings(chunk_size_bytes=None),
    ):
        out = tmp_path / f"other-{other.include_payloads}-{other.chunk_size_bytes}" / PREFIX
        replay(store, rid, other, out)
        manifest = check_manifest(out.parent, store, rid, other)
        assert export_files(out.parent) != export_files(live)
        records = [r for _, r in export_records(out.parent)]
        assert len(records) == len(live_records)
        if other.include_payloads:
            assert records == live_records
            assert manifest["merkle_root"] == live_manifest["merkle_root"]
            assert manifest["chunk_count"] != live_manifest["chunk_count"]
        else:
            stripped = [{k: v for k, v in r.items() if k not in ALL_PAYLOAD_FIELDS}
                        for r in live_records]  # fmt: skip
            assert records == stripped
            assert manifest["merkle_root"] != live_manifest["merkle_root"]


def test_replay_over_another_export_leaves_no_stale_files(
    store: AuditStore, tmp_path: Path
) -> None:
    with store.start_run(export=None) as run:
        small_run(run, rows=8)
    out = tmp_path / "reused" / PREFIX
    replay(store, run.run_id, ExportSettings(chunk_size_bytes=600), out)
    assert len(chunk_paths(out.parent)) > 5
    replay(store, run.run_id, ExportSettings(chunk_size_bytes=None), out)
    assert sorted(export_files(out.parent)) == [
        "audit_trail.json",
        "audit_trail.manifest.json",
        "audit_trail.sha256",
    ]
    replay(store, run.run_id, ExportSettings(chunk_size_bytes=2000), out)
    fresh = tmp_path / "fresh" / PREFIX
    replay(store, run.run_id, ExportSettings(chunk_size_bytes=2000), fresh)
    assert_same_files(out.parent, fresh.parent)


def test_replay_of_an_unfinished_run_is_unsealed(store: AuditStore, tmp_path: Path) -> None:
    run = store.start_run(export=None)
    small_run(run, rows=3)
    run.close()  # never completed
    out = tmp_path / "unfinished" / PREFIX
    assert replay(store, run.run_id, ExportSettings(chunk_size_bytes=None), out) is None
    data = (out.parent / "audit_trail.json").read_bytes()
    assert not (out.parent / "audit_trail.manifest.json").exists()
    assert not data.endswith(b"]\n")
    assert len(record_lines(data)) == 3 + 3 * 4


# -- resume from a checkpoint (in process) -------------------------------------------------


@pytest.fixture
def finished_run(store: AuditStore) -> str:
    with store.start_run(config=CONFIG, export=None) as run:
        record_everything(run)
        small_run(run, rows=25)
    return run.run_id


RESUME_SETTINGS = ExportSettings(chunk_size_bytes=1500)


def step_to(projector: auditjournal.ExportProjector, seq: int, batch: int = 7) -> None:
    """Project in small batches until the next event to read is ``seq``."""
    while projector.position.next_seq < seq:
        read = projector.step(limit=min(batch, seq - projector.position.next_seq))
        assert read > 0


@pytest.mark.parametrize(
    ("cut", "then_more"),
    [(0.0, 0), (0.1, 2), (0.45, 5), (0.8, 0), (1.0, 0), (1.0, 1)],
)
def test_resume_from_checkpoint_is_byte_identical(
    store: AuditStore,
    finished_run: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cut: float,
    then_more: int,
) -> None:
    rid = finished_run
    clean = tmp_path / "clean" / PREFIX
    replay(store, rid, RESUME_SETTINGS, clean)
    last = sum(1 for _ in store.read_journal(rid))  # run_completed (no live export here)
    # checkpoint somewhere between the first event and just before run_completed
    at = max(2, round(1 + cut * (last - 2)))
    monkeypatch.setattr(export_module, "_CHECKPOINT_EVERY", 1e9)  # only our checkpoint counts
    prefix = tmp_path / "resumed" / PREFIX
    projector = store.export_projector(rid, RESUME_SETTINGS, prefix=prefix)
    try:
        step_to(projector, at)
        projector._write_checkpoint()
        checkpoint = projector.paths.checkpoint
        saved = checkpoint.read_bytes()
        # more is written to the files (with cut=1.0 the export is even sealed), then the
        # process "dies" before any later checkpoint: put the saved one back
        for _ in range(then_more):
            projector.step(limit=7)
        sealed_meanwhile = projector.sealed
    finally:
        projector.close()
    checkpoint.write_bytes(saved)
    assert sealed_meanwhile == (cut == 1.0 and then_more > 0)
    if cut >= 0.45:
        assert len(chunk_paths(prefix.parent)) >= 2
    resumed = store.export_projector(rid, RESUME_SETTINGS, prefix=prefix)
    try:
        assert resumed.position.next_seq == at, "the projector must resume at its checkpoint"
        result = resumed.run(follow=False)
    finally:
        resumed.close()
    assert result is not None
    assert_same_files(prefix.parent, clean.parent)


def test_resume_after_sealing_keeps_the_export(
    store: AuditStore, finished_run: str, tmp_path: Path
) -> None:
    prefix = tmp_path / "sealed" / PREFIX
    first = store.export_projector(finished_run, RESUME_SETTINGS, prefix=prefix)
    try:
        result = first.run(follow=False)
    finally:
        first.close()
    assert result is not None
    files = export_files(prefix.parent)
    again = store.export_projector(finished_run, RESUME_SETTINGS, prefix=prefix)
    try:
        assert again.sealed and again.step() == 0
        assert again.result == result
    finally:
        again.close()
    assert export_files(prefix.parent) == files


def test_resume_after_sealing_with_manifest_lost_reseals(
    store: AuditStore, finished_run: str, tmp_path: Path
) -> None:
    """Regression: a sealed checkpoint whose manifest is gone used to delete the last
    chunk and leave the export unsealed forever."""
    prefix = tmp_path / "lost" / PREFIX
    first = store.export_projector(finished_run, RESUME_SETTINGS, prefix=prefix)
    try:
        assert first.run(follow=False) is not None
    finally:
        first.close()
    files = export_files(prefix.parent)
    (prefix.parent / "audit_trail.manifest.json").unlink()
    again = store.export_projector(finished_run, RESUME_SETTINGS, prefix=prefix)
    try:
        assert again.run(follow=False) is not None
    finally:
        again.close()
    assert export_files(prefix.parent) == files


def test_resume_with_other_settings_rebuilds(
    store: AuditStore, finished_run: str, tmp_path: Path
) -> None:
    prefix = tmp_path / "switch" / PREFIX
    projector = store.export_projector(finished_run, RESUME_SETTINGS, prefix=prefix)
    try:
        for _ in range(5):
            projector.step(limit=9)
        projector._write_checkpoint()
    finally:
        projector.close()
    other = ExportSettings(include_payloads=False, chunk_size_bytes=3000)
    clean = tmp_path / "clean-other" / PREFIX
    replay(store, finished_run, other, clean)
    resumed = store.export_projector(finished_run, other, prefix=prefix)
    try:
        assert resumed.position.next_seq == 1, "a checkpoint of other settings is not used"
        assert resumed.run(follow=False) is not None
    finally:
        resumed.close()
    assert_same_files(prefix.parent, clean.parent)


def test_chunk_writer_restore_keeps_closed_chunks(tmp_path: Path) -> None:
    """Regression: restoring a snapshot with no current chunk deleted the last closed one."""
    from auditjournal.export.chunks import ChunkWriter

    prefix = tmp_path / "w" / PREFIX
    prefix.parent.mkdir()
    writer = ChunkWriter(prefix, 200)
    for seq in range(1, 9):
        writer.add(seq, rfc8785.dumps({"seq": seq, "pad": "p" * 60}))
    writer.flush()
    writer.finish()
    writer.close()
    snap = writer.snapshot()
    before = export_files(prefix.parent)
    assert len(before) >= 3 and snap["current"] is None
    again = ChunkWriter(prefix, 200)
    assert again.restore(snap)
    again.close()
    assert export_files(prefix.parent) == before
