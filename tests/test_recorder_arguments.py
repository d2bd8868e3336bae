"""Every recorder argument is checked before anything is appended (issue 10, items 1, 2, 8).

A value of the wrong type, or one the export and its verifiers could not carry, raises a
typed error naming the argument and the value passed; the journal is left exactly as it
was and the run goes on. Values that can be carried -- subclasses of JSON types among
them -- are recorded as their plain JSON values, exported and verified.
"""

from __future__ import annotations

import collections
import datetime as dt
import enum
import hashlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from auditjournal import (
    AuditJournalError,
    AuditStore,
    CanonicalizationError,
    InvalidEventError,
    InvalidIdError,
    RunRecorder,
    Selection,
    extract_bundle,
    verify_bundle,
)
from auditjournal.evidence.verify import verify_export
from auditjournal.model.canonical import MAX_SAFE_INTEGER, MAX_VALUE_DEPTH
from auditjournal.model.events import (
    ArtifactRecorded,
    BaseEvent,
    BatchCreated,
    BatchMemberAdded,
    BatchOutputRecorded,
    BatchUpdated,
    CallRecorded,
    CheckpointRecorded,
    EdgeRegistered,
    FieldResolutionRecorded,
    NodeRegistered,
    NodeStateCompleted,
    NodeStateStarted,
    OperationCompleted,
    OperationStarted,
    PreflightResultRecorded,
    RoutingEventRecorded,
    RowCreated,
    RunCompleted,
    RunStarted,
    SchemaContractRecorded,
    SecretResolutionRecorded,
    TokenCreated,
    TokenOutcomeRecorded,
    TransformErrorRecorded,
    ValidationErrorRecorded,
)

HASH = "c" * 64


# how the `store` fixture (conftest.py) opens its AuditStore (flushed where compared)
pytestmark = pytest.mark.store_options(durability="none")


@dataclass
class Ids:
    src: str
    sink: str
    edge: str
    row: str
    tok: str
    open_state: str
    closed_state: str


def setup_run(run: RunRecorder) -> Ids:
    src = run.register_node(plugin_name="csv", node_type="source", node_id="src")
    sink = run.register_node(plugin_name="out", node_type="sink", node_id="sink")
    edge = run.register_edge(from_node_id=src, to_node_id=sink, label="go", edge_id="e1")
    row = run.create_row(source_node_id=src, row_index=0, data={"r": 0}, row_id="r0")
    tok = run.create_token(row_id=row, token_id="tok0")
    open_state = run.begin_node_state(
        token_id=tok, node_id=sink, step_index=1, input_data={}, state_id="st-open"
    )
    closed = run.begin_node_state(
        token_id=tok, node_id=sink, step_index=2, input_data={}, state_id="st-done"
    )
    run.complete_node_state(closed, status="completed")
    run.begin_operation(node_id=src, operation_type="source_load", operation_id="op-open")
    agg = run.register_node(plugin_name="agg", node_type="aggregation", node_id="agg")
    run.create_batch(aggregation_node_id=agg, batch_id="b-open")
    return Ids(src, sink, edge, row, tok, open_state, closed)


def journal_bytes(store: AuditStore, run_id: str) -> bytes:
    for recorder in store._recorders:  # what is buffered goes to the files first
        recorder._journal.flush(fsync=False)
    return b"".join(p.read_bytes() for p in sorted(store.journal_dir(run_id).glob("*.jsonl")))


def assert_refused(
    store: AuditStore, run: RunRecorder, call: Callable[[], object], error: type[Exception]
) -> str:
    """``call`` raises ``error``, nothing is appended, the journal stays readable and the
    run goes on; returns the message."""
    before, last = journal_bytes(store, run.run_id), run.last_seq
    with pytest.raises(error) as info:
        call()
    assert run.last_seq == last
    assert journal_bytes(store, run.run_id) == before
    assert len(read_events(store, run.run_id)) == last
    return str(info.value)


def read_events(store: AuditStore, run_id: str) -> list[BaseEvent]:
    journal_bytes(store, run_id)  # flushes
    return list(store.read_journal(run_id))


@pytest.fixture
def run(store: AuditStore) -> Iterator[tuple[RunRecorder, Ids]]:
    recorder = store.start_run(run_id="run-args", export=None, sql=False)
    ids = setup_run(recorder)
    yield recorder, ids
    if not recorder.completed:  # the run goes on after every refusal
        recorder.complete()
    recorder.close()
    events = list(store.read_journal("run-args"))
    assert isinstance(events[-1], RunCompleted)


# -- item 1: the seventeen wrongly typed arguments that used to poison the journal ----------

Call = Callable[[RunRecorder, Ids], object]

