"""Journal lines that name a member twice (issue 10, item 4).

A forger who re-chains the journal after inserting ``"status":"failed"`` before the
real ``"status":"completed"`` gets a line whose chain checks, and which msgspec (last
wins) reads as completed and a first-wins reader as failed. Every reader of the
journal must refuse it. Lines that our writer did not write byte for byte but that
name nothing twice (an older writer, a member added later) are still read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from auditjournal import AuditStore, ExportSettings, verify_export
from auditjournal.errors import CorruptJournalError
from auditjournal.export.replay import replay_export
from auditjournal.journal.lines import SUFFIX_LEN, seal

RUN = "run-1"


def genesis(run_id: str) -> bytes:
    return hashlib.sha256(b"auditjournal/v1 genesis " + run_id.encode()).digest()


def record(root: Path, *, complete: bool = True) -> Path:
    """A small run; returns its journal segment."""
    with AuditStore.open(root) as store:
        run = store.start_run(run_id=RUN, config={"a": 1}, export=ExportSettings(), sql=False)
        src = run.register_node(plugin_name="src", node_type="source")
        t = run.register_node(plugin_name="t", node_type="transform")
        for i in range(3):
            row = run.create_row(source_node_id=src, row_index=i, data={"i": i})
            tok = run.create_token(row_id=row)
            st = run.begin_node_state(token_id=tok, node_id=t, step_index=1, input_data={"i": i})
            run.complete_node_state(st, status="completed", output_data={"o": i})
        if complete:
            run.complete()
        else:
            run.close()
    (segment,) = sorted((root / "runs" / RUN / "journal").glob("*.jsonl"))
    return segment


def rewrite(segment: Path, edit: bytes, into: bytes, *, count: int = 1) -> None:
    """Replace ``edit`` by ``into`` in the first ``count`` lines holding it, and re-chain
    every line from the first one changed (what a forger without a key can do)."""
    chain = genesis(RUN)
    out = []
    for line in segment.read_bytes().splitlines(keepends=True):
        event = line[:-SUFFIX_LEN] + b"}"
        if count and edit in event:
            event = event.replace(edit, into, 1)
            count -= 1
        sealed, chain = seal(event, chain)
        out.append(sealed)
    assert not count, "nothing to edit"
    segment.write_bytes(b"".join(out))


FAILED_FIRST = (b'"status":"completed"', b'"status":"failed","status":"completed"')


def test_every_reader_refuses_a_rechained_line_naming_a_member_twice(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    segment = record(root)
    export = root / "runs" / RUN / "export"
    rewrite(segment, *FAILED_FIRST)
    with AuditStore.open(root) as store:
        with pytest.raises(CorruptJournalError, match="'status' twice"):
            list(store.read_journal(RUN))
        with pytest.raises(CorruptJournalError, match="'status' twice"):
            replay_export(
                journal_dir=store.journal_dir(RUN),
                run_id=RUN,
                payloads=store.payloads,
                settings=ExportSettings(),
                prefix=tmp_path / "replayed" / "audit_trail",
            )
        report = verify_export(export, journal=(store.journal_dir(RUN), store.payloads))
        assert not report.ok
        assert any("'status' twice" in c.reason for c in report.checks), report.checks


def test_resume_refuses_a_rechained_line_naming_a_member_twice(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    segment = record(root, complete=False)
    rewrite(segment, *FAILED_FIRST)
    with AuditStore.open(root) as store, pytest.raises(CorruptJournalError, match="twice"):
        store.resume_run(RUN)


def test_a_repeat_nested_in_an_event_member_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    segment = record(root)
    rewrite(segment, b'"config":{"a":1}', b'"config":{"a":2,"a":1}')
    with AuditStore.open(root) as store, pytest.raises(CorruptJournalError, match="'a' twice"):
        list(store.read_journal(RUN))


def test_lines_our_writer_did_not_write_byte_for_byte_are_still_read(tmp_path: Path) -> None:
    """An unknown extra member and members in another order name nothing twice."""
    root = tmp_path / "audit"
    segment = record(root)
    with AuditStore.open(root) as store:
        before = list(store.read_journal(RUN))
    rewrite(segment, b'"config":{"a":1}', b'"config":{"a":1},"added_later":true')
    rewrite(
        segment,
        b'{"type":"run_started","run_id":"run-1"',
        b'{"run_id":"run-1","type":"run_started"',
    )
    with AuditStore.open(root) as store:
        assert list(store.read_journal(RUN)) == before
