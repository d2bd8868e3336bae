"""RFC 9162 consistency proofs (merkle.consistency_proof*, verify_consistency, CompactRange).

Checked three ways: against the published vectors (the certificate-transparency
eight-leaf tree; the proofs as listed in transparency-dev/merkle
``proof/verify_test.go``), against a recursive implementation of RFC 9162
§2.1.1 (MTH) and §2.1.4.1 (PROOF/SUBPROOF) written here from the RFC text, for
many tree sizes, and by damaging good proofs (every damaged proof must fail).
Proofs built from compact ranges alone (what a live export keeps per
checkpoint) must equal the proofs built from all leaves.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditjournal.errors import ConsistencyProofError
from auditjournal.proofs.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleBuilder,
    consistency_proof,
    consistency_proof_from_ranges,
    consistency_proof_ranges,
    leaf_hash,
    prefix_root,
    range_subtrees,
    verify_consistency,
)

# certificate-transparency merkle_tree_test leaf inputs and the MTH of the first n (n = 1..8).
LEAF_INPUTS = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
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
# (m, n, proof) as published with those leaves.
PUBLISHED_PROOFS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


# -- the RFC's recursive definitions, written out here ------------------------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(entries: Sequence[bytes]) -> bytes:
    """RFC 9162 2.1.1 over already-hashed leaves."""
    if not entries:
        return _h(b"")
    if len(entries) == 1:
        return entries[0]
    k = _k(len(entries))
    return _h(b"\x01" + ref_mth(entries[:k]) + ref_mth(entries[k:]))


def ref_subproof(m: int, entries: Sequence[bytes], b: bool) -> list[bytes]:
    """RFC 9162 2.1.4.1 SUBPROOF."""
    n = len(entries)
    if m == n:
        return [] if b else [ref_mth(entries)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, entries[:k], b), ref_mth(entries[k:])]
    return [*ref_subproof(m - k, entries[k:], False), ref_mth(entries[:k])]


def ref_proof(m: int, entries: Sequence[bytes]) -> list[bytes]:
    if m in (0, len(entries)):
        return []
    return ref_subproof(m, entries, True)


def leaves_of(n: int, salt: int = 0) -> list[bytes]:
    return [leaf_hash(f"{salt}:{i}".encode()) for i in range(n)]


def published_leaves() -> list[bytes]:
    return [leaf_hash(bytes.fromhex(h)) for h in LEAF_INPUTS]


# -- published vectors --------------------------------------------------------------


def test_the_reference_reproduces_the_published_roots() -> None:
    leaves = published_leaves()
    assert [ref_mth(leaves[:n]).hex() for n in range(1, 9)] == ROOTS


@pytest.mark.parametrize(("m", "n", "proof"), PUBLISHED_PROOFS)
def test_published_proofs_are_generated_and_verify(m: int, n: int, proof: list[str]) -> None:
    leaves = published_leaves()[:n]
    assert [p.hex() for p in consistency_proof(leaves, m)] == proof
    assert [p.hex() for p in ref_proof(m, leaves)] == proof
    root_m, root_n = bytes.fromhex(ROOTS[m - 1]), bytes.fromhex(ROOTS[n - 1])
    verify_consistency(m, n, root_m, root_n, [bytes.fromhex(p) for p in proof])


def damaged(
    m: int, n: int, root_m: bytes, root_n: bytes, proof: list[bytes]
) -> list[tuple[str, tuple[int, int, bytes, bytes, list[bytes]]]]:
    """Every way of getting a good proof's inputs wrong that must fail verification."""
    probes = [
        ("m - 1", (m - 1, n, root_m, root_n, proof)),
        ("m + 1", (m + 1, n, root_m, root_n, proof)),
        ("m ^ 2", (m ^ 2, n, root_m, root_n, proof)),
        ("n * 2", (m, n * 2, root_m, root_n, proof)),
        ("n // 2", (m, n // 2, root_m, root_n, proof)),
        ("wrong first root", (m, n, SOME_HASH, root_n, proof)),
        ("wrong second root", (m, n, root_m, SOME_HASH, proof)),
        ("swapped roots", (m, n, root_n, root_m, proof)),
        ("empty proof", (m, n, root_m, root_n, [])),
        ("trailing first root", (m, n, root_m, root_n, [*proof, root_m])),
        ("trailing second root", (m, n, root_m, root_n, [*proof, root_n])),
        ("preceding first root", (m, n, root_m, root_n, [root_m, *proof])),
        ("preceding second root", (m, n, root_m, root_n, [root_n, *proof])),
        ("preceding proof[0]", (m, n, root_m, root_n, [proof[0], *proof])),
        ("truncated proof", (m, n, root_m, root_n, proof[:-1])),
        ("first hash dropped", (m, n, root_m, root_n, proof[1:])),
        ("short hash", (m, n, root_m, root_n, [*proof[:-1], proof[-1][:31]])),
    ]
    for i in range(len(proof)):
        for bit in (0, 4, 7):
            bad = list(proof)
            bad[i] = bytes([bad[i][0] ^ (1 << bit)]) + bad[i][1:]
            probes.append((f"proof[{i}] bit {bit}", (m, n, root_m, root_n, bad)))
    if len(proof) > 1:
        probes.append(("reordered", (m, n, root_m, root_n, proof[::-1])))
    return [
        (name, args)
        for name, args in probes
        if (args[0], args[1]) != (m, n)
        or args[2:]
        != (
            root_m,
            root_n,
            proof,
        )
    ]


def assert_all_damage_fails(
    m: int, n: int, root_m: bytes, root_n: bytes, proof: list[bytes]
) -> None:
    accepted = []
    for name, (bm, bn, brm, brn, bproof) in damaged(m, n, root_m, root_n, proof):
        if bm < 0:
            continue
        try:
            verify_consistency(bm, bn, brm, brn, bproof)
        except ConsistencyProofError:
            continue
        accepted.append(name)
    assert not accepted, f"{m}->{n}: damaged proofs accepted: {accepted}"


@pytest.mark.parametrize(("m", "n", "proof"), [p for p in PUBLISHED_PROOFS if p[2]])
def test_damaged_published_proofs_fail(m: int, n: int, proof: list[str]) -> None:
    root_m, root_n = bytes.fromhex(ROOTS[m - 1]), bytes.fromhex(ROOTS[n - 1])
    assert_all_damage_fails(m, n, root_m, root_n, [bytes.fromhex(p) for p in proof])


# -- edge cases of verification (sizes 0 and equal) ------------------------------------

R1, R2 = hashlib.sha256(b"root one").digest(), hashlib.sha256(b"root two").digest()


@pytest.mark.parametrize(
    ("m", "n", "root_m", "root_n", "proof", "ok"),
    [
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [], True),
        (0, 5, EMPTY_ROOT, R2, [], True),  # the empty tree is a prefix of every tree
        (1, 1, R1, R1, [], True),
        (7, 7, R1, R1, [], True),
        (0, 5, R1, R2, [], False),  # a "tree of 0 leaves" with another root
        (0, 0, EMPTY_ROOT, R2, [], False),
        (1, 1, R1, R2, [], False),  # same size, different roots
        (1, 1, R1, R1, [EMPTY_ROOT], False),  # equal sizes need an empty proof
        (0, 1, EMPTY_ROOT, R1, [EMPTY_ROOT], False),
        (1, 0, R1, R2, [], False),  # back in time
        (2, 1, R1, R2, [], False),
        (-1, 2, R1, R2, [], False),
        (1, 2, R1, R2, [], False),  # a real step needs a proof
        (1, 2, R1[:31], R2, [R1], False),
    ],
)
def test_verify_edge_cases(
    m: int, n: int, root_m: bytes, root_n: bytes, proof: list[bytes], ok: bool
) -> None:
    if ok:
        verify_consistency(m, n, root_m, root_n, proof)
    else:
        with pytest.raises(ConsistencyProofError):
            verify_consistency(m, n, root_m, root_n, proof)


# -- against the RFC's recursion, many sizes ------------------------------------------


def test_every_pair_up_to_48_leaves_matches_the_rfc_recursion() -> None:
    leaves = leaves_of(48)
    roots = [ref_mth(leaves[:n]) for n in range(49)]
    for n in range(49):
        for m in range(n + 1):
            proof = consistency_proof(leaves[:n], m)
            assert proof == ref_proof(m, leaves[:n]), (m, n)
            verify_consistency(m, n, roots[m], roots[n], proof)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_proofs_match_the_rfc_recursion_and_verify(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 1100), label="n")
    m = data.draw(st.integers(0, n), label="m")
    leaves = leaves_of(n, salt=n)
    proof = consistency_proof(leaves, m)
    assert proof == ref_proof(m, leaves)
    root_m, root_n = ref_mth(leaves[:m]), ref_mth(leaves)
    verify_consistency(m, n, root_m, root_n, proof)
    if proof:
        assert_all_damage_fails(m, n, root_m, root_n, proof)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_changed_leaf_before_m_breaks_every_proof(data: st.DataObject) -> None:
    """The newer tree rewrote history: no proof from the honest first root verifies."""
    n = data.draw(st.integers(2, 300), label="n")
    m = data.draw(st.integers(1, n - 1), label="m")
    i = data.draw(st.integers(0, m - 1), label="changed leaf")
    honest = leaves_of(n)
    forged = list(honest)
    forged[i] = leaf_hash(b"rewritten")
    with pytest.raises(ConsistencyProofError):
        verify_consistency(m, n, ref_mth(honest[:m]), ref_mth(forged), consistency_proof(forged, m))


