"""Property tests: the compiled record loop (``model/_records_accel.c``, issue 13 item 2)
gives exactly what ``RecordMaker.extend``'s Python loop gives -- the same records (seqs
and bytes), the same open states (also after a checkpoint), the same completeness
counts, the same events used, or the same error.

Events of every hot type are drawn with every field from its type (unicode and escapes,
ints beyond 64 bits, floats of every size, nested JSON, None, optional keys left out),
node states complete states started before (or restored from a checkpoint, or never
started), and some are made by hand with values the compiled loop leaves to Python (a
lone surrogate, a datetime in another zone or none, a str subclass, a payload getter
that fails or returns something else than bytes).

The compiled module is tested whether or not the checkout has built it: a missing one
is built from its C source into a temporary directory (skipped without a compiler).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hotpath_identity import _build_compiled
from test_roundtrip_properties import events_of

from auditjournal.fs.digests import leaf_hashes_python
from auditjournal.model import records as records_module
from auditjournal.model import recordvalues
from auditjournal.model.canonical import canonical_json
from auditjournal.model.events import (
    CallRecorded,
    NodeStateCompleted,
    NodeStateStarted,
    RoutingEventRecorded,
    RowCreated,
    RunCompleted,
    TokenCreated,
    TokenOutcomeRecorded,
)
from auditjournal.model.records import _HOT, RecordMaker

_TS = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The compiled loop: the checkout's build, else one made from its C source."""
    return _module(tmp_path_factory).extend


