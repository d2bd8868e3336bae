"""Property (issue 10, item 1): whatever a caller passes to any recorder method, the call
either raises a typed error (an AuditJournalError) and appends nothing, or records an
event that is readable, exported live, replayed the same, verified with its journal and
proven by an extracted bundle.

Hypothesis drives a run call by call: each argument is a valid value (an id the run
knows, a vocabulary word, JSON) or garbage (ints, huge and non-finite floats, bools,
bytes, None, lists, nested dicts, lone surrogates, enums, path tricks, values too deep
for a record, ...). The default suite runs a few examples; ``-m slow`` runs many more.
"""

from __future__ import annotations

import collections
import enum
import inspect
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from auditjournal import (
    AuditJournalError,
    AuditStore,
    ExportSettings,
    RunRecorder,
    Selection,
    extract_bundle,
    replay_export,
    verify_bundle,
)
from auditjournal.evidence.verify import verify_export
from auditjournal.model.canonical import MAX_VALUE_DEPTH
from auditjournal.model.events import (
    CALL_STATUSES,
    CALL_TYPES,
    DETERMINISM,
    EDGE_MODES,
    NODE_STATE_STATUSES,
    NODE_TYPES,
    RUN_STATUSES,
    TOKEN_OUTCOMES,
    RunCompleted,
)

METHODS = (
    "register_node",
    "register_edge",
    "create_row",
    "create_token",
    "begin_node_state",
    "complete_node_state",
    "record_routing_event",
    "record_call",
    "record_artifact",
    "record_token_outcome",
    "complete",
)
STEPS = (*METHODS[:-1], *METHODS[2:-1], *METHODS[2:-1])  # complete ends the run: drawn rarely


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Pigeon(enum.Enum):
    HOMING = 1


def nest(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


# -- values ---------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(min_value=-(2**53 - 1), max_value=2**53 - 1)  # not 2**53 .. 1e21, refused
    | st.floats(min_value=1e21, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(max_size=4), json_values, max_size=3)

garbage_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([-1, 2**53 - 1, 2**53, 2**60 + 1, 2**64 + 1, 10**400, -(10**400)]),
    st.floats(),
    st.sampled_from([1e18, 1e20, float(2**53), 1e21, float("nan"), float("inf"), -0.0, 5e-324]),
    st.text(max_size=6),
    st.sampled_from(["\ud800", "a\udfffb", "a\x00b", "../x", "a/b", "", ".hidden", "x" * 129]),
    st.binary(max_size=6),
    st.sampled_from([Colour.RED, Level.HIGH, Pigeon.HOMING, object(), {1, 2}, (1, "a")]),
)
garbage = st.one_of(
    garbage_scalars,
    st.lists(garbage_scalars, max_size=3),
    st.dictionaries(st.text(max_size=3) | st.integers(), garbage_scalars, max_size=3),
    st.dictionaries(st.text(max_size=3), st.lists(garbage_scalars, max_size=2), max_size=2),
    st.sampled_from([MAX_VALUE_DEPTH - 1, MAX_VALUE_DEPTH, MAX_VALUE_DEPTH + 1]).map(nest),
    st.just(collections.OrderedDict([("b", 1), (Colour.RED, [Level.HIGH])])),
    st.just(collections.defaultdict(list, {"a": [1.5]})),
    st.just({"type": 5}),
)


@dataclass
class Known:
    """The ids the run has recorded, so that valid arguments can refer to them."""

    nodes: list[str] = field(default_factory=list)
    edges: list[str] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    open_states: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    fresh: int = 0

    def new_id(self) -> str:
        self.fresh += 1
        return f"given-{self.fresh}"


def choose(pool: list[str]) -> st.SearchStrategy[Any]:
    return st.sampled_from(pool) if pool else st.just("missing")


NEW_IDS = {
    "register_node": "node_id",
    "register_edge": "edge_id",
    "create_row": "row_id",
    "create_token": "token_id",
    "begin_node_state": "state_id",
    "record_routing_event": "routing_event_id",
    "record_call": "call_id",
    "record_artifact": "artifact_id",
    "record_token_outcome": "outcome_id",
}
"""The parameter that names the entity a method creates (the others refer to known ones)."""