WRONG_TYPES: list[tuple[str, type[Exception], Call, str]] = [
    (
        "branch_name",
        InvalidEventError,
        lambda r, i: r.create_token(row_id=i.row, branch_name=5),
        "5",
    ),
    (
        "fork_group_id",
        InvalidIdError,
        lambda r, i: r.create_token(row_id=i.row, fork_group_id=3),
        "3",
    ),
    (
        "join_group_id",
        InvalidIdError,
        lambda r, i: r.create_token(row_id=i.row, join_group_id=3.5),
        "3.5",
    ),
    (
        "expand_group_id",
        InvalidIdError,
        lambda r, i: r.create_token(row_id=i.row, expand_group_id=True),
        "True",
    ),
    (
        "sink_name",
        InvalidEventError,
        lambda r, i: r.record_token_outcome(token_id=i.tok, outcome="completed", sink_name=7),
        "7",
    ),
    (
        "context",
        InvalidEventError,
        lambda r, i: r.record_token_outcome(token_id=i.tok, outcome="completed", context=[1]),
        "[1]",
    ),
    (
        "routing_group_id",
        InvalidIdError,
        lambda r, i: r.record_routing_event(
            state_id=i.open_state, edge_id=i.edge, routing_group_id=5
        ),
        "5",
    ),
    (
        "error",
        InvalidEventError,
        lambda r, i: r.record_call(
            state_id=i.open_state, call_type="llm", status="error", request={}, error="boom"
        ),
        "'boom'",
    ),
    (
        "operation_id",
        InvalidIdError,
        lambda r, i: r.record_call(operation_id=5, call_type="sql", status="success", request={}),
        "5",
    ),
    (
        "success_reason",
        InvalidEventError,
        lambda r, i: r.complete_node_state(i.open_state, status="completed", success_reason="ok"),
        "'ok'",
    ),
    (
        "error",
        InvalidEventError,
        lambda r, i: r.complete_node_state(i.open_state, status="failed", error=["x"]),
        "['x']",
    ),
    (
        "input_schema",
        InvalidEventError,
        lambda r, i: r.register_node(plugin_name="p", node_type="gate", input_schema=[1, 2]),
        "[1, 2]",
    ),
    (
        "output_schema",
        InvalidEventError,
        lambda r, i: r.register_node(plugin_name="p", node_type="gate", output_schema="s"),
        "'s'",
    ),
    (
        "config",
        InvalidEventError,
        lambda r, i: r.register_node(plugin_name="p", node_type="gate", config=[1]),
        "[1]",
    ),
    (
        "error",
        InvalidEventError,
        lambda r, i: r.complete("failed", error="pipeline crashed"),
        "'pipeline crashed'",
    ),
]


@pytest.mark.parametrize(
    ("argument", "error", "call", "value"),
    WRONG_TYPES,
    ids=[f"{n}-{c[0]}" for n, c in enumerate(WRONG_TYPES)],
)
def test_wrongly_typed_argument_is_refused_naming_it_and_its_value(
    store: AuditStore,
    run: tuple[RunRecorder, Ids],
    argument: str,
    error: type[Exception],
    call: Call,
    value: str,
) -> None:
    recorder, ids = run
    message = assert_refused(store, recorder, lambda: call(recorder, ids), error)
    assert argument in message
    assert value in message


@pytest.mark.parametrize("config", [[1, 2], "abc", 5, ("a", 1)])
def test_start_run_refuses_a_config_that_is_not_an_object(store: AuditStore, config: Any) -> None:
    with pytest.raises(InvalidEventError, match="config") as info:
        store.start_run(run_id="r1", config=config, export=None, sql=False)
    assert repr(config) in str(info.value)
    assert store.run_ids() == []  # no journal was created
    store.start_run(run_id="r1", config={"ok": True}, export=None, sql=False).complete()


@pytest.mark.parametrize("settings", [[1, 2], "abc", {"x": float("nan")}])
def test_start_run_refuses_settings_that_are_not_an_object(
    store: AuditStore, settings: Any
) -> None:
    with pytest.raises(AuditJournalError, match="settings"):
        store.start_run(run_id="r1", settings=settings, export=None, sql=False)
    assert store.run_ids() == []


def test_wrongly_typed_ids_and_parents_are_typed_errors(
    store: AuditStore, run: tuple[RunRecorder, Ids]
) -> None:
    recorder, ids = run
    assert_refused(store, recorder, lambda: recorder.create_token(row_id=[ids.row]), InvalidIdError)  # type: ignore[arg-type]
    assert_refused(
        store,
        recorder,
        lambda: recorder.complete_node_state({"s": 1}, status="completed"),  # type: ignore[arg-type]
        InvalidIdError,
    )
    for parents in ("tok0", 5, None):
        message = assert_refused(
            store,
            recorder,
            lambda p=parents: recorder.create_token(row_id=ids.row, parent_token_ids=p),
            InvalidEventError,
        )
        assert "parent_token_ids" in message
    assert_refused(
        store,
        recorder,
        lambda: recorder.create_token(row_id=ids.row, parent_token_ids=[[ids.tok]]),
        InvalidIdError,
    )
    assert_refused(
        store,
        recorder,
        lambda: recorder.register_node(plugin_name="p", node_type=["source"]),  # type: ignore[arg-type]
        InvalidEventError,
    )


FREE_TEXT: list[tuple[str, Callable[[RunRecorder, Ids, str], object]]] = [
    ("plugin_name", lambda r, i, t: r.register_node(plugin_name=t, node_type="gate")),
    (
        "plugin_version",
        lambda r, i, t: r.register_node(plugin_name="p", node_type="gate", plugin_version=t),
    ),
    ("label", lambda r, i, t: r.register_edge(from_node_id=i.src, to_node_id=i.sink, label=t)),
    ("branch_name", lambda r, i, t: r.create_token(row_id=i.row, branch_name=t)),
    (
        "sink_name",
        lambda r, i, t: r.record_token_outcome(token_id=i.tok, outcome="completed", sink_name=t),
    ),
    (
        "artifact_type",
        lambda r, i, t: r.record_artifact(
            state_id=i.closed_state,
            sink_node_id=i.sink,
            artifact_type=t,
            path_or_uri="out.csv",
            content_hash=HASH,
            size_bytes=1,
        ),
    ),
    (
        "path_or_uri",
        lambda r, i, t: r.record_artifact(
            state_id=i.closed_state,
            sink_node_id=i.sink,
            artifact_type="file",
            path_or_uri=t,
            content_hash=HASH,
            size_bytes=1,
        ),
    ),
]


