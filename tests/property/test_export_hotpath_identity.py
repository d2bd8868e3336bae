"""Property tests: the export projection's hot paths, made faster for issue 13 (item 2),
give exactly the bytes of the plain code they replaced.

* the compiled SHA-256 helpers (``fs/_digest_accel.c``) against ``hashlib``
  (``fs/digests.py``'s Python functions);
* the Merkle builder fed a batch of leaf hashes (one call a level) against one leaf at
  a time, and the chunk writer fed a batch of records against one record at a time
  (files, chunk list, root, tree heads);
* a replay's payload read from the read-ahead window, compiled (``_window_accel.c``),
  against the Python read (payloads, damaged ones, odd refs);
* the record maker's handlers that build their dicts with the keys in sorted order and
  encode them unsorted, against the handlers as they were (kept below: a dict in any
  order, encoded with the keys sorted).

The compiled module is tested whether or not the checkout has built it: a missing one
is built from its C source into a temporary directory (skipped without a compiler).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import os
import subprocess
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_hotpath_identity import _build_compiled
from test_roundtrip_properties import events_of

from auditjournal.export.chunks import ChunkWriter
from auditjournal.fs import digests
from auditjournal.model import canonical
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
from auditjournal.model.records import RecordMaker, _json
from auditjournal.payloads import store as store_module
from auditjournal.payloads.packs import HEADER_SIZE, pack_records
from auditjournal.payloads.store import PayloadStore
from auditjournal.proofs.merkle import MerkleBuilder, leaf_hash

EXAMPLES = settings(max_examples=200, deadline=None)
_ENCODER = msgspec.json.Encoder(order="sorted")  # the plain handlers' encoder
_OUTCOME_GROUPS = ("batch_id", "fork_group_id", "join_group_id", "expand_group_id")


# -- the compiled SHA-256 helpers -------------------------------------------------------------


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The compiled module: the checkout's build, else one made from its C source."""
    if digests._compiled is not None:
        return digests._compiled
    where = tmp_path_factory.mktemp("digests")
    return _build_compiled(where, digests, "_digest_accel", libraries=["crypto"])


blobs = st.binary(max_size=300) | st.sampled_from([b"", b"\0", b"x" * 65_536, b"y" * 70_000])


@given(data=blobs)
@EXAMPLES
def test_the_compiled_sha256_is_hashlibs(compiled: Any, data: bytes) -> None:
    want = hashlib.sha256(data).digest()
    assert compiled.sha256(data) == want
    assert compiled.sha256(bytearray(data)) == want
    assert compiled.sha256(memoryview(data)) == want


@given(records=st.lists(blobs, max_size=20))
@EXAMPLES
def test_the_compiled_leaf_hashes_are_the_python_ones(compiled: Any, records: list[bytes]) -> None:
    want = b"".join(leaf_hash(r) for r in records)
    assert digests.leaf_hashes_python(records) == want
    assert compiled.leaf_hashes(records) == want
    assert compiled.leaf_hashes(tuple(bytearray(r) for r in records)) == want


@given(pairs=st.lists(st.binary(min_size=64, max_size=64), max_size=20))
@EXAMPLES
def test_the_compiled_node_hashes_are_the_python_ones(compiled: Any, pairs: list[bytes]) -> None:
    level = b"".join(pairs)
    want = b"".join(hashlib.sha256(b"\x01" + p).digest() for p in pairs)
    assert digests.node_hashes_python(level) == want
    assert compiled.node_hashes(level) == want
    assert compiled.node_hashes(memoryview(level)) == want


def test_the_compiled_helpers_refuse_odd_input(compiled: Any) -> None:
    for function in (compiled.node_hashes, digests.node_hashes_python):
        with pytest.raises(ValueError, match="pairs"):
            function(b"x" * 65)
    with pytest.raises(TypeError):
        compiled.sha256("text")
    with pytest.raises(TypeError):
        compiled.leaf_hashes([b"x", "text"])
    with pytest.raises(TypeError):
        compiled.leaf_hashes(42)


