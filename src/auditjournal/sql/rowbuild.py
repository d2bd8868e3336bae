"""Events -> rows of the audit tables as tuples ready for the driver (the SQL
projector's fast path, issue 13).

:func:`.rowmap.row_values` makes a dict per event (``asdict``, pops, renames,
fix-ups), and the insert then turned each dict into a tuple and ran the columns'
bind processors over it: five steps per row, about half the projector's CPU beside
the journal read and SQLite's own work. Here the same declarations
(:data:`.rowmap.INSERTS`, :data:`.rowmap.HASH_ONLY`) are compiled, once per event type
and dialect, into one function per event type that returns the row's tuple straight
from the event's attributes, with the dialect's bind processors (SQLite's datetime
text and booleans as integers; none for PostgreSQL's COPY) applied in place.

The functions are generated as Python source, like :mod:`dataclasses` generates
``__init__``: each column is one expression over the event ``e``, derived by running
:func:`.rowmap.row_values`' own steps over expressions instead of values, so the
columns and their order are the reference's. Only our declarations (struct field and
column names, which are identifiers) reach the source; values a processor or constant
needs are passed in the namespace, never spelled. Tests compare every event type with
the reference (tests/test_sql_rowbuild.py).

Thread-safety: makers are built once per dialect and cached; the cache is filled
idempotently (a race builds twice, both equal); makers hold no state.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from ..model.events import BaseEvent, NodeStateCompleted, NodeStateStarted
from . import bulkinsert
from .rowmap import (
    APPENDED_AT,
    COMPLETION_COLUMNS,
    DROPPED,
    HASH_ONLY,
    INSERTS,
    Insert,
    completion_values,
    json_text,
    row_values,
    utc,
)
from .schema import node_states

__all__ = ["Maker", "RowMakers", "reference_makers", "row_makers"]

Row = tuple[Any, ...]
Insert_ = Callable[[Any, sa.Table, tuple[str, ...], list[Row]], None]


@dataclass(frozen=True)
class Maker:
    """How one event type becomes a row of ``table``: ``build(event)`` gives the values
    of ``columns``, in that order."""

    table: sa.Table
    columns: tuple[str, ...]
    build: Callable[[Any], Row]


@dataclass(frozen=True)
class RowMakers:
    """Every event type's :class:`Maker`, the completion of a node state, and the insert
    that takes the rows.

    ``complete(e)`` gives a completed state's :data:`~.rowmap.COMPLETION_COLUMNS`, ready
    to replace the last columns of a ``node_states`` row started in the same batch;
    ``insert(conn, table, columns, rows)`` writes rows of ``table``."""

    makers: dict[type[BaseEvent], Maker]
    complete: Callable[[NodeStateCompleted], Row]
    insert: Insert_
    merged: Callable[[NodeStateStarted, NodeStateCompleted], Row]
    """The row of a state started and completed in one batch (the started row, its
    completion columns replaced)."""


# -- the reference: rowmap's dicts through SQLAlchemy ------------------------------------


def _columns(kind: type[BaseEvent], spec: Insert) -> tuple[str, ...]:
    return tuple(_expressions(kind, spec))


def _reference_maker(kind: type[BaseEvent], spec: Insert, columns: tuple[str, ...]) -> Maker:
    def build(event: Any) -> Row:
        values = row_values(spec, event)
        return tuple(values[c] for c in columns)

    return Maker(spec.table, columns, build)


def _generic_insert(conn: Any, table: sa.Table, columns: tuple[str, ...], rows: list[Row]) -> None:
    dicts = [dict(zip(columns, row, strict=True)) for row in rows]
    bulkinsert.insert_rows_generic(conn, table, dicts)


def reference_makers() -> RowMakers:
    """:func:`.rowmap.row_values` and SQLAlchemy's own executemany: what the fast path must
    equal, and what dialects without one use."""
    makers = {kind: _reference_maker(kind, spec, _order(kind)) for kind, spec in INSERTS.items()}
    started = makers[NodeStateStarted].build

    def complete(e: NodeStateCompleted) -> Row:
        return tuple(completion_values(e).values())

    def merged(s: NodeStateStarted, e: NodeStateCompleted) -> Row:
        return started(s)[: -len(COMPLETION_COLUMNS)] + complete(e)

    return RowMakers(makers, complete, _generic_insert, merged)


# -- the fast path: generated builders ---------------------------------------------------


def _attr(name: str, var: str = "e") -> str:
    if not name.isidentifier():  # struct fields are; never splice anything else
        raise ValueError(f"not a field name: {name!r}")
    return f"{var}.{name}"


def _expressions(kind: type[BaseEvent], spec: Insert, e: str = "e") -> dict[str, str]:
    """:func:`.rowmap.row_values`' steps, over expressions of the event ``e``: column ->
    its expression."""
    values = {f: _attr(f, e) for f in kind.__struct_fields__}
    ts = _UTC_TS.replace("e.", f"{e}.")
    del values["ts"], values["occurred_at"]
    if spec.ts_column is not None:
        values[spec.ts_column] = f"({ts} if {e}.occurred_at is None else {e}.occurred_at)"
    if spec.table in APPENDED_AT:
        values["appended_at"] = f"(None if {e}.occurred_at is None else {ts})"
    for old, new in spec.renamed:
        values[new] = values.pop(old)
    for name in spec.json_fields:
        value = values.pop(name)
        test = value if name == "redacted" else f"{value} is not None"  # as row_values
        values[name + "_json"] = f"(_json({value}) if {test} else None)"
    for name in DROPPED[kind]:
        del values[name]
    for column, _ in spec.constants:
        values[column] = f"_k_{column}"  # its value: in the namespace (see _compile)
    for fix, *args in HASH_ONLY.get(kind, ()):
        _FIXES[fix](values, *args)
    return values


def _kept(values: dict[str, str], slot: str, ref: str, hash_: str) -> None:
    values[slot + "_retained"] = f"(False if {values[ref]} is None and {values[hash_]} else None)"


def _not_kept(values: dict[str, str], flag: str, ref: str) -> None:
    kept = values[flag]
    values[ref] = f"(None if {kept} is False else {values[ref]})"
    values[flag] = f"(False if {kept} is False else None)"


def _retain_is_null(values: dict[str, str], policy: str) -> None:
    values[policy] = f"(None if {values[policy]} == 'retain' else {values[policy]})"


_FIXES: Final[dict[str, Callable[..., None]]] = {
    "kept": _kept,
    "not_kept": _not_kept,
    "retain_is_null": _retain_is_null,
}

_UTC_TS: Final = "(e.ts if e.ts.tzinfo is _UTC else _utc(e.ts))"
"""``utc(e.ts)``, without the call for the journal's own (UTC) timestamps."""