@pytest.mark.parametrize(("argument", "call"), FREE_TEXT, ids=[f[0] for f in FREE_TEXT])
@pytest.mark.parametrize(
    ("text", "needle"),
    [("x\ud800y", "lone surrogate"), ("\udfff", "lone surrogate"), ("a\x00b", "NUL")],
)
def test_free_text_with_a_lone_surrogate_or_nul_is_a_typed_error(
    store: AuditStore,
    run: tuple[RunRecorder, Ids],
    argument: str,
    call: Callable[[RunRecorder, Ids, str], object],
    text: str,
    needle: str,
) -> None:
    recorder, ids = run
    message = assert_refused(store, recorder, lambda: call(recorder, ids, text), InvalidEventError)
    assert argument in message and needle in message


@pytest.mark.parametrize(
    "value", [10**400, -(10**400), 2**53, 1e20, float(2**53), float("nan"), "1.5", True, [1]]
)
def test_a_number_the_export_cannot_write_is_a_typed_error(
    store: AuditStore, run: tuple[RunRecorder, Ids], value: Any
) -> None:
    recorder, ids = run
    message = assert_refused(
        store,
        recorder,
        lambda: recorder.record_call(
            state_id=ids.open_state, call_type="llm", status="success", request={}, latency_ms=value
        ),
        InvalidEventError,
    )
    assert "latency_ms" in message
    message = assert_refused(
        store,
        recorder,
        lambda: recorder.complete_node_state(ids.open_state, status="completed", duration_ms=value),
        InvalidEventError,
    )
    assert "duration_ms" in message


def test_numbers_at_the_edges_of_what_the_export_writes_are_accepted(
    store: AuditStore, run: tuple[RunRecorder, Ids]
) -> None:
    recorder, ids = run
    for latency in (MAX_SAFE_INTEGER, float(2**53 - 1), 1e21, 1.5e300, 0, -2.5):
        recorder.record_call(
            state_id=ids.open_state,
            call_type="llm",
            status="success",
            request={},
            latency_ms=latency,
        )
    calls = [e for e in read_events(store, recorder.run_id) if isinstance(e, CallRecorded)]
    assert [c.latency_ms for c in calls] == [
        float(2**53 - 1),
        float(2**53 - 1),
        1e21,
        1.5e300,
        0.0,
        -2.5,
    ]


# -- item 2: one rule for what can be carried, the same at the call and in every reader ---


def test_an_integral_float_beyond_2_53_is_refused_wherever_it_is_recorded(
    store: AuditStore, run: tuple[RunRecorder, Ids]
) -> None:
    recorder, ids = run
    for value in (1e18, 1e20):
        calls: list[tuple[str, Callable[[], object]]] = [
            (
                "config",
                lambda v=value: recorder.register_node(
                    plugin_name="p", node_type="gate", config={"k": v}
                ),
            ),
            (
                "error",
                lambda v=value: recorder.complete_node_state(
                    ids.open_state, status="failed", error={"k": [v]}
                ),
            ),
            (
                "context",
                lambda v=value: recorder.record_token_outcome(
                    token_id=ids.tok, outcome="failed", context={"k": v}
                ),
            ),
            (
                "data",
                lambda v=value: recorder.create_row(source_node_id=ids.src, row_index=1, data=[v]),
            ),
            ("error", lambda v=value: recorder.complete("failed", error={"k": v})),
        ]
        for argument, call in calls:
            message = assert_refused(store, recorder, call, CanonicalizationError)
            assert message.startswith(f"{argument}: float {value!r}")
    with pytest.raises(CanonicalizationError, match="config: float 1e"):
        store.start_run(run_id="r-big", config={"k": 1e20}, export=None, sql=False)


@pytest.mark.parametrize(
    ("argument", "call"),
    [
        ("row_index", lambda r, i, n: r.create_row(source_node_id=i.src, row_index=n, data={})),
        (
            "step_index",
            lambda r, i, n: r.begin_node_state(
                token_id=i.tok, node_id=i.sink, step_index=n, input_data={}
            ),
        ),
        (
            "attempt",
            lambda r, i, n: r.begin_node_state(
                token_id=i.tok, node_id=i.sink, step_index=1, attempt=n, input_data={}
            ),
        ),
        (
            "ordinal",
            lambda r, i, n: r.record_routing_event(
                state_id=i.open_state, edge_id=i.edge, ordinal=n
            ),
        ),
        (
            "call_index",
            lambda r, i, n: r.record_call(
                state_id=i.open_state, call_type="llm", status="success", request={}, call_index=n
            ),
        ),
        (
            "size_bytes",
            lambda r, i, n: r.record_artifact(
                state_id=i.closed_state,
                sink_node_id=i.sink,
                artifact_type="file",
                path_or_uri="o",
                content_hash=HASH,
                size_bytes=n,
            ),
        ),
    ],
)
def test_a_count_beyond_2_53_is_refused(
    store: AuditStore, run: tuple[RunRecorder, Ids], argument: str, call: Callable[..., object]
) -> None:
    recorder, ids = run
    for n in (2**60 + 1, 2**64 + 1, MAX_SAFE_INTEGER + 1, -1):
        message = assert_refused(
            store, recorder, lambda n=n: call(recorder, ids, n), InvalidEventError
        )
        assert argument in message and str(n) in message
    call(recorder, ids, MAX_SAFE_INTEGER)  # the largest count is accepted


