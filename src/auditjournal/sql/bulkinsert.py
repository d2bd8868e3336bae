"""Many rows into one audit table, in the current transaction, at the driver's speed.

``conn.execute(table.insert(), rows)`` makes SQLAlchemy build and process every
row's parameters in Python (``construct_params`` and the bind processors, for
each row) before the driver's ``executemany``; with psycopg the driver then
sends one statement per row. For the SQL projector, which inserts thousands of
rows per batch, that was most of its CPU per event (issue 13). So:

* **PostgreSQL (psycopg)** -- ``COPY table (columns) FROM STDIN``: the rows are
  written by psycopg's C adapter, the server parses them by column type; one
  round trip per batch. The values are those SQLAlchemy would have sent (psycopg
  adapts ``datetime``/``bool``/``float``/``str``/``int`` itself; the audit
  tables have no type with a bind processor on this dialect).
* **any other dialect (SQLite)** -- the INSERT is compiled once per table and
  set of columns; each row becomes a tuple in the compiled order, with the
  columns' bind processors (SQLite's ``DateTime`` text, ``Boolean`` as 0/1)
  applied only to the columns that have one; then the driver's ``executemany``.

Either way the tables hold exactly what ``conn.execute(table.insert(), rows)``
would have written (tests/test_sqlproj.py compares both on SQLite and PostgreSQL).
Every row of one call must have the same keys (the projector's rows of one
table do: one event type per table, fixed columns).

Thread-safety: the compiled statements are cached per dialect and keys; the cache
is filled idempotently (a race compiles twice, both equal).
"""

from __future__ import annotations

import datetime as _dt
import operator
from collections.abc import Callable, Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["insert_rows", "insert_rows_generic"]

_Processor = Callable[[Any], Any]


class _Compiled:
    """One table's INSERT for one set of keys on one dialect, ready for raw rows."""

    __slots__ = ("named", "processed", "sql", "take")

    def __init__(self, table: sa.Table, keys: tuple[str, ...], dialect: sa.Dialect) -> None:
        compiled = table.insert().compile(dialect=dialect, column_keys=list(keys))
        self.sql = str(compiled)
        self.named = compiled.positiontup is None  # pyformat/named: dicts, else tuples
        order = tuple(keys) if self.named else tuple(compiled.positiontup or ())
        self.take = _values(order)
        processed: list[tuple[int, str, _Processor]] = []
        for index, name in enumerate(order):
            process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processed.append((index, name, _faster(process)))
        self.processed: Final = tuple(processed)

    def parameters(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        processed = self.processed
        if self.named:
            out_named = [dict(row) for row in rows]
            for row in out_named:
                for _, name, process in processed:
                    row[name] = process(row[name])
            return out_named
        take = self.take
        if not processed:
            return [take(row) for row in rows]
        out: list[Any] = []
        for row in rows:
            values = list(take(row))
            for index, _, process in processed:
                values[index] = process(values[index])
            out.append(tuple(values))  # the DB-API wants tuples (or dicts)
        return out


def _values(keys: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row's values for ``keys``, in that order, as a tuple (itemgetter of one key
    would give the bare value)."""
    if len(keys) == 1:
        key = keys[0]
        return lambda row: (row[key],)
    return operator.itemgetter(*keys)


_PROBES: Final = (
    _dt.datetime(2026, 11, 30, 18, 5, 7, 123456, tzinfo=_dt.UTC),
    _dt.datetime(1, 1, 1, 0, 0, 0),
    _dt.datetime(987, 6, 5, 4, 3, 2, 1),
    _dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=_dt.timezone(_dt.timedelta(hours=5))),
)


def _faster(process: _Processor) -> _Processor:
    """SQLite's ``DateTime`` processor formats with ``%`` and a dict per value; the same
    text (``YYYY-MM-DD HH:MM:SS.ffffff``, the zone dropped) comes from ``isoformat``
    several times faster. Used only when it gives the processor's text on probes (a
    dialect with another storage format keeps its own processor)."""

    def fast(value: Any) -> Any:
        if type(value) is _dt.datetime:
            return value.isoformat(" ", "microseconds")[:26]
        return process(value)

    try:
        if all(fast(probe) == process(probe) for probe in _PROBES):
            return fast
    except (TypeError, ValueError):  # not a datetime processor
        pass
    return process


_COMPILED: dict[tuple[str, str, str, str, tuple[str, ...]], _Compiled] = {}


def _compiled(table: sa.Table, keys: tuple[str, ...], dialect: sa.Dialect) -> _Compiled:
    key = (dialect.name, dialect.driver, dialect.paramstyle, table.name, keys)
    found = _COMPILED.get(key)
    if found is None:
        found = _COMPILED[key] = _Compiled(table, keys, dialect)
    return found


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys, column names) into ``table``."""
    if not rows:
        return
    keys = tuple(rows[0])
    dialect = conn.dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        _copy_rows(conn, table, keys, rows)
        return
    compiled = _compiled(table, keys, dialect)
    conn.exec_driver_sql(compiled.sql, compiled.parameters(rows))


def insert_rows_generic(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """The same through SQLAlchemy's own executemany: the reference the fast paths must
    equal (tests), and what they replace."""
    if rows:
        conn.execute(table.insert(), list(rows))


def _copy_rows(
    conn: Connection, table: sa.Table, keys: tuple[str, ...], rows: Sequence[dict[str, Any]]
) -> None:
    take = _values(keys)
    quote = conn.dialect.identifier_preparer
    columns = ", ".join(quote.quote(k) for k in keys)
    statement = f"COPY {quote.format_table(table)} ({columns}) FROM STDIN"
    raw = conn.connection.driver_connection
    assert raw is not None
    error = conn.dialect.loaded_dbapi.Error
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            write = copy.write_row
            for row in rows:
                write(take(row))
    except error as exc:  # as SQLAlchemy reports a driver's error (the projector handles it)
        raise sa.exc.DBAPIError.instance(statement, None, exc, error) from exc
