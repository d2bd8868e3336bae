"""The payload store's read-ahead window over one pack (``PayloadStore.get``).

Replays and projectors ask for a run's payloads in about the order they were written,
so most requests land in a window of the pack read ahead in one ``pread``: one syscall
per ~1 MiB instead of one per payload. Written pack bytes never change, so a window
stays true for as long as it is kept.

Thread-safety: one window per store, replaced as a whole (a reader holds the tuple it
took).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

__all__ = ["READ_AHEAD", "ReadAhead"]

READ_AHEAD: Final = 1 << 20


class ReadAhead:
    """``read(number, offset, size)`` through the window; ``window`` is
    ``(pack number, offset, bytes)`` or None (what the compiled read takes)."""

    __slots__ = ("_read_some", "window")

    def __init__(self, read_some: Callable[[int, int, int], bytes]) -> None:
        self._read_some = read_some  # (pack number, offset, size): up to size bytes
        self.window: tuple[int, int, bytes] | None = None

    def read(self, number: int, offset: int, size: int) -> tuple[bytes, int]:
        """``(buffer, index)``: the bytes are ``buffer[index : index + size]`` (fewer at
        the end of the pack), so the caller slices out only what it needs.

        A payload before the window (content seen before, so stored once, earlier) is
        read alone and the window stays: moving it back and forth read the pack of the
        small-record bench run ~70 times over (1.2 GB for a 17 MB pack). The window
        never moves back: a reader that went back for good costs one exact ``pread``
        per payload (as every read did before windows), never a window per payload."""
        window = self.window
        if window is not None and window[0] == number:
            start = offset - window[1]
            if start >= 0 and start + size <= len(window[2]):
                return window[2], start
            if start < 0:
                return self._read_some(number, offset, size), 0
        data = self._read_some(number, offset, max(size, READ_AHEAD))
        self.window = (number, offset, data)
        return data, 0

    def clear(self) -> None:
        self.window = None