def nest(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def test_a_payload_too_deep_for_its_record_is_refused_naming_the_argument(
    store: AuditStore, run: tuple[RunRecorder, Ids]
) -> None:
    recorder, ids = run
    message = assert_refused(
        store,
        recorder,
        lambda: recorder.create_row(
            source_node_id=ids.src, row_index=1, data=nest(MAX_VALUE_DEPTH + 1)
        ),
        CanonicalizationError,
    )
    assert message.startswith("data: value is nested deeper than 511 levels")
    message = assert_refused(
        store,
        recorder,
        lambda: recorder.register_node(
            plugin_name="p", node_type="gate", config={"c": nest(MAX_VALUE_DEPTH)}
        ),
        CanonicalizationError,
    )
    assert message.startswith("config: value is nested deeper")


def test_what_is_accepted_at_the_limits_is_exported_extracted_and_verified(
    tmp_path: Path,
) -> None:
    """The deepest payload, the largest counts and the floats around the refused range
    pass the whole chain: live export, verify with the journal, extract, verify-bundle."""
    with AuditStore.open(tmp_path / "audit") as store:
        with store.start_run(
            run_id="limits", config={"big": 1e21, "safe": float(2**53 - 1)}, sql=False
        ) as run:
            src = run.register_node(
                plugin_name="p", node_type="source", config={"tiny": 5e-324, "huge": 1.7e308}
            )
            sink = run.register_node(plugin_name="s", node_type="sink")
            row = run.create_row(
                source_node_id=src, row_index=MAX_SAFE_INTEGER, data=nest(MAX_VALUE_DEPTH)
            )
            tok = run.create_token(row_id=row)
            st = run.begin_node_state(
                token_id=tok, node_id=sink, step_index=MAX_SAFE_INTEGER, input_data={"a": -1e300}
            )
            run.record_call(
                state_id=st,
                call_type="llm",
                status="error",
                request=nest(MAX_VALUE_DEPTH),
                latency_ms=float(2**53 - 1),
                error={"e": nest(MAX_VALUE_DEPTH - 2)},
                call_index=MAX_SAFE_INTEGER,
            )
            run.complete_node_state(
                st, status="failed", error=nest(MAX_VALUE_DEPTH), duration_ms=1e21
            )
            run.record_artifact(
                state_id=st,
                sink_node_id=sink,
                artifact_type="file",
                path_or_uri="out",
                content_hash=HASH,
                size_bytes=MAX_SAFE_INTEGER,
            )
            run.record_token_outcome(token_id=tok, outcome="failed", context=nest(MAX_VALUE_DEPTH))
        export = store.export_dir("limits")
        report = verify_export(export, journal=(store.journal_dir("limits"), store.payloads))
        assert report.ok, [c.line() for c in report.checks if not c.ok]
        bundle = extract_bundle(export, Selection(row_id=row))
        bundle = msgspec.json.decode(msgspec.json.encode(bundle))  # as written and read back
        assert len(bundle["records"]) >= 5
        verdict = verify_bundle(bundle)
        assert verdict.ok, verdict.lines


# -- item 8: smaller gaps -------------------------------------------------------------------


@pytest.mark.parametrize("value", ["../x", "a/b", "", ".hidden", "x" * 129])
def test_group_ids_are_validated_like_other_ids(
    store: AuditStore, run: tuple[RunRecorder, Ids], value: str
) -> None:
    recorder, ids = run
    for argument in ("fork_group_id", "join_group_id", "expand_group_id"):
        message = assert_refused(
            store,
            recorder,
            lambda a=argument: recorder.create_token(row_id=ids.row, **{a: value}),
            InvalidIdError,
        )
        assert argument in message
    assert_refused(
        store,
        recorder,
        lambda: recorder.record_routing_event(
            state_id=ids.open_state, edge_id=ids.edge, routing_group_id=value
        ),
        InvalidIdError,
    )
    assert_refused(
        store,
        recorder,
        lambda: recorder.record_call(
            operation_id=value, call_type="sql", status="success", request={}
        ),
        InvalidIdError,
    )


@pytest.mark.parametrize(
    "value", ["zz", "C" * 64, "c" * 63, "c" * 65, "g" * 64, 5, None, b"c" * 32, " " + "c" * 63]
)
def test_content_hash_must_be_a_sha256_hex_digest(
    store: AuditStore, run: tuple[RunRecorder, Ids], value: Any
) -> None:
    recorder, ids = run
    message = assert_refused(
        store,
        recorder,
        lambda: recorder.record_artifact(
            state_id=ids.closed_state,
            sink_node_id=ids.sink,
            artifact_type="file",
            path_or_uri="out.csv",
            content_hash=value,
            size_bytes=1,
        ),
        InvalidEventError,
    )
    assert "content_hash" in message and "64 lowercase hex" in message
    recorder.record_artifact(
        state_id=ids.closed_state,
        sink_node_id=ids.sink,
        artifact_type="file",
        path_or_uri="out.csv",
        content_hash=hashlib.sha256(b"out").hexdigest(),
        size_bytes=1,
    )


@pytest.mark.parametrize(
    "schema",
    [
        {"type": 5},
        {"type": "strng"},
        {"properties": {"a": 5}},
        {"required": "a"},
        {"items": [{"type": 1}]},
        {"minimum": "0"},
        {"anyOf": []},
        {"$schema": "http://json-schema.org/draft-07/schema#", "exclusiveMinimum": True},
    ],
)
def test_a_schema_no_json_schema_draft_accepts_is_refused(
    store: AuditStore, run: tuple[RunRecorder, Ids], schema: dict[str, Any]
) -> None:
    recorder, _ = run
    for argument in ("input_schema", "output_schema"):
        message = assert_refused(
            store,
            recorder,
            lambda a=argument: recorder.register_node(
                plugin_name="p", node_type="gate", **{a: schema}
            ),
            InvalidEventError,
        )
        assert f"{argument} is not a valid JSON Schema" in message


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
        {"type": "array", "items": [{"type": "string"}], "additionalItems": False},  # draft 7
        {"type": "number", "minimum": 0, "exclusiveMinimum": True},  # draft 4
        {"type": "string", "pattern": "(?<year>[0-9]{4})"},  # an ECMA-262 regex
        {"type": "object", "nullable": True, "x-extension": {"any": "thing"}},  # OpenAPI
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "prefixItems": [{}]},
        {"$schema": "https://example.com/my-dialect", "type": "integer"},
        {},
    ],
)
def test_schemas_of_every_draft_register(
    store: AuditStore, run: tuple[RunRecorder, Ids], schema: dict[str, Any]
) -> None:
    recorder, _ = run
    node = recorder.register_node(plugin_name="p", node_type="gate", input_schema=schema)
    event = [e for e in read_events(store, recorder.run_id) if isinstance(e, NodeRegistered)][-1]
    assert (event.node_id, event.input_schema) == (node, schema)


