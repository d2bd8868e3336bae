"""The runs of a store whose journals are in PostgreSQL (``AuditStore(journal_url=...)``).

:class:`SharedRuns` is the store's PostgreSQL side: it opens the run's writers (a
coordinator that starts, resumes and completes the run, and any number of joined
writers, each a :class:`~auditjournal.journal.pgbackend.PgJournal` sharing the run's
lease), and keeps the local copies of the journals the projectors read
(:class:`~auditjournal.projection.pgmirror.PgMirror`). It reaches the journal only
through the PostgreSQL backend's module (:mod:`auditjournal.journal.pgbackend`).

The store keeps what both backends share: the live projectors, the SQL tables, the
exports and the payload store the local copies' payloads go to.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import msgspec

from ..errors import JournalLockedError, LifecycleError, RunAlreadyCompletedError
from ..fs.storage import Durability, validate_id
from ..journal.base import JournalBackend
from ..journal.pgbackend import PgBackend, PgDatabase, PgJournal, PgPayloads, WriterId
from ..model.events import CsvExported, ExportCheckpoint, ExportFailed, ExportSealed
from ..model.secretfilter import SecretFilter
from ..payloads.store import PayloadStore
from ..projection.pgmirror import PgMirror
from .recorder import RunRecorder
from .shared import SharedRunState, claim_keys

__all__ = ["SharedRuns"]


class SharedRuns:
    """The PostgreSQL journals of one store; ``local`` is where their copies go."""

    def __init__(
        self,
        url: str,
        *,
        local: JournalBackend,
        payloads: PayloadStore,
        durability: Durability,
        flush_interval: float,
        max_payload_bytes: int,
        secrets: SecretFilter,
    ) -> None:
        self.db = PgDatabase(url)
        self.secrets = secrets
        self.backend = PgBackend(self.db)
        self.local = local
        self.payloads = payloads
        self.durability: Durability = durability
        self.flush_interval = flush_interval
        self.max_payload_bytes = max_payload_bytes

    def run_ids(self) -> list[str]:
        return self.backend.run_ids()

    def create(self, run_id: str, on_close: Callable[[RunRecorder], None]) -> RunRecorder:
        """Make the run in the database; its coordinator's recorder."""
        writer = WriterId.new()
        self.db.create_run(run_id, writer)
        return self.recorder(run_id, writer, on_close, joined=False)

    def open(
        self, run_id: str, on_close: Callable[[RunRecorder], None], *, joined: bool
    ) -> RunRecorder:
        """A writer of a run that exists and has not completed: a joined writer, or (not
        ``joined``) its coordinator again after a crash (resume_run)."""
        validate_id(run_id, "run id")
        if self.db.head(run_id).completed:  # RunNotFoundError
            raise RunAlreadyCompletedError(f"run {run_id!r} has already completed")
        writer = WriterId.new()
        while joined and not self.db.reserve_tag(run_id, writer.nonce):
            writer = WriterId.new()  # its tag was taken (by chance, or by a given id)
        return self.recorder(run_id, writer, on_close, joined=joined)

    def recorder(
        self,
        run_id: str,
        writer: WriterId,
        on_close: Callable[[RunRecorder], None],
        *,
        joined: bool,
    ) -> RunRecorder:
        lock = threading.Lock()  # the recorder's, given to the writer (open_writer(lock=))
        journal = PgJournal(
            self.db,
            run_id,
            writer,
            PgPayloads(self.max_payload_bytes, self.db),
            durability=self.durability,
            flush_interval=self.flush_interval,
            lock=lock,
        )
        state = SharedRunState(run_id, journal.refresh, writer.nonce if joined else None)
        journal.absorb = state.absorb
        journal.claims = state.claim_keys
        journal.conflict = state.conflict
        try:
            with lock:
                journal.refresh()  # everything committed so far (nothing for a new run)
            if joined or state.started:
                state.skip_generated_ids(0)
            if state.completed:
                raise RunAlreadyCompletedError(f"run {run_id!r} has already completed")
        except BaseException:
            journal.abandon()
            raise
        if joined:
            journal.watch_completion()
        return RunRecorder(
            run_id,
            journal,
            state,
            lock=lock,
            payloads=journal.payload_buffer,
            secrets=self.secrets,
            on_close=on_close,
            joined=joined,
        )

    def mirror(self, run_id: str) -> PgMirror:
        """The local copy of the run's journal (:class:`JournalLockedError` while another
        mirror of this root keeps it)."""
        return PgMirror(self.backend.journal(run_id), self.local.journal(run_id), self.payloads)

    def sync(self, run_id: str) -> int:
        """Bring the local copy up to date; the entries copied (0 while another mirror
        keeps it current)."""
        validate_id(run_id, "run id")
        self.db.head(run_id)  # RunNotFoundError before anything is made locally
        try:
            mirror = self.mirror(run_id)
        except JournalLockedError:
            return 0
        try:
            return mirror.sync_all()
        finally:
            mirror.close()

    def append_export_event(
        self, run_id: str, event: ExportSealed | ExportFailed | CsvExported | ExportCheckpoint
    ) -> bool:
        """``AuditStore.append_export_event`` as one more writer of the run."""
        validate_id(run_id, "run id")
        lock = threading.Lock()
        journal = PgJournal(
            self.db,
            run_id,
            WriterId.new(),
            PgPayloads(self.max_payload_bytes),
            durability="always",
            lock=lock,
        )
        try:
            state = SharedRunState(run_id, journal.refresh, None)
            journal.absorb = state.absorb
            journal.claims = claim_keys
            journal.conflict = state.conflict
            with lock:
                journal.refresh()
            for old in self.backend.journal(run_id).read():
                if old == msgspec.structs.replace(event, seq=old.seq, ts=old.ts):
                    return False
            if not state.completed:
                raise LifecycleError(f"run {run_id!r} has not completed; nothing to seal")
            with lock:
                journal.append(msgspec.structs.replace(event, run_id=run_id, seq=journal.next_seq))
            journal.flush()
            return True
        finally:
            journal.close()

    def close(self) -> None:
        self.backend.close()
