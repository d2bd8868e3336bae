"""The SQL projector's compiled datetime text (``sql/_rowtext_accel.c``) against the
Python it replaces: ``isoformat(" ", "microseconds")[:26]``, SQLAlchemy's SQLite
``DateTime`` text, for every datetime (naive, UTC, other zones, fold, the ends of the
range), and None -- the Python code decides -- for anything that is not exactly a
``datetime`` (subclasses, dates, times, text, numbers, None)."""

from __future__ import annotations

import datetime as dt
import importlib
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite
from test_hotpath_identity import _build_compiled

from auditjournal.model.canonical import PURE_PYTHON_ENV
from auditjournal.sql import bulkinsert
from auditjournal.sql.schema import node_states


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The compiled function: the checkout's build, else one made from its C source."""
    if bulkinsert._compiled_text is not None:
        return importlib.import_module("auditjournal.sql._rowtext_accel").datetime_text
    where = tmp_path_factory.mktemp("rowtext")
    return _build_compiled(where, bulkinsert, "_rowtext_accel").datetime_text


def _python(value: dt.datetime) -> str:
    return value.isoformat(" ", "microseconds")[:26]


class Stamp(dt.datetime):
    def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
        return "mine"


_ZONES = st.sampled_from(
    [
        None,
        dt.UTC,
        dt.timezone(dt.timedelta(hours=5, minutes=30)),
        dt.timezone(-dt.timedelta(hours=23, minutes=59, seconds=59, microseconds=999999)),
    ]
)


@given(value=st.datetimes(timezones=_ZONES), fold=st.sampled_from([0, 1]))
@example(value=dt.datetime(1, 1, 1), fold=0)
@example(value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC), fold=1)
@example(value=dt.datetime(987, 6, 5, 4, 3, 2, 1), fold=0)
@example(value=dt.datetime(2026, 11, 30, 18, 5, 7), fold=0)  # no microseconds: still six zeros
@settings(max_examples=400, deadline=None)
def test_datetimes_give_the_python_text(compiled: Any, value: dt.datetime, fold: int) -> None:
    value = value.replace(fold=fold)
    assert compiled(value) == _python(value)
    assert bulkinsert.datetime_text(value) == _python(value)


@given(
    other=st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(),
        st.binary(),
        st.dates(),
        st.times(),
        st.datetimes().map(lambda d: Stamp.fromtimestamp(0, dt.UTC).replace(year=d.year)),
        st.lists(st.datetimes(), max_size=2),
    )
)
@settings(max_examples=200, deadline=None)
def test_anything_else_is_left_to_python(compiled: Any, other: Any) -> None:
    assert compiled(other) is None


def test_a_datetime_subclass_keeps_its_own_text() -> None:
    """The processor's text for a subclass comes from SQLAlchemy, not from the fields."""
    process = bulkinsert._processor(sqlite.dialect(), node_states, "started_at")
    assert process is not None
    stamp = Stamp(2026, 1, 2, 3, 4, 5, 6)
    assert process(stamp) == dt.datetime(2026, 1, 2, 3, 4, 5, 6).isoformat(" ")


def test_without_the_compiled_part_the_builders_write_the_same() -> None:
    """``AUDITJOURNAL_PURE_PYTHON``: no compiled text, the builders inline ``isoformat``,
    and a row's text is the same (a fresh interpreter: the choice is made at import)."""
    code = (
        "import datetime as dt\n"
        "from sqlalchemy.dialects import sqlite\n"
        "from auditjournal.sql import bulkinsert, rowbuild\n"
        "from auditjournal.model.events import RowCreated\n"
        "assert bulkinsert.COMPILED_TEXT is None, 'compiled text in use'\n"
        "m = rowbuild.row_makers(sqlite.dialect()).makers[RowCreated]\n"
        "e = RowCreated(run_id='r', seq=3, ts=dt.datetime(987, 6, 5, 4, 3, 2, 1, tzinfo=dt.UTC),"
        " row_id='w', source_node_id='n', row_index=0, source_data_hash='h',"
        " source_data_ref='h')\n"
        "print(m.build(e)[m.columns.index('created_at')])\n"
    )
    env = {**os.environ, PURE_PYTHON_ENV: "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "0987-06-05 04:03:02.000001"