@pytest.mark.parametrize("value", [{"a": 1}, 5, None, ["csv"], b"csv"])
def test_plugin_name_and_version_must_be_text(
    store: AuditStore, run: tuple[RunRecorder, Ids], value: Any
) -> None:
    recorder, _ = run
    for argument in ("plugin_name", "plugin_version"):
        kwargs = {"plugin_name": "p", "node_type": "gate", argument: value}
        message = assert_refused(
            store, recorder, lambda k=kwargs: recorder.register_node(**k), InvalidEventError
        )
        assert argument in message


def test_a_refused_call_does_not_move_the_call_index_on(
    store: AuditStore, run: tuple[RunRecorder, Ids]
) -> None:
    recorder, ids = run
    assert_refused(
        store,
        recorder,
        lambda: recorder.record_call(
            state_id=ids.open_state, call_type="llm", status="success", request={}, call_id="../c"
        ),
        InvalidIdError,
    )
    recorder.record_call(state_id=ids.open_state, call_type="llm", status="success", request={})
    call = [e for e in read_events(store, recorder.run_id) if isinstance(e, CallRecorded)][-1]
    assert call.call_index == 0


class Colour(enum.StrEnum):
    RED = "red"


class Kind(enum.StrEnum):
    SOURCE = "source"
    SINK = "sink"


class Level(enum.IntEnum):
    HIGH = 3


class Text(str):
    def __str__(self) -> str:
        return "not what is recorded"


class Number(float):
    pass


class Items(list[Any]):
    pass


def test_subclasses_of_json_types_are_recorded_as_their_base_value(tmp_path: Path) -> None:
    counts: collections.defaultdict[str, int] = collections.defaultdict(int)
    counts["n"] += 2
    ordered = collections.OrderedDict([("z", Level.HIGH), (Colour.RED, Number(1.5))])
    plain_ordered = {"z": 3, "red": 1.5}
    with AuditStore.open(tmp_path / "audit") as store:
        with store.start_run(
            run_id="subclasses", config=ordered, settings=counts, sql=False
        ) as run:
            src = run.register_node(
                plugin_name=Text("csv"),
                node_type=Kind.SOURCE,
                plugin_version=Text("1"),
                config=counts,
                output_schema=collections.OrderedDict(type="object"),
                node_id=Text("src"),
            )
            sink = run.register_node(plugin_name="out", node_type=Kind.SINK)
            edge = run.register_edge(from_node_id=src, to_node_id=sink, label=Colour.RED)
            row = run.create_row(
                source_node_id=src, row_index=Level.HIGH, data=Items([ordered, counts])
            )
            tok = run.create_token(row_id=row, branch_name=Colour.RED, fork_group_id=Colour.RED)
            st = run.begin_node_state(
                token_id=tok, node_id=sink, step_index=Level.HIGH, input_data=ordered
            )
            run.record_routing_event(state_id=st, edge_id=edge, reason=ordered, ordinal=Level.HIGH)
            run.record_call(
                state_id=st,
                call_type=Text("llm"),
                status="success",
                request=ordered,
                latency_ms=Number(2.5),
                error=ordered,
            )
            run.complete_node_state(
                st, status="completed", duration_ms=Level.HIGH, success_reason=ordered
            )
            run.record_artifact(
                state_id=st,
                sink_node_id=sink,
                artifact_type=Text("file"),
                path_or_uri=Text("out.csv"),
                content_hash=HASH,
                size_bytes=Level.HIGH,
            )
            run.record_token_outcome(
                token_id=tok, outcome="completed", sink_name=Colour.RED, context=ordered
            )
        events = list(store.read_journal("subclasses"))
        by_type = {type(e): e for e in reversed(events)}  # the first of each type
        assert by_type[RunStarted].config == plain_ordered
        node = by_type[NodeRegistered]
        assert (node.plugin_name, node.plugin_version, node.node_id) == ("csv", "1", "src")
        assert by_type[RowCreated].row_index == 3
        assert store.payloads.get(by_type[RowCreated].source_data_ref) == (
            b'[{"red":1.5,"z":3},{"n":2}]'
        )
        token = by_type[TokenCreated]
        assert (token.branch_name, token.fork_group_id) == ("red", "red")
        assert by_type[NodeStateCompleted].success_reason == plain_ordered
        assert by_type[NodeStateCompleted].duration_ms == 3.0
        assert by_type[CallRecorded].error == plain_ordered
        assert by_type[TokenOutcomeRecorded].context == plain_ordered
        assert by_type[ArtifactRecorded].size_bytes == 3
        # in memory too, the events hold plain values, as read back
        for event in events:
            assert event == msgspec.json.decode(msgspec.json.encode(event), type=type(event))
        export = store.export_dir("subclasses")
        report = verify_export(export, journal=(store.journal_dir("subclasses"), store.payloads))
        assert report.ok, [c.line() for c in report.checks if not c.ok]


def test_plain_enums_are_refused_as_ambiguous(
    store: AuditStore, run: tuple[RunRecorder, Ids]
) -> None:
    class Pigeon(enum.Enum):
        HOMING = 1

    recorder, ids = run
    message = assert_refused(
        store,
        recorder,
        lambda: recorder.create_row(source_node_id=ids.src, row_index=1, data={"p": Pigeon.HOMING}),
        CanonicalizationError,
    )
    assert ".value or .name" in message


