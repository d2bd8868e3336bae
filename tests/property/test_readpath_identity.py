"""Property tests: the compiled read paths of issue 13 say exactly what the Python code says.

verify's chunk scan (``evidence/chunkscan.py``): with its compiled block
(``_chunkscan_accel``) and without it, the scan of any chunk — a valid one, or one
edited, cut, reordered, of another run, out of layout, not JSON — gives the same
:class:`ChunkScan` (problem text, counts, seqs, Merkle subtrees, tally). The compiled
module is tested whether or not the checkout has built it: a missing one is built from
its C source into a temporary directory (skipped without a compiler).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_hotpath_identity import _build_compiled

from auditjournal.evidence import chunkscan
from auditjournal.export.manifest import ChunkEntry
from auditjournal.model.recordtypes import RECORD_TYPES
from auditjournal.proofs.merkle import leaf_hash, range_subtrees

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
        mp.setattr(chunkscan, "_compiled_block", accel.block)
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
    taken = scan_accel.block(bytearray(data), len(data), 0)
    assert taken is not None and taken[2] == records
    assert taken[1] == b"".join(leaf_hash(r) for r in records)
    python, compiled = _scan_both(
        tmp_path / "c.json", data, 64, (2,), scan_accel, (4, 1, 4), compiled_only=True
    )
    assert compiled == python and not python.problem and python.tally["open_states"] == 2
    assert scan_accel.block(bytearray(b"[\nx\n"), 4, 0) is not None  # layout only: not JSON
    assert scan_accel.block(bytearray(b"{}\n"), 3, 0) is None  # no '[' first
    assert scan_accel.block(bytearray(b"[\n{}\n{}\n"), 8, 0) is None  # no leading ','
    with pytest.raises(ValueError):
        scan_accel.block(bytearray(b"[\n"), 3, 0)


@given(n=st.integers(0, 70), start=st.integers(0, 2**40))
@example(n=1, start=2**63 - 1)
@EXAMPLES
def test_the_compiled_subtrees_are_range_subtrees(scan_accel: Any, n: int, start: int) -> None:
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    assert scan_accel.subtrees(b"".join(leaves), start) == range_subtrees(leaves, start)