_COMPLETION: Final = {
    "status": "e.status",
    "output_hash": "e.output_hash",
    "output_data_ref": "e.output_data_ref",
    "duration_ms": "e.duration_ms",
    "error_json": "(_json(e.error) if e.error is not None else None)",
    "success_reason_json": "(_json(e.success_reason) if e.success_reason is not None else None)",
    "completed_at": f"({_UTC_TS} if e.occurred_at is None else e.occurred_at)",
    "seq": "e.seq",
    "appended_at": f"(None if e.occurred_at is None else {_UTC_TS})",
    "output_data_retained": "(False if e.output_data_ref is None and e.output_hash else None)",
    "context_after_json": "(_json(e.context_after) if e.context_after is not None else None)",
}
""":func:`.rowmap.completion_values`, as expressions."""
assert tuple(_COMPLETION) == COMPLETION_COLUMNS


def _order(kind: type[BaseEvent]) -> tuple[str, ...]:
    """The columns of ``kind``'s rows: :func:`.rowmap.row_values`' order, except that a
    started node state ends with the :data:`~.rowmap.COMPLETION_COLUMNS` (its completion
    in the same batch replaces them), and that in a table several event types fill
    (``run_interruptions``) all use the table's order, so their rows share one insert."""
    spec = INSERTS[kind]
    columns = _columns(kind, spec)
    if spec.table is node_states:
        columns = (*(c for c in columns if c not in COMPLETION_COLUMNS), *COMPLETION_COLUMNS)
    elif sum(s.table is spec.table for s in INSERTS.values()) > 1:
        names = spec.table.c.keys()
        columns = tuple(c for c in names if c in columns)
    return columns


