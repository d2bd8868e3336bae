"""The SQL projector's generated row builders (sql/rowbuild.py, issue 13) against the
reference mapping (sql/rowmap.py ``row_values``, ``completion_values``): for every event
type, random field values (Hypothesis) give the same columns and the same values --
the reference's values put through the dialect's bind processors, None as the fast
path's NULL -- on SQLite's path (text datetimes, integer booleans, NULL as NaN) and on
PostgreSQL's COPY path (values as they are)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import msgspec.inspect as mi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from auditjournal.model.events import BaseEvent, NodeStateCompleted, NodeStateStarted
from auditjournal.sql import bulkinsert, rowbuild
from auditjournal.sql.rowmap import COMPLETION_COLUMNS, INSERTS, completion_values, row_values
from auditjournal.sql.schema import node_states

_DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.psycopg.dialect()}
_ZONES = st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30))])
# no NUL (PostgreSQL text holds none) and no lone surrogate (no journal holds one: the
# recorder refuses them, UTF-8 cannot carry them)
_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=6)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)


def _values(t: mi.Type) -> st.SearchStrategy[Any]:
    """Values of a field's type (as msgspec describes it)."""
    if isinstance(t, mi.UnionType):
        return st.one_of(*(_values(u) for u in t.types))
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.StrType):
        return st.sampled_from(["", "retain", "x"]) | _TEXT
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.IntType):
        return st.integers(-(2**40), 2**40)
    if isinstance(t, mi.FloatType):
        return st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(t, mi.DateTimeType):
        return st.datetimes(
            min_value=dt.datetime(2, 1, 1), max_value=dt.datetime(9998, 1, 1), timezones=_ZONES
        )
    if isinstance(t, mi.VarTupleType | mi.ListType):
        return st.lists(_values(t.item_type), max_size=3).map(tuple)
    if isinstance(t, mi.DictType):
        return st.dictionaries(_TEXT, _JSON, max_size=3)
    return _JSON  # Any


def _events(kind: type[BaseEvent]) -> st.SearchStrategy[BaseEvent]:
    fields = {f.name: _values(f.type) for f in mi.type_info(kind).fields}
    return st.fixed_dictionaries(fields).map(lambda values: kind(**values))


_KINDS = sorted(INSERTS, key=lambda k: k.__name__)
_ANY_EVENT = st.one_of(*(_events(k) for k in [*_KINDS, NodeStateCompleted]))


def _ready(path: bulkinsert.FastPath, table: Any, columns: tuple[str, ...], row: Any) -> list[Any]:
    """The reference row as the fast path must hand it to the driver; NULL spelled out
    (NaN is not equal to itself)."""
    out = []
    for column, value in zip(columns, row, strict=True):
        process = path.processor(table, column)
        value = value if process is None else process(value)
        out.append(path.null if value is None else value)
    return [_null(v, path) for v in out]


def _null(value: Any, path: bulkinsert.FastPath) -> Any:
    if value is path.null or (isinstance(value, float) and math.isnan(value)):
        return "<NULL>"
    return value


@pytest.mark.parametrize("name", sorted(_DIALECTS))
@settings(max_examples=300, deadline=None)
@given(event=_ANY_EVENT)
def test_generated_rows_are_the_reference_rows(name: str, event: BaseEvent) -> None:
    dialect = _DIALECTS[name]
    path = bulkinsert.fast_path(dialect)
    assert path is not None
    fast, reference = rowbuild.row_makers(dialect), rowbuild.reference_makers()
    if type(event) is NodeStateCompleted:
        values = completion_values(event)
        assert tuple(values) == COMPLETION_COLUMNS
        expected = _ready(path, node_states, COMPLETION_COLUMNS, values.values())
        assert [_null(v, path) for v in fast.complete(event)] == expected
        return
    maker, ref = fast.makers[type(event)], reference.makers[type(event)]
    assert maker.table is ref.table
    assert maker.columns == ref.columns
    expected = _ready(path, ref.table, ref.columns, ref.build(event))
    assert [_null(v, path) for v in maker.build(event)] == expected


def test_every_event_type_with_a_table_has_a_generated_builder() -> None:
    for dialect in _DIALECTS.values():
        assert set(rowbuild.row_makers(dialect).makers) == set(INSERTS)


def test_a_started_state_ends_with_the_completion_columns() -> None:
    """The projector merges a completion into its started row by replacing the tail."""
    for makers in (rowbuild.row_makers(_DIALECTS["sqlite"]), rowbuild.reference_makers()):
        columns = makers.makers[NodeStateStarted].columns
        assert columns[-len(COMPLETION_COLUMNS) :] == COMPLETION_COLUMNS


def test_sqlite_nulls_are_nan_only_where_sqlite_stores_nan_as_null() -> None:
    path = bulkinsert.fast_path(_DIALECTS["sqlite"])
    assert path is not None
    assert isinstance(path.null, float)
    assert math.isnan(path.null)
    assert bulkinsert.fast_path(_DIALECTS["postgresql"]).null is None  # type: ignore[union-attr]


def test_other_dialects_use_the_reference() -> None:
    from sqlalchemy.dialects import mysql

    assert bulkinsert.fast_path(mysql.dialect()) is None
    makers = rowbuild.row_makers(mysql.dialect())
    assert makers.insert is rowbuild.reference_makers().insert


@pytest.mark.parametrize("name", sorted(_DIALECTS))
@settings(max_examples=150, deadline=None)
@given(started=_events(NodeStateStarted), completed=_events(NodeStateCompleted))
def test_a_state_started_and_completed_in_one_batch_is_one_reference_row(
    name: str, started: NodeStateStarted, completed: NodeStateCompleted
) -> None:
    dialect = _DIALECTS[name]
    path = bulkinsert.fast_path(dialect)
    assert path is not None
    fast, reference = rowbuild.row_makers(dialect), rowbuild.reference_makers()
    columns = reference.makers[NodeStateStarted].columns
    values = row_values(INSERTS[NodeStateStarted], started) | completion_values(completed)
    expected = _ready(path, node_states, columns, [values[c] for c in columns])
    assert [_null(v, path) for v in fast.merged(started, completed)] == expected
    assert _ready(path, node_states, columns, reference.merged(started, completed)) == expected


def test_a_batch_turns_every_started_state_into_a_row() -> None:
    """Started states wait as events for their completion; at write time each is a row
    (completed: merged; still open: the open row; a state_id started twice: both)."""
    import dataclasses

    from auditjournal.sql.projector import _Batch

    ts = dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)

    def started(state_id: str, seq: int) -> NodeStateStarted:
        return NodeStateStarted(
            run_id="r", seq=seq, ts=ts, state_id=state_id, token_id="t", row_id="w",
            node_id="n", step_index=1, input_hash="h", input_data_ref="h",
        )  # fmt: skip

    done = NodeStateCompleted(run_id="r", seq=9, ts=ts, state_id="a", status="completed")
    written: list[Any] = []
    makers = rowbuild.row_makers(_DIALECTS["sqlite"])
    makers = dataclasses.replace(makers, insert=lambda c, t, cols, rows: written.append(rows))
    batch = _Batch("r", makers)
    for event in (started("a", 1), started("b", 2), started("a", 3), done):
        batch.add(event)
    batch.write(None)  # type: ignore[arg-type]
    (rows,) = written
    build = makers.makers[NodeStateStarted].build
    merged = makers.merged(started("a", 3), done)
    assert rows == [build(started("a", 1)), build(started("b", 2)), merged]
