"""A reader's refresh of the payload index (issue 13): a live export misses the newest
payloads about once a step, and each miss listed the packs and re-read every index.
The quick refresh lists the directory only if it may have changed and opens only the
indexes that grew; what it cannot find still gets a full look before it is called
missing (a pack made in the same coarse clock tick as the last listing)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from auditjournal.errors import PayloadNotFoundError
from auditjournal.payloads.store import PayloadStore


def _age(directory: Path, seconds: float = 10.0) -> int:
    """Set the directory's mtime ``seconds`` back (past the clock-tick doubt); return it."""
    then = time.time_ns() - int(seconds * 1e9)
    os.utime(directory, ns=(then, then))
    return then


def _count(store: PayloadStore, name: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = getattr(store, name)

    def counted(*args: Any) -> Any:
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(store, name, counted)
    return calls


def test_a_quick_refresh_lists_and_reads_only_what_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = PayloadStore(tmp_path), PayloadStore(tmp_path)
    try:
        first = writer.put({"n": 1})
        writer.flush(fsync=False)
        _age(tmp_path)
        assert reader.get_json(first) == {"n": 1}  # a miss: listed, the index read
        listings = _count(reader, "_pack_numbers", monkeypatch)
        loads = _count(reader, "_load_index", monkeypatch)

        reader.refresh(quick=True)  # nothing changed: no listing, no index opened
        assert listings == [] and loads == []
        second = writer.put({"n": 2})
        writer.flush(fsync=False)  # (into the same pack: only its index grew)
        assert reader.get_json(second) == {"n": 2}
        assert listings == [] and loads == [1]  # the grown index only

        reader.refresh()  # a full refresh lists, and still skips an index read to its end
        assert listings == [1] and loads == [1]
    finally:
        writer.close()
        reader.close()


def test_a_pack_the_quick_listing_missed_is_found_by_the_full_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_writer, reader = PayloadStore(tmp_path), PayloadStore(tmp_path)
    try:
        first_writer.put({"n": 1})
        first_writer.flush(fsync=False)
        old = _age(tmp_path)
        reader.refresh(quick=True)  # the listing to trust: one pack
        listings = _count(reader, "_pack_numbers", monkeypatch)
        other = PayloadStore(tmp_path)  # a second writer: a pack of its own
        try:
            late = other.put({"n": 2})
            other.flush(fsync=False)
        finally:
            other.close()
        os.utime(tmp_path, ns=(old, old))  # as if made in the listing's clock tick
        reader.refresh(quick=True)
        assert listings == []  # the quick listing trusted the mtime: the pack is unseen
        assert reader.get_json(late) == {"n": 2}  # found by the full look
        assert listings == [1]
        with pytest.raises(PayloadNotFoundError):
            reader.get("0" * 64)
    finally:
        first_writer.close()
        reader.close()


def test_a_listing_in_the_directorys_clock_tick_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = PayloadStore(tmp_path)
    try:
        now = time.time_ns()
        os.utime(tmp_path, ns=(now, now))  # changed just now: a pack may come in this tick
        reader.refresh(quick=True)
        listings = _count(reader, "_pack_numbers", monkeypatch)
        reader.refresh(quick=True)
        assert listings == [1]  # listed again (the listing came too soon after the mtime)
    finally:
        reader.close()
