"""RFC 6962 / RFC 9162 Merkle hashing (SPEC §4: the manifest's ``merkle_root``).

Checked against the published certificate-transparency test vectors (the
eight leaves of ``merkle_tree_test``, their roots for sizes 1..8 and the
audit paths in Trillian's ``log_verifier_test.go``), and against a
recursive implementation of RFC 9162 §2.1.1 (MTH) and §2.1.3.1 (PATH)
written here, independent of the package's iterative code.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditjournal.proofs.merkle import (
    MerkleBuilder,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    range_subtrees,
    root_from_inclusion_proof,
)

# certificate-transparency merkle_tree_test: leaf inputs (hex) and MTH of the first n.
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

# Trillian merkle/log_verifier_test.go ``inclusionProofs`` (leaf numbers there are 1-based).
PUBLISHED_PATHS = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


# -- an independent, literal reading of RFC 9162 §2.1 --------------------------------------


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_mth(hashed: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves (recursive, as in the RFC)."""
    n = len(hashed)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashed[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(hashed[:k]) + ref_mth(hashed[k:])).digest()


def ref_path(m: int, hashed: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1."""
    n = len(hashed)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*ref_path(m, hashed[:k]), ref_mth(hashed[k:])]
    return [*ref_path(m - k, hashed[k:]), ref_mth(hashed[:k])]


def hashed_leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [ref_leaf(salt + i.to_bytes(4, "big")) for i in range(n)]


def fails(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """True if the proof is refused (ValueError) or leads somewhere other than ``root``."""
    try:
        return root_from_inclusion_proof(leaf, index, size, proof) != root
    except ValueError:
        return True


# -- published vectors -----------------------------------------------------------------------


def test_leaf_and_node_hash_domain_separation() -> None:
    assert leaf_hash(b"").hex() == ROOTS[0]
    assert leaf_hash(b"\x00").hex() == (
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
    )
    left, right = leaf_hash(LEAVES[0]), leaf_hash(LEAVES[1])
    assert node_hash(left, right).hex() == ROOTS[1]
    assert node_hash(right, left).hex() != ROOTS[1]


@pytest.mark.parametrize("n", range(1, 9))
def test_roots_match_the_published_vectors(n: int) -> None:
    hashed = [leaf_hash(d) for d in LEAVES[:n]]
    assert merkle_root(hashed).hex() == ROOTS[n - 1]
    assert ref_mth(hashed).hex() == ROOTS[n - 1]


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert merkle_root([]).hex() == EMPTY_ROOT
    assert MerkleBuilder().root().hex() == EMPTY_ROOT


def test_incremental_builder_gives_every_prefix_root_and_survives_a_snapshot() -> None:
    builder = MerkleBuilder()
    for n, data in enumerate(LEAVES, start=1):
        builder.add(leaf_hash(data))
        assert builder.count == n
        assert builder.root().hex() == ROOTS[n - 1]
        resumed = MerkleBuilder.from_state(builder.state(), builder.count)
        assert resumed.root().hex() == ROOTS[n - 1]
    resumed = MerkleBuilder()
    for data in LEAVES[:5]:
        resumed.add(leaf_hash(data))
    resumed = MerkleBuilder.from_state(resumed.state(), resumed.count)
    for data in LEAVES[5:]:
        resumed.add(leaf_hash(data))
    assert resumed.root().hex() == ROOTS[7]


@pytest.mark.parametrize(("index", "size", "path"), PUBLISHED_PATHS)
def test_inclusion_proofs_match_the_published_audit_paths(
    index: int, size: int, path: list[str]
) -> None:
    hashed = [leaf_hash(d) for d in LEAVES[:size]]
    proof = inclusion_proof(hashed, index)
    assert [h.hex() for h in proof] == path
    root = root_from_inclusion_proof(hashed[index], index, size, proof)
    assert root.hex() == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "path"), [p for p in PUBLISHED_PATHS if p[2]])
def test_published_proofs_refuse_every_mutation(index: int, size: int, path: list[str]) -> None:
    """The mutations of Trillian's ``verifierCheck``."""
    leaf = leaf_hash(LEAVES[index])
    root = bytes.fromhex(ROOTS[size - 1])
    proof = [bytes.fromhex(h) for h in path]
    empty = bytes.fromhex(EMPTY_ROOT)
    assert not fails(leaf, index, size, proof, root)
    for wrong_index in {index - 1, index + 1, index ^ 2} - {index}:
        assert fails(leaf, wrong_index, size, proof, root), wrong_index
    assert fails(leaf, index, size * 2, proof, root)
    assert fails(leaf, index, size // 2, proof, root)
    assert fails(leaf_hash(b"WrongLeaf"), index, size, proof, root)
    assert fails(leaf, index, size, proof, empty)
    for i in range(len(proof)):
        assert fails(leaf, index, size, [*proof[:i], empty, *proof[i + 1 :]], root)
    assert fails(leaf, index, size, [*proof, b""], root)
    assert fails(leaf, index, size, [*proof, root], root)
    assert fails(leaf, index, size, proof[:-1], root)
    assert fails(leaf, index, size, [b"", *proof], root)
    assert fails(leaf, index, size, [root, *proof], root)


def test_bad_index_or_size_is_a_clear_error() -> None:
    hashed = [leaf_hash(d) for d in LEAVES]
    with pytest.raises(IndexError):
        inclusion_proof(hashed, 8)
    with pytest.raises(IndexError):
        inclusion_proof(hashed, -1)
    with pytest.raises(ValueError, match="outside"):
        root_from_inclusion_proof(hashed[0], 8, 8, [])
    with pytest.raises(ValueError, match="outside"):
        root_from_inclusion_proof(hashed[0], 0, 0, [])
    with pytest.raises(ValueError, match="shorter"):
        root_from_inclusion_proof(hashed[0], 0, 8, inclusion_proof(hashed, 0)[:-1])
    with pytest.raises(ValueError, match="longer"):
        root_from_inclusion_proof(hashed[0], 0, 8, [*inclusion_proof(hashed, 0), hashed[1]])


# -- against the recursive reference, exhaustively for small trees --------------------------


def test_every_proof_of_every_small_tree_equals_the_rfc_path() -> None:
    for n in range(1, 70):
        hashed = hashed_leaves(n)
        root = ref_mth(hashed)
        assert merkle_root(hashed) == root, n
        for m in range(n):
            proof = inclusion_proof(hashed, m)
            assert proof == ref_path(m, hashed), (n, m)
            assert root_from_inclusion_proof(hashed[m], m, n, proof) == root, (n, m)


# -- properties --------------------------------------------------------------------------------


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.integers(min_value=1, max_value=300))
    return n, draw(st.integers(min_value=0, max_value=n - 1))


@settings(max_examples=150, deadline=None)
@given(tree_and_index(), st.data())
def test_proofs_verify_and_every_alteration_fails(
    tree: tuple[int, int], data: st.DataObject
) -> None:
    n, m = tree
    hashed = hashed_leaves(n)
    root = ref_mth(hashed)
    assert merkle_root(hashed) == root
    proof = inclusion_proof(hashed, m)
    assert proof == ref_path(m, hashed)
    assert root_from_inclusion_proof(hashed[m], m, n, proof) == root

    if n > 1:
        # the same proof, claimed for another leaf position
        other = data.draw(st.integers(0, n - 1).filter(lambda i: i != m), label="other index")
        assert fails(hashed[m], other, n, proof, root)
        # another leaf's value at this position
        assert fails(hashed[other], m, n, proof, root)
        # one sibling changed in one bit
        which = data.draw(st.integers(0, len(proof) - 1), label="sibling")
        bit = data.draw(st.integers(0, 255), label="bit")
        bad = bytearray(proof[which])
        bad[bit // 8] ^= 1 << (bit % 8)
        assert fails(hashed[m], m, n, [*proof[:which], bytes(bad), *proof[which + 1 :]], root)
        # a proof for the same position in a tree with different contents
        changed = data.draw(st.integers(0, n - 1).filter(lambda i: i != m), label="changed")
        foreign = list(hashed)
        foreign[changed] = ref_leaf(b"foreign")
        foreign_proof = inclusion_proof(foreign, m)
        assert foreign_proof != proof
        assert fails(hashed[m], m, n, foreign_proof, root)
        assert root_from_inclusion_proof(hashed[m], m, n, foreign_proof) == ref_mth(foreign)
        # dropping or adding a level
        assert fails(hashed[m], m, n, proof[:-1], root)
    assert fails(hashed[m], m, n, [*proof, root], root)

    # a wrong tree size: a path of another length is refused outright; the size is also
    # bound by the manifest's total_record_count in verify_bundle
    wrong = data.draw(st.integers(m + 1, 600).filter(lambda s: s != n), label="wrong size")
    if len(ref_path(m, hashed_leaves(wrong))) != len(proof):
        with pytest.raises(ValueError):
            root_from_inclusion_proof(hashed[m], m, wrong, proof)
    assert fails(hashed[m], m, n * 2, proof, root)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=300),
    st.lists(st.integers(min_value=0, max_value=300), max_size=8),
)
def test_ranges_hashed_apart_fold_into_the_same_root(n: int, cuts: list[int]) -> None:
    """verify hashes each chunk's leaves on its own (range_subtrees) and folds the
    subtrees (add_subtree): for any split of any tree, the root is the RFC's."""
    hashed = hashed_leaves(n)
    bounds = sorted({0, n, *(c for c in cuts if c <= n)})
    builder = MerkleBuilder()
    for lo, hi in itertools.pairwise(bounds):
        subtrees = range_subtrees(hashed[lo:hi], lo)
        assert sum(size for size, _ in subtrees) == hi - lo
        for size, node in subtrees:
            assert lo % size == 0  # aligned: a subtree of the RFC's tree
            assert node == ref_mth(hashed[lo : lo + size])
            builder.add_subtree(size, node)
            lo += size
    assert builder.count == n
    assert builder.root() == (ref_mth(hashed) if n else bytes.fromhex(EMPTY_ROOT))


def test_a_subtree_out_of_alignment_is_refused() -> None:
    builder = MerkleBuilder()
    builder.add(leaf_hash(b"a"))
    for size in (2, 3, 0):
        with pytest.raises(ValueError, match="cannot start"):
            builder.add_subtree(size, leaf_hash(b"b"))
    builder.add_subtree(1, leaf_hash(b"b"))
    assert builder.root() == merkle_root([leaf_hash(b"a"), leaf_hash(b"b")])
