"""The compact payload index: 16 bytes a payload, prefix-keyed, confirmed by the pack."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from auditjournal.payloads.packindex import CompactIndex
from auditjournal.payloads.store import PayloadStore


def digest(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1023), st.integers(0, 2**28 - 1), st.integers(0, 2**26 - 1)),
        min_size=1,
        max_size=400,
    )
)
def test_every_added_location_comes_back(locations: list[tuple[int, int, int]]) -> None:
    table = CompactIndex()
    for i, loc in enumerate(locations):
        assert table.add(digest(i), *loc)
    assert table.count == len(locations)
    for i, loc in enumerate(locations):
        assert list(table.candidates(digest(i))) == [loc]
    assert list(table.candidates(digest(len(locations)))) == []


def test_locations_that_do_not_fit_are_refused() -> None:
    table = CompactIndex()
    assert not table.add(digest(1), 1024, 0, 10)
    assert not table.add(digest(1), 1, 2**28, 10)
    assert not table.add(digest(1), 1, 0, 2**26)
    assert table.count == 0
    assert list(table.candidates(digest(1))) == []


def test_same_prefix_yields_every_candidate() -> None:
    table = CompactIndex()
    a = b"\x07" * 4 + b"a" * 28
    b = b"\x07" * 4 + b"b" * 28
    table.add(a, 1, 100, 5)
    table.add(b, 2, 200, 6)
    assert sorted(table.candidates(a)) == [(1, 100, 5), (2, 200, 6)]


def test_sixteen_bytes_a_slot_and_growth() -> None:
    table = CompactIndex()
    for i in range(10_000):
        table.add(digest(i), 1, i, 1)
    assert table.memory_bytes() == 12 * 16_384  # load factor <= 0.7 after doubling
    assert all(list(table.candidates(digest(i))) == [(1, i, 1)] for i in range(0, 10_000, 97))


def test_reopened_store_reads_and_dedups_through_the_table(tmp_path: Path) -> None:
    first = PayloadStore(tmp_path)
    refs = [first.put({"i": i}) for i in range(500)]
    first.close()
    size = sum(p.stat().st_size for p in tmp_path.glob("pack-*.dat"))

    again = PayloadStore(tmp_path)
    assert not again._index  # everything loaded went to the compact table
    assert again._table.count == 500
    assert again.get_json(refs[123]) == {"i": 123}
    assert refs[499] in again
    assert again.put({"i": 7}) == refs[7]  # a dedup hit against the table
    again.close()
    assert sum(p.stat().st_size for p in tmp_path.glob("pack-*.dat")) == size
    assert sorted(PayloadStore(tmp_path).refs()) == sorted(refs)


def test_reserve_sizes_the_table_once() -> None:
    table = CompactIndex()
    table.reserve(100_000)
    size = table.memory_bytes()
    assert size == 12 * 262_144  # the smallest power of two holding 100,000 at load <= 0.7
    for i in range(100_000):
        table.add(digest(i), 2, i, 3)
    assert table.memory_bytes() == size  # no resize (no peak of old + new columns)
    assert list(table.candidates(digest(99_999))) == [(2, 99_999, 3)]
