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
* **SQLite** -- one ``INSERT ... VALUES (?, ...)`` per table and columns, and the
  driver's ``executemany`` (on its own cursor) over the rows as given: tuples whose
  values already went through the columns' bind processors (SQLite's ``DateTime``
  text, ``Boolean`` as 0/1; :func:`fast_path` hands them out, :mod:`.rowbuild` applies
  them while it builds the rows).
* **any other dialect** -- no fast path: :func:`insert_rows_generic`.

Either way the tables hold exactly what ``conn.execute(table.insert(), rows)``
would have written (tests/test_sql_bulkinsert.py compares both on SQLite and
PostgreSQL).

Thread-safety: the INSERT texts are cached per dialect, table and columns; the cache
is filled idempotently (a race builds twice, both equal).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..model.canonical import PURE_PYTHON_ENV

__all__ = ["FastPath", "datetime_text", "driver_update", "fast_path", "insert_rows_generic"]

_Processor = Callable[[Any], Any]

_compiled_text: Callable[[Any], str | None] | None
try:  # setup.py, optional: the datetime text in C (_rowtext_accel.c), ~20x isoformat's speed
    from ._rowtext_accel import datetime_text as _compiled_text
except ImportError:  # pragma: no cover - a build without a C compiler
    _compiled_text = None
COMPILED_TEXT: Final = None if os.environ.get(PURE_PYTHON_ENV) else _compiled_text
"""The compiled :func:`datetime_text` in use, if any (it returns None for anything but an
exact ``datetime``; the Python code then decides)."""


def datetime_text(value: _dt.datetime) -> str:
    """A datetime's text in SQLite's tables: ``YYYY-MM-DD HH:MM:SS.ffffff``, its own
    fields, the zone dropped (what SQLAlchemy's SQLite ``DateTime`` processor writes)."""
    if COMPILED_TEXT is not None and (text := COMPILED_TEXT(value)) is not None:
        return text
    return value.isoformat(" ", "microseconds")[:26]


@dataclass(frozen=True)
class FastPath:
    """A dialect's fast insert: ``insert(conn, table, columns, rows)`` writes tuples of
    ``columns`` whose values went through ``processor(table, column)`` (when not None)."""

    processor: Callable[[sa.Table, str], _Processor | None]
    insert: Callable[[Connection, sa.Table, tuple[str, ...], list[tuple[Any, ...]]], None]
    null: Any = None
    """What the rows hold for NULL (see :data:`_NAN_IS_NULL`)."""


def fast_path(dialect: sa.Dialect) -> FastPath | None:
    """COPY for PostgreSQL with psycopg, a raw ``executemany`` for SQLite; None for other
    dialects (they take :func:`insert_rows_generic`)."""
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        return FastPath(lambda table, column: None, _copy_rows)
    if dialect.name == "sqlite" and dialect.paramstyle == "qmark":
        null = _NAN if _nan_is_null() else None
        return FastPath(lambda t, c: _processor(dialect, t, c), _executemany, null)
    return None


_NAN: Final = float("nan")


