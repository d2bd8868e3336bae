"""CompactIndex.load's compiled loop (payloads/_window_accel.c ``insert_entries``) builds
the same table as the Python loop (``add`` one entry at a time): the same columns, count,
entries taken and entries refused, whatever the entries (digest prefixes that collide or
are zero, locations that do not fit the bit fields, data not flushed yet) and wherever the
table has to grow on the way."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hotpath_identity import _build_compiled

from auditjournal.payloads import packindex
from auditjournal.payloads.packindex import CompactIndex
from auditjournal.payloads.packs import ENTRY


@pytest.fixture(scope="module")
def window_accel(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The compiled loops: the built module, else one built here (once for both)."""
    if packindex._insert_entries is not None and packindex._rehash is not None:
        return SimpleNamespace(insert_entries=packindex._insert_entries, rehash=packindex._rehash)
    where = tmp_path_factory.mktemp("window_accel")
    return _build_compiled(where, packindex, "_window_accel", libraries=["crypto"])


@pytest.fixture(scope="module")
def compiled(window_accel: Any) -> Any:
    return window_accel.insert_entries


_prefixes = st.sampled_from([b"\0\0\0\0", b"\1\0\0\0", b"abcd", b"abce", b"\xff\xff\xff\xff"])
_digests = st.one_of(
    st.binary(min_size=32, max_size=32),
    st.tuples(_prefixes, st.binary(min_size=28, max_size=28)).map(lambda t: t[0] + t[1]),
)
_offsets = st.one_of(st.integers(0, 5000), st.integers((1 << 28) - 2, (1 << 28) + 2))
_sizes = st.one_of(st.integers(0, 3000), st.integers((1 << 26) - 1, (1 << 26) + 1))
_entries = st.lists(st.tuples(_digests, _offsets, _sizes), max_size=1600)


def _load(table: CompactIndex, raw: bytes, number: int, dat_size: int) -> Any:
    taken, unfit = table.load(memoryview(raw), number, dat_size)
    keys, values, mask = table.columns()
    return taken, unfit, bytes(keys), bytes(values), mask, table.count


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=st.integers(0, 800),  # entries already in the table: growth at other points
    entries=_entries,
    number=st.sampled_from([0, 1, 7, 1023, 1024]),
    cut=st.integers(0, 1 << 29),
)
def test_compiled_load_builds_the_same_table(
    compiled: Any, before: int, entries: list[tuple[bytes, int, int]], number: int, cut: int
) -> None:
    raw = b"".join(ENTRY.pack(*e) for e in entries)
    dat_size = cut if cut % 3 else (1 << 30)  # often everything is flushed
    results = []
    for loop in (compiled, None):
        table = CompactIndex()
        for i in range(before):
            table.add(i.to_bytes(4, "little") + bytes(28), 1, 44 * (i + 1), 1)
        saved = packindex._insert_entries
        packindex._insert_entries = loop
        try:
            results.append(_load(table, raw, number, dat_size))
        finally:
            packindex._insert_entries = saved
    assert results[0] == results[1]


@pytest.mark.parametrize("extra", [-1, 0, 1, 2])
def test_the_compiled_load_grows_the_table_where_add_does(compiled: Any, extra: int) -> None:
    """Entries up to just past the load limit: the table grows at the same entry."""
    limit = int(packindex._MAX_LOAD * 1024)  # a new table's room
    entries = [(i.to_bytes(4, "big") + bytes(28), 44 * (i + 1), 1) for i in range(limit + extra)]
    raw = b"".join(ENTRY.pack(*e) for e in entries)
    results = []
    for loop in (compiled, None):
        saved = packindex._insert_entries
        packindex._insert_entries = loop
        try:
            results.append(_load(CompactIndex(), raw, 3, 1 << 30))
        finally:
            packindex._insert_entries = saved
    assert results[0] == results[1]
    assert results[0][4] == (1023 if extra <= 0 else 2047)  # the mask: grown past the limit


def test_a_store_loads_another_writers_index_with_the_compiled_loop(
    compiled: Any, tmp_path: Path
) -> None:
    """End to end: a second store sees what the first wrote, through load()."""
    from auditjournal.payloads.store import PayloadStore

    writer = PayloadStore(tmp_path / "p")
    refs = [writer.put({"i": i, "t": "x" * (i % 50)}) for i in range(3000)]
    writer.flush(fsync=False)
    reader = PayloadStore(tmp_path / "p")
    try:
        assert [reader.get(r) for r in refs[::97]] == [writer.get(r) for r in refs[::97]]
        assert reader._table.count == 3000
    finally:
        reader.close()
        writer.close()


@pytest.fixture(scope="module")
def compiled_rehash(window_accel: Any) -> Any:
    return window_accel.rehash


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefixes=st.lists(
        st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 1024, 2048, 2**32 - 1])),
        max_size=3000,
    ),
    reserve=st.sampled_from([0, 0, 700, 5000]),
)
def test_the_compiled_growth_builds_the_same_table(
    compiled_rehash: Any, prefixes: list[int], reserve: int
) -> None:
    """CompactIndex._grow's compiled loop (``rehash``): the same columns as the Python
    re-insertion, however often the table grows (colliding and zero prefixes too)."""
    results = []
    for grow in (compiled_rehash, None):
        saved = packindex._rehash
        packindex._rehash = grow
        try:
            table = CompactIndex()
            for i, prefix in enumerate(prefixes):
                if reserve and i == len(prefixes) // 2:
                    table.reserve(reserve + i)  # a bulk load's growth in one step
                table.add(prefix.to_bytes(4, "little") + bytes(28), i % 1024, 44 * i, i % 500)
            keys, values, mask = table.columns()
            results.append((bytes(keys), bytes(values), mask, table.count))
        finally:
            packindex._rehash = saved
    assert results[0] == results[1]


def test_the_compiled_growth_refuses_what_is_not_a_table(compiled_rehash: Any) -> None:
    from array import array

    old_k, old_v = array("I", [5, 0, 7, 0]), array("Q", [1, 0, 2, 0])
    with pytest.raises(ValueError, match="not a table"):
        compiled_rehash(old_k, old_v, array("I", bytes(4 * 8)), array("Q", bytes(8 * 8)), 6)
    with pytest.raises(ValueError, match="not a table"):
        compiled_rehash(old_k, old_v, array("I", bytes(4 * 2)), array("Q", bytes(8 * 2)), 1)
    with pytest.raises(ValueError, match="not a table"):  # more old slots than new ones
        compiled_rehash(
            array("I", [5, 6, 7, 0]), array("Q", [1, 2, 3, 0]),
            array("I", bytes(8)), array("Q", bytes(16)), 1,
        )  # fmt: skip
    keys, values = array("I", bytes(4 * 8)), array("Q", bytes(8 * 8))
    compiled_rehash(old_k, old_v, keys, values, 7)
    assert (keys[5], values[5], keys[7], values[7]) == (5, 1, 7, 2)
    with pytest.raises(TypeError):
        compiled_rehash(old_k, old_v, keys)
