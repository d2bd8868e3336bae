"""Tests for the recorder API (SPEC §6) and its guarantees (SPEC §2, §9)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from auditjournal import (
    AuditStore,
    CanonicalizationError,
    DiskFullError,
    DuplicateIdError,
    InvalidEventError,
    InvalidIdError,
    LifecycleError,
    PayloadTooLargeError,
    RunAlreadyCompletedError,
    RunExistsError,
    RunNotFoundError,
    RunRecorder,
    StateAlreadyCompletedError,
    UnknownIdError,
    canonical_json,
)
from auditjournal.fs.storage import validate_id
from auditjournal.model.events import (
    ArtifactRecorded,
    BaseEvent,
    CallRecorded,
    EdgeRegistered,
    ExportSealed,
    NodeRegistered,
    NodeStateCompleted,
    NodeStateStarted,
    OperationStarted,
    RoutingEventRecorded,
    RowCreated,
    RunCompleted,
    RunStarted,
    TokenCreated,
    TokenOutcomeRecorded,
)

ZERO = dt.timedelta(0)


def sha(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


def journal_bytes(store: AuditStore, run_id: str) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(store.journal_dir(run_id).glob("*.jsonl")))


def events_of(store: AuditStore, run_id: str) -> list[BaseEvent]:
    return list(store.read_journal(run_id))


# how the `store` fixture (conftest.py) opens its AuditStore
pytestmark = pytest.mark.store_options(durability="always", max_payload_bytes=50_000)


# -- the whole API, end to end -----------------------------------------------------------------

CONFIG = {"pipeline": "demo", "threshold": 0.5, "when": dt.datetime(2024, 1, 1, 12, 0)}
ROW = {"id": 7, "name": "Grace", "amount": 12.25, "tags": ["a", "b"], "nested": {"x": None}}
SCHEMA = {"type": "object", "properties": {"id": {"type": "integer"}}}


def test_full_api_round_trip(store: AuditStore) -> None:
    run = store.start_run(config=CONFIG, run_id="run-e2e", settings={"note": "x"}, export=None)
    assert isinstance(run, RunRecorder)
    assert run.run_id == "run-e2e"
    src = run.register_node(
        plugin_name="csv",
        node_type="source",
        plugin_version="1.0",
        config={"path": "in.csv"},
        output_schema=SCHEMA,
    )
    t1 = run.register_node(
        plugin_name="clean",
        node_type="transform",
        determinism="external_call",
        input_schema=SCHEMA,
        node_id="clean-1",
    )
    gate = run.register_node(plugin_name="route", node_type="gate")
    sink = run.register_node(plugin_name="out", node_type="sink", node_id="sink:out")
    assert t1 == "clean-1" and sink == "sink:out"
    assert len({src, t1, gate, sink}) == 4
    e = run.register_edge(from_node_id=src, to_node_id=t1, label="continue", mode="move")
    e2 = run.register_edge(
        from_node_id=gate, to_node_id=sink, label="ok", mode="copy", edge_id="edge-ok"
    )
    assert e2 == "edge-ok"
    row = run.create_row(source_node_id=src, row_index=0, data=ROW)
    row2 = run.create_row(source_node_id=src, row_index=1, data={"id": 8}, row_id="row-eight")
    assert row2 == "row-eight"
    tok = run.create_token(row_id=row)
    child = run.create_token(
        row_id=row, parent_token_ids=[tok], branch_name="left", fork_group_id="fg1", token_id="t-c"
    )
    assert child == "t-c"
    st = run.begin_node_state(token_id=tok, node_id=t1, step_index=1, input_data=ROW)
    call = run.record_call(
        state_id=st,
        call_type="llm",
        status="success",
        request={"prompt": "hi"},
        response={"text": "hello"},
        latency_ms=12.5,
    )
    call2 = run.record_call(
        state_id=st, call_type="http", status="error", request={"u": 1}, error={"code": 500}
    )
    run.begin_operation(node_id=src, operation_type="source_load", operation_id="op-1")
    op_call = run.record_call(
        operation_id="op-1", call_type="sql", status="success", request={"q": "select 1"}
    )
    run.complete_node_state(
        st,
        status="completed",
        output_data={"clean": True},
        duration_ms=3.1,
        success_reason={"why": "ok"},
    )
    gst = run.begin_node_state(
        token_id=tok, node_id=gate, step_index=2, input_data={"g": 1}, attempt=1, state_id="gs-1"
    )
    assert gst == "gs-1"
    rte = run.record_routing_event(state_id=gst, edge_id=e2, mode="move", reason={"rule": "x>1"})
    run.complete_node_state(gst, status="failed", error={"message": "bad"})
    sst = run.begin_node_state(token_id=tok, node_id=sink, step_index=3, input_data=[1, 2])
    run.complete_node_state(sst, status="pending")
    art = run.record_artifact(
        state_id=sst,
        sink_node_id=sink,
        artifact_type="file",
        path_or_uri="out.csv",
        content_hash="c" * 64,
        size_bytes=123,
        sink_input=[ROW],
    )
    out = run.record_token_outcome(token_id=tok, outcome="completed", sink_name="out")
    out2 = run.record_token_outcome(
        token_id=child, outcome="quarantined", error={"e": 1}, context={"c": 2}, outcome_id="o-2"
    )
    assert out2 == "o-2"
    generated = [src, gate, e, row, tok, st, call, call2, op_call, rte, sst, art, out]
    for value in generated:
        assert isinstance(value, str)
        assert validate_id(value) == value
    assert len(set(generated)) == len(generated)
    assert run.last_seq == 25
    run.complete(status="completed")
    assert run.completed
    run.close()

    events = events_of(store, "run-e2e")
    assert [e.seq for e in events] == list(range(1, 27))
    assert all(ev.run_id == "run-e2e" for ev in events)
    assert all(ev.ts.utcoffset() == ZERO for ev in events)
    assert [ev.ts for ev in events] == sorted(ev.ts for ev in events)
    expected_types = [
        RunStarted,
        *[NodeRegistered] * 4,
        *[EdgeRegistered] * 2,
        *[RowCreated] * 2,
        *[TokenCreated] * 2,
        NodeStateStarted,
        *[CallRecorded] * 2,
        OperationStarted,
        CallRecorded,
        NodeStateCompleted,
        NodeStateStarted,
        RoutingEventRecorded,
        NodeStateCompleted,
        NodeStateStarted,
        NodeStateCompleted,
        ArtifactRecorded,
        *[TokenOutcomeRecorded] * 2,
        RunCompleted,
    ]
    assert [type(ev) for ev in events] == expected_types
    get = store.payloads.get

    started = events[0]
    assert isinstance(started, RunStarted)
    assert started.config == {"pipeline": "demo", "threshold": 0.5, "when": "2024-01-01T12:00:00Z"}
    assert started.config_hash == sha(CONFIG)
    assert started.settings["durability"] == "always"
    assert started.settings["note"] == "x"

    nodes = events[1:5]
    assert [(n.node_id, n.plugin_name, n.node_type) for n in nodes] == [  # type: ignore[attr-defined]
        (src, "csv", "source"),
        ("clean-1", "clean", "transform"),
        (gate, "route", "gate"),
        ("sink:out", "out", "sink"),
    ]
    assert nodes[0].config == {"path": "in.csv"}  # type: ignore[attr-defined]
    assert nodes[0].config_hash == sha({"path": "in.csv"})  # type: ignore[attr-defined]
    assert nodes[0].plugin_version == "1.0"  # type: ignore[attr-defined]
    assert nodes[0].output_schema == SCHEMA  # type: ignore[attr-defined]
    assert nodes[1].input_schema == SCHEMA  # type: ignore[attr-defined]
    assert nodes[1].determinism == "external_call"  # type: ignore[attr-defined]

    edge = events[5]
    assert isinstance(edge, EdgeRegistered)
    assert (edge.edge_id, edge.from_node_id, edge.to_node_id, edge.label, edge.mode) == (
        e,
        src,
        t1,
        "continue",
        "move",
    )
    assert events[6].mode == "copy"  # type: ignore[attr-defined]

    row_ev = events[7]
    assert isinstance(row_ev, RowCreated)
    assert (row_ev.row_id, row_ev.source_node_id, row_ev.row_index) == (row, src, 0)
    assert row_ev.source_data_ref == row_ev.source_data_hash == sha(ROW)
    assert get(row_ev.source_data_ref) == canonical_json(ROW)
    assert events[8].row_id == "row-eight"  # type: ignore[attr-defined]

    tok_ev, child_ev = events[9], events[10]
    assert isinstance(tok_ev, TokenCreated) and isinstance(child_ev, TokenCreated)
    assert (tok_ev.token_id, tok_ev.row_id, tok_ev.parent_token_ids) == (tok, row, ())
    assert (child_ev.parent_token_ids, child_ev.branch_name, child_ev.fork_group_id) == (
        (tok,),
        "left",
        "fg1",
    )

    st_ev = events[11]
    assert isinstance(st_ev, NodeStateStarted)
    assert (st_ev.state_id, st_ev.token_id, st_ev.node_id, st_ev.step_index, st_ev.attempt) == (
        st,
        tok,
        t1,
        1,
        0,
    )
    assert get(st_ev.input_data_ref) == canonical_json(ROW) and st_ev.input_hash == sha(ROW)

    c1, c2, _op, c3 = events[12:16]
    assert isinstance(c1, CallRecorded)
    assert (c1.call_id, c1.state_id, c1.call_index, c1.call_type, c1.status, c1.latency_ms) == (
        call,
        st,
        0,
        "llm",
        "success",
        12.5,
    )
    assert get(c1.request_ref) == b'{"prompt":"hi"}' and c1.request_hash == c1.request_ref
    assert get(c1.response_ref) == b'{"text":"hello"}'  # type: ignore[arg-type]
    assert (c2.call_index, c2.status, c2.response_ref, c2.error) == (
        1,
        "error",
        None,
        {"code": 500},
    )  # type: ignore[attr-defined]
    assert (c3.operation_id, c3.state_id, c3.call_index) == ("op-1", None, 0)  # type: ignore[attr-defined]

    done = events[16]
    assert isinstance(done, NodeStateCompleted)
    assert (done.state_id, done.status, done.duration_ms, done.success_reason) == (
        st,
        "completed",
        3.1,
        {"why": "ok"},
    )
    assert get(done.output_data_ref) == b'{"clean":true}'  # type: ignore[arg-type]
    assert done.output_hash == done.output_data_ref

    gate_start, routing, gate_done = events[17:20]
    assert (gate_start.state_id, gate_start.attempt, gate_start.step_index) == ("gs-1", 1, 2)  # type: ignore[attr-defined]
    assert isinstance(routing, RoutingEventRecorded)
    assert (routing.routing_event_id, routing.state_id, routing.edge_id, routing.mode) == (
        rte,
        "gs-1",
        "edge-ok",
        "move",
    )
    assert routing.routing_group_id == rte and routing.ordinal == 0
    assert get(routing.reason_ref) == b'{"rule":"x>1"}'  # type: ignore[arg-type]
    assert routing.reason_hash == routing.reason_ref
    assert (gate_done.status, gate_done.error, gate_done.output_data_ref) == (  # type: ignore[attr-defined]
        "failed",
        {"message": "bad"},
        None,
    )
    assert events[21].status == "pending"  # type: ignore[attr-defined]

    art_ev = events[22]
    assert isinstance(art_ev, ArtifactRecorded)
    assert (art_ev.artifact_id, art_ev.state_id, art_ev.sink_node_id, art_ev.path_or_uri) == (
        art,
        sst,
        sink,
        "out.csv",
    )
    assert (art_ev.artifact_type, art_ev.content_hash, art_ev.size_bytes) == ("file", "c" * 64, 123)
    assert get(art_ev.sink_input_ref) == canonical_json([ROW])  # type: ignore[arg-type]

    o1, o2 = events[23], events[24]
    assert isinstance(o1, TokenOutcomeRecorded) and isinstance(o2, TokenOutcomeRecorded)
    assert (o1.outcome_id, o1.token_id, o1.outcome, o1.sink_name) == (out, tok, "completed", "out")
    assert (o2.outcome_id, o2.outcome, o2.context) == ("o-2", "quarantined", {"c": 2})
    assert o2.error_hash == sha({"e": 1}) and get(o2.error_hash) == b'{"e":1}'

    end = events[-1]
    assert isinstance(end, RunCompleted)
    assert (end.status, end.error) == ("completed", None)
    assert "run-e2e" in store.run_ids()
    assert store.export_dir("run-e2e") == store.root / "runs" / "run-e2e" / "export"


def test_generated_run_id(store: AuditStore) -> None:
    run = store.start_run(export=None)
    try:
        assert re.fullmatch(r"run-\d{8}T\d{6}Z-[0-9a-f]{8}", run.run_id)
        assert validate_id(run.run_id) == run.run_id
    finally:
        run.close()
    other = store.start_run(export=None)
    other.close()
    assert other.run_id != run.run_id
    assert set(store.run_ids()) == {run.run_id, other.run_id}


def test_generated_ids_skip_caller_ids_of_the_same_shape(store: AuditStore) -> None:
    # Generated ids are "<prefix>-<counter>"; a caller may pick such an id first. The
    # generator must then step over it instead of handing out a duplicate.
    run = store.start_run(run_id="run-shapes", export=None)
    src = run.register_node(plugin_name="p", node_type="source")
    t1 = run.register_node(plugin_name="t", node_type="transform", node_id="node-3")
    rows = [run.create_row(source_node_id=src, row_index=0, data={}, row_id="row-4")]
    rows += [run.create_row(source_node_id=src, row_index=n, data={}) for n in range(1, 8)]
    assert "row-4" in rows and len(set(rows)) == len(rows)
    toks = [run.create_token(row_id=r) for r in rows]
    states = [
        run.begin_node_state(token_id=t, node_id=t1, step_index=1, input_data={}) for t in toks
    ]
    taken = f"st-{run.last_seq + 2}"  # what the generator would hand out next but one
    states.append(
        run.begin_node_state(
            token_id=toks[0], node_id=t1, step_index=2, input_data={}, state_id=taken
        )
    )
    states += [
        run.begin_node_state(token_id=t, node_id=t1, step_index=3, input_data={}) for t in toks
    ]
    assert taken in states and len(set(states)) == len(states)
    nodes = [t1, *(run.register_node(plugin_name="x", node_type="sink") for _ in range(4))]
    assert len({*nodes, src}) == len(nodes) + 1
    run.close()


def test_resumed_run_steps_over_caller_ids_of_the_generated_shape(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    first = AuditStore.open(root)
    run = first.start_run(run_id="run-resume-shapes", export=None)
    src = run.register_node(plugin_name="p", node_type="source")
    # after a resume the generator counts on from the last seq: pick the id it would make
    given = f"row-{run.last_seq + 2}"
    run.create_row(source_node_id=src, row_index=0, data={}, row_id=given)
    run.close()
    first.close()
    store = AuditStore.open(root)
    try:
        rec = store.resume_run("run-resume-shapes")
        fresh = [rec.create_row(source_node_id=src, row_index=n, data={}) for n in range(1, 4)]
        assert given not in fresh and len(set(fresh)) == 3
        rec.close()
    finally:
        store.close()


def test_run_id_rules(store: AuditStore) -> None:
    store.start_run(run_id="dup", export=None).close()
    with pytest.raises(RunExistsError):
        store.start_run(run_id="dup", export=None)
    for bad in ("../x", "", "/abs", "a/b", ".hidden", "a..b", "x" * 129):
        with pytest.raises(InvalidIdError):
            store.start_run(run_id=bad, export=None)
    with pytest.raises(RunNotFoundError):
        store.resume_run("never-started")
    with pytest.raises(RunNotFoundError):
        store.read_journal("never-started")
    assert not (store.root.parent / "x").exists()
    assert store.run_ids() == ["dup"]


# -- typed errors lose nothing -----------------------------------------------------------------


@dataclass
class Ids:
    src: str
    t1: str
    sink: str
    edge: str
    row: str
    tok: str
    done_tok: str
    open_state: str
    closed_state: str


def _setup(run: RunRecorder) -> Ids:
    src = run.register_node(plugin_name="csv", node_type="source", node_id="src")
    t1 = run.register_node(plugin_name="t", node_type="transform", node_id="t1")
    sink = run.register_node(plugin_name="s", node_type="sink", node_id="sink")
    edge = run.register_edge(from_node_id=src, to_node_id=t1, label="go", edge_id="e1")
    row = run.create_row(source_node_id=src, row_index=0, data={"r": 0}, row_id="r0")
    tok = run.create_token(row_id=row, token_id="tok0")
    done_tok = run.create_token(row_id=row, token_id="tok-done")
    run.record_token_outcome(token_id=done_tok, outcome="completed")
    open_state = run.begin_node_state(
        token_id=tok, node_id=t1, step_index=1, input_data={}, state_id="st-open"
    )
    closed = run.begin_node_state(
        token_id=tok, node_id=t1, step_index=2, input_data={}, state_id="st-done"
    )
    run.complete_node_state(closed, status="completed", output_data={"o": 1})
    return Ids(src, t1, sink, edge, row, tok, done_tok, open_state, closed)


NAN = float("nan")
Call = Callable[[RunRecorder, Ids], object]

REJECTED: list[tuple[str, type[Exception], Call]] = [
    # unknown ids
    (
        "edge-from-unknown",
        UnknownIdError,
        lambda r, i: r.register_edge(from_node_id="nope", to_node_id=i.t1, label="x"),
    ),
    (
        "edge-to-unknown",
        UnknownIdError,
        lambda r, i: r.register_edge(from_node_id=i.src, to_node_id="nope", label="x"),
    ),
    (
        "row-unknown-node",
        UnknownIdError,
        lambda r, i: r.create_row(source_node_id="nope", row_index=1, data={}),
    ),
    ("token-unknown-row", UnknownIdError, lambda r, i: r.create_token(row_id="nope")),
    (
        "token-unknown-parent",
        UnknownIdError,
        lambda r, i: r.create_token(row_id=i.row, parent_token_ids=["nope"]),
    ),
    (
        "state-unknown-token",
        UnknownIdError,
        lambda r, i: r.begin_node_state(token_id="nope", node_id=i.t1, step_index=1, input_data={}),
    ),
    (
        "state-unknown-node",
        UnknownIdError,
        lambda r, i: r.begin_node_state(
            token_id=i.tok, node_id="nope", step_index=1, input_data={}
        ),
    ),
    (
        "complete-unknown-state",
        UnknownIdError,
        lambda r, i: r.complete_node_state("nope", status="completed"),
    ),
    (
        "routing-unknown-state",
        UnknownIdError,
        lambda r, i: r.record_routing_event(state_id="nope", edge_id=i.edge),
    ),
    (
        "routing-unknown-edge",
        UnknownIdError,
        lambda r, i: r.record_routing_event(state_id=i.open_state, edge_id="nope"),
    ),
    (
        "call-unknown-state",
        UnknownIdError,
        lambda r, i: r.record_call(state_id="nope", call_type="llm", status="success", request={}),
    ),
    (
        "artifact-unknown-state",
        UnknownIdError,
        lambda r, i: r.record_artifact(
            state_id="nope",
            sink_node_id=i.sink,
            artifact_type="file",
            path_or_uri="p",
            content_hash="c" * 64,
            size_bytes=1,
        ),
    ),
    (
        "artifact-unknown-sink",
        UnknownIdError,
        lambda r, i: r.record_artifact(
            state_id=i.closed_state,
            sink_node_id="nope",
            artifact_type="file",
            path_or_uri="p",
            content_hash="c" * 64,
            size_bytes=1,
        ),
    ),
    (
        "outcome-unknown-token",
        UnknownIdError,
        lambda r, i: r.record_token_outcome(token_id="nope", outcome="completed"),
    ),
    # lifecycle
    (
        "state-completed-twice",
        StateAlreadyCompletedError,
        lambda r, i: r.complete_node_state(i.closed_state, status="completed"),
    ),
    (
        "second-terminal-outcome",
        LifecycleError,
        lambda r, i: r.record_token_outcome(token_id=i.done_tok, outcome="failed"),
    ),
    # bad enum and number values
    (
        "bad-node-type",
        InvalidEventError,
        lambda r, i: r.register_node(plugin_name="p", node_type="teleporter"),
    ),
    (
        "bad-determinism",
        InvalidEventError,
        lambda r, i: r.register_node(plugin_name="p", node_type="source", determinism="maybe"),
    ),
    (
        "bad-edge-mode",
        InvalidEventError,
        lambda r, i: r.register_edge(
            from_node_id=i.src, to_node_id=i.t1, label="x", mode="teleport"
        ),
    ),
    (
        "bad-state-status",
        InvalidEventError,
        lambda r, i: r.complete_node_state(i.open_state, status="done"),
    ),
    (
        "bad-call-type",
        InvalidEventError,
        lambda r, i: r.record_call(
            state_id=i.open_state, call_type="pigeon", status="success", request={}
        ),
    ),
    (
        "bad-call-status",
        InvalidEventError,
        lambda r, i: r.record_call(
            state_id=i.open_state, call_type="llm", status="meh", request={}
        ),
    ),
    (
        "call-needs-one-owner",
        InvalidEventError,
        lambda r, i: r.record_call(
            state_id=i.open_state, operation_id="op", call_type="llm", status="success", request={}
        ),
    ),
    (
        "call-needs-an-owner",
        InvalidEventError,
        lambda r, i: r.record_call(call_type="llm", status="success", request={}),
    ),
    (
        "bad-routing-mode",
        InvalidEventError,
        lambda r, i: r.record_routing_event(state_id=i.open_state, edge_id=i.edge, mode="sideways"),
    ),
    (
        "bad-outcome",
        InvalidEventError,
        lambda r, i: r.record_token_outcome(token_id=i.tok, outcome="vanished"),
    ),
    ("bad-run-status", InvalidEventError, lambda r, i: r.complete(status="great")),
    (
        "negative-row-index",
        InvalidEventError,
        lambda r, i: r.create_row(source_node_id=i.src, row_index=-1, data={}),
    ),
    (
        "str-step-index",
        InvalidEventError,
        lambda r, i: r.begin_node_state(
            token_id=i.tok, node_id=i.t1, step_index="1", input_data={}
        ),
    ),  # type: ignore[arg-type]
    (
        "nan-duration",
        InvalidEventError,
        lambda r, i: r.complete_node_state(i.open_state, status="completed", duration_ms=NAN),
    ),
    (
        "inf-latency",
        InvalidEventError,
        lambda r, i: r.record_call(
            state_id=i.open_state,
            call_type="llm",
            status="success",
            request={},
            latency_ms=float("inf"),
        ),
    ),
    (
        "negative-size",
        InvalidEventError,
        lambda r, i: r.record_artifact(
            state_id=i.closed_state,
            sink_node_id=i.sink,
            artifact_type="file",
            path_or_uri="p",
            content_hash="c" * 64,
            size_bytes=-1,
        ),
    ),
    # data that has no canonical JSON
    (
        "nan-row-data",
        CanonicalizationError,
        lambda r, i: r.create_row(source_node_id=i.src, row_index=1, data={"x": NAN}),
    ),
    (
        "inf-input",
        CanonicalizationError,
        lambda r, i: r.begin_node_state(
            token_id=i.tok, node_id=i.t1, step_index=1, input_data=[float("-inf")]
        ),
    ),
    (
        "set-request",
        CanonicalizationError,
        lambda r, i: r.record_call(
            state_id=i.open_state, call_type="llm", status="success", request={"s": {1, 2}}
        ),
    ),
    (
        "nan-output",
        CanonicalizationError,
        lambda r, i: r.complete_node_state(
            i.open_state, status="completed", output_data={"y": NAN}
        ),
    ),
    (
        "nan-config",
        CanonicalizationError,
        lambda r, i: r.register_node(plugin_name="p", node_type="source", config={"k": NAN}),
    ),
    (
        "huge-int-reason",
        CanonicalizationError,
        lambda r, i: r.record_routing_event(
            state_id=i.open_state, edge_id=i.edge, reason={"n": 2**60}
        ),
    ),
    (
        "object-sink-input",
        CanonicalizationError,
        lambda r, i: r.record_artifact(
            state_id=i.closed_state,
            sink_node_id=i.sink,
            artifact_type="file",
            path_or_uri="p",
            content_hash="c" * 64,
            size_bytes=1,
            sink_input=[object()],
        ),
    ),
    # payload size
    (
        "huge-payload",
        PayloadTooLargeError,
        lambda r, i: r.create_row(source_node_id=i.src, row_index=1, data="x" * 60_000),
    ),
    # invalid caller ids
    (
        "row-id-traversal",
        InvalidIdError,
        lambda r, i: r.create_row(source_node_id=i.src, row_index=1, data={}, row_id="../x"),
    ),
    (
        "row-id-empty",
        InvalidIdError,
        lambda r, i: r.create_row(source_node_id=i.src, row_index=1, data={}, row_id=""),
    ),
    (
        "node-id-absolute",
        InvalidIdError,
        lambda r, i: r.register_node(plugin_name="p", node_type="source", node_id="/etc"),
    ),
    ("token-id-slash", InvalidIdError, lambda r, i: r.create_token(row_id=i.row, token_id="a/b")),
    (
        "state-id-dot",
        InvalidIdError,
        lambda r, i: r.begin_node_state(
            token_id=i.tok, node_id=i.t1, step_index=1, input_data={}, state_id=".hidden"
        ),
    ),
    (
        "edge-id-space",
        InvalidIdError,
        lambda r, i: r.register_edge(from_node_id=i.src, to_node_id=i.t1, label="x", edge_id="a b"),
    ),
    (
        "call-id-nul",
        InvalidIdError,
        lambda r, i: r.record_call(
            state_id=i.open_state, call_type="llm", status="success", request={}, call_id="a\x00b"
        ),
    ),
    (
        "outcome-id-not-str",
        InvalidIdError,
        lambda r, i: r.record_token_outcome(token_id=i.tok, outcome="completed", outcome_id=5),
    ),  # type: ignore[arg-type]
    # duplicate caller ids
    (
        "dup-node",
        DuplicateIdError,
        lambda r, i: r.register_node(plugin_name="p", node_type="source", node_id=i.src),
    ),
    (
        "dup-edge",
        DuplicateIdError,
        lambda r, i: r.register_edge(
            from_node_id=i.src, to_node_id=i.t1, label="x", edge_id=i.edge
        ),
    ),
    (
        "dup-row",
        DuplicateIdError,
        lambda r, i: r.create_row(source_node_id=i.src, row_index=1, data={}, row_id=i.row),
    ),
    ("dup-token", DuplicateIdError, lambda r, i: r.create_token(row_id=i.row, token_id=i.tok)),
    (
        "dup-open-state",
        DuplicateIdError,
        lambda r, i: r.begin_node_state(
            token_id=i.tok, node_id=i.t1, step_index=1, input_data={}, state_id=i.open_state
        ),
    ),
    (
        "dup-closed-state",
        DuplicateIdError,
        lambda r, i: r.begin_node_state(
            token_id=i.tok, node_id=i.t1, step_index=1, input_data={}, state_id=i.closed_state
        ),
    ),
]


@pytest.mark.parametrize(("exc", "call"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_rejected_call_raises_typed_error_and_loses_nothing(
    store: AuditStore, exc: type[Exception], call: Call
) -> None:
    run = store.start_run(run_id="run-err", export=None)
    ids = _setup(run)
    before_bytes = journal_bytes(store, run.run_id)
    before_events = events_of(store, run.run_id)
    last = run.last_seq
    assert last == len(before_events) == 12

    with pytest.raises(exc):
        call(run, ids)

    assert run.last_seq == last
    assert journal_bytes(store, run.run_id) == before_bytes
    assert events_of(store, run.run_id) == before_events
    # The run goes on: the next event gets the next seq, nothing was skipped.
    run.create_row(source_node_id=ids.src, row_index=9, data={"after": True}, row_id="r-after")
    run.complete()
    run.close()
    events = events_of(store, run.run_id)
    assert events[:12] == before_events
    assert [type(e) for e in events[12:]] == [RowCreated, RunCompleted]
    assert [e.seq for e in events] == list(range(1, 15))


def test_nothing_after_run_completed(store: AuditStore) -> None:
    run = store.start_run(run_id="run-done", export=None)
    ids = _setup(run)
    run.complete()
    before = journal_bytes(store, run.run_id)
    attempts: list[Call] = [
        lambda r, i: r.register_node(plugin_name="p", node_type="source"),
        lambda r, i: r.register_edge(from_node_id=i.src, to_node_id=i.t1, label="x"),
        lambda r, i: r.create_row(source_node_id=i.src, row_index=5, data={}),
        lambda r, i: r.create_token(row_id=i.row),
        lambda r, i: r.begin_node_state(token_id=i.tok, node_id=i.t1, step_index=1, input_data={}),
        lambda r, i: r.complete_node_state(i.open_state, status="completed"),
        lambda r, i: r.record_routing_event(state_id=i.open_state, edge_id=i.edge),
        lambda r, i: r.record_call(
            state_id=i.open_state, call_type="llm", status="success", request={}
        ),
        lambda r, i: r.record_artifact(
            state_id=i.closed_state,
            sink_node_id=i.sink,
            artifact_type="f",
            path_or_uri="p",
            content_hash="c" * 64,
            size_bytes=1,
        ),
        lambda r, i: r.record_token_outcome(token_id=i.tok, outcome="completed"),
        lambda r, i: r.complete(),
        lambda r, i: r.complete(status="failed"),
    ]
    for attempt in attempts:
        with pytest.raises(RunAlreadyCompletedError):
            attempt(run, ids)
    assert journal_bytes(store, run.run_id) == before
    run.close()
    events = events_of(store, run.run_id)
    assert len(events) == 13
    assert isinstance(events[-1], RunCompleted)
    with pytest.raises(RunAlreadyCompletedError):
        store.resume_run(run.run_id)


def test_closed_recorder_refuses_events(store: AuditStore) -> None:
    run = store.start_run(run_id="run-closed", export=None)
    src = run.register_node(plugin_name="p", node_type="source")
    run.close()
    with pytest.raises(RunAlreadyCompletedError):
        run.create_row(source_node_id=src, row_index=0, data={})
    assert len(events_of(store, run.run_id)) == 2


def test_concurrent_duplicate_caller_id_wins_once(store: AuditStore) -> None:
    run = store.start_run(run_id="run-race", export=None)
    src = run.register_node(plugin_name="p", node_type="source")
    barrier = threading.Barrier(8)
    results: list[str] = []

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            run.create_row(source_node_id=src, row_index=n, data={"n": n}, row_id="same")
            results.append("ok")
        except DuplicateIdError:
            results.append("dup")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.close()
    assert sorted(results) == ["dup"] * 7 + ["ok"]
    rows = [e for e in events_of(store, run.run_id) if isinstance(e, RowCreated)]
    assert [r.row_id for r in rows] == ["same"]


# -- the with block ---------------------------------------------------------------------------


def test_with_block_completes_the_run(store: AuditStore) -> None:
    with store.start_run(run_id="run-with", export=None) as run:
        run.register_node(plugin_name="p", node_type="source")
    assert run.completed
    events = events_of(store, "run-with")
    assert [type(e) for e in events] == [RunStarted, NodeRegistered, RunCompleted]
    end = events[-1]
    assert isinstance(end, RunCompleted)
    assert (end.status, end.error) == ("completed", None)
    with pytest.raises(RunAlreadyCompletedError):  # the journal lock was released
        store.resume_run("run-with")


def test_with_block_records_a_failure_and_reraises(store: AuditStore) -> None:
    with (
        pytest.raises(ValueError, match="boom") as info,
        store.start_run(run_id="run-fail", export=None) as run,
    ):
        run.register_node(plugin_name="p", node_type="source")
        raise ValueError("boom")
    assert str(info.value) == "boom"
    events = events_of(store, "run-fail")
    assert [type(e) for e in events] == [RunStarted, NodeRegistered, RunCompleted]
    end = events[-1]
    assert isinstance(end, RunCompleted)
    assert end.status == "failed"
    assert end.error == {"type": "ValueError", "message": "boom"}


def test_with_block_records_an_interrupt(store: AuditStore) -> None:
    with pytest.raises(KeyboardInterrupt), store.start_run(run_id="run-int", export=None):
        raise KeyboardInterrupt
    end = events_of(store, "run-int")[-1]
    assert isinstance(end, RunCompleted)
    assert end.status == "interrupted"


def test_with_block_after_explicit_complete_appends_nothing_more(store: AuditStore) -> None:
    with store.start_run(run_id="run-explicit", export=None) as run:
        run.complete(status="failed", error={"why": "chosen"})
    events = events_of(store, "run-explicit")
    assert [type(e) for e in events] == [RunStarted, RunCompleted]
    assert events[-1].status == "failed"  # type: ignore[attr-defined]
    assert events[-1].error == {"why": "chosen"}  # type: ignore[attr-defined]


def test_with_block_and_live_export_seal(store: AuditStore) -> None:
    with store.start_run(run_id="run-export") as run:
        src = run.register_node(plugin_name="p", node_type="source")
        run.create_row(source_node_id=src, row_index=0, data={"a": 1})
    events = events_of(store, "run-export")
    assert [type(e) for e in events[-2:]] == [RunCompleted, ExportSealed]
    manifest = store.export_dir("run-export") / "audit_trail.manifest.json"
    assert manifest.is_file()
    sealed = events[-1]
    assert isinstance(sealed, ExportSealed)
    assert sealed.manifest_sha256 == hashlib.sha256(manifest.read_bytes()).hexdigest()


# -- several threads --------------------------------------------------------------------------


@pytest.mark.parametrize(("durability", "rows_n"), [("batch", 500), ("always", 60)])
def test_several_threads_record_into_one_run(tmp_path: Path, durability: str, rows_n: int) -> None:
    threads_n = 4
    store = AuditStore.open(tmp_path / "audit", durability=durability)  # type: ignore[arg-type]
    run = store.start_run(run_id="run-mt", export=None)
    src = run.register_node(plugin_name="p", node_type="source")
    t1 = run.register_node(plugin_name="t", node_type="transform")
    barrier = threading.Barrier(threads_n)
    made: dict[int, list[tuple[str, str, str, dict[str, int]]]] = {}
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            mine = made.setdefault(t, [])
            barrier.wait()
            for i in range(rows_n):
                data = {"t": t, "i": i}
                row = run.create_row(source_node_id=src, row_index=t * rows_n + i, data=data)
                tok = run.create_token(row_id=row)
                st = run.begin_node_state(token_id=tok, node_id=t1, step_index=1, input_data=data)
                run.complete_node_state(st, status="completed", output_data={**data, "out": 1})
                mine.append((row, tok, st, data))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    run.complete()
    store.close()

    reopened = AuditStore.open(tmp_path / "audit")
    try:
        events = events_of(reopened, "run-mt")
        total = 3 + threads_n * rows_n * 4 + 1
        assert len(events) == total
        assert [e.seq for e in events] == list(range(1, total + 1))
        by_key: dict[tuple[type, str], BaseEvent] = {}
        for e in events:
            key_field = {
                RowCreated: "row_id",
                TokenCreated: "token_id",
                NodeStateStarted: "state_id",
                NodeStateCompleted: "state_id",
            }.get(type(e))
            if key_field is not None:
                key = (type(e), getattr(e, key_field))
                assert key not in by_key, f"{key} recorded twice"
                by_key[key] = e
        assert len(by_key) == threads_n * rows_n * 4
        all_ids = [x for rows in made.values() for r in rows for x in r[:3]]
        assert len(set(all_ids)) == len(all_ids) == threads_n * rows_n * 3
        for rows in made.values():
            for row, tok, st, data in rows:
                row_ev = by_key[(RowCreated, row)]
                tok_ev = by_key[(TokenCreated, tok)]
                start = by_key[(NodeStateStarted, st)]
                done = by_key[(NodeStateCompleted, st)]
                assert isinstance(row_ev, RowCreated) and isinstance(tok_ev, TokenCreated)
                assert isinstance(start, NodeStateStarted) and isinstance(done, NodeStateCompleted)
                assert row_ev.seq < tok_ev.seq < start.seq < done.seq
                assert tok_ev.row_id == row and start.token_id == tok and start.node_id == t1
                assert reopened.payloads.get_json(row_ev.source_data_ref) == data
                assert start.input_data_ref == row_ev.source_data_ref  # same content, same ref
                assert reopened.payloads.get_json(done.output_data_ref) == {**data, "out": 1}  # type: ignore[arg-type]
        assert isinstance(events[-1], RunCompleted)
    finally:
        reopened.close()


# -- resume after an unclean stop -------------------------------------------------------------


def test_resume_after_unclean_stop(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    first = AuditStore.open(root, durability="always")
    run = first.start_run(run_id="run-crash", export=None)
    src = run.register_node(plugin_name="p", node_type="source", node_id="src")
    t1 = run.register_node(plugin_name="t", node_type="transform")
    edge = run.register_edge(from_node_id=src, to_node_id=t1, label="go")
    rows = [run.create_row(source_node_id=src, row_index=n, data={"n": n}) for n in range(3)]
    rows.append(run.create_row(source_node_id=src, row_index=3, data={"n": 3}, row_id="given"))
    toks = [run.create_token(row_id=r) for r in rows]
    open_st = run.begin_node_state(token_id=toks[0], node_id=t1, step_index=1, input_data={})
    closed_st = run.begin_node_state(token_id=toks[1], node_id=t1, step_index=1, input_data={})
    run.complete_node_state(closed_st, status="completed")
    call = run.record_call(state_id=open_st, call_type="llm", status="success", request={"q": 1})
    rte = run.record_routing_event(state_id=closed_st, edge_id=edge)
    out = run.record_token_outcome(token_id=toks[1], outcome="completed")
    last = run.last_seq
    old_ids = {src, t1, edge, *rows, *toks, open_st, closed_st, call, rte, out}
    run.close()  # no run_completed: the run is unfinished
    first.close()

    segment = sorted(first.journal_dir("run-crash").glob("*.jsonl"))[-1]
    torn = b'{"type":"row_created","run_id":"run-crash","seq":' + str(last + 1).encode() + b',"ts"'
    with open(segment, "ab") as fh:
        fh.write(torn)

    store = AuditStore.open(root, durability="always")
    try:
        rec = store.resume_run("run-crash")
        assert rec.recovery is not None
        assert rec.recovery.bytes_dropped == len(torn)
        assert rec.recovery.last_seq == last
        assert rec.last_seq == last + 2  # run_interrupted, run_resumed (issue 14)
        assert rec.known_ids["rows"] == 4 and rec.known_ids["open_states"] == 1

        checks: list[tuple[type[Exception], Call]] = [
            (
                DuplicateIdError,
                lambda r, i: r.create_row(source_node_id=src, row_index=9, data={}, row_id="given"),
            ),
            (
                DuplicateIdError,
                lambda r, i: r.create_row(source_node_id=src, row_index=9, data={}, row_id=rows[0]),
            ),
            (
                DuplicateIdError,
                lambda r, i: r.register_node(plugin_name="p", node_type="sink", node_id=t1),
            ),
            (DuplicateIdError, lambda r, i: r.create_token(row_id=rows[0], token_id=toks[2])),
            (
                DuplicateIdError,
                lambda r, i: r.begin_node_state(
                    token_id=toks[0], node_id=t1, step_index=2, input_data={}, state_id=closed_st
                ),
            ),
            (UnknownIdError, lambda r, i: r.create_token(row_id="ghost")),
            (
                UnknownIdError,
                lambda r, i: r.create_row(source_node_id="ghost", row_index=0, data={}),
            ),
            (
                UnknownIdError,
                lambda r, i: r.record_routing_event(state_id=open_st, edge_id="ghost"),
            ),
            (
                StateAlreadyCompletedError,
                lambda r, i: r.complete_node_state(closed_st, status="completed"),
            ),
            (
                LifecycleError,
                lambda r, i: r.record_token_outcome(token_id=toks[1], outcome="failed"),
            ),
        ]
        for exc, attempt in checks:
            with pytest.raises(exc):
                attempt(rec, None)  # type: ignore[arg-type]
        assert rec.last_seq == last + 2

        # Known ids still work, and new generated ids never collide with old ones.
        call2 = rec.record_call(
            state_id=open_st, call_type="llm", status="success", request={"q": 2}
        )
        rec.complete_node_state(open_st, status="completed")
        new_rows = [
            rec.create_row(source_node_id=src, row_index=10 + n, data={"m": n}) for n in range(5)
        ]
        new_toks = [rec.create_token(row_id=r) for r in new_rows]
        new_states = [
            rec.begin_node_state(token_id=t, node_id=t1, step_index=1, input_data={})
            for t in new_toks
        ]
        new_node = rec.register_node(plugin_name="p2", node_type="sink")
        new_edge = rec.register_edge(from_node_id=t1, to_node_id=new_node, label="x")
        new_ids = [call2, *new_rows, *new_toks, *new_states, new_node, new_edge]
        assert len(set(new_ids)) == len(new_ids)
        assert not set(new_ids) & old_ids
        rec.complete()
        rec.close()
        events = events_of(store, "run-crash")
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert type(events[last]).__name__ == "RunInterrupted"  # then run_resumed
        assert events[last + 2].seq == last + 3 and isinstance(events[last + 2], CallRecorded)
        calls = [e for e in events if isinstance(e, CallRecorded)]
        assert [(c.call_id, c.call_index) for c in calls] == [(call, 0), (call2, 1)]
        assert isinstance(events[-1], RunCompleted)
        assert events[-1].status == "completed"
    finally:
        store.close()


def test_resume_of_cleanly_closed_run_reports_no_recovery(store: AuditStore) -> None:
    run = store.start_run(run_id="run-pause", export=None)
    run.register_node(plugin_name="p", node_type="source", node_id="n1")
    run.close()
    rec = store.resume_run("run-pause")
    try:
        assert rec.recovery is None
        assert rec.last_seq == 4  # + run_interrupted, run_resumed
        with pytest.raises(DuplicateIdError):
            rec.register_node(plugin_name="p", node_type="source", node_id="n1")
    finally:
        rec.close()


def test_event_bytes_in_journal_match_decoded_events(store: AuditStore) -> None:
    run = store.start_run(run_id="run-bytes", export=None)
    _setup(run)
    run.complete()
    run.close()
    lines = journal_bytes(store, "run-bytes").splitlines()
    events = events_of(store, "run-bytes")
    assert len(lines) == len(events)
    for line, event in zip(lines, events, strict=True):
        decoded = msgspec.json.decode(line)
        assert decoded.pop("chain")
        assert decoded == msgspec.json.decode(msgspec.json.encode(event))


# -- a full disk ---------------------------------------------------------------------------------


def test_disk_full_while_committing_loses_nothing(
    store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    run = store.start_run(run_id="run-enospc", export=None)
    src = run.register_node(plugin_name="p", node_type="source", node_id="src")
    real = os.write
    failed: list[str] = []

    def write(fd: int, data: bytes) -> int:
        if not failed and "pack-" in os.readlink(f"/proc/self/fd/{fd}"):
            failed.append("pack")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(DiskFullError):
        run.create_row(source_node_id=src, row_index=0, data={"first": 1}, row_id="r1")
    assert failed
    monkeypatch.undo()
    run.create_row(source_node_id=src, row_index=1, data={"second": 2}, row_id="r2")
    run.complete()
    run.close()
    events = events_of(store, "run-enospc")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    rows = [e for e in events if isinstance(e, RowCreated)]
    # The failed commit could not be undone (the event was already chained), so it is
    # written by the next flush instead of leaving a hole in the chain.
    assert [r.row_id for r in rows] == ["r1", "r2"]
    assert store.payloads.get_json(rows[0].source_data_ref) == {"first": 1}
    assert store.payloads.get_json(rows[1].source_data_ref) == {"second": 2}


def test_resume_records_the_torn_tail_it_cut(tmp_path: Path) -> None:
    with AuditStore.open(tmp_path / "a", durability="always") as store:
        run = store.start_run(run_id="torn", export=None, sql=False)
        run.register_node(plugin_name="s", node_type="source", node_id="src")
        run.close()
        segment = next(store.journal_dir("torn").glob("*.jsonl"))
        with open(segment, "ab") as fh:
            fh.write(b'{"type":"row_created","run_id":"torn","seq":3')
        resumed = store.resume_run("torn")
        resumed.close()
        interrupted = list(store.read_journal("torn"))[-2]
        assert type(interrupted).__name__ == "RunInterrupted"
        assert interrupted.bytes_dropped == len(b'{"type":"row_created","run_id":"torn","seq":3')  # type: ignore[attr-defined]
        assert interrupted.last_seq == 2  # type: ignore[attr-defined]
