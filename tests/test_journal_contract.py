"""The file journal backend passes the journal contract (tests/journal_contract.py),
with small segments (entries spread over many files) and with the default size."""

from __future__ import annotations

from pathlib import Path

from auditjournal.journal.base import JournalBackend, RunJournal
from auditjournal.journal.filebackend import FileJournalBackend, FileRunJournal
from auditjournal.journal.segments import journal_segments
from journal_contract import JournalContract


class TestFileJournalContract(JournalContract):
    segment_bytes = 700  # a few entries per segment: reads, splits and heads cross files

    def create_backend(self, tmp_path: Path) -> JournalBackend:
        return FileJournalBackend(tmp_path / "store", segment_bytes=self.segment_bytes)

    def tamper(self, journal: RunJournal, seq: int) -> None:
        assert isinstance(journal, FileRunJournal)
        for _, path in journal_segments(journal.directory):
            lines = path.read_bytes().splitlines(keepends=True)
            for index, line in enumerate(lines):
                if f'"seq":{seq},'.encode() in line:
                    assert b'"ts":"2024-05-06' in line
                    lines[index] = line.replace(b'"ts":"2024-05-06', b'"ts":"2024-05-07', 1)
                    path.write_bytes(b"".join(lines))
                    return
        raise AssertionError(f"no entry with seq {seq}")


class TestFileJournalOneSegmentContract(TestFileJournalContract):
    segment_bytes = 64 << 20
