"""SHA-256 in the export's hot paths: a payload's re-check against its ref, the Merkle
leaf hash of each record, the node hashes of a Merkle level.

Each function is plain ``hashlib``, or its compiled twin (``_digest_accel.c``, an
optional build linked with libcrypto, as ``hashlib`` is) where that is built: same
bytes (a property test), without a hash object per call. ``hashlib`` looks the digest
up for every hash object it makes (~0.3 us with OpenSSL 3, as much as hashing a
record), and the export makes about three per event; the compiled functions look it up
once and take a whole batch per call. ``AUDITJOURNAL_PURE_PYTHON`` leaves them unused.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Any, Final

from ..model.canonical import PURE_PYTHON_ENV

__all__ = [
    "leaf_hashes",
    "leaf_hashes_python",
    "node_hashes",
    "node_hashes_python",
    "sha256_digest",
]

_Bytes = bytes | bytearray | memoryview
_sha256 = hashlib.sha256
_LEAF_PREFIX = _sha256(b"\x00")  # copying a primed hash is cheaper than starting one


def _sha256_python(data: _Bytes) -> bytes:
    return _sha256(data).digest()


def leaf_hashes_python(records: Sequence[_Bytes]) -> bytes:
    """The RFC 6962 leaf hash, SHA-256(0x00 || record), of each record, back to back."""
    out = []
    for record in records:
        h = _LEAF_PREFIX.copy()
        h.update(record)
        out.append(h.digest())
    return b"".join(out)


def node_hashes_python(level: _Bytes) -> bytes:
    """The RFC 6962 node hash, SHA-256(0x01 || left || right), of each pair of 32-byte
    hashes given back to back (64 bytes a pair), back to back."""
    if len(level) % 64:
        raise ValueError("node_hashes() takes pairs of 32-byte hashes")
    view = memoryview(level)
    return b"".join(_sha256(b"\x01" + view[i : i + 64]).digest() for i in range(0, len(view), 64))


_compiled: Any
try:  # setup.py, optional
    from . import _digest_accel as _compiled
except ImportError:  # pragma: no cover - a build without a C compiler or OpenSSL headers
    _compiled = None
if _compiled is None or os.environ.get(PURE_PYTHON_ENV):
    _compiled = None

sha256_digest: Final[Callable[[_Bytes], bytes]] = (
    _sha256_python if _compiled is None else _compiled.sha256
)
"""The 32-byte SHA-256 digest of ``data``."""
leaf_hashes: Final[Callable[[Sequence[_Bytes]], bytes]] = (
    leaf_hashes_python if _compiled is None else _compiled.leaf_hashes
)
""":func:`leaf_hashes_python`, compiled where built."""
node_hashes: Final[Callable[[_Bytes], bytes]] = (
    node_hashes_python if _compiled is None else _compiled.node_hashes
)
""":func:`node_hashes_python`, compiled where built."""
