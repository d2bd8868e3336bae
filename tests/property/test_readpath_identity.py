"""Property tests: the compiled read paths of issue 13 say exactly what the Python code says.

Journal reading (``journal/reader.py``): with the compiled line check
(``_seal_accel.check_lines``, a batch of lines at a time) and without it, a reader
gives the same events, the same chains and ends with the same error (type and text) on
any journal — our encoder's lines, or lines with a member named twice (also spelt with
an escape, also nested), unknown members, whitespace, a flipped byte, a cut, an entry out
of place or of another run, deep nesting, huge numbers, an array for an object.

verify's chunk scan (``evidence/chunkscan.py``): with its compiled block
(``_chunkscan_accel``) and without it, the scan of any chunk — a valid one, or one
edited, cut, reordered, of another run, out of layout, not JSON — gives the same
:class:`ChunkScan` (problem text, counts, seqs, Merkle subtrees, tally). The compiled
module is tested whether or not the checkout has built it: a missing one is built from
its C source into a temporary directory (skipped without a compiler).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_hotpath_identity import _build_compiled
from test_roundtrip_properties import events_of

from auditjournal.errors import DuplicateMemberError
from auditjournal.evidence import chunkscan
from auditjournal.export.manifest import ChunkEntry
from auditjournal.journal import lines
from auditjournal.journal import reader as reader_module
from auditjournal.journal.base import genesis_chain
from auditjournal.journal.reader import JournalReader
from auditjournal.journal.segments import segment_name
from auditjournal.model.events import EVENT_TYPES, RowCreated, encode_event
from auditjournal.model.recordtypes import RECORD_TYPES
from auditjournal.proofs.merkle import leaf_hash, range_subtrees

_RECORD_TYPES = tuple(RECORD_TYPES)

EXAMPLES = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def scan_accel(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The compiled chunk scan: the checkout's build, else one made from its C source."""
    if chunkscan._compiled_block is not None:
        import auditjournal.evidence._chunkscan_accel as built

        return built
    where = tmp_path_factory.mktemp("chunkscan")
    return _build_compiled(where, chunkscan, "_chunkscan_accel", libraries=["crypto"])


# -- chunks: valid ones, then damaged ---------------------------------------------------------

_TYPES = sorted(RECORD_TYPES)
_record = st.fixed_dictionaries(
    {
        "record_type": st.sampled_from([*_TYPES[:6], "token_outcome", "node_state", "nope"]),
        "run_id": st.sampled_from(["r", "r", "r", "other"]),
        "seq": st.integers(-2, 40),
    },
    optional={
        "outcome": st.sampled_from(["completed", "failed", "routed"]) | st.none(),
        "status": st.sampled_from(["open", "completed"]) | st.integers(0, 2),
        "data": st.text(max_size=30) | st.dictionaries(st.text(max_size=4), st.integers()),
    },
)


def _chunk(records: list[bytes], *, close: bool = True) -> bytes:
    body = b"".join((b"" if i == 0 else b",") + r + b"\n" for i, r in enumerate(records))
    return b"[\n" + body + (b"]\n" if close else b"")


@st.composite
def chunks(draw: st.DrawFn) -> bytes:
    """A chunk as the exporter writes it (seqs rising, one run), then maybe damaged."""
    n = draw(st.integers(0, 12))
    seqs = sorted(draw(st.lists(st.integers(1, 50), min_size=n, max_size=n)))
    records = [
        msgspec.json.encode({**draw(_record), "run_id": "r", "seq": s} | _typed(draw)) for s in seqs
    ]
    if draw(st.booleans()):  # a foreign, mistyped or reordered record
        records.insert(draw(st.integers(0, n)), msgspec.json.encode(draw(_record)))
    data = _chunk(records, close=draw(st.booleans()) or n == 0)
    edits = draw(st.lists(st.tuples(st.integers(0, 10**6), st.binary(max_size=3)), max_size=2))
    for at, new in edits:  # a byte changed, cut out or put in
        at %= len(data) + 1
        if draw(st.booleans()):
            data = data[:at] + new + data[at + len(new) :]
        else:
            data = data[:at] + new + data[at + 1 :]
    return data


