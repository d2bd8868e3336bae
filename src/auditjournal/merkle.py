"""RFC 6962 / RFC 9162 Merkle tree hashing over export records.

leaf = SHA-256(0x00 || record bytes), node = SHA-256(0x01 || left || right),
and for n leaves the tree splits at the largest power of two below n
(RFC 9162 section 2.1.1). The empty tree's root is SHA-256 of nothing.

:class:`MerkleBuilder` folds leaves in as they are written and keeps only one
hash per level (O(log n) memory), so the live export can compute its root
without holding the records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "MerkleBuilder",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "range_subtrees",
    "root_from_inclusion_proof",
]

_sha256 = hashlib.sha256
_LEAF_PREFIX = _sha256(b"\x00")  # copying a primed hash is cheaper than starting one


def leaf_hash(data: bytes | memoryview) -> bytes:
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
        hashes = [leaves[i : i + 32] for i in range(0, len(leaves), 32)]
        for size, node in range_subtrees(hashes, self.count):
            self.add_subtree(size, node)

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