def _nan_is_null() -> bool:
    """SQLite stores a bound NaN as NULL (``sqlite3VdbeMemSetDouble``: it has no NaN). For
    the rows of SQLite, NULL is written as NaN: before Python 3.12 the sqlite3 module
    binds a ``None`` only after its adapter protocol failed (a failed attribute lookup
    that builds and drops an ``AttributeError``, ~0.4 us; a reference run binds ~250,000
    of them), a float it binds at once. Checked here, on this sqlite3; else ``None``."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(":memory:")) as probe:
        row = probe.execute("SELECT ? IS NULL, typeof(?)", (_NAN, _NAN)).fetchone()
    return bool(row == (1, "null"))


def _processor(dialect: sa.Dialect, table: sa.Table, column: str) -> _Processor | None:
    process = table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    return None if process is None else _faster(process)


_SQL: dict[tuple[str, str, tuple[str, ...]], str] = {}


def _executemany(
    conn: Connection, table: sa.Table, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """One ``INSERT ... VALUES (?, ...)`` per table and columns, the rows as they are, on
    the driver's own cursor (in the connection's transaction): ``exec_driver_sql`` added
    ~8 µs of SQLAlchemy per call, and a live step makes about ten."""
    key = (conn.dialect.name, table.name, columns)
    sql = _SQL.get(key)
    if sql is None:
        quote = conn.dialect.identifier_preparer
        names = ", ".join(quote.quote(c) for c in columns)
        marks = ", ".join("?" * len(columns))
        sql = _SQL[key] = f"INSERT INTO {quote.format_table(table)} ({names}) VALUES ({marks})"
    raw = conn.connection.driver_connection
    assert raw is not None
    error = conn.dialect.loaded_dbapi.Error
    cursor = raw.cursor()
    try:
        cursor.executemany(sql, rows)
    except error as exc:  # as SQLAlchemy reports a driver's error (the projector handles it)
        raise sa.exc.DBAPIError.instance(sql, None, exc, error) from exc
    finally:
        cursor.close()


def driver_update(
    dialect: sa.Dialect, statement: Any
) -> Callable[[Connection, dict[str, Any]], int] | None:
    """For SQLite: ``update(conn, params)`` runs ``statement`` (an UPDATE with bind
    parameters, none of whose types has a bind processor on SQLite) on the driver's own
    cursor and returns the rows it matched; SQLAlchemy's execute costs ~0.1 ms more per
    call, and the projector makes one per step. None on other dialects (they keep
    ``conn.execute``)."""
    if dialect.name != "sqlite" or dialect.paramstyle != "qmark":
        return None
    compiled = statement.compile(dialect=dialect)
    sql, names = str(compiled), compiled.positiontup
    if names is None or any(
        p.type.dialect_impl(dialect).bind_processor(dialect) is not None
        for p in compiled.binds.values()
    ):
        return None
    error = dialect.loaded_dbapi.Error

    def update(conn: Connection, params: dict[str, Any]) -> int:
        raw = conn.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            cursor.execute(sql, tuple(params[n] for n in names))
            return int(cursor.rowcount)
        except error as exc:  # as SQLAlchemy reports a driver's error
            raise sa.exc.DBAPIError.instance(sql, None, exc, error) from exc
        finally:
            cursor.close()

    return update


_PROBES: Final = (
    _dt.datetime(2026, 11, 30, 18, 5, 7, 123456, tzinfo=_dt.UTC),
    _dt.datetime(1, 1, 1, 0, 0, 0),
    _dt.datetime(987, 6, 5, 4, 3, 2, 1),
    _dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=_dt.timezone(_dt.timedelta(hours=5))),
)


DATETIME_TEXT: Final[set[_Processor]] = set()
"""The processors :func:`_faster` made: a datetime's text is :func:`datetime_text`,
anything else goes to SQLAlchemy's (builders may inline that)."""


def _faster(process: _Processor) -> _Processor:
    """SQLite's ``DateTime`` processor formats with ``%`` and a dict per value; the same
    text (``YYYY-MM-DD HH:MM:SS.ffffff``, the zone dropped) comes from ``isoformat``
    several times faster, from :data:`COMPILED_TEXT` faster still. Used only when it
    gives the processor's text on probes (a dialect with another storage format keeps
    its own processor)."""

    def fast(value: Any) -> Any:
        if type(value) is _dt.datetime:
            return datetime_text(value)
        return process(value)

    try:
        if all(fast(probe) == process(probe) for probe in _PROBES):
            DATETIME_TEXT.add(fast)
            return fast
    except (TypeError, ValueError):  # not a datetime processor
        pass
    return process


def insert_rows_generic(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """The same through SQLAlchemy's own executemany: the reference the fast paths must
    equal (tests), and what they replace."""
    if rows:
        conn.execute(table.insert(), list(rows))


def _copy_rows(
    conn: Connection, table: sa.Table, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    quote = conn.dialect.identifier_preparer
    names = ", ".join(quote.quote(c) for c in columns)
    statement = f"COPY {quote.format_table(table)} ({names}) FROM STDIN"
    raw = conn.connection.driver_connection
    assert raw is not None
    error = conn.dialect.loaded_dbapi.Error
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            write = copy.write_row
            for row in rows:
                write(row)
    except error as exc:  # as SQLAlchemy reports a driver's error (the projector handles it)
        raise sa.exc.DBAPIError.instance(statement, None, exc, error) from exc