def valid(method: str, name: str, known: Known) -> st.SearchStrategy[Any]:
    """A value that is right for parameter ``name`` of ``method`` (most of the time)."""
    if NEW_IDS.get(method) == name:
        return st.builds(known.new_id)
    by_name: dict[str, Callable[[], st.SearchStrategy[Any]]] = {
        "node_type": lambda: st.sampled_from(sorted(NODE_TYPES)),
        "determinism": lambda: st.sampled_from(sorted(DETERMINISM)),
        "mode": lambda: st.sampled_from(sorted(EDGE_MODES)),
        "call_type": lambda: st.sampled_from(sorted(CALL_TYPES)),
        "outcome": lambda: st.sampled_from(sorted(TOKEN_OUTCOMES)),
        "plugin_name": lambda: st.text(max_size=8),
        "plugin_version": lambda: st.text(max_size=4),
        "label": lambda: st.text(max_size=6),
        "artifact_type": lambda: st.sampled_from(["file", "table"]),
        "path_or_uri": lambda: st.text(max_size=10),
        "branch_name": lambda: st.text(max_size=6),
        "sink_name": lambda: st.text(max_size=6),
        "content_hash": lambda: st.sampled_from(["c" * 64, "0123456789abcdef" * 4]),
        "config": lambda: json_objects,
        "error": lambda: json_objects,
        "success_reason": lambda: json_objects,
        "context": lambda: json_objects,
        "input_schema": lambda: st.sampled_from([{"type": "object"}, {}, {"type": "array"}]),
        "output_schema": lambda: st.sampled_from([{"type": "object"}, {"required": []}]),
        "from_node_id": lambda: choose(known.nodes),
        "to_node_id": lambda: choose(known.nodes),
        "source_node_id": lambda: choose(known.nodes),
        "node_id": lambda: choose(known.nodes),
        "sink_node_id": lambda: choose(known.nodes),
        "row_id": lambda: choose(known.rows),
        "token_id": lambda: choose(known.tokens),
        "edge_id": lambda: choose(known.edges),
        "parent_token_ids": lambda: st.lists(choose(known.tokens), max_size=2),
        "latency_ms": lambda: st.floats(min_value=0, max_value=1e6),
        "duration_ms": lambda: st.floats(min_value=0, max_value=1e6),
        "operation_id": lambda: st.sampled_from(["op-1", "op-2"]),
        "fork_group_id": lambda: st.sampled_from(["fork-1", "g:2"]),
        "join_group_id": lambda: st.sampled_from(["join-1"]),
        "expand_group_id": lambda: st.sampled_from(["exp-1"]),
        "routing_group_id": lambda: st.sampled_from(["rg-1"]),
    }
    if name in by_name:
        return by_name[name]()
    if name == "status":
        statuses = {"record_call": CALL_STATUSES, "complete": RUN_STATUSES}
        return st.sampled_from(sorted(statuses.get(method, NODE_STATE_STATUSES)))
    if name == "state_id":
        return choose(known.open_states) | choose(known.states)
    if name in ("row_index", "step_index", "attempt", "ordinal", "call_index", "size_bytes"):
        return st.integers(min_value=0, max_value=1000)
    return json_values  # a payload: data, input_data, output_data, reason, request, ...


@st.composite
def arguments(draw: st.DrawFn, method: str, known: Known) -> dict[str, Any]:
    parameters = inspect.signature(getattr(RunRecorder, method)).parameters
    kwargs: dict[str, Any] = {}
    for name, parameter in parameters.items():
        if name == "self":
            continue
        optional = parameter.default is not inspect.Parameter.empty
        roll = draw(st.integers(min_value=0, max_value=9))
        if optional and roll < 3:
            continue  # the default
        kwargs[name] = draw(garbage if roll == 9 else valid(method, name, known))
    return kwargs


# -- the property ---------------------------------------------------------------------------


def journal_bytes(store: AuditStore, run: RunRecorder) -> bytes:
    run._journal.flush(fsync=False)
    return b"".join(p.read_bytes() for p in sorted(store.journal_dir(run.run_id).glob("*.jsonl")))


def call(run: RunRecorder, method: str, kwargs: dict[str, Any]) -> Any:
    if method == "complete_node_state" and "state_id" in kwargs:
        kwargs = dict(kwargs)
        return run.complete_node_state(kwargs.pop("state_id"), **kwargs)
    return getattr(run, method)(**kwargs)