def _typed(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["row", "token_outcome", "node_state"]))
    if kind == "token_outcome":
        return {"record_type": kind, "outcome": draw(st.sampled_from(["completed", "failed"]))}
    if kind == "node_state":
        return {"record_type": kind, "status": draw(st.sampled_from(["open", "completed"]))}
    return {"record_type": kind}


def _scan_both(
    path: Path,
    data: bytes,
    block: int,
    cuts: tuple[int, ...],
    accel: Any,
    listed: tuple[int, int, int] = (3, 1, 9),
    compiled_only: bool = False,
) -> tuple[chunkscan.ChunkScan, chunkscan.ChunkScan]:
    """The Python scan and the compiled one (with ``compiled_only``: the Python loop may
    not take any block in the compiled run)."""
    path.write_bytes(data)
    entry = ChunkEntry(path.name, hashlib.sha256(data).hexdigest(), len(data), *listed)
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(chunkscan, "_BLOCK", block)  # several blocks per chunk
        mp.setattr(chunkscan, "_compiled_block", None)
        mp.setattr(chunkscan, "_compiled_subtrees", None)
        python = chunkscan.scan_chunk(str(path), entry, "r", 5, cuts)
        mp.setattr(chunkscan, "_compiled_block", accel.heads)
        mp.setattr(chunkscan, "_compiled_subtrees", accel.subtrees)
        if compiled_only:
            mp.setattr(chunkscan._Scan, "python_block", None)
        compiled = chunkscan.scan_chunk(str(path), entry, "r", 5, cuts)
    finally:
        mp.undo()
    return python, compiled


@given(
    data=chunks(),
    block=st.sampled_from([16, 64, 200, 4 << 20]),
    cuts=st.sampled_from([(), (7,), (6, 9, 12)]),
)
@example(data=_chunk([b'{"record_type":"row","run_id":"r","seq":1}']), block=16, cuts=())
@example(data=b"[\n]\n,{}\n", block=64, cuts=())  # content after the closing ']'
@example(data=b'{"record_type":"row","run_id":"r","seq":1}\n', block=64, cuts=())
@example(data=b"[\n[\n]\n", block=64, cuts=())  # a second '[': a record, not JSON of one
@EXAMPLES
def test_the_compiled_chunk_scan_says_what_the_python_scan_says(
    tmp_path: Path, scan_accel: Any, data: bytes, block: int, cuts: tuple[int, ...]
) -> None:
    python, compiled = _scan_both(tmp_path / "c.json", data, block, cuts, scan_accel)
    assert compiled == python


def test_the_compiled_chunk_scan_takes_a_valid_chunk_whole(tmp_path: Path, scan_accel: Any) -> None:
    """The property above must not pass by always falling back: a valid chunk's blocks are
    taken by the compiled block, and give the Python scan's result."""
    records = [
        msgspec.json.encode({"record_type": k, "run_id": "r", "seq": s, "status": "open"})
        for s, k in enumerate(["row", "node_state", "token_outcome", "node_state"], 1)
    ]
    data = _chunk(records)
    taken = scan_accel.heads(bytearray(data), len(data), 0, b"r", _RECORD_TYPES, 0)
    assert taken is not None
    state, leaves, counts, outcomes, open_states, first, last = taken
    assert (state, first, last, open_states, outcomes) == (3, 1, 4, 2, {})
    assert leaves == b"".join(leaf_hash(r) for r in records)
    assert dict(zip(_RECORD_TYPES, counts, strict=True)) == {
        t: ["row", "node_state", "token_outcome", "node_state"].count(t) for t in _RECORD_TYPES
    }
    python, compiled = _scan_both(
        tmp_path / "c.json", data, 64, (2,), scan_accel, (4, 1, 4), compiled_only=True
    )
    assert compiled == python and not python.problem and python.tally["open_states"] == 2

    def heads(data: bytes, previous: int = 0) -> Any:
        return scan_accel.heads(bytearray(data), len(data), 0, b"r", _RECORD_TYPES, previous)

    assert heads(b"[\nx\n") is None  # a line that is not JSON
    assert heads(b"{}\n") is None  # no '[' first
    assert heads(b"[\n{}\n{}\n") is None  # no leading ','
    assert heads(b"[\n" + records[0] + b"\n", previous=2) is None  # seq goes backwards
    assert heads(b"[\n" + records[0] + b" \n") is None  # whitespace: the Python loop's
    with pytest.raises(ValueError):  # end past the data
        scan_accel.heads(bytearray(b"[\n"), 3, 0, b"r", _RECORD_TYPES, 0)