# -- every argument of every method, its wrong type derived from the declared event field ---

EVENT_OF: dict[str, type[BaseEvent]] = {
    "register_node": NodeRegistered,
    "register_edge": EdgeRegistered,
    "create_row": RowCreated,
    "create_token": TokenCreated,
    "begin_node_state": NodeStateStarted,
    "complete_node_state": NodeStateCompleted,
    "record_routing_event": RoutingEventRecorded,
    "record_call": CallRecorded,
    "record_artifact": ArtifactRecorded,
    "record_token_outcome": TokenOutcomeRecorded,
    "complete": RunCompleted,
    "start_run": RunStarted,
    "begin_operation": OperationStarted,
    "complete_operation": OperationCompleted,
    "create_batch": BatchCreated,
    "add_batch_member": BatchMemberAdded,
    "update_batch": BatchUpdated,
    "record_batch_output": BatchOutputRecorded,
    "record_validation_error": ValidationErrorRecorded,
    "record_transform_error": TransformErrorRecorded,
    "record_checkpoint": CheckpointRecorded,
    "record_secret_resolution": SecretResolutionRecorded,
    "record_preflight_result": PreflightResultRecorded,
    "record_field_resolution": FieldResolutionRecorded,
    "record_schema_contract": SchemaContractRecorded,
}
SLOTS = {
    "create_row": ("data", "source_data_ref", "source_data_hash"),
    "begin_node_state": ("input_data", "input_data_ref", "input_hash"),
    "complete_node_state": ("output_data", "output_data_ref", "output_hash"),
    "record_routing_event": ("reason", "reason_ref", "reason_hash"),
    "record_call": ("request", "request_ref", "request_hash"),
    "record_artifact": ("sink_input", "sink_input_ref", "sink_input_hash"),
    "begin_operation": ("input_data", "input_data_ref", "input_hash"),
    "complete_operation": ("output_data", "output_data_ref", "output_hash"),
    "record_validation_error": ("data", "row_data_ref", "row_hash"),
    "record_transform_error": ("data", "row_data_ref", "row_hash"),
    "record_token_outcome": ("error", "error_hash"),
}
"""Arguments that are one slot in several forms: one given, the others absent."""
WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
PAYLOADS: set[str] = {
    "aggregation_state",
    "coalesce_state",
    "data",
    "input_data",
    "output_data",
    "reason",
    "request",
    "response",
    "sink_input",
}