def remember(known: Known, method: str, kwargs: dict[str, Any], result: Any) -> None:
    lists = {
        "register_node": known.nodes,
        "register_edge": known.edges,
        "create_row": known.rows,
        "create_token": known.tokens,
        "begin_node_state": known.open_states,
    }
    if method in lists:
        lists[method].append(result)
    if method == "begin_node_state":
        known.states.append(result)
    if method == "complete_node_state" and kwargs["state_id"] in known.open_states:
        known.open_states.remove(kwargs["state_id"])


def seed_graph(run: RunRecorder) -> Known:
    """A node of each kind, an edge, a row, a token and an open state to refer to."""
    known = Known()
    for node_type in ("source", "transform", "sink"):
        known.nodes.append(run.register_node(plugin_name=node_type, node_type=node_type))
    known.edges.append(
        run.register_edge(from_node_id=known.nodes[0], to_node_id=known.nodes[1], label="go")
    )
    known.rows.append(run.create_row(source_node_id=known.nodes[0], row_index=0, data={}))
    known.tokens.append(run.create_token(row_id=known.rows[0]))
    state = run.begin_node_state(
        token_id=known.tokens[0], node_id=known.nodes[1], step_index=1, input_data={}
    )
    known.open_states.append(state)
    known.states.append(state)
    return known


def start(store: AuditStore, data: st.DataObject) -> RunRecorder:
    """start_run with drawn arguments: refused without creating a run, or started."""
    live = ExportSettings(chunk_size_bytes=4000)
    for _ in range(3):
        kwargs: dict[str, Any] = {"run_id": "run-p", "export": live, "sql": False}
        for name, good in (
            ("config", json_objects),
            ("settings", json_objects),
            ("run_id", st.just("run-p")),
            ("export", st.just(live)),
            ("sql", st.just(False)),
        ):
            roll = data.draw(st.integers(min_value=0, max_value=4), label=f"how {name}")
            if roll == 0:
                kwargs[name] = data.draw(garbage, label=name)
            elif roll == 1:
                kwargs[name] = data.draw(good, label=name)
        try:
            return store.start_run(**kwargs)
        except AuditJournalError:
            assert store.run_ids() == []
    return store.start_run(run_id="run-p", export=live, sql=False)


def check_property(data: st.DataObject, steps: int) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        AuditStore.open(Path(tmp) / "audit", durability="none") as store,
    ):
        run = start(store, data)
        run_id = run.run_id
        known = seed_graph(run)
        for _ in range(data.draw(st.integers(min_value=1, max_value=steps), label="steps")):
            method = data.draw(st.sampled_from(STEPS), label="method")
            kwargs = data.draw(arguments(method, known), label=method)
            before, last = journal_bytes(store, run), run.last_seq
            try:
                result = call(run, method, kwargs)
            except AuditJournalError as exc:
                assert run.last_seq == last
                assert journal_bytes(store, run) == before, "a refused call appended"
                event(f"refused: {type(exc).__name__}")
                continue
            event(f"recorded: {method}")
            assert run.last_seq == last + 1 or method == "complete"
            remember(known, method, kwargs, result)
        if not run.completed:
            run.complete()
        run.close()
        events = list(store.read_journal(run_id))  # readable, every one
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert any(isinstance(e, RunCompleted) for e in events)
        export = store.export_dir(run_id)
        if run.export_result is None:  # started without a live export: replay one
            sealed = replay_export(
                journal_dir=store.journal_dir(run_id),
                run_id=run_id,
                payloads=store.payloads,
                settings=ExportSettings(chunk_size_bytes=4000),
                prefix=export / "audit_trail",
            )
            assert sealed is not None
        # sealed, and equal to a fresh replay of the journal:
        report = verify_export(export, journal=(store.journal_dir(run_id), store.payloads))
        assert report.ok, [c.line() for c in report.checks if not c.ok]
        every = frozenset(range(1, len(events) + 1))
        bundle = extract_bundle(export, Selection(seqs=every))
        bundle = msgspec.json.decode(msgspec.json.encode(bundle))
        verdict = verify_bundle(bundle)
        assert verdict.ok, [line for line in verdict.lines if not line[1]]


PROPERTY = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY
@given(st.data())
def test_any_call_is_refused_with_nothing_appended_or_recorded_for_good(
    data: st.DataObject,
) -> None:
    check_property(data, steps=20)


@pytest.mark.slow
@settings(PROPERTY, max_examples=300)
@given(st.data())
def test_any_call_is_refused_or_recorded_for_good_deep(data: st.DataObject) -> None:
    check_property(data, steps=60)
