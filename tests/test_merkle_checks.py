"""Checks of merkle.py that the published vectors do not reach (see tools/mutate.py)."""

from __future__ import annotations

import hashlib

import pytest

from auditjournal.proofs.merkle import MerkleBuilder, leaf_hash, merkle_root


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
