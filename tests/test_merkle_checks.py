"""Checks of merkle.py that the published vectors do not reach (see tools/mutate.py)."""

from __future__ import annotations

import hashlib

import pytest

from auditjournal.errors import ConsistencyProofError
from auditjournal.proofs.merkle import (
    CompactRange,
    MerkleBuilder,
    consistency_proof,
    consistency_proof_from_ranges,
    consistency_proof_ranges,
    leaf_hash,
    merkle_root,
    node_hash,
    verify_consistency,
)


def leaves(n: int) -> list[bytes]:
    return [leaf_hash(str(i).encode()) for i in range(n)]


@pytest.mark.parametrize("size", [0, -1, -2, 3, 6])
def test_add_subtree_refuses_a_size_that_is_not_a_power_of_two(size: int) -> None:
    builder = MerkleBuilder()
    with pytest.raises(ValueError, match=f"a subtree of {size} leaves cannot start at leaf 0"):
        builder.add_subtree(size, b"\0" * 32)
    assert builder.count == 0 and builder.root() == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 13, 33])
def test_extend_equals_adding_leaf_by_leaf(n: int) -> None:
    for start in (0, 1, 3, 4):
        one_by_one = MerkleBuilder()
        for leaf in leaves(start + n):
            one_by_one.add(leaf)
        extended = MerkleBuilder()
        for leaf in leaves(start):
            extended.add(leaf)
        extended.extend(b"".join(leaves(start + n)[start:]))
        assert extended.count == one_by_one.count == start + n
        assert extended.root() == one_by_one.root() == merkle_root(leaves(start + n))


@pytest.mark.parametrize("size", [0, 3, 6])
def test_a_compact_range_refuses_a_subtree_size_that_is_not_a_power_of_two(size: int) -> None:
    """At leaf 0 every size passes the alignment test: only the size tests refuse these."""
    compact = CompactRange(0)
    with pytest.raises(ValueError, match=f"a subtree of {size} leaves cannot start at leaf 0"):
        compact.add_subtree(size, b"\0" * 32)
    assert (compact.end, compact.nodes) == (0, [])


@pytest.mark.parametrize(("m", "n"), [(-1, 3), (4, 3)])
def test_impossible_sizes_are_refused_by_name(m: int, n: int) -> None:
    """Other errors happen to follow from such sizes; the check names the sizes first."""
    with pytest.raises(ValueError, match=f"no consistency proof from {m} leaves to {n}"):
        consistency_proof_ranges(m, n)
    with pytest.raises(ValueError, match=f"no consistency proof from {m} leaves to {n}"):
        consistency_proof(leaves(3), m)


def test_a_proof_range_must_start_where_a_subtree_starts() -> None:
    """PROOF(4, D[12]) hashes leaves [4, 8) and [8, 12). Ranges of one 8-leaf subtree and
    one 4-leaf subtree have no boundary at leaf 4; the subtree starting after it (at 8)
    has the right size, and must not stand in for [4, 8)."""
    all_leaves = leaves(12)
    head, tail = CompactRange(0), CompactRange(8)
    head.extend(all_leaves[:8])
    tail.extend(all_leaves[8:])
    with pytest.raises(ValueError, match="no subtree boundary at leaf 4"):
        consistency_proof_from_ranges([head, tail], 4, 12)


def test_a_bigger_tree_cannot_be_a_prefix_of_a_smaller_one() -> None:
    """Without the size check this proof (the shape of 3 leaves grown from 2) verifies."""
    first_root, sibling = leaf_hash(b"a"), leaf_hash(b"b")
    second_root = node_hash(first_root, sibling)
    with pytest.raises(ConsistencyProofError, match="tree size 3 cannot precede tree size 2"):
        verify_consistency(3, 2, first_root, second_root, [first_root, sibling])


def test_hashes_of_the_wrong_length_are_refused() -> None:
    """A first root of 31 bytes would otherwise check out: for a first tree whose size is a
    power of two the proof starts from that very root."""
    first_root, sibling = b"\1" * 31, leaf_hash(b"b")
    second_root = node_hash(first_root, sibling)
    with pytest.raises(ConsistencyProofError, match="not 32 bytes"):
        verify_consistency(1, 2, first_root, second_root, [sibling])