def test_the_environment_can_leave_the_compiled_helpers_unused() -> None:
    code = (
        "from auditjournal.fs import digests as d; from auditjournal.payloads import store; "
        "print(d.leaf_hashes is d.leaf_hashes_python, d.node_hashes is d.node_hashes_python, "
        "store._in_window is None)"
    )
    env = {**os.environ, canonical.PURE_PYTHON_ENV: "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "True True True", result.stderr
    if digests._compiled is not None:  # and where built, they are used without it
        assert digests.leaf_hashes is digests._compiled.leaf_hashes


# -- Merkle and chunks, in batches ------------------------------------------------------------


@given(
    start=st.integers(0, 70),
    batches=st.lists(st.integers(0, 40), max_size=5),
)
@EXAMPLES
def test_a_batch_of_leaves_folds_in_as_the_leaves_one_by_one(
    start: int, batches: list[int]
) -> None:
    one, many = MerkleBuilder(), MerkleBuilder()
    for i in range(start):
        leaf = hashlib.sha256(b"%d" % i).digest()
        one.add(leaf)
        many.add(leaf)
    n = start
    for size in batches:
        records = [b"record %d" % i for i in range(n, n + size)]
        for record in records:
            one.add(leaf_hash(record))
        many.extend_records(records)
        n += size
        assert many.count == one.count and many.state() == one.state()
        assert many.root() == one.root()


records_strategy = st.lists(
    st.binary(min_size=0, max_size=120).map(lambda b: b'{"x":"' + b.hex().encode() + b'"}'),
    max_size=40,
)


@given(
    records=records_strategy,
    cuts=st.lists(st.integers(0, 40), max_size=4),
    limit=st.sampled_from([None, 100, 300, 1000]),
    every=st.sampled_from([None, 1, 3, 16]),
)
@example(records=[b"{}"] * 5, cuts=[0, 2], limit=100, every=2)
@example(records=[b'{"x":"' + b"a" * 200 + b'"}', b"{}"], cuts=[1], limit=100, every=None)
@settings(max_examples=150, deadline=None)
def test_a_batch_of_records_makes_the_chunks_one_by_one_does(
    tmp_path_factory: pytest.TempPathFactory,
    records: list[bytes],
    cuts: list[int],
    limit: int | None,
    every: int | None,
) -> None:
    where = tmp_path_factory.mktemp("chunks")
    seqs = [10 + 3 * i for i in range(len(records))]
    results = []
    for batched in (False, True):
        prefix = where / ("batched" if batched else "single") / "audit_trail"
        prefix.parent.mkdir()
        writer = ChunkWriter(prefix, limit, every)
        try:
            bounds = sorted({0, len(records), *(min(c, len(records)) for c in cuts)})
            for a, b in itertools.pairwise(bounds):
                if batched:
                    writer.add_records(seqs[a:b], records[a:b])
                else:
                    for seq, record in zip(seqs[a:b], records[a:b], strict=True):
                        writer.add(seq, record)
                writer.flush()
            chunks = [c.as_dict() for c in writer.finish()]
        finally:
            writer.close()
        files = {p.name: p.read_bytes() for p in sorted(prefix.parent.glob("*.json"))}
        results.append((chunks, files, writer.merkle.root(), writer.tree_heads))
    assert results[0] == results[1]


# -- records with their keys in sorted order --------------------------------------------------


class PlainMaker(RecordMaker):
    """The record maker with the handlers as they were before issue 13 (item 2)."""

    def _row(self, e: RowCreated) -> list[tuple[int, bytes]]:
        self._count("row")
        r: dict[str, Any] = {
            "record_type": "row",
            "run_id": self.run_id,
            "seq": e.seq,
            "row_id": e.row_id,
            "source_node_id": e.source_node_id,
            "row_index": e.row_index,
            "source_data_hash": e.source_data_hash,
            "source_data_ref": e.source_data_ref,
            "created_at": e.occurred_at or e.ts,
        }
        if not e.source_data_retained:
            r.update(source_data_ref=None, source_data_retained=False)
        self._payload(r, "source_data", r["source_data_ref"])
        return self._done(self._appended(r, e))

    def _token(self, e: TokenCreated) -> list[tuple[int, bytes]]:
        self._count("token")
        r = {
            "record_type": "token",
            "run_id": self.run_id,
            "seq": e.seq,
            "token_id": e.token_id,
            "row_id": e.row_id,
            "parent_token_ids": list(e.parent_token_ids),
            "branch_name": e.branch_name,
            "fork_group_id": e.fork_group_id,
            "join_group_id": e.join_group_id,
            "expand_group_id": e.expand_group_id,
            "created_at": e.occurred_at or e.ts,
        }
        if e.step_in_pipeline is not None:
            r["step_in_pipeline"] = e.step_in_pipeline
        return self._done(self._appended(r, e))

    def _state_completed(self, e: NodeStateCompleted) -> list[tuple[int, bytes]]:
        # the general path is the handler as it was (dict in any order, sorted encoding)
        return self._state_completed_general(e, self.open_states.pop(e.state_id))

    def _routing(self, e: RoutingEventRecorded) -> list[tuple[int, bytes]]:
        r = {
            "record_type": "routing_event",
            "run_id": self.run_id,
            "seq": e.seq,
            "routing_event_id": e.routing_event_id,
            "state_id": e.state_id,
            "row_id": e.row_id,
            "edge_id": e.edge_id,
            "mode": e.mode,
            "routing_group_id": e.routing_group_id,
            "ordinal": e.ordinal,
            "reason_hash": e.reason_hash,
            "reason_ref": e.reason_ref,
            "created_at": e.occurred_at or e.ts,
        }
        if e.reason_ref is None and e.reason_hash is not None:
            r["reason_retained"] = False
        self._payload(r, "reason", e.reason_ref)
        return self._done(self._appended(r, e))

    def _call(self, e: CallRecorded) -> list[tuple[int, bytes]]:
        r: dict[str, Any] = {
            "record_type": "call",
            "run_id": self.run_id,
            "seq": e.seq,
            "call_id": e.call_id,
            "state_id": e.state_id,
            "row_id": e.row_id,
            "operation_id": e.operation_id,
            "call_index": e.call_index,
            "call_type": e.call_type,
            "status": e.status,
            "latency_ms": _json(e.latency_ms),
            "request_hash": e.request_hash,
            "request_ref": e.request_ref,
            "response_hash": e.response_hash,
            "response_ref": e.response_ref,
            "error": _json(e.error),
            "created_at": e.occurred_at or e.ts,
        }
        if not e.request_retained:
            r.update(request_ref=None, request_retained=False)
        if e.redacted:
            r["redacted"] = list(e.redacted)
        if e.response_ref is None and e.response_hash is not None:
            r["response_retained"] = False
        self._payload(r, "request", r["request_ref"])
        self._payload(r, "response", e.response_ref)
        return self._done(self._appended(r, e))

    def _outcome(self, e: TokenOutcomeRecorded) -> list[tuple[int, bytes]]:
        self._count("outcome." + e.outcome)
        r = {
            "record_type": "token_outcome",
            "run_id": self.run_id,
            "seq": e.seq,
            "outcome_id": e.outcome_id,
            "token_id": e.token_id,
            "row_id": e.row_id,
            "outcome": e.outcome,
            "sink_name": e.sink_name,
            "error_hash": e.error_hash,
            "context": _json(e.context),
            "recorded_at": e.occurred_at or e.ts,
        }
        for name in _OUTCOME_GROUPS:
            value = getattr(e, name)
            if value is not None:
                r[name] = value
        if e.expected_branches is not None:
            r["expected_branches"] = _json(e.expected_branches)
        return self._done(self._appended(r, e))


REF = "ab" * 32


def payload(ref: str) -> bytes:
    """A stand-in payload store: some canonical bytes per ref."""
    return canonical_json({"ref": ref, "n": [1, 2.5]})


def made(maker: RecordMaker, events: list[Any]) -> list[tuple[int, bytes]] | type[Exception]:
    """The records, or the type of error making them raises (a value with no canonical
    JSON form: both makers refuse it; with two such fields, each may name another)."""
    out: list[tuple[int, bytes]] = []
    try:
        for event in events:
            out += maker.records(event)
    except Exception as exc:
        return type(exc)
    return out


simple_events = st.one_of(
    events_of(RowCreated),
    events_of(TokenCreated),
    events_of(RoutingEventRecorded),
    events_of(CallRecorded),
    events_of(TokenOutcomeRecorded),
)


@given(event=simple_events, with_payloads=st.booleans())
@settings(max_examples=400, deadline=None)
def test_records_in_key_order_are_the_plain_records(event: Any, with_payloads: bool) -> None:
    get = payload if with_payloads else None
    want = made(PlainMaker("run-1", get), [event])
    got = made(RecordMaker("run-1", get), [event])
    assert got == want
    for _, record in got if isinstance(got, list) else []:  # every key in canonical order
        keys = list(msgspec.json.decode(record))
        assert keys == sorted(keys)


@given(
    started=events_of(NodeStateStarted),
    completed=events_of(NodeStateCompleted),
    with_payloads=st.booleans(),
    via_checkpoint=st.booleans(),
)
@settings(max_examples=400, deadline=None)
def test_node_state_records_in_key_order_are_the_plain_records(
    started: NodeStateStarted,
    completed: NodeStateCompleted,
    with_payloads: bool,
    via_checkpoint: bool,
) -> None:
    completed = msgspec.structs.replace(completed, state_id=started.state_id)
    get = payload if with_payloads else None
    plain, maker = PlainMaker("run-1", get), RecordMaker("run-1", get)
    for m in (plain, maker):
        m.records(started)
        if via_checkpoint:  # the open state as a checkpoint gives it back
            m.restore(msgspec.json.decode(msgspec.json.encode(m.snapshot())))
    want = made(plain, [completed])
    assert made(maker, [completed]) == want
    if isinstance(want, list):
        keys = list(msgspec.json.decode(want[0][1]))
        assert keys == sorted(keys)


def test_a_started_state_with_other_keys_is_encoded_sorted() -> None:
    """A checkpoint's open state with a key the maker never writes (or without one it
    does) still makes the record the plain code made: the general path."""
    started = NodeStateStarted(
        run_id="r", seq=5, ts=_ts(), state_id="s", token_id="t", row_id="w", node_id="n",
        step_index=0, attempt=0, input_hash="h", input_data_ref=REF,
    )  # fmt: skip
    completed = NodeStateCompleted(
        run_id="r", seq=6, ts=_ts(), state_id="s", status="completed", output_hash=None,
        output_data_ref=None, duration_ms=1.5,
    )  # fmt: skip
    for change in ({"extra": 1}, {"zzz": "last", "aaa": "first"}):
        plain, maker = PlainMaker("r", payload), RecordMaker("r", payload)
        for m in (plain, maker):
            m.records(started)
            m.open_states["s"].update(change)
        assert made(maker, [completed]) == made(plain, [completed])
    plain, maker = PlainMaker("r", None), RecordMaker("r", None)
    for m in (plain, maker):
        m.records(started)
        del m.open_states["s"]["attempt"]
        m.open_states["s"]["other"] = 2  # as many keys, but not the same ones
    assert made(maker, [completed]) == made(plain, [completed])


def _ts() -> dt.datetime:
    return dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)


