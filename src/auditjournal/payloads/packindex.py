"""A compact, in-memory index of payloads: 12 bytes a slot, not ~240 a payload.

Opening a store loads every pack's ``.idx``; as a dict of digest -> tuple that
costs about 240 bytes per payload (300 MB for a store behind a 2 GB export),
which would make a replay's memory grow with the store. This table keeps two
flat ``array`` columns instead, open addressing with linear probing, sized
once for the entries to load (no resize peak):

* key: the first 4 bytes of the SHA-256 digest (0 marks an empty slot);
* value: pack number (10 bits) | data offset in the pack (28 bits) | length
  (26 bits), so one ``pread`` of header + data fetches a payload.

Only the digest prefix is kept, so a hit is a *candidate*: callers confirm it
against the record header in the pack (which holds the full digest) before
trusting it; :meth:`CompactIndex.candidates` yields every slot with that
prefix. Entries that do not fit the bit fields (a pack past number 1023, an
offset past 256 MiB, a payload of 64 MiB or more) are refused by :meth:`add`;
the store keeps those few in an ordinary dict.

Not thread-safe: the payload store's lock guards writes.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Iterator
from typing import Final

from ..model.canonical import PURE_PYTHON_ENV
from .packs import ENTRY, HEADER_SIZE

__all__ = ["CompactIndex", "layout_is"]

_PACK_BITS: Final = 10
_OFFSET_BITS: Final = 28
_SIZE_BITS: Final = 26
_MAX_LOAD: Final = 0.7
_INITIAL: Final = 1 << 10

_insert_entries: Callable[..., tuple[int, int]] | None
_rehash: Callable[..., None] | None
try:  # setup.py, optional: load()'s and _grow()'s loops compiled (_window_accel.c)
    from ._window_accel import insert_entries as _insert_entries
    from ._window_accel import rehash as _rehash
except ImportError:  # pragma: no cover - a build without a C compiler or OpenSSL headers
    _insert_entries = _rehash = None
if os.environ.get(PURE_PYTHON_ENV) or ENTRY.size != 48 or ENTRY.format != "<32sQQ":
    _insert_entries = _rehash = None  # (the compiled loops know the layouts)


def layout_is(header_size: int, offset_bits: int, size_bits: int) -> bool:
    """Whether the values pack offset and length in these bit fields (and a pack record's
    header has this size): what the compiled read of ``_window_accel.c`` assumes."""
    return (header_size, offset_bits, size_bits) == (HEADER_SIZE, _OFFSET_BITS, _SIZE_BITS)


class CompactIndex:
    """Digest-prefix -> (pack, data offset, length), 12 bytes a slot."""

    __slots__ = ("_keys", "_mask", "_values", "count")

    def __init__(self) -> None:
        self._keys = array("I", bytes(4 * _INITIAL))
        self._values = array("Q", bytes(8 * _INITIAL))
        self._mask = _INITIAL - 1
        self.count = 0

    def reserve(self, entries: int) -> None:
        """Make room for ``entries`` in all, at once (before a bulk load)."""
        if entries > _MAX_LOAD * (self._mask + 1):
            self._grow(entries)

    @staticmethod
    def fits(number: int, offset: int, size: int) -> bool:
        return (
            0 <= number < 1 << _PACK_BITS
            and 0 <= offset < 1 << _OFFSET_BITS
            and 0 <= size < 1 << _SIZE_BITS
        )

    def add(self, digest: bytes, number: int, offset: int, size: int) -> bool:
        """Insert; False (nothing stored) if the location does not fit the bit fields."""
        if not self.fits(number, offset, size):
            return False
        if (self.count + 1) > _MAX_LOAD * (self._mask + 1):
            self._grow()
        self._insert(
            int.from_bytes(digest[:4], "little") or 1,
            (number << (_OFFSET_BITS + _SIZE_BITS)) | (offset << _SIZE_BITS) | size,
        )
        self.count += 1
        return True

    def load(
        self, raw: memoryview, number: int, dat_size: int
    ) -> tuple[int, list[tuple[bytes, int, int]]]:
        """Add a pack index's entries (``raw``: whole ones) of pack ``number`` in order,
        up to the first whose data lies beyond ``dat_size`` (not flushed yet): (how many
        were taken, those among them that do not fit the bit fields: (digest, offset,
        length) for the caller's dict). The same table as :meth:`add` one at a time:
        the compiled loop stops where ``add`` would grow the table or refuse an entry,
        and that entry goes through ``add``."""
        total = len(raw) // ENTRY.size
        taken = 0
        unfit: list[tuple[bytes, int, int]] = []
        while taken < total:
            if _insert_entries is not None:
                room = int(_MAX_LOAD * (self._mask + 1)) - self.count
                done, why = _insert_entries(
                    raw[taken * ENTRY.size :],
                    number,
                    dat_size,
                    self._keys,
                    self._values,
                    self._mask,
                    room,
                )
                self.count += done
                taken += done
                if why <= 1:  # all taken, or the next one is not flushed yet
                    break
            digest, offset, size = ENTRY.unpack_from(raw, taken * ENTRY.size)
            if offset + size > dat_size:
                break  # its data is not flushed yet: look again later
            if not self.add(digest, number, offset, size):
                unfit.append((digest, offset, size))
            taken += 1
        return taken, unfit

    def columns(self) -> tuple[array[int], array[int], int]:
        """The table as it is: keys, values and the slot mask (for the compiled read of
        ``_window_accel.c``, which probes it as :meth:`first` does)."""
        return self._keys, self._values, self._mask

    def first(self, digest: bytes) -> tuple[int, int, int] | None:
        """The first candidate (the only one, nearly always), without a generator."""
        key = int.from_bytes(digest[:4], "little") or 1
        keys, mask = self._keys, self._mask
        slot = key & mask
        while True:
            found = keys[slot]
            if not found:
                return None
            if found == key:
                value = self._values[slot]
                return (
                    value >> (_OFFSET_BITS + _SIZE_BITS),
                    (value >> _SIZE_BITS) & ((1 << _OFFSET_BITS) - 1),
                    value & ((1 << _SIZE_BITS) - 1),
                )
            slot = (slot + 1) & mask

    def candidates(self, digest: bytes) -> Iterator[tuple[int, int, int]]:
        """Every stored location whose digest starts like ``digest`` (usually one)."""
        key = int.from_bytes(digest[:4], "little") or 1
        keys, values, mask = self._keys, self._values, self._mask
        slot = key & mask
        while True:
            found = keys[slot]
            if not found:
                return
            if found == key:
                value = values[slot]
                yield (
                    value >> (_OFFSET_BITS + _SIZE_BITS),
                    (value >> _SIZE_BITS) & ((1 << _OFFSET_BITS) - 1),
                    value & ((1 << _SIZE_BITS) - 1),
                )
            slot = (slot + 1) & mask

    def memory_bytes(self) -> int:
        return (self._keys.itemsize + self._values.itemsize) * len(self._keys)

    def _insert(self, key: int, value: int) -> None:
        keys, mask = self._keys, self._mask
        slot = key & mask
        while keys[slot]:
            slot = (slot + 1) & mask
        keys[slot] = key
        self._values[slot] = value

    def _grow(self, entries: int = 0) -> None:
        old_keys, old_values = self._keys, self._values
        size = (self._mask + 1) * 2
        while entries > _MAX_LOAD * size:
            size *= 2
        self._keys = array("I", bytes(4 * size))
        self._values = array("Q", bytes(8 * size))
        self._mask = size - 1
        if _rehash is not None:
            _rehash(old_keys, old_values, self._keys, self._values, self._mask)
            return
        for key, value in zip(old_keys, old_values, strict=True):
            if key:
                self._insert(key, value)
