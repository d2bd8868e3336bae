"""Failure paths that matter and that no other test ran: a live export that fails
(``export_failed``), and every ``ExportSettings`` validation error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from auditjournal import AuditStore, ExportSettings, PayloadStore
from auditjournal.errors import AuditJournalError, ExportError, InvalidEventError
from auditjournal.events import ExportFailed, RunCompleted
from auditjournal.replay import replay_export
from auditjournal.verify import verify_export
from faults import fail_writes


def test_a_failed_live_export_is_recorded_and_a_replay_verifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk writes fail (disk full): leaving the run raises ExportError, the journal
    ends with export_failed naming the cause, nothing recorded is lost, and a replay of
    the journal into the export's place verifies against it (an export_failed entry
    stands in for the missing export_sealed)."""
    root = tmp_path / "audit"
    settings = ExportSettings(chunk_size_bytes=2_000)
    with AuditStore.open(root) as store:
        failed = fail_writes(monkeypatch, "/export/", times=10**9)
        with (
            pytest.raises(ExportError, match="cannot write export chunk: No space left"),
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
        assert "No space left on device" in last.error
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
        ({"sign": "ed25519", "signing_key_file": ""}, "sign='ed25519' needs signing_key_file"),
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
