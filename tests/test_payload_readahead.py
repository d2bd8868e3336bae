"""The payload store's read-ahead window (payloads/readahead.py): a payload written
earlier than the window is read alone, the window stays; the bytes are always right."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from auditjournal.payloads.readahead import READ_AHEAD, ReadAhead
from auditjournal.payloads.store import PayloadStore

PACK = bytes(range(256)) * (3 * READ_AHEAD // 256)  # three windows of pack bytes


class _Pack:
    """A pack's bytes with a log of the reads made of them."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads: list[tuple[int, int]] = []

    def read_some(self, number: int, offset: int, size: int) -> bytes:
        assert number == 1
        self.reads.append((offset, size))
        return self.data[offset : offset + size]


def _bytes(ahead: ReadAhead, offset: int, size: int) -> bytes:
    buf, at = ahead.read(1, offset, size)
    return bytes(buf[at : at + size])


def test_a_payload_before_the_window_is_read_alone_and_the_window_stays() -> None:
    pack = _Pack(PACK)
    ahead = ReadAhead(pack.read_some)
    assert _bytes(ahead, 500_000, 100) == PACK[500_000:500_100]
    window = ahead.window
    assert _bytes(ahead, 1_000, 200) == PACK[1_000:1_200]  # earlier: one exact read
    assert ahead.window is window
    assert _bytes(ahead, 500_100, 100) == PACK[500_100:500_200]  # still in the window
    assert pack.reads == [(500_000, READ_AHEAD), (1_000, 200)]


def test_the_window_never_moves_back() -> None:
    """A reader that went back for good reads each payload alone: one exact read per
    payload, never a window per payload; the next read past the window moves it on."""
    pack = _Pack(PACK)
    ahead = ReadAhead(pack.read_some)
    _bytes(ahead, 2 * READ_AHEAD, 10)
    for i in range(100):
        assert _bytes(ahead, 100 * i, 10) == PACK[100 * i : 100 * i + 10]
    assert ahead.window is not None and ahead.window[1] == 2 * READ_AHEAD
    assert pack.reads[1:] == [(100 * i, 10) for i in range(100)]
    assert _bytes(ahead, 3 * READ_AHEAD - 5, 10) == PACK[3 * READ_AHEAD - 5 :][:10]
    assert ahead.window is not None and ahead.window[1] == 3 * READ_AHEAD - 5


@given(
    st.lists(
        st.tuples(st.integers(0, len(PACK) - 1), st.integers(0, 3 * READ_AHEAD // 2)),
        max_size=60,
    )
)
def test_every_read_gives_the_packs_bytes(requests: list[tuple[int, int]]) -> None:
    pack = _Pack(PACK)
    ahead = ReadAhead(pack.read_some)
    for offset, size in requests:
        assert _bytes(ahead, offset, size) == PACK[offset : offset + size]


def test_a_replay_with_repeated_content_reads_each_pack_byte_about_once(tmp_path: Path) -> None:
    """Payloads whose content repeats (stored once, early) between new ones, read in
    order: the store reads about the pack's size, not a window per repeat."""
    store = PayloadStore(tmp_path)
    early = [store.put({"early": i, "pad": "x" * 200}) for i in range(50)]
    order: list[str] = []
    for i in range(20_000):
        order.append(store.put({"row": i, "pad": "y" * 200}))
        if i % 10 == 0:
            order.append(early[i % 50])
    store.close()
    pack_bytes = sum(p.stat().st_size for p in tmp_path.glob("pack-*.dat"))
    store = PayloadStore(tmp_path)
    read = 0
    plain = store._read_some

    def counting(number: int, offset: int, size: int) -> bytes:
        nonlocal read
        data = plain(number, offset, size)
        read += len(data)
        return data

    store._ahead = ReadAhead(counting)
    try:
        for ref in order:
            store.get(ref)
    finally:
        store.close()
    assert pack_bytes > 4 * READ_AHEAD
    assert read < 2 * pack_bytes