def test_proof_ranges_are_what_the_recursion_hashes() -> None:
    leaves = leaves_of(40)
    for n in range(41):
        for m in range(n + 1):
            ranges = consistency_proof_ranges(m, n)
            assert [ref_mth(leaves[a:b]) for a, b in ranges] == ref_proof(m, leaves[:n])
            for a, b in ranges:  # inside [0, m) and aligned, or inside [m, n)
                size = b - a
                assert (b <= m and not size & (size - 1) and not a % size) or a >= m


@pytest.mark.parametrize(("m", "n"), [(-1, 3), (4, 3)])
def test_no_proof_for_impossible_sizes(m: int, n: int) -> None:
    with pytest.raises(ValueError):
        consistency_proof_ranges(m, n)
    with pytest.raises(ValueError):
        consistency_proof(leaves_of(3), m)


# -- compact ranges: proofs without the leaves ----------------------------------------


def build_range(start: int, leaves: Sequence[bytes], how: Sequence[int]) -> CompactRange:
    """Feed leaves into a CompactRange in chunks: by one, by batch, or as subtrees."""
    compact = CompactRange(start)
    i = 0
    for step, kind in enumerate(how):
        size = 1 + step % 7 * 3
        batch = leaves[i : i + size]
        if kind == 0:
            for leaf in batch:
                compact.add(leaf)
        elif kind == 1:
            compact.extend(batch)
        else:
            for width, node in range_subtrees(batch, start + i):
                compact.add_subtree(width, node)
        i += len(batch)
        if i >= len(leaves):
            break
    compact.extend(leaves[i:])
    assert compact.end == start + len(leaves)
    return compact


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_proofs_from_checkpoint_ranges_equal_proofs_from_leaves(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 600), label="n")
    inner = st.sets(st.integers(1, n - 1), max_size=8) if n > 1 else st.just(set[int]())
    cuts = sorted(data.draw(inner, label="checkpoints"))
    bounds = [0, *cuts, n]
    how = data.draw(st.lists(st.integers(0, 2), max_size=40), label="feeding")
    leaves = leaves_of(n, salt=7)
    ranges = [build_range(a, leaves[a:b], how) for a, b in itertools.pairwise(bounds)]
    for j, later in enumerate(bounds):
        assert prefix_root(ranges[:j], later) == ref_mth(leaves[:later])
        for earlier in bounds[: j + 1]:
            proof = consistency_proof_from_ranges(ranges[:j], earlier, later)
            assert proof == ref_proof(earlier, leaves[:later]), (earlier, later)
            verify_consistency(
                earlier, later, ref_mth(leaves[:earlier]), ref_mth(leaves[:later]), proof
            )
    # The ranges fold into the whole tree's stack, as the exporter's builder holds it.
    whole = CompactRange(0)
    for compact in ranges:
        whole.append(compact)
    builder = MerkleBuilder()
    for leaf in leaves:
        builder.add(leaf)
    assert whole.state() == builder.state()
    assert whole.root() == builder.root() == ref_mth(leaves)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 300), st.integers(0, 300))