@given(n=st.integers(0, 70), start=st.integers(0, 2**40))
@example(n=1, start=2**63 - 1)
@EXAMPLES
def test_the_compiled_subtrees_are_range_subtrees(scan_accel: Any, n: int, start: int) -> None:
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    assert scan_accel.subtrees(b"".join(leaves), start) == range_subtrees(leaves, start)


# -- journal reading: read_entry line by line, or check_lines a batch at a time ---------------


@pytest.fixture(scope="module")
def seal_accel(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The compiled line check: the checkout's build, else one made from its C source."""
    if lines._compiled_check is not None:
        return lines._compiled_check
    where = tmp_path_factory.mktemp("seal")
    return _build_compiled(where, lines, "_seal_accel", libraries=["crypto"]).check_lines


_EDITS = (
    "none",
    "repeat a member",  # the first member again, the chain sealed over it
    "repeat, escaped",  # the same name spelt with an escape: still a repeat
    "unknown member",  # a member we do not know: taken (not as our encoder writes it)
    "spaces",  # whitespace between members
    "nested repeat",  # a repeat inside a nested object
    "repeat after disorder",  # names out of order, then a repeat of a name after the last
    "flip a byte",  # chain no longer matches (or not JSON, or not a line)
    "cut",  # the line loses its end
    "seq",  # out of place (sealed properly)
    "run",  # another run's entry (sealed properly)
    "deep",  # nested past the compiled scan's depth
    "big number",  # a number longer than the compiled scan judges
    "array",  # a line that is an array of objects, not one object
)


def _edit(raw: bytes, how: str, at: int) -> bytes:
    """The event bytes ``raw`` (our encoder's), changed as ``how`` says (before sealing)."""
    first = raw[1 : raw.index(b",")]  # the first member, "type":"..."
    if how == "repeat a member":
        return b"{" + first + b"," + raw[1:]
    if how == "repeat, escaped":
        return b'{"\\u0074ype"' + first[len(b'"type"') :] + b"," + raw[1:]
    if how == "unknown member":
        return raw[:-1] + b',"zz":[1,{"a":"b"}]}'
    if how == "spaces":
        return raw.replace(b",", b" ,\t", 2)
    if how == "nested repeat":
        return raw[:-1] + b',"zz":{"a":1,"b":{"a":2},"a":3}}'
    if how == "repeat after disorder":  # "a" breaks the order; "c" then repeats
        return raw[:-1] + b',"zz":{"b":1,"c":2,"a":3,"c":4}}'
    if how == "deep":
        return raw[:-1] + b',"zz":' + b"[" * 40 + b"]" * 40 + b"}"
    if how == "big number":
        return raw[:-1] + b',"zz":' + b"7" * 1200 + b"}"
    if how == "array":
        return b"[" + raw + b"," + raw + b"]"
    return raw


@st.composite
def journals(draw: st.DrawFn) -> bytes:
    """A journal segment of run "r": sealed lines, some edited (before or after sealing)."""
    n = draw(st.integers(1, 6))
    chain = genesis_chain("r")
    out = []
    for seq in range(1, n + 1):
        kind = draw(st.sampled_from(sorted(EVENT_TYPES)))
        event = draw(events_of(EVENT_TYPES[kind]))
        how = draw(st.sampled_from(_EDITS)) if draw(st.integers(0, 3)) == 0 else "none"
        run = "other" if how == "run" else "r"
        event = msgspec.structs.replace(event, run_id=run, seq=seq + (how == "seq"))
        raw = _edit(encode_event(event), how, seq)
        line, chain = lines.seal_python(raw, chain)
        if how == "flip a byte":
            at = draw(st.integers(0, len(line) - 2))
            line = line[:at] + bytes([line[at] ^ draw(st.integers(1, 255))]) + line[at + 1 :]
        elif how == "cut":
            line = line[: draw(st.integers(0, len(line) - 2))] + b"\n"
        out.append(line)
    return b"".join(out)


def _read_all(directory: Path, limit: int | None) -> tuple[list[Any], list[bytes], str]:
    """Every event and chain a reader gives (polling ``limit`` at a time), and the error
    it ends with ("" if none): its type and text."""
    events: list[Any] = []
    chains: list[bytes] = []
    reader = JournalReader(directory, "r")
    try:
        while got := reader.poll(limit=limit, chains=chains):
            events += got
    except Exception as exc:
        return events, chains, f"{type(exc).__name__}: {exc}"
    finally:
        reader.close()
    return events, chains, ""


@given(segment=journals(), limit=st.sampled_from([None, 1, 2, 5]))
@EXAMPLES
def test_the_compiled_line_check_reads_what_read_entry_reads(
    tmp_path: Path, seal_accel: Any, segment: bytes, limit: int | None
) -> None:
    directory = tmp_path / "journal"
    directory.mkdir(exist_ok=True)
    (directory / segment_name(1)).write_bytes(segment)
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(reader_module, "check_lines", None)
        python = _read_all(directory, limit)
        mp.setattr(reader_module, "check_lines", seal_accel)
        compiled = _read_all(directory, limit)
    finally:
        mp.undo()
    assert compiled == python


def test_the_compiled_line_check_takes_our_lines_and_leaves_the_rest(seal_accel: Any) -> None:
    """The property above must not pass by always falling back: our encoder's lines are
    taken in one call; a repeat, an escaped name or a bad chain stops the batch there."""
    chain = genesis_chain("r")
    sealed = []
    for seq in (1, 2, 3):
        raw = encode_event(_row(seq))
        line, chain = lines.seal_python(raw, chain)
        sealed.append((line, chain))
    data = b"".join(line for line, _ in sealed)
    stop, chains, array = seal_accel(data, 0, genesis_chain("r"), -1)
    assert (stop, chains) == (len(data), [c for _, c in sealed])
    assert lines.decode_lines(array, 3) == [lines.decode_line(line) for line, _ in sealed]
    assert seal_accel(data, 0, genesis_chain("r"), 2)[1] == chains[:2]
    assert seal_accel(data, len(sealed[0][0]), chains[0], -1)[1] == chains[1:]
    assert seal_accel(data, 0, b"\0" * 32, -1) == (0, [], b"[]")  # another chain
    raw = encode_event(_row(1))
    repeats = ("repeat a member", "repeat, escaped", "nested repeat", "repeat after disorder")
    for edited in (_edit(raw, how, 0) for how in repeats):
        line, _ = lines.seal_python(edited, genesis_chain("r"))
        assert seal_accel(line, 0, genesis_chain("r"), -1)[1] == []
        with pytest.raises(DuplicateMemberError):
            lines.read_entry(line, genesis_chain("r"), bytearray())


def _row(seq: int) -> RowCreated:
    return RowCreated(
        run_id="r",
        seq=seq,
        ts=_dt.datetime(2026, 1, 1, tzinfo=_dt.UTC),
        row_id=f"x{seq}",
        source_node_id="n",
        row_index=seq,
        source_data_hash="0" * 64,
        source_data_ref="0" * 64,
    )