def valid_calls(ids: Ids) -> dict[str, dict[str, Any]]:
    """A call of each method that would be accepted (every parameter given)."""
    return {
        "register_node": {
            "plugin_name": "p",
            "node_type": "gate",
            "plugin_version": "1",
            "config": {},
            "determinism": "seeded",
            "input_schema": {"type": "object"},
            "output_schema": {"type": "object"},
            "node_id": "n-new",
            "payload_policy": "hash_only",
            "config_hash": hashlib.sha256(b"{}").hexdigest(),
            "secret_fields": ["my_secret"],
            "schema_hash": "h",
            "sequence_in_pipeline": 2,
            "schema_mode": "fixed",
            "schema_fields": [{"name": "a"}],
            "occurred_at": WHEN,
        },
        "register_edge": {
            "from_node_id": ids.src,
            "to_node_id": ids.sink,
            "label": "l",
            "mode": "copy",
            "edge_id": "e-new",
            "occurred_at": WHEN,
        },
        "create_row": {
            "source_node_id": ids.src,
            "row_index": 1,
            "data": {},
            "row_id": "r-new",
            "source_data_ref": None,
            "source_data_hash": None,
            "occurred_at": WHEN,
        },
        "create_token": {
            "row_id": ids.row,
            "parent_token_ids": [ids.tok],
            "branch_name": "b",
            "fork_group_id": "f",
            "join_group_id": "j",
            "expand_group_id": "x",
            "token_id": "t-new",
            "step_in_pipeline": 2,
            "occurred_at": WHEN,
        },
        "begin_node_state": {
            "token_id": ids.tok,
            "node_id": ids.sink,
            "step_index": 3,
            "input_data": {},
            "attempt": 1,
            "state_id": "s-new",
            "input_data_ref": None,
            "input_hash": None,
            "context_before": {"b": 1},
            "occurred_at": WHEN,
        },
        "complete_node_state": {
            "state_id": ids.open_state,
            "status": "failed",
            "output_data": {},
            "duration_ms": 1.5,
            "error": {"e": 1},
            "success_reason": {"r": 1},
            "output_data_ref": None,
            "output_hash": None,
            "context_after": {"a": 1},
            "occurred_at": WHEN,
        },
        "record_routing_event": {
            "state_id": ids.open_state,
            "edge_id": ids.edge,
            "mode": "copy",
            "reason": {},
            "routing_group_id": "g",
            "ordinal": 1,
            "routing_event_id": "rte-new",
            "reason_ref": None,
            "reason_hash": None,
            "occurred_at": WHEN,
        },
        "record_call": {
            "call_type": "http",
            "status": "error",
            "request": {},
            "response": {},
            "latency_ms": 2.5,
            "error": {"e": 1},
            "state_id": ids.open_state,
            "operation_id": None,
            "call_index": 4,
            "call_id": "c-new",
            "request_ref": None,
            "request_hash": None,
            "response_ref": None,
            "response_hash": None,
            "secret_fields": ("session",),
            "occurred_at": WHEN,
        },
        "record_artifact": {
            "state_id": ids.closed_state,
            "sink_node_id": ids.sink,
            "artifact_type": "file",
            "path_or_uri": "o",
            "content_hash": HASH,
            "size_bytes": 1,
            "sink_input": [],
            "artifact_id": "a-new",
            "sink_input_ref": None,
            "sink_input_hash": None,
            "idempotency_key": "k-1",
            "occurred_at": WHEN,
        },
        "record_token_outcome": {
            "token_id": ids.tok,
            "outcome": "failed",
            "sink_name": "s",
            "error": {"e": 1},
            "context": {"c": 1},
            "outcome_id": "o-new",
            "batch_id": "b-open",
            "fork_group_id": "fg",
            "join_group_id": "jg",
            "expand_group_id": "xg",
            "expected_branches": ["a", "b"],
            "error_hash": None,
            "occurred_at": WHEN,
        },
        "complete": {
            "status": "failed",
            "error": {"e": 1},
            "reproducibility_grade": "replay_reproducible",
            "occurred_at": WHEN,
        },
        "begin_operation": {
            "node_id": ids.sink,
            "operation_type": "sink_write",
            "input_data": {"rows": 1},
            "input_data_ref": None,
            "input_hash": None,
            "operation_id": "op-new",
            "occurred_at": WHEN,
        },
        "complete_operation": {
            "operation_id": "op-open",
            "status": "failed",
            "output_data": [1],
            "output_data_ref": None,
            "output_hash": None,
            "error_message": "disk full",
            "duration_ms": 1.5,
            "occurred_at": WHEN,
        },
        "create_batch": {
            "aggregation_node_id": "agg",
            "attempt": 1,
            "batch_id": "b-new",
            "occurred_at": WHEN,
        },
        "add_batch_member": {
            "batch_id": "b-open",
            "token_id": ids.tok,
            "ordinal": 3,
            "occurred_at": WHEN,
        },
        "update_batch": {
            "batch_id": "b-open",
            "status": "completed",
            "trigger_type": "count",
            "trigger_reason": "5 rows",
            "aggregation_state_id": ids.closed_state,
            "occurred_at": WHEN,
        },
        "record_batch_output": {
            "batch_id": "b-open",
            "output_type": "token",
            "output_id": ids.tok,
            "batch_output_id": "bo-new",
            "occurred_at": WHEN,
        },
        "record_validation_error": {
            "error": "bad",
            "schema_mode": "fixed",
            "destination": "discard",
            "data": {"x": 1},
            "row_data_ref": None,
            "row_hash": None,
            "node_id": ids.src,
            "row_id": ids.row,
            "violation_type": "type_mismatch",
            "original_field_name": "X ",
            "normalized_field_name": "x",
            "expected_type": "int",
            "actual_type": "str",
            "validation_error_id": "verr-new",
            "occurred_at": WHEN,
        },
        "record_transform_error": {
            "token_id": ids.tok,
            "node_id": ids.sink,
            "destination": "errors",
            "data": {"x": 1},
            "row_data_ref": None,
            "row_hash": None,
            "error_details": {"type": "E"},
            "state_id": ids.closed_state,
            "transform_error_id": "terr-new",
            "occurred_at": WHEN,
        },
        "record_checkpoint": {
            "token_id": ids.tok,
            "node_id": ids.sink,
            "sequence_number": 4,
            "upstream_topology_hash": "t",
            "node_config_hash": "c",
            "aggregation_state": {"b": []},
            "coalesce_state": None,
            "format_version": 4,
            "checkpoint_id": "cp-new",
            "occurred_at": WHEN,
        },
        "record_secret_resolution": {
            "env_var_name": "KEY",
            "source": "keyvault",
            "fingerprint": HASH,
            "vault_url": "https://v",
            "secret_name": "k",
            "resolution_latency_ms": 2.5,
            "secret_resolution_id": "sec-new",
            "occurred_at": WHEN,
        },
        "record_preflight_result": {
            "result_type": "readiness_check",
            "name": "db",
            "result": {"ok": True},
            "preflight_result_id": "pre-new",
            "occurred_at": WHEN,
        },
        "record_field_resolution": {
            "mapping": {"A ": "a"},
            "normalization_version": "1",
            "source_node_id": ids.src,
            "occurred_at": WHEN,
        },
        "record_schema_contract": {
            "contract": {"mode": "FIXED"},
            "contract_hash": "abc",
            "node_id": ids.src,
            "role": "output",
            "occurred_at": WHEN,
        },
    }


def wrong_values(t: msgspec.inspect.Type) -> list[Any]:
    """Values that are not of the declared type ``t`` (None where ``t`` admits it is fine)."""
    i = msgspec.inspect
    if isinstance(t, i.UnionType):
        return [
            v
            for member in t.types
            if not isinstance(member, i.NoneType)
            for v in wrong_values(member)
        ]
    if isinstance(t, i.StrType | i.LiteralType):
        return [5, 2.5, True, ["x"], {"x": 1}, b"x"]
    if isinstance(t, i.IntType):
        return ["1", 1.0, True, [1], None]
    if isinstance(t, i.FloatType):
        return ["1.5", True, [1.5], {"ms": 1}]
    if isinstance(t, i.DictType):
        return [[1], "x", 5, True, ("a", 1)]
    if isinstance(t, i.VarTupleType):
        return ["tok0", 5, [5], [["tok0"]], {"tok0": 1}]
    if isinstance(t, i.DateTimeType):
        return ["2026-01-02T03:04:05Z", 5, 1.5, dt.date(2026, 1, 2), dt.datetime(2026, 1, 2)]
    if isinstance(t, i.BoolType):
        return ["true", 1]
    if isinstance(t, i.ListType):
        return ["x", 5, True]
    raise AssertionError(f"no wrong values for {t}")