# -- a replay's payload read from the read-ahead window, compiled ------------------------------


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:  # one for all of a test's examples
        yield patch


@pytest.fixture(scope="module")
def window_read(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The compiled read: the checkout's build, else one made from its C source."""
    if store_module._in_window is not None:
        return store_module._in_window
    where = tmp_path_factory.mktemp("window")
    return _build_compiled(where, store_module, "_window_accel", libraries=["crypto"]).in_window


def _damage(directory: Path, digest_hex: str, where: str) -> None:
    """Flip a byte of a stored payload's data (or of its record header's digest)."""
    pack = sorted(directory.glob("pack-*.dat"))[0]
    for _, offset, size, digest, _ in pack_records(pack.name, pack.read_bytes()):
        if digest.hex() == digest_hex:
            at = offset + size // 2 if where == "data" else offset - HEADER_SIZE + 10
            with open(pack, "r+b") as fh:
                fh.seek(at)
                byte = fh.read(1)
                fh.seek(at)
                fh.write(bytes([byte[0] ^ 0x20]))
            return


def stored_payloads(
    tmp_path_factory: pytest.TempPathFactory, values: list[int], damaged: str | None
) -> tuple[Path, list[str]]:
    """A payload store holding two padded objects and ``values`` (their refs), the
    middle one ``damaged`` (see :func:`_damage`) unless None."""
    directory = tmp_path_factory.mktemp("payloads")
    store = PayloadStore(directory)
    refs = [store.put({"pad": "p" * (v % 300)}) for v in values[:2]]
    refs += [store.put(v) for v in values]
    store.close()
    if damaged is not None:
        _damage(directory, refs[len(refs) // 2], damaged)
    return directory, refs


def _outcome_of(get: Any, ref: Any) -> Any:
    try:
        return get(ref)
    except Exception as exc:  # both paths must agree on the error, and its message
        return (type(exc), str(exc))


@given(
    values=st.lists(st.integers(0, 10**6), min_size=1, max_size=12, unique=True),
    asks=st.lists(st.integers(0, 40), max_size=25),
    damaged=st.sampled_from([None, "data", "header"]),
    odd=st.sampled_from(["", "AB" * 32, "ab" * 31, "zz" * 32, 7, "ab" * 32]),
)
@example(values=[69235, 95303], asks=[0, 1, 0], damaged=None, odd="")  # digest prefixes alike
@settings(max_examples=60, deadline=None)
def test_the_compiled_window_read_gives_what_the_python_read_gives(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch_module: pytest.MonkeyPatch,
    window_read: Any,
    values: list[int],
    asks: list[int],
    damaged: str | None,
    odd: Any,
) -> None:
    directory, refs = stored_payloads(tmp_path_factory, values, damaged)
    wanted = [refs[i % len(refs)] for i in asks] + [odd, refs[0]]
    results = []
    for compiled in (None, window_read):
        monkeypatch_module.setattr(store_module, "_in_window", compiled)
        store = PayloadStore(directory)  # a fresh store: the window is read again
        try:
            results.append([_outcome_of(store.get, ref) for ref in wanted])
        finally:
            store.close()
    assert results[0] == results[1]


def test_the_compiled_window_read_leaves_odd_input_to_python(window_read: Any) -> None:
    keys, values, mask = array("I", bytes(16)), array("Q", bytes(32)), 3
    ref = "ab" * 32
    assert window_read(ref, keys, values, mask, 1, 0, b"") is None  # no candidate
    keys[0xABABABAB & mask] = 0xABABABAB  # a candidate: pack 1, data at 44, 3 bytes
    values[0xABABABAB & mask] = (1 << 54) | (44 << 26) | 3
    header = b"AJP1" + bytes.fromhex(ref) + (3).to_bytes(8, "little")
    assert window_read(ref, keys, values, mask, 1, 0, header + b"abc") is None  # not its data
    data = b"x"
    good = hashlib.sha256(data).hexdigest()
    keys[0xABABABAB & mask] = 0
    key = int.from_bytes(bytes.fromhex(good)[:4], "little")
    keys[key & mask], values[key & mask] = key, (1 << 54) | (44 << 26) | 1
    window = b"AJP1" + bytes.fromhex(good) + (1).to_bytes(8, "little") + data
    assert window_read(good, keys, values, mask, 1, 0, window) == data
    assert window_read(good, keys, values, mask, 2, 0, window) is None  # another pack
    assert window_read(good, keys, values, mask, 1, 1, window) is None  # header cut off
    assert window_read(good, keys, values, mask, 1, 0, window[:-1]) is None  # data cut off
    assert window_read(good.upper(), keys, values, mask, 1, 0, window) is None
    assert window_read(good, keys, values, 7, 1, 0, window) is None  # not the table's mask
    assert window_read(good, keys, values, -1, 1, 0, window) is None
    full = array("I", [key] * 4)  # no empty slot and no match: the probe ends all the same
    assert window_read("00" * 32, full, values, mask, 1, 0, window) is None
    with pytest.raises(TypeError):
        window_read(good, keys, values, mask, 1, 0, "text")
    with pytest.raises(TypeError):
        window_read(good, keys)


@given(events=st.lists(st.one_of(simple_events, events_of(NodeStateStarted)), max_size=8))
@settings(max_examples=100, deadline=None)
def test_a_batch_of_events_makes_the_records_one_by_one_does(events: list[Any]) -> None:
    completed = RunCompleted(run_id="run-1", seq=99, ts=_ts(), status="completed")
    batch = [*events, completed, *events]  # what follows run_completed is not used
    want = made(RecordMaker("run-1", payload), [*events, completed])
    maker = RecordMaker("run-1", payload)
    seqs: list[int] = []
    records: list[bytes] = []
    try:
        used = maker.extend(batch, seqs, records)
    except Exception as exc:
        assert want is type(exc)
        return
    assert used == len(events) + 1
    assert list(zip(seqs, records, strict=True)) == want
    assert maker.extend(events, [], []) == len(events)