_Processors = Callable[[sa.Table, str], Callable[[Any], Any] | None]

_TEXT_OF_DT: Final = (
    'v.isoformat(" ", "microseconds")[:26]' if bulkinsert.COMPILED_TEXT is None else "_text(v)"
)
""":func:`.bulkinsert.datetime_text` of an exact datetime ``v``: the compiled call (never
None for one), else its Python expression."""


def _compile(
    name: str,
    expressions: dict[str, str],
    columns: tuple[str, ...],
    table: sa.Table,
    processors: _Processors,
    null: Any,
    constants: dict[str, Any] | None = None,
    args: str = "e",
) -> Callable[..., Row]:
    constants = constants or {}
    namespace: dict[str, Any] = {"_utc": utc, "_json": json_text, "_N": null, **constants}
    namespace.update(_UTC=_dt.UTC, _DT=_dt.datetime, _text=bulkinsert.COMPILED_TEXT)
    parts = []
    for column in columns:
        expression = expressions[column]
        process = processors(table, column)
        if process is not None:
            namespace[f"_p_{column}"] = process
        if expression in constants:  # processed once, here
            value = constants[expression]
            value = value if process is None else process(value)
            namespace[expression] = null if value is None else value
            parts.append(expression)
        elif not table.c[column].nullable or (process is not None and process(None) is not None):
            # never NULL (a None fails the insert either way), or the processor decides
            parts.append(expression if process is None else f"_p_{column}({expression})")
        else:
            done = "v" if process is None else f"_p_{column}(v)"
            if process in bulkinsert.DATETIME_TEXT:  # its text, inline (a call less)
                done = f"({_TEXT_OF_DT} if type(v) is _DT else {done})"
            parts.append(f"(_N if (v := {expression}) is None else {done})")
    source = f"def {name}({args}):\n    return ({', '.join(parts)},)\n"
    exec(compile(source, f"<rowbuild {name}>", "exec"), namespace)
    build: Callable[..., Row] = namespace[name]
    return build


def _fast_makers(processors: _Processors, insert: Insert_, null: Any) -> RowMakers:
    makers = {}
    for kind, spec in INSERTS.items():
        columns = _order(kind)
        expressions = _expressions(kind, spec)
        constants = {f"_k_{column}": value for column, value in spec.constants}
        build = _compile(
            f"row_of_{kind.__name__}",
            expressions,
            columns,
            spec.table,
            processors,
            null,
            constants,
        )
        makers[kind] = Maker(spec.table, columns, build)
    complete = _compile(
        "completion", _COMPLETION, COMPLETION_COLUMNS, node_states, processors, null
    )
    started = _expressions(NodeStateStarted, INSERTS[NodeStateStarted], "s")
    both = {**started, **_COMPLETION}  # completion columns replaced; the order: started's
    merged = _compile(
        "merged", both, makers[NodeStateStarted].columns, node_states, processors, null, args="s, e"
    )
    return RowMakers(makers, complete, insert, merged)


_CACHE: dict[tuple[str, str, str], RowMakers] = {}


def row_makers(dialect: sa.Dialect) -> RowMakers:
    """The fastest correct makers for ``dialect``: generated builders feeding COPY
    (PostgreSQL with psycopg) or a raw ``executemany`` (SQLite), else the reference."""
    key = (dialect.name, dialect.driver, dialect.paramstyle)
    found = _CACHE.get(key)
    if found is None:
        path = bulkinsert.fast_path(dialect)
        if path is None:
            found = reference_makers()
        else:
            found = _fast_makers(path.processor, path.insert, path.null)
        _CACHE[key] = found
    return found