@pytest.fixture(scope="module")
def compiled_lines(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The compiled loop writing lines (extend_lines)."""
    return _module(tmp_path_factory).extend_lines


_built: list[Any] = []


def _module(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if recordvalues.compiled_extend is not None:
        from auditjournal.model import _records_accel

        return _records_accel
    if not _built:
        where = tmp_path_factory.mktemp("records")
        _built.append(_build_compiled(where, recordvalues, "_records_accel", libraries=["crypto"]))
    return _built[0]


def payload(ref: str) -> bytes:
    """A stand-in payload store: some canonical bytes per ref."""
    return canonical_json({"ref": ref, "n": [1, 2.5], "s": "é\n"})


def failing(ref: str) -> bytes:
    """A store refusing some payloads (a damaged one raises)."""
    if ref.startswith("a"):
        raise ValueError(f"damaged {ref}")
    return payload(ref)


def odd(ref: str) -> Any:
    """A getter giving other buffers than bytes (left to the Python handlers)."""
    return bytearray(payload(ref)) if ref.startswith("b") else payload(ref)


GETTERS: dict[str, Callable[[str], Any] | None] = {
    "none": None,
    "payload": payload,
    "failing": failing,
    "odd": odd,
}


def run(
    events: list[Any],
    get: Callable[[str], Any] | None,
    loop: Any,
    restore: dict[str, Any] | None = None,
    cut: int | None = None,
    overrides: Callable[[RecordMaker], dict[type, Any]] | None = None,
) -> Any:
    """What ``extend`` does with ``loop`` as the compiled loop (None: the Python one):
    events used, records, open states and counts, or the type of the error. With
    ``cut``, the events are fed in two batches, a checkpoint's snapshot between them."""
    maker = RecordMaker('run-é"1', get)
    if restore is not None:
        maker.restore(restore)
    seqs: list[int] = []
    records: list[bytes] = []
    used = []
    original = records_module.compiled_extend
    records_module.compiled_extend = loop
    try:
        batches = [events] if cut is None else [events[:cut], events[cut:]]
        for batch in batches:
            mine = None if overrides is None else overrides(maker)
            used.append(maker.extend(batch, seqs, records, mine))
            if cut is not None:  # a checkpoint between the batches, as the projector takes
                snap = msgspec.json.decode(msgspec.json.encode(maker.snapshot()))
                maker = RecordMaker('run-é"1', get)
                maker.restore(snap)
    except Exception as exc:
        return type(exc), seqs, records, maker.open_states, maker.tally
    finally:
        records_module.compiled_extend = original
    return used, seqs, records, maker.open_states, maker.tally


def both(events: list[Any], get: Callable[[str], Any] | None, compiled: Any, **kw: Any) -> None:
    want = run(events, get, None, **kw)
    got = run(events, get, compiled, **kw)
    assert got == want
    # the records are byte-identical, and so are the open states' values' types
    if not isinstance(got[0], type):
        for state_got, state_want in zip(got[3].values(), want[3].values(), strict=True):
            assert [type(v) for v in state_got.values()] == [type(v) for v in state_want.values()]


hot_events = st.one_of(
    events_of(RowCreated),
    events_of(TokenCreated),
    events_of(RoutingEventRecorded),
    events_of(CallRecorded),
    events_of(TokenOutcomeRecorded),
    events_of(NodeStateStarted),
)


@st.composite
def batches(draw: st.DrawFn) -> list[Any]:
    """Hot events, with completions of states started before (and of some never
    started), sometimes a run_completed and what follows it."""
    events = draw(st.lists(hot_events, max_size=10))
    started = [e.state_id for e in events if type(e) is NodeStateStarted]
    completions = draw(st.lists(events_of(NodeStateCompleted), max_size=len(started) + 1))
    for index, done in enumerate(completions):
        state = started[index] if index < len(started) else done.state_id
        done = msgspec.structs.replace(done, state_id=state)
        events.insert(draw(st.integers(0, len(events))), done)
    if draw(st.booleans()):
        completed = RunCompleted(run_id="r", seq=99, ts=_TS, status="completed")
        events.insert(draw(st.integers(0, len(events))), completed)
    return events


@given(
    events=batches(),
    getter=st.sampled_from(sorted(GETTERS)),
    cut=st.none() | st.integers(0, 12),
)
@settings(max_examples=200, deadline=None)
def test_the_compiled_loop_makes_what_the_python_loop_makes(
    compiled: Any, events: list[Any], getter: str, cut: int | None
) -> None:
    both(events, GETTERS[getter], compiled, cut=cut)


@given(
    started=events_of(NodeStateStarted),
    completed=events_of(NodeStateCompleted),
    getter=st.sampled_from(sorted(GETTERS)),
    change=st.sampled_from([{}, {"extra": 1}, {"attempt": None}, {"context_before": None}]),
)
@settings(max_examples=150, deadline=None)
def test_states_restored_from_a_checkpoint_complete_alike(
    compiled: Any,
    started: NodeStateStarted,
    completed: NodeStateCompleted,
    getter: str,
    change: dict[str, Any],
) -> None:
    """A checkpoint's open state (timestamps as text, other keys, one missing) completes
    as the Python handler completes it."""
    maker = RecordMaker("r", None)
    maker.records(started)
    snap = msgspec.json.decode(msgspec.json.encode(maker.snapshot()))
    state = snap["open_states"][started.state_id]
    for key, value in change.items():
        if key == "attempt":
            del state[key]
        else:
            state[key] = value
    completed = msgspec.structs.replace(completed, state_id=started.state_id)
    both([completed], GETTERS[getter], compiled, restore=snap)


@given(events=batches(), getter=st.sampled_from(sorted(GETTERS)))
@settings(max_examples=150, deadline=None)
def test_overridden_handlers_are_used_alike(compiled: Any, events: list[Any], getter: str) -> None:
    """The parallel replay's overrides (replay._range_handlers): a completion of a state
    never started set aside and run_completed left alone, in both loops alike."""

    def overrides(maker: RecordMaker) -> dict[type, Any]:
        def state_completed(event: NodeStateCompleted) -> list[tuple[int, bytes]]:
            if event.state_id in maker.open_states:  # what the compiled loop also does
                return maker.records(event)
            maker.tally["left"] = maker.tally.get("left", 0) + 1
            return []

        return {NodeStateCompleted: state_completed, RunCompleted: lambda event: []}

    want = run(events, GETTERS[getter], None, overrides=overrides)
    assert run(events, GETTERS[getter], compiled, overrides=overrides) == want


@given(events=batches(), getter=st.sampled_from(sorted(GETTERS)))
@settings(max_examples=150, deadline=None)
def test_the_lines_are_the_records_joined(
    compiled_lines: Any, events: list[Any], getter: str
) -> None:
    """extend_lines: the records of extend as the chunk writer's lines, with their leaf
    hashes (ChunkWriter.add_records' join and digests.leaf_hashes_python)."""
    get = GETTERS[getter]
    want = run(events, get, None)
    maker = RecordMaker('run-é"1', get)
    given_seqs: list[int] = [-1]  # extend_lines(..., seqs) appends to the caller's list
    try:
        got = compiled_lines(
            events, maker._handlers, _HOT, maker.run_id, get, maker.open_states,
            maker.tally, recordvalues.json_bytes, *([given_seqs] if getter != "none" else []),
        )  # fmt: skip
    except Exception as exc:
        assert isinstance(want[0], type) and isinstance(exc, want[0])
        assert (maker.open_states, maker.tally) == want[3:]
        return
    used, lines, lengths, seqs, leaves = got
    records = want[2]
    assert [used] == want[0] or (not events and used == 0)
    assert lines == b"".join(b"," + r + b"\n" for r in records)
    assert lengths == [len(r) for r in records]
    assert seqs == (want[1] if getter == "none" else [-1, *want[1]])
    assert seqs is given_seqs or getter == "none"
    assert leaves == leaf_hashes_python(records)
    assert (maker.open_states, maker.tally) == want[3:]


def _odd_values() -> Iterator[Any]:
    """Events with values the compiled loop leaves to the Python handlers."""

    class Text(str):
        pass

    base = {"run_id": "r", "seq": 3, "ts": _TS}
    row = {
        **base, "row_id": "w", "source_node_id": "n", "row_index": 0,
        "source_data_hash": "h", "source_data_ref": "ab",
    }  # fmt: skip
    yield RowCreated(**{**row, "row_id": "lone \ud800 surrogate"})
    yield RowCreated(**{**row, "row_id": Text("subclass")})
    yield RowCreated(**{**row, "row_index": 2**70})
    yield RowCreated(**{**row, "row_index": -(2**63)})
    yield RowCreated(**{**row, "row_index": 1.5})
    yield RowCreated(**{**row, "ts": dt.datetime(2024, 1, 1)})  # naive
    yield RowCreated(**{**row, "occurred_at": dt.datetime(2024, 1, 1)})
    zone = dt.timezone(dt.timedelta(hours=2))
    yield RowCreated(**{**row, "occurred_at": dt.datetime(2024, 1, 1, tzinfo=zone)})
    yield RowCreated(**{**row, "occurred_at": dt.datetime(1, 1, 1, tzinfo=dt.UTC)})
    yield RowCreated(**{**row, "source_data_hash": '\x00\x1f\x7f"\\/\u2028😀'})
    token = {**base, "token_id": "t", "row_id": "w"}
    yield TokenCreated(**{**token, "parent_token_ids": ("a", 1)})  # type: ignore[arg-type]
    yield TokenCreated(**{**token, "parent_token_ids": ["a", "b"]})  # type: ignore[arg-type]
    yield TokenOutcomeRecorded(
        **base, outcome_id="o", token_id="t", row_id="w", outcome=Text("completed")
    )
    number: Any = 5
    yield TokenOutcomeRecorded(**base, outcome_id="o", token_id="t", row_id="w", outcome=number)
    call = {
        **base, "call_id": "c", "call_index": 0, "call_type": "llm", "status": "success",
        "request_hash": "h", "request_ref": "cd",
    }  # fmt: skip
    for latency in (0.0001, 1e-5, 1e16, 123.0, -0.5, 2**53, 2**53 + 1, float("nan"), True):
        yield CallRecorded(**call, latency_ms=latency)  # type: ignore[arg-type]
    yield CallRecorded(**call, redacted=["x"])  # type: ignore[arg-type]
    yield CallRecorded(**call, error={"b": [1, 2.5, None], "a": "é"})
    started = {
        **base, "state_id": "s", "token_id": "t", "row_id": "w", "node_id": "n",
        "step_index": 0, "input_hash": "h", "input_data_ref": "ef",
    }  # fmt: skip
    yield NodeStateStarted(**started)
    yield NodeStateCompleted(**base, state_id="s", status="completed", duration_ms=1e300)
    yield NodeStateStarted(**{**started, "attempt": 2**65})
    yield NodeStateCompleted(**base, state_id="s", status="completed")
    yield NodeStateCompleted(**base, state_id="never", status="completed")


@pytest.mark.parametrize("getter", sorted(GETTERS))
def test_odd_values_are_left_to_the_python_handlers(compiled: Any, getter: str) -> None:
    for event in _odd_values():
        both([event], GETTERS[getter], compiled)
    both(list(_odd_values()), GETTERS[getter], compiled)


def test_the_compiled_loop_refuses_odd_arguments(compiled: Any) -> None:
    maker = RecordMaker("r", None)
    args = ([], [], [], maker._handlers, _HOT, "r", None, {}, {}, recordvalues.json_bytes)
    assert compiled(*args) == 0
    with pytest.raises(TypeError):
        compiled(*args[:-1])
    for index, bad in ((1, ()), (3, []), (4, _HOT[:-1]), (5, b"r"), (7, []), (8, None)):
        with pytest.raises(TypeError):
            compiled(*args[:index], bad, *args[index + 1 :])
    with pytest.raises(TypeError):
        compiled(5, *args[1:])
    # a run id it cannot write (a lone surrogate): the Python loop does it all
    assert compiled([], [], [], maker._handlers, _HOT, "\ud800", None, {}, {}, None) is None


def test_the_lines_loop_refuses_odd_arguments(compiled_lines: Any) -> None:
    maker = RecordMaker("r", None)
    args = ([], maker._handlers, _HOT, "r", None, {}, {}, recordvalues.json_bytes)
    assert compiled_lines(*args) == (0, b"", [], [], b"")
    with pytest.raises(TypeError):
        compiled_lines(*args[:-1])
    with pytest.raises(TypeError):
        compiled_lines(args[0], [], *args[2:])
    assert compiled_lines([], maker._handlers, _HOT, "\ud800", None, {}, {}, None) is None
    bad = {RowCreated: lambda event: [(1, "not bytes")]}  # a handler's record: a buffer
    row = RowCreated(
        run_id="r", ts=_TS, row_id="\ud800", source_node_id="n", row_index=0,
        source_data_hash="h", source_data_ref="ab",
    )  # fmt: skip
    with pytest.raises(TypeError):
        compiled_lines([row], bad, *args[2:])


def test_the_environment_can_leave_the_compiled_loop_unused() -> None:
    code = "from auditjournal.model import recordvalues; print(recordvalues.compiled_extend)"
    env = {**os.environ, "AUDITJOURNAL_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "None"


def test_a_getter_that_empties_the_open_state_does_not_break_the_loop(compiled: Any) -> None:
    """The compiled loop holds the open state's values while it calls back into Python
    (a getter could change the state's dict): it writes the record from the values it
    read, and nothing it reads is freed under it."""
    started = NodeStateStarted(
        run_id="r", seq=1, ts=_TS, state_id="s", token_id="t" * 40, row_id="w" * 40,
        node_id="n" * 40, step_index=0, input_hash="h" * 64, input_data_ref="ab" * 32,
    )  # fmt: skip
    completed = NodeStateCompleted(run_id="r", seq=2, ts=_TS, state_id="s", status="completed")
    maker = RecordMaker("r", None)
    maker.records(started)
    # a checkpoint's state: its values are referenced by its dict only
    snap = msgspec.json.decode(msgspec.json.encode(maker.snapshot()))

    def emptying(ref: str) -> bytes:
        maker.open_states.get("s", {}).clear()
        for state in held:
            state.clear()
        return payload(ref)

    held: list[dict[str, Any]] = []
    maker = RecordMaker("r", emptying)
    maker.restore(snap)
    held.append(maker.open_states["s"])
    seqs: list[int] = []
    records: list[bytes] = []
    args = (maker._handlers, _HOT, "r", emptying, maker.open_states, maker.tally)
    assert compiled([completed], seqs, records, *args, recordvalues.json_bytes) == 1
    record = msgspec.json.decode(records[0])
    assert record["input_hash"] == "h" * 64 and record["token_id"] == "t" * 40
    assert maker.open_states == {}
