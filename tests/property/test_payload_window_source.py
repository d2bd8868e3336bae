"""Property tests: the compiled record loop reading payloads through the payload store's
window source (``_payload_window.h``, issue 13 item 2) writes exactly the records it
writes when it asks ``PayloadStore.get`` for each payload -- and raises the same error,
with the same message, for a damaged payload or a ref the store does not hold -- while
it calls ``get`` only for what the window does not hold.

The compiled modules are tested whether or not the checkout has built them: missing ones
are built from their C source into a temporary directory (skipped without a compiler).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_export_hotpath_identity import _damage, stored_payloads
from test_hotpath_identity import _build_compiled

from auditjournal.errors import PayloadIntegrityError
from auditjournal.model import records as records_module
from auditjournal.model import recordvalues
from auditjournal.model.events import CallRecorded, RowCreated
from auditjournal.model.records import RecordMaker
from auditjournal.payloads import store as store_module
from auditjournal.payloads.store import PayloadStore

_TS = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """(extend_lines, the window read's capsule): the checkout's builds, else built here."""
    if recordvalues.compiled_extend_lines is not None:
        lines = recordvalues.compiled_extend_lines
    else:
        where = tmp_path_factory.mktemp("records")
        lines = _build_compiled(
            where, recordvalues, "_records_accel", libraries=["crypto"]
        ).extend_lines
    if store_module._lookup is not None:
        return lines, store_module._lookup
    where = tmp_path_factory.mktemp("window")
    return lines, _build_compiled(where, store_module, "_window_accel", libraries=["crypto"]).lookup


def _events(refs: list[str]) -> list[Any]:
    """A row for each ref, and a call whose request and response are two of them."""
    events: list[Any] = []
    for i, ref in enumerate(refs):
        events.append(
            RowCreated(
                run_id="r", seq=len(events) + 1, ts=_TS, row_id=f"row-{i}",
                source_node_id="src", row_index=i, source_data_hash=ref, source_data_ref=ref,
            )
        )  # fmt: skip
    events.append(
        CallRecorded(
            run_id="r", seq=len(events) + 1, ts=_TS, call_id="c", state_id="s",
            call_index=0, call_type="http", status="success", request_hash=refs[0],
            request_ref=refs[0], response_hash=refs[-1], response_ref=refs[-1],
            latency_ms=1.5,
        )
    )  # fmt: skip
    return events


def _lines(
    directory: Path, events: list[Any], loop: Any, lookup: Any, windowed: bool
) -> tuple[Any, int]:
    """What the compiled lines loop makes of ``events`` with a fresh store (its window
    read again), through the window source or not; and how often ``get`` was called."""
    store = PayloadStore(directory)
    asked = [0]

    def get(ref: str) -> bytes:
        asked[0] += 1
        return store.get(ref)

    def source() -> object:
        got = store.window_source()
        return None if got is None else (lookup, *got[1:])  # this test's build of the read

    original = records_module.compiled_extend_lines
    records_module.compiled_extend_lines = loop
    try:
        maker = RecordMaker("r", get, source if windowed else None)
        out: Any = maker.extend_lines(events, [])
    except Exception as exc:  # both must agree on the error, and its message
        out = (type(exc), str(exc))
    finally:
        records_module.compiled_extend_lines = original
        store.close()
    return out, asked[0]


@given(
    values=st.lists(st.integers(0, 10**6), min_size=1, max_size=12, unique=True),
    asks=st.lists(st.integers(0, 40), min_size=1, max_size=25),
    damaged=st.sampled_from([None, "data", "header"]),
    odd=st.sampled_from([None, "AB" * 32, "ab" * 31, "zz" * 32, "ab" * 32, "é" * 64]),
)
@settings(max_examples=60, deadline=None)
def test_records_read_through_the_window_are_the_records_read_through_get(
    tmp_path_factory: pytest.TempPathFactory,
    compiled: tuple[Any, Any],
    values: list[int],
    asks: list[int],
    damaged: str | None,
    odd: str | None,
) -> None:
    directory, refs = stored_payloads(tmp_path_factory, values, damaged)
    wanted = [refs[i % len(refs)] for i in asks] + ([] if odd is None else [odd])
    events = _events(wanted)
    loop, lookup = compiled
    plain, _ = _lines(directory, events, loop, lookup, windowed=False)
    windowed, _ = _lines(directory, events, loop, lookup, windowed=True)
    assert windowed == plain


def test_the_window_serves_what_it_holds_without_get(
    tmp_path: Path, compiled: tuple[Any, Any]
) -> None:
    store = PayloadStore(tmp_path)
    refs = [store.put({"n": n, "pad": "x" * 100}) for n in range(30)]
    store.close()
    events = _events(refs)  # 32 payloads: 30 rows, a call's request and response
    loop, lookup = compiled
    plain, asked_plain = _lines(tmp_path, events, loop, lookup, windowed=False)
    windowed, asked = _lines(tmp_path, events, loop, lookup, windowed=True)
    assert windowed == plain
    assert asked_plain == 32
    assert asked == 1  # the first payload: no window read yet


def test_a_damaged_payload_in_the_window_is_refused_as_get_refuses_it(
    tmp_path: Path, compiled: tuple[Any, Any]
) -> None:
    store = PayloadStore(tmp_path)
    refs = [store.put({"n": n}) for n in range(5)]
    store.close()
    _damage(tmp_path, refs[3], "data")
    loop, lookup = compiled
    out, _ = _lines(tmp_path, _events(refs), loop, lookup, windowed=True)
    assert out[0] is PayloadIntegrityError
    assert refs[3] in out[1] and "does not match its hash" in out[1]


def test_the_window_source_is_none_before_a_window_is_read(tmp_path: Path) -> None:
    store = PayloadStore(tmp_path)
    ref = store.put({"n": 1})
    store.close()
    store = PayloadStore(tmp_path)
    try:
        assert store.window_source() is None
        store.get(ref)
        source = store.window_source()
        if store_module._lookup is not None:
            assert source is not None and source[0] is store_module._lookup
            assert source[-1] == store._ahead.window[2]  # type: ignore[index]
    finally:
        store.close()


def test_without_the_compiled_read_the_loop_gets_no_window_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source that is always None would cost a Python call per payload for nothing."""
    from auditjournal import ExportSettings
    from auditjournal.export.projector import ExportProjector

    with_read = store_module._lookup is not None
    for lookup in {None} if not with_read else {None, store_module._lookup}:
        monkeypatch.setattr(store_module, "_lookup", lookup)
        store = PayloadStore(tmp_path / "payloads")
        projector = ExportProjector(
            journal_dir=tmp_path / "journal",
            run_id="r",
            payloads=store,
            settings=ExportSettings(),
            prefix=tmp_path / f"export-{lookup is None}" / "audit_trail",
            checkpoint=False,
        )
        try:
            windowed = isinstance(projector.maker._c_get, tuple)
            assert windowed == (lookup is not None)
        finally:
            projector.close()
            store.close()


@pytest.fixture(scope="module")
def in_window(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The compiled window read callable from Python: the checkout's build, else built here."""
    if store_module._in_window is not None:
        return store_module._in_window
    where = tmp_path_factory.mktemp("window-read")
    return _build_compiled(where, store_module, "_window_accel", libraries=["crypto"]).in_window


def test_the_record_after_the_last_one_served_is_found_without_the_index(
    tmp_path: Path, in_window: Any
) -> None:
    """A replay reads payloads mostly in the order they were stored: after a payload the
    index found, the next record in the window is tried first, and served if its header
    names the ref and its data hashes to it -- here with an index that holds only the
    first payload (as a table taken before the others were stored), so only that guess
    can find them; a payload that is not next, or damaged, is still refused."""
    values = [{"n": n, "pad": "x" * 50} for n in range(4)]
    first = PayloadStore(tmp_path / "first")
    first.put(values[0])
    first.close()
    full = PayloadStore(tmp_path / "full")
    refs = [full.put(v) for v in values]
    full.close()
    first, full = PayloadStore(tmp_path / "first"), PayloadStore(tmp_path / "full")
    try:
        first.get(refs[0])
        full.get(refs[0])  # both read their window
        _, *table = first.window_source() or (None, *[None] * 3)
        _, *all_columns = full.window_source() or (None, *[None] * 6)
        if not table:  # no compiled read in the store: take the columns ourselves
            table = [*first._table.columns(), *first._ahead.window]  # type: ignore[misc]
            all_columns = [*full._table.columns(), *full._ahead.window]  # type: ignore[misc]
        window = all_columns[3:]
        keys, values_column, mask = table[:3]
        stored = [full.get(ref) for ref in refs]  # (before: get() reads through the guess too)
        number, start, data = window
        damaged = bytearray(data)
        damaged[data.index(stored[1])] ^= 0x01
        broken = (number, start, bytes(damaged))
        assert in_window(refs[0], keys, values_column, mask, *broken) == stored[0]
        assert in_window(refs[1], keys, values_column, mask, *broken) is None  # does not hash
        assert in_window(refs[2], keys, values_column, mask, *window) is None  # not next
        assert in_window(refs[0], keys, values_column, mask, *window) == stored[0]
        assert in_window(refs[1], keys, values_column, mask, *window) == stored[1]
        assert in_window(refs[2], keys, values_column, mask, *window) == stored[2]
        assert in_window(refs[3], keys, values_column, mask, *window) == stored[3]
    finally:
        first.close()
        full.close()
