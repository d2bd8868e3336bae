"""The PostgreSQL journal backend passes the journal contract (tests/journal_contract.py),
each test in a database of its own on the server of ``AUDITJOURNAL_TEST_DATABASE_URL``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from auditjournal.journal.base import JournalBackend, RunJournal
from auditjournal.journal.pgbackend import PgBackend, PgRunJournal
from auditjournal.journal.pgschema import PgDatabase
from journal_contract import JournalContract

pytestmark = pytest.mark.postgres


class TestPgJournalContract(JournalContract):
    @pytest.fixture(autouse=True)
    def _own_database(self, pg_url: str) -> Iterator[None]:
        self.url = pg_url
        yield

    def create_backend(self, tmp_path: Path) -> JournalBackend:
        return PgBackend(PgDatabase(self.url))

    def tamper(self, journal: RunJournal, seq: int) -> None:
        assert isinstance(journal, PgRunJournal)
        with journal.db.engine.begin() as conn:
            line = conn.execute(
                sa.text("SELECT line FROM auditjournal_events WHERE run_id = :r AND seq = :s"),
                {"r": journal.run_id, "s": seq},
            ).scalar_one()
            line = bytes(line)
            assert b'"ts":"2024-05-06' in line
            conn.execute(
                sa.text("UPDATE auditjournal_events SET line = :l WHERE run_id = :r AND seq = :s"),
                {"l": line.replace(b'"ts":"2024-05-06', b'"ts":"2024-05-07', 1),
                 "r": journal.run_id, "s": seq},
            )  # fmt: skip
