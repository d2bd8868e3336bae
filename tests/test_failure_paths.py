"""Failure paths that matter and that no other test ran: a live export that fails
(``export_failed``), and every ``ExportSettings`` validation error."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from auditjournal import AuditStore, ExportSettings, PayloadStore
from auditjournal.errors import AuditJournalError, ExportError, InvalidEventError
from auditjournal.evidence.verify import verify_export
from auditjournal.export.replay import replay_export
from auditjournal.model.events import ExportFailed, RunCompleted
from faults import fail_writes


def test_a_failed_live_export_is_recorded_and_a_replay_verifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk writes fail (an I/O error; a full disk is retried instead, see
    test_disk_full.py): leaving the run raises ExportError, the journal ends with
    export_failed naming the cause, nothing recorded is lost, and a replay of the
    journal into the export's place verifies against it (an export_failed entry
    stands in for the missing export_sealed). The writes fail in this process: the
    live export runs as a thread here (a projector process would not see the fault)."""
    root = tmp_path / "audit"
    settings = ExportSettings(chunk_size_bytes=2_000)
    with AuditStore.open(root, projection="thread") as store:
        failed = fail_writes(monkeypatch, "/export/", times=10**9, error=errno.EIO)
        with (
            pytest.raises(ExportError, match=r"cannot write export chunk: .*Input/output error"),
            store.start_run(config={}, export=settings) as run,
        ):
            src = run.register_node(plugin_name="src", node_type="source")
            for i in range(5):
                run.create_row(source_node_id=src, row_index=i, data={"i": i})
        monkeypatch.undo()
        assert failed
        events = list(store.read_journal(run.run_id))
        assert [type(e) for e in events[-2:]] == [RunCompleted, ExportFailed]
        last = events[-1]
        assert isinstance(last, ExportFailed)
        assert "Input/output error" in last.error
        assert sum(type(e).__name__ == "RowCreated" for e in events) == 5
        export_dir = store.export_dir(run.run_id)
        journal = root / "runs" / run.run_id / "journal"
    payloads = PayloadStore(root / "payloads")
    try:
        sealed = replay_export(
            journal_dir=journal,
            run_id=run.run_id,
            payloads=payloads,
            settings=settings,
            prefix=export_dir / "audit_trail",
        )
        assert sealed is not None
        report = verify_export(export_dir, journal=(journal, payloads))
    finally:
        payloads.close()
    assert report.ok, [c.line() for c in report.checks if not c.ok]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"include_payloads": 1}, "include_payloads must be a bool"),
        ({"include_payloads": None}, "include_payloads must be a bool"),
        ({"chunk_size_bytes": 63}, "chunk_size_bytes must be None or an int >= 64, got 63"),
        ({"chunk_size_bytes": 0}, "chunk_size_bytes must be None or an int >= 64, got 0"),
        ({"chunk_size_bytes": -1}, "chunk_size_bytes must be None or an int >= 64"),
        ({"chunk_size_bytes": 1e6}, "chunk_size_bytes must be None or an int >= 64"),
        ({"chunk_size_bytes": True}, "chunk_size_bytes must be None or an int >= 64"),
        ({"chunk_size_bytes": "1000"}, "chunk_size_bytes must be None or an int >= 64"),
        ({"sign": "rsa"}, "sign must be None or one of"),
        ({"sign": "ed25519"}, "sign='ed25519' needs signing_key_file"),
        (
            {"sign": "ed25519", "signing_key_file": ""},
            "signing_key_file must be None or a non-empty path",
        ),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else "",
)
def test_every_export_settings_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidEventError, match=message.replace("(", r"\(")) as caught:
        ExportSettings(**kwargs)
    assert isinstance(caught.value, AuditJournalError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"chunk_size_bytes": 64},
        {"chunk_size_bytes": None},
        {"include_payloads": False},
        {"sign": "hmac-sha256"},
        {"sign": "ed25519", "signing_key_file": "key.pem"},
    ],
)
def test_export_settings_at_their_limits_are_accepted(kwargs: dict[str, Any]) -> None:
    settings = ExportSettings(**kwargs)
    described = settings.describe()
    for key, value in kwargs.items():
        assert described[key] == value


# -- pack repair when a store is opened for writing after a crash ------------------------------


def _store_with_values(directory: Path, n: int = 3) -> tuple[list[str], Path]:
    store = PayloadStore(directory)
    try:
        refs = [store.put({"n": i, "text": "t" * (10 * i)}) for i in range(n)]
    finally:
        store.close()
    (pack,) = sorted(directory.glob("pack-*.dat"))
    return refs, pack


def test_repair_drops_index_entries_past_the_end_of_the_pack(tmp_path: Path) -> None:
    """The pack lost its last record (cut) but the index still names it: the entry goes,
    and that payload is reported missing rather than read from beyond the pack."""
    from auditjournal.errors import PayloadNotFoundError
    from auditjournal.payloads.store import PackRecovery

    refs, pack = _store_with_values(tmp_path)
    size = pack.stat().st_size
    os.truncate(pack, size - 5)
    store = PayloadStore(tmp_path)
    try:
        store.put({"after": "the cut"})
        assert store.recoveries == [PackRecovery(pack.name, size - 5 - _end_of(store, refs[1]), 0)]
        with pytest.raises(PayloadNotFoundError):
            store.get(refs[2])
        assert store.get_json(refs[1]) == {"n": 1, "text": "t" * 10}
    finally:
        store.close()


def _end_of(store: PayloadStore, ref: str) -> int:
    """The pack offset where the record of ``ref`` ends."""
    _, offset, size = store._locate(bytes.fromhex(ref), ref)
    return offset + size


def test_repair_stops_at_an_unindexed_record_whose_data_does_not_match(tmp_path: Path) -> None:
    import hashlib
    import struct

    from auditjournal.payloads.store import PackRecovery

    refs, pack = _store_with_values(tmp_path)
    size = pack.stat().st_size
    data = b'{"x":1}'
    header = b"AJP1" + hashlib.sha256(data).digest() + struct.pack("<Q", len(data))
    with open(pack, "ab") as fh:
        fh.write(header + b'{"x":2}')  # written whole, but not what its hash says
    store = PayloadStore(tmp_path)
    try:
        store.put({"after": "repair"})
        assert store.recoveries == [PackRecovery(pack.name, len(header) + len(data), 0)]
        assert all(store.get(ref) for ref in refs)
    finally:
        store.close()
    assert pack.stat().st_size > size  # the new record, after the cut


def test_a_repair_that_cannot_write_is_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from auditjournal.errors import StorageError

    _refs, pack = _store_with_values(tmp_path)
    with open(pack, "ab") as fh:
        fh.write(b"torn")

    def refuse(*args: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "ftruncate", refuse)
    store = PayloadStore(tmp_path)
    try:
        with pytest.raises(StorageError, match="cannot repair"):
            store.put({"after": "repair"})
            store.flush(fsync=True)
    finally:
        monkeypatch.undo()
        store.close()