def test_a_compact_range_keeps_the_biggest_aligned_subtrees(start: int, count: int) -> None:
    leaves = leaves_of(count, salt=start)
    compact = CompactRange(start)
    for leaf in leaves:
        compact.add(leaf)
    assert compact.nodes == range_subtrees(leaves, start)
    assert [(a, s) for a, s, _ in compact.subtrees()] == [
        (start + sum(w for w, _ in compact.nodes[:i]), w) for i, (w, _) in enumerate(compact.nodes)
    ]
    assert len(compact.nodes) <= 2 * max(1, (start + count).bit_length())
    for first, size, node in compact.subtrees():
        assert not first % size and node == ref_mth(leaves[first - start : first - start + size])
    restored = CompactRange.from_state(start, compact.state())
    assert (restored.start, restored.end, restored.nodes) == (start, start + count, compact.nodes)


def test_ranges_that_split_nothing_at_m_cannot_prove_m() -> None:
    leaves = leaves_of(8)
    one = CompactRange(0)
    one.extend(leaves)  # a single subtree of 8 leaves: nothing ends at leaf 5
    with pytest.raises(ValueError, match="boundary at leaf"):
        consistency_proof_from_ranges([one], 5, 8)
    with pytest.raises(ValueError, match="boundary at leaf"):
        prefix_root([one], 5)
    head, tail = CompactRange(0), CompactRange(5)
    head.extend(leaves[:5])
    tail.extend(leaves[5:7])
    with pytest.raises(ValueError, match="end before leaf 8"):
        consistency_proof_from_ranges([head, tail], 5, 8)
    gap = CompactRange(6)
    gap.extend(leaves[6:])
    with pytest.raises(ValueError, match="gap"):
        consistency_proof_from_ranges([gap], 6, 8)


def test_compact_range_rejects_misplaced_subtrees() -> None:
    compact = CompactRange(3)
    with pytest.raises(ValueError):
        compact.add_subtree(2, SOME_HASH)  # a 2-leaf subtree cannot start at leaf 3
    with pytest.raises(ValueError):
        compact.add_subtree(3, SOME_HASH)  # not a power of two
    compact.add(SOME_HASH)
    with pytest.raises(ValueError, match="only a range that starts at leaf 0"):
        compact.root()
    with pytest.raises(ValueError, match="cannot follow"):
        compact.append(CompactRange(5))
    with pytest.raises(ValueError):
        CompactRange(-1)
    assert CompactRange(0).root() == EMPTY_ROOT