def argument_cases() -> list[tuple[str, str, list[Any]]]:
    ids = Ids("src", "sink", "e1", "r0", "tok0", "st-open", "st-done")
    cases = []
    for method, call in valid_calls(ids).items():
        fields = {f.name: f.type for f in msgspec.inspect.type_info(EVENT_OF[method]).fields}  # type: ignore[attr-defined]
        for name in call:
            if name == "data" and method.endswith("_error"):
                wrong = []  # rejected data: anything, kept as a stand-in if not canonical
            elif name in PAYLOADS or (method == "record_token_outcome" and name == "error"):
                wrong = [object(), {1, 2}, float("nan")]  # a payload: any JSON value
            elif name == "config":
                wrong = wrong_values(fields["config"])
            elif name == "expected_branches":
                wrong = ["x", 5, True, {1, 2}, [float("nan")]]
            elif name not in fields:  # a stand-in for a field of another name
                wrong = {"ordinal": [-1, "1", 1.5], "secret_fields": [5, "api_key", {"k"}]}.get(
                    name, [5, ["x"], b"x"]
                )
            else:
                wrong = wrong_values(fields[name])
            if inspect.signature(getattr(RunRecorder, method)).parameters[name].default is None:
                wrong = [v for v in wrong if v is not None]  # None: "generate it" (call_index)
            cases.append((method, name, wrong))
    return cases


def test_every_parameter_of_every_method_is_covered() -> None:
    ids = Ids("src", "sink", "e1", "r0", "tok0", "st-open", "st-done")
    for method, call in valid_calls(ids).items():
        parameters = set(inspect.signature(getattr(RunRecorder, method)).parameters) - {"self"}
        assert parameters == set(call), method


@pytest.mark.parametrize(
    ("method", "argument", "values"), argument_cases(), ids=lambda v: v if type(v) is str else ""
)
def test_a_wrongly_typed_argument_of_any_method_is_refused(
    store: AuditStore, run: tuple[RunRecorder, Ids], method: str, argument: str, values: list[Any]
) -> None:
    recorder, ids = run
    for value in values:
        refuse(store, recorder, ids, method, argument, value)
    # the same call with the right value is accepted (so the refusals were about this argument)
    good = valid_calls(ids)[method]
    if method in ("complete_node_state", "complete_operation", "update_batch"):
        key = next(iter(good))
        getattr(recorder, method)(good.pop(key), **good)
    else:
        getattr(recorder, method)(**good)


def refuse(
    store: AuditStore, recorder: RunRecorder, ids: Ids, method: str, argument: str, value: Any
) -> None:
    kwargs = valid_calls(ids)[method]
    if method == "record_call" and argument == "operation_id":
        kwargs["state_id"] = None  # exactly one owner
    if argument in SLOTS.get(method, ()):  # the other forms of the slot: absent
        for other in SLOTS[method]:
            if other != argument:
                kwargs.pop(other) if other in PAYLOADS else kwargs.update({other: None})
    kwargs[argument] = value
    if method in ("complete_node_state", "complete_operation", "update_batch"):
        key = next(iter(kwargs))
        first = kwargs.pop(key)
        assert_refused(
            store,
            recorder,
            lambda: getattr(recorder, method)(first, **kwargs),
            AuditJournalError,
        )
    else:
        assert_refused(
            store, recorder, lambda: getattr(recorder, method)(**kwargs), AuditJournalError
        )


def test_start_run_arguments_are_checked_before_the_run_exists(store: AuditStore) -> None:
    fields = {f.name: f.type for f in msgspec.inspect.type_info(RunStarted).fields}  # type: ignore[attr-defined]
    for argument in ("config", "settings"):
        for value in wrong_values(fields[argument]):
            with pytest.raises(AuditJournalError):
                store.start_run(run_id="r-new", export=None, sql=False, **{argument: value})
    for value in ("../x", 5, ["r"]):
        with pytest.raises(AuditJournalError):
            store.start_run(run_id=value, export=None, sql=False)
    assert store.run_ids() == []


def test_a_datetime_config_value_is_still_accepted(store: AuditStore) -> None:
    run = store.start_run(
        run_id="r-dt", config={"when": dt.datetime(2024, 1, 1, 12, 0)}, export=None, sql=False
    )
    run.complete()
    started = next(iter(store.read_journal("r-dt")))
    assert isinstance(started, RunStarted)
    assert started.config == {"when": "2024-01-01T12:00:00Z"}


def test_a_failure_whose_message_has_a_lone_surrogate_is_still_recorded(
    store: AuditStore,
) -> None:
    with pytest.raises(FileNotFoundError), store.start_run(run_id="r-fail", export=None, sql=False):
        raise FileNotFoundError("no such file: 'report-\udcff.csv'")
    completed = read_events(store, "r-fail")[-1]
    assert isinstance(completed, RunCompleted) and completed.status == "failed"
    assert completed.error == {
        "type": "FileNotFoundError",
        "message": "no such file: 'report-\\udcff.csv'",
    }


# -- secret_fields: names only (a None or a number in it used to end in AttributeError) --------


@pytest.mark.parametrize("names", [[None], [1], "api_key", ("ok", b"key"), {"api_key"}])
def test_secret_fields_that_are_not_names_are_a_typed_error(
    store: AuditStore, run: tuple[RunRecorder, Ids], names: Any
) -> None:
    recorder, ids = run
    message = assert_refused(
        store,
        recorder,
        lambda: recorder.register_node(
            plugin_name="p", node_type="transform", config={"a": 1}, secret_fields=names
        ),
        InvalidEventError,
    )
    assert "secret_fields" in message
    message = assert_refused(
        store,
        recorder,
        lambda: recorder.record_call(
            state_id=ids.open_state,
            call_type="http",
            status="success",
            request={"a": 1},
            secret_fields=names,
        ),
        InvalidEventError,
    )
    assert "secret_fields" in message
    with pytest.raises(InvalidEventError, match="secret_fields"):
        store.start_run(run_id="r-names", config={"a": 1}, secret_fields=names, sql=False)
    assert "r-names" not in store.run_ids()
