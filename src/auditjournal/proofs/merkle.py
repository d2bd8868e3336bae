"""RFC 6962 / RFC 9162 Merkle tree hashing over export records.

leaf = SHA-256(0x00 || record bytes), node = SHA-256(0x01 || left || right),
and for n leaves the tree splits at the largest power of two below n
(RFC 9162 section 2.1.1). The empty tree's root is SHA-256 of nothing.

:class:`MerkleBuilder` folds leaves in as they are written and keeps only one
hash per level (O(log n) memory), so the live export can compute its root
without holding the records.

Consistency proofs (RFC 9162 2.1.4) show that a tree of ``m`` leaves is a
prefix of a tree of ``n`` leaves. Every hash in such a proof is the root of a
leaf range that is either a complete aligned subtree inside ``[0, m)`` (a
piece of the size-``m`` tree's :class:`CompactRange`) or lies inside ``[m, n)``
and is made of that range's aligned subtrees. So a writer that keeps the
:class:`CompactRange` of the leaves between consecutive checkpoints (a few
hashes each, folded as batches arrive) can prove any checkpoint against any
later one, or the final tree, without reading a single leaf again:
:func:`consistency_proof_from_ranges`. :func:`verify_consistency` is the
RFC 9162 2.1.4.2 check a third party runs with the two roots and the proof.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from ..errors import ConsistencyProofError
from ..fs.digests import leaf_hashes, node_hashes

__all__ = [
    "EMPTY_ROOT",
    "CompactRange",
    "MerkleBuilder",
    "consistency_proof",
    "consistency_proof_from_ranges",
    "consistency_proof_ranges",
    "inclusion_proof",
    "leaf_hash",
    "leaf_hasher",
    "merkle_root",
    "node_hash",
    "prefix_root",
    "range_subtrees",
    "root_from_inclusion_proof",
    "verify_consistency",
]

_sha256 = hashlib.sha256
_LEAF_PREFIX = _sha256(b"\x00")  # copying a primed hash is cheaper than starting one
EMPTY_ROOT = _sha256(b"").digest()  # the root of a tree of no leaves (RFC 9162 2.1.1)


def leaf_hasher() -> Any:
    """A SHA-256 already fed the leaf prefix: ``h = leaf_hasher(); h.update(data)`` then
    ``h.digest()`` is :func:`leaf_hash` of ``data`` (for loops that copy one per leaf)."""
    return _LEAF_PREFIX.copy()


def leaf_hash(data: bytes | bytearray | memoryview) -> bytes:
    h = _LEAF_PREFIX.copy()
    h.update(data)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


class MerkleBuilder:
    """Incremental RFC 6962 root: ``add`` leaf hashes in order, read ``root()`` any time."""

    __slots__ = ("_stack", "count")

    def __init__(self, stack: Sequence[tuple[int, bytes]] = (), count: int = 0) -> None:
        self._stack: list[tuple[int, bytes]] = list(stack)  # (subtree size, hash), sizes falling
        self.count = count

    def add(self, leaf: bytes) -> None:
        """Append one leaf hash (``leaf_hash(record)``, 32 bytes); O(log n) node hashes."""
        stack = self._stack
        size = 1
        node = leaf
        while stack and stack[-1][0] == size:
            node = _sha256(b"\x01" + stack.pop()[1] + node).digest()
            size *= 2
        stack.append((size, node))
        self.count += 1

    def extend(self, leaves: bytes) -> None:
        """Add many leaf hashes given back to back (32 bytes each)."""
        if len(leaves) % 32:
            raise ValueError("leaf hashes are 32 bytes each")
        for size, node in _packed_subtrees(leaves, self.count):
            self.add_subtree(size, node)

    def extend_records(self, records: Sequence[bytes | bytearray | memoryview]) -> None:
        """Add the leaf hashes of many records (:func:`leaf_hash` of each, in order)."""
        self.extend(leaf_hashes(records))

    def add_subtree(self, size: int, node: bytes) -> None:
        """Add the root of a complete subtree of ``size`` leaves (a power of two) that
        starts at leaf ``count``; ``count`` must be a multiple of ``size``.

        Used to combine :func:`range_subtrees` computed elsewhere (say, per chunk).
        """
        if size < 1 or size & (size - 1) or self.count & (size - 1):
            raise ValueError(f"a subtree of {size} leaves cannot start at leaf {self.count}")
        stack = self._stack
        self.count += size
        while stack and stack[-1][0] == size:
            node = _sha256(b"\x01" + stack.pop()[1] + node).digest()
            size *= 2
        stack.append((size, node))

    def root(self) -> bytes:
        """The RFC 6962 root of the leaves so far (SHA-256 of nothing for none)."""
        if not self._stack:
            return _sha256(b"").digest()
        stack = self._stack
        node = stack[-1][1]
        for _, left in reversed(stack[:-1]):
            node = node_hash(left, node)
        return node

    def state(self) -> list[tuple[int, str]]:
        """A JSON-able snapshot for checkpoints."""
        return [(size, node.hex()) for size, node in self._stack]

    @classmethod
    def from_state(cls, state: Sequence[Sequence[object]], count: int) -> MerkleBuilder:
        """A builder resumed from :meth:`state` (the frontier as ``[size, hex node]`` pairs)
        and its leaf ``count``; raises ``ValueError`` for a node that is not hex."""
        return cls([(int(str(size)), bytes.fromhex(str(node))) for size, node in state], count)


def range_subtrees(leaves: Sequence[bytes], start: int) -> list[tuple[int, bytes]]:
    """The leaves ``start``, ``start + 1``, ... of a bigger tree as the complete,
    aligned subtrees they fill, in order: ``(size, root)`` pairs that
    :meth:`MerkleBuilder.add_subtree` folds in once ``count == start``.

    A subtree of ``size`` leaves is aligned when it starts at a multiple of
    ``size``: those are exactly the subtrees RFC 6962's tree is made of, so
    ranges hashed separately (in parallel) combine into the same root. Works
    level by level: at each level a first node without its left sibling and a
    last node without its right sibling are edges of the range; the rest pair up.
    """
    rising: list[tuple[int, bytes]] = []  # left edge, small to big
    falling: list[tuple[int, bytes]] = []  # right edge, small to big (reversed at the end)
    level = list(leaves)
    position, size = start, 1  # of level[0], in subtrees of this level's size
    while level:
        if position & 1:
            rising.append((size, level[0]))
            del level[0]
            position += 1
        if len(level) & 1:
            falling.append((size, level.pop()))
        pairs = zip(level[::2], level[1::2], strict=True)  # even length by now
        level = [_sha256(b"\x01" + a + b).digest() for a, b in pairs]
        position >>= 1
        size <<= 1
    return rising + falling[::-1]


def _packed_subtrees(level: bytes, position: int) -> list[tuple[int, bytes]]:
    """:func:`range_subtrees` of leaf hashes given back to back: each level is hashed in
    one call (:func:`~auditjournal.fs.digests.node_hashes`), not one hash object a node."""
    rising: list[tuple[int, bytes]] = []
    falling: list[tuple[int, bytes]] = []
    size = 1
    while level:
        if position & 1:
            rising.append((size, level[:32]))
            level = level[32:]
            position += 1
        if len(level) & 32:  # an odd number of hashes
            falling.append((size, level[-32:]))
            level = level[:-32]
        level = node_hashes(level)
        position >>= 1
        size <<= 1
    return rising + falling[::-1]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The RFC 6962 root of already-hashed leaves."""
    builder = MerkleBuilder()
    for leaf in leaves:
        builder.add(leaf)
    return builder.root()


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``leaves`` (RFC 9162 2.1.3.1)."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} outside a tree of {len(leaves)} leaves")
    proof: list[bytes] = []
    lo, hi = 0, len(leaves)
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:
            proof.append(merkle_root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            proof.append(merkle_root(leaves[lo : lo + k]))
            lo = lo + k
    return proof[::-1]


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Recompute the root from a leaf hash and its audit path (RFC 9162 2.1.3.2).

    Raises ValueError when the path has the wrong length for ``index``/``size``.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} outside a tree of {size} leaves")
    fn, sn = index, size - 1
    node = leaf
    for sibling in proof:
        if sn == 0:
            raise ValueError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            node = node_hash(node, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("inclusion proof is shorter than the tree is deep")
    return node


# -- consistency proofs (RFC 9162 2.1.4) -------------------------------------------


class CompactRange:
    """The leaves ``start`` .. ``end - 1`` of a bigger tree, kept as the complete,
    aligned subtrees they fill (at most two per level: O(log n) hashes).

    Leaves and subtrees are appended at ``end``; two neighbours that are the
    two halves of one aligned subtree are folded into it at once, so the
    hashes kept are always the biggest aligned subtrees inside the range. For
    ``start == 0`` this is exactly :class:`MerkleBuilder`'s stack. Appending
    the :func:`range_subtrees` of a batch costs one node hash per fold, not one
    per leaf. Not thread-safe: one writer.
    """

    __slots__ = ("_nodes", "end", "start")

    def __init__(self, start: int = 0, nodes: Sequence[tuple[int, bytes]] = ()) -> None:
        if start < 0:
            raise ValueError(f"a range cannot start at leaf {start}")
        self.start = self.end = start
        self._nodes: list[tuple[int, bytes]] = []  # (subtree size, root), left to right
        for size, node in nodes:
            self.add_subtree(size, node)

    def add(self, leaf: bytes) -> None:
        self.add_subtree(1, leaf)

    def extend(self, leaves: Sequence[bytes]) -> None:
        """Append many leaf hashes (their aligned subtrees are hashed first, in one pass)."""
        for size, node in range_subtrees(leaves, self.end):
            self.add_subtree(size, node)

    def add_subtree(self, size: int, node: bytes) -> None:
        """Append the root of the aligned subtree of ``size`` leaves starting at ``end``."""
        if size < 1 or size & (size - 1) or self.end & (size - 1):
            raise ValueError(f"a subtree of {size} leaves cannot start at leaf {self.end}")
        nodes = self._nodes
        self.end += size
        left_start = self.end - size - size  # where the left sibling would start
        while (
            nodes
            and nodes[-1][0] == size
            and left_start >= self.start
            and not left_start % (2 * size)
        ):
            node = _sha256(b"\x01" + nodes.pop()[1] + node).digest()
            size *= 2
            left_start -= size
        nodes.append((size, node))

    def append(self, other: CompactRange) -> None:
        """Append the range that starts where this one ends."""
        if other.start != self.end:
            raise ValueError(f"a range starting at leaf {other.start} cannot follow {self.end}")
        for size, node in other._nodes:
            self.add_subtree(size, node)

    @property
    def nodes(self) -> list[tuple[int, bytes]]:
        """The ``(size, root)`` pairs, left to right."""
        return list(self._nodes)

    def subtrees(self) -> list[tuple[int, int, bytes]]:
        """The ``(first leaf, size, root)`` triples, left to right."""
        out: list[tuple[int, int, bytes]] = []
        position = self.start
        for size, node in self._nodes:
            out.append((position, size, node))
            position += size
        return out

    def root(self) -> bytes:
        """The tree head of leaves ``0 .. end - 1`` (a range that starts at leaf 0 only)."""
        if self.start:
            raise ValueError("only a range that starts at leaf 0 has a tree head")
        return MerkleBuilder(self._nodes, self.end).root()

    def state(self) -> list[tuple[int, str]]:
        """A JSON-able snapshot; :meth:`from_state` with the same ``start`` restores it."""
        return [(size, node.hex()) for size, node in self._nodes]

    @classmethod
    def from_state(cls, start: int, state: Sequence[Sequence[object]]) -> CompactRange:
        return cls(start, [(int(str(size)), bytes.fromhex(str(node))) for size, node in state])

    def __repr__(self) -> str:
        return f"CompactRange({self.start}..{self.end}, {len(self._nodes)} subtrees)"


def consistency_proof_ranges(m: int, n: int) -> list[tuple[int, int]]:
    """The leaf ranges ``[first, end)`` whose tree hashes make PROOF(m, D[n]), in
    the proof's order (RFC 9162 2.1.4.1, with SUBPROOF unrolled into a loop).

    Empty when ``m`` is 0 or ``n``. A range either lies inside ``[0, m)`` and is
    a complete aligned subtree, or lies inside ``[m, n)``.
    """
    if not 0 <= m <= n:
        raise ValueError(f"no consistency proof from {m} leaves to {n}")
    if m in (0, n):
        return []
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, n
    whole = True  # SUBPROOF's b: the subtree at hand is still the first tree's whole root
    while hi - lo != m - lo:
        k = _largest_power_of_two_below(hi - lo)
        if m - lo <= k:  # the first tree lies in the left subtree: prove the right one
            ranges.append((lo + k, hi))
            hi = lo + k
        else:  # the left subtree is complete in both trees
            ranges.append((lo, lo + k))
            lo += k
            whole = False
    if not whole:
        ranges.append((lo, hi))
    return ranges[::-1]


def consistency_proof(leaves: Sequence[bytes], m: int) -> list[bytes]:
    """PROOF(m, D[n]) for the tree of ``leaves`` (hashed leaves, ``n = len(leaves)``)."""
    n = len(leaves)
    if not 0 <= m <= n:
        raise ValueError(f"no consistency proof from {m} leaves to {n}")
    first, rest = CompactRange(0), CompactRange(m)
    first.extend(leaves[:m])
    rest.extend(leaves[m:])
    return consistency_proof_from_ranges([first, rest], m, n)


def consistency_proof_from_ranges(ranges: Sequence[CompactRange], m: int, n: int) -> list[bytes]:
    """PROOF(m, D[n]) from compact ranges alone, no leaves.

    ``ranges`` follow each other from leaf 0 and cover at least ``n`` leaves;
    no subtree they hold may straddle leaf ``m`` or ``n`` (true when ``m`` and
    ``n`` are where ranges start or end, e.g. one range per checkpoint interval).
    Raises ValueError when they do not allow the proof.
    """
    pieces = _pieces(ranges)
    return [_range_hash(pieces, first, end) for first, end in consistency_proof_ranges(m, n)]


def prefix_root(ranges: Sequence[CompactRange], m: int) -> bytes:
    """The tree head of the first ``m`` leaves, from compact ranges as for
    :func:`consistency_proof_from_ranges` (no subtree may straddle leaf ``m``)."""
    if m == 0:
        return EMPTY_ROOT
    return _range_hash(_pieces(ranges), 0, m)


class _Pieces:
    """Aligned subtrees from consecutive compact ranges, searchable by first leaf."""

    def __init__(self, subtrees: list[tuple[int, int, bytes]]) -> None:
        self.subtrees = subtrees
        self.starts = [first for first, _, _ in subtrees]


def _pieces(ranges: Sequence[CompactRange]) -> _Pieces:
    subtrees: list[tuple[int, int, bytes]] = []
    expected = 0
    for compact in ranges:
        if compact.start != expected:
            raise ValueError(f"ranges leave a gap or overlap at leaf {expected}")
        subtrees += compact.subtrees()
        expected = compact.end
    return _Pieces(subtrees)


def _range_hash(pieces: _Pieces, first: int, end: int) -> bytes:
    """MTH of leaves ``[first, end)`` folded from the pieces that tile it exactly."""
    i = bisect_left(pieces.starts, first)
    if i == len(pieces.starts) or pieces.starts[i] != first:
        raise ValueError(f"the ranges have no subtree boundary at leaf {first}")
    # The pieces are aligned at multiples of their size; every proof range starts
    # at a multiple of a power of two at least as big as any piece inside it, so
    # they fold into the range's own tree as MerkleBuilder folds a tree from 0.
    builder = MerkleBuilder()
    subtrees = pieces.subtrees
    while builder.count < end - first:
        if i == len(subtrees):
            raise ValueError(f"the ranges end before leaf {end}")
        _, size, node = subtrees[i]
        builder.add_subtree(size, node)
        i += 1
    if builder.count != end - first:
        raise ValueError(f"the ranges have no subtree boundary at leaf {end}")
    return builder.root()


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``first`` leaves with head ``first_root`` is a prefix
    of the tree of ``second`` leaves with head ``second_root`` (RFC 9162 2.1.4.2).

    Equal sizes need equal roots and an empty proof; a first tree of no leaves
    needs the empty tree's root (SHA-256 of nothing) and an empty proof.
    Raises :class:`ConsistencyProofError` naming what does not hold.
    """
    if not 0 <= first <= second:
        raise ConsistencyProofError(f"tree size {first} cannot precede tree size {second}")
    for hash_ in (first_root, second_root, *proof):
        if len(hash_) != 32:
            raise ConsistencyProofError("a root or proof hash is not 32 bytes")
    if first == second or first == 0:
        if proof:
            raise ConsistencyProofError(
                f"the proof from {first} to {second} leaves must be empty, it has {len(proof)}"
            )
        if first == 0 and first_root != EMPTY_ROOT:
            raise ConsistencyProofError("a tree of 0 leaves has the root SHA-256('')")
        if first == second and first_root != second_root:
            raise ConsistencyProofError(f"two different roots for the same size {first}")
        return
    if not proof:
        raise ConsistencyProofError(f"the proof from {first} to {second} leaves is empty")
    path = [first_root, *proof] if not first & (first - 1) else list(proof)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ConsistencyProofError("the proof has more hashes than the trees need")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ConsistencyProofError("the proof has fewer hashes than the trees need")
    if fr != first_root:
        raise ConsistencyProofError(f"the proof does not lead to the root of {first} leaves")
    if sr != second_root:
        raise ConsistencyProofError(f"the proof does not lead to the root of {second} leaves")
