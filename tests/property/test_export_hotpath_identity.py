"""Property tests: the export projection's hot paths, made faster for issue 13 (item 2),
give exactly the bytes of the plain code they replaced.

* the compiled SHA-256 helpers (``fs/_digest_accel.c``) against ``hashlib``
  (``fs/digests.py``'s Python functions);
* the Merkle builder fed a batch of leaf hashes (one call a level) against one leaf at
  a time, and the chunk writer fed a batch of records against one record at a time
  (files, chunk list, root, tree heads).

The compiled module is tested whether or not the checkout has built it: a missing one
is built from its C source into a temporary directory (skipped without a compiler).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_hotpath_identity import _build_compiled

from auditjournal.export.chunks import ChunkWriter
from auditjournal.fs import digests
from auditjournal.model import canonical
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
        "from auditjournal.fs import digests as d; "
        "print(d.leaf_hashes is d.leaf_hashes_python, d.node_hashes is d.node_hashes_python)"
    )
    env = {**os.environ, canonical.PURE_PYTHON_ENV: "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "True True", result.stderr
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
