"""The store: one root directory with payloads, run journals and exports.

Layout (SPEC section 3)::

    <root>/payloads/                 content-addressed payload packs, shared by runs
    <root>/landscape.db              SQLite audit tables (SQL projector)
    <root>/runs/<run_id>/journal/    the run's append-only journal
    <root>/runs/<run_id>/export/     audit_trail.NNN.json chunks + manifest

Run ids are validated so nothing can escape ``<root>``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import msgspec

from ..errors import (
    InvalidEventError,
    InvalidSettingsError,
    LifecycleError,
    RunAlreadyCompletedError,
    RunExistsError,
    RunNotFoundError,
    StorageError,
)
from ..export.projector import ExportProjector
from ..fs.safeio import inside, real_dir
from ..fs.storage import Durability, validate_id
from ..journal.base import JournalBackend, JournalCursor, JournalWriter, RunJournal
from ..journal.filebackend import (
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_SEGMENT_BYTES,
    FileJournalBackend,
)
from ..journal.pgbackend import PgDatabase
from ..model.events import (
    EXPORT_EVENT_TYPES,
    CsvExported,
    Event,
    ExportCheckpoint,
    ExportFailed,
    ExportSealed,
)
from ..model.secretfilter import SecretFilter
from ..model.settings import ExportSettings
from ..payloads.store import DEFAULT_MAX_PAYLOAD_BYTES, PayloadStore
from ..projection.live import LiveProjectors
from ..projection.pgmirror import MirrorThread
from ..proofs.ledger import Ledger, ledger_key_file
from ..proofs.pgledger import PgLedger
from ..proofs.signing import load_ed25519_private_key
from ..sql.projector import SqlProjector
from ..sql.schema import SqlDatabase
from .arguments import (
    canonical_value,
    check_names,
    check_text,
    check_time,
    json_object,
    json_object_bytes,
)
from .lineage import LiveLineage
from .liveprojectors import LiveStart, Projection, projection_mode
from .pgruns import SharedRuns
from .recorder import RunRecorder
from .runstate import RunState
from .settingscheck import check_store_settings

__all__ = ["AuditStore"]

_UTC = _dt.UTC
_DEFAULT_EXPORT = ExportSettings()
_log = logging.getLogger(__name__)  # under the "auditjournal" logger


class AuditStore:
    """A root directory holding payloads, run journals and exports.

    Open with :meth:`open`; use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        root: Path,
        *,
        durability: Durability = "batch",
        database_url: str | None = None,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        ledger_key: str | os.PathLike[str] | None = None,
        journal_url: str | None = None,
        secret_fields: tuple[str, ...] | list[str] = (),
        projection: Projection | None = None,
    ) -> None:
        self.projection: Projection = projection_mode(projection)
        """Where the live projectors run: "process" (one per run) or "thread" (liveprojectors)."""
        if isinstance(secret_fields, str) or not all(isinstance(f, str) for f in secret_fields):
            raise InvalidSettingsError(
                f"secret_fields must be a list of names, got {secret_fields!r}"
            )
        self.secret_filter = SecretFilter.from_env(secret_fields)
        """Secret fields -> fingerprints, before anything is stored (model/secretfilter.py)."""
        check_store_settings(
            durability, database_url, flush_interval, segment_bytes, max_payload_bytes
        )
        self.root = root
        self.durability: Durability = durability
        self.database_url = database_url or f"sqlite:///{root / 'landscape.db'}"
        self.flush_interval = flush_interval
        self.segment_bytes = segment_bytes
        # the root is the caller's choice; below it nothing is reached through a link
        root.mkdir(parents=True, exist_ok=True)
        real_dir(root, "runs")
        payloads = real_dir(root, "payloads")
        self.payloads = PayloadStore(payloads, max_payload_bytes=max_payload_bytes)
        self.journals: JournalBackend = FileJournalBackend(root, segment_bytes=segment_bytes)
        """Where the projectors read the runs' journals: the file backend (with
        ``journal_url``: the local copies of the PostgreSQL journals, see ``pgmirror``)."""
        key = ledger_key_file(ledger_key)
        if key is not None:
            load_ed25519_private_key(key)  # a bad key fails here, not at the first seal
        self.ledger = Ledger(root, key)
        self.ledger.catch_up()  # a checkpoint a crash kept from being written
        self.journal_url = journal_url
        self.shared: SharedRuns | None = None
        """The PostgreSQL journals (``journal_url``), or None: the run journals are files."""
        if journal_url is not None:
            try:
                self.shared = SharedRuns(
                    journal_url,
                    local=self.journals,
                    payloads=self.payloads,
                    durability=durability,
                    flush_interval=flush_interval,
                    max_payload_bytes=max_payload_bytes,
                    secrets=self.secret_filter,
                )
            except BaseException:
                self.payloads.close()
                raise
        self.pg: PgDatabase | None = None if self.shared is None else self.shared.db
        if self.pg is not None:  # one ledger per journal database (proofs/pgledger.py)
            self.ledger = PgLedger(root, key, self.pg)
        """The PostgreSQL journal's database, or None."""
        self._recorders: list[RunRecorder] = []
        self._sql: SqlDatabase | None = None
        self._sql_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        root: str | Path = "./audit",
        *,
        durability: Durability = "batch",
        database_url: str | None = None,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        ledger_key: str | os.PathLike[str] | None = None,
        journal_url: str | None = None,
        secret_fields: tuple[str, ...] | list[str] = (),
        projection: Projection | None = None,
    ) -> AuditStore:
        """Open (creating if needed) the store at ``root``.

        With ``journal_url`` (``postgresql+psycopg://...``, extra ``auditjournal[postgres]``)
        the run journals and their payloads are in PostgreSQL, several processes may write
        one run (:meth:`join_run`), and ``root`` keeps only local things: exports, the SQL
        tables, and a copy of the journals the projectors read (see ``pgmirror``).

        ``ledger_key``: the Ed25519 private key (PEM PKCS#8) that signs the store ledger's
        checkpoints (default ``$AUDITJOURNAL_LEDGER_KEY_FILE``; none: unsigned).
        ``secret_fields``: names the secret filter replaces, besides its defaults
        (the fingerprint key is read from ``AUDITJOURNAL_FINGERPRINT_KEY``).
        ``projection``: where a run's live export and SQL tables are projected: ``"process"``
        (default; ``$AUDITJOURNAL_PROJECTION`` changes it), a projector process per run
        beside the recorder, or ``"thread"``, threads sharing the recorder's GIL.

        Bad settings raise :class:`InvalidSettingsError` before anything is created.
        """
        if not isinstance(root, str | os.PathLike):
            raise InvalidSettingsError(f"root must be a path (str or os.PathLike), got {root!r}")
        return cls(
            Path(root),
            durability=durability,
            database_url=database_url,
            flush_interval=flush_interval,
            segment_bytes=segment_bytes,
            max_payload_bytes=max_payload_bytes,
            ledger_key=ledger_key,
            journal_url=journal_url,
            secret_fields=secret_fields,
            projection=projection,
        )

    # -- runs --------------------------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        """``<root>/runs/<run_id>``; :class:`UnsafePathError` if it is a link (never followed)."""
        return inside(self.root, "runs", validate_id(run_id, "run id"))

    def journal_dir(self, run_id: str) -> Path:
        """``<root>/runs/<run_id>/journal``; :class:`UnsafePathError` if a part is a link."""
        return inside(self.root, "runs", validate_id(run_id, "run id"), "journal")

    def export_dir(self, run_id: str) -> Path:
        """Where the live export of ``run_id`` is written."""
        return inside(self.root, "runs", validate_id(run_id, "run id"), "export")

    def journal(self, run_id: str) -> RunJournal:
        """The run's journal (validated id; it need not exist yet)."""
        return self.journals.journal(run_id)

    def run_ids(self) -> list[str]:
        """Every run with a journal, oldest directory name first."""
        if self.shared is not None:
            return self.shared.run_ids()
        return self.journals.run_ids()

    def export_prefix(self, run_id: str, settings: ExportSettings) -> Path:
        """The path prefix of a run's export files (``.../export/audit_trail`` by default)."""
        if settings.path_prefix is not None:
            return Path(settings.path_prefix)
        return self.export_dir(run_id) / "audit_trail"

    def start_run(
        self,
        *,
        config: dict[str, Any] | None = None,
        export: ExportSettings | None = _DEFAULT_EXPORT,
        run_id: str | None = None,
        settings: dict[str, Any] | None = None,
        sql: bool = True,
        occurred_at: _dt.datetime | None = None,
        config_hash: str | None = None,
        secret_fields: tuple[str, ...] | list[str] = (),
    ) -> RunRecorder:
        """Create a run's journal, append ``run_started`` and return its recorder.

        ``occurred_at`` (timezone-aware): when the run started, if not now (an import).

        With ``export`` (the default) a projector (process or thread: the store's
        ``projection``) writes the live export while the run is recorded; completing
        the run waits for it to be sealed. ``export=None`` records only the journal
        (project or replay it later). With ``sql`` (the default) it also keeps the SQL
        audit tables at :attr:`database_url` current, and completing waits for them too.
        """
        if export is not None and not isinstance(export, ExportSettings):
            raise InvalidSettingsError(f"export must be ExportSettings or None, got {export!r}")
        if type(sql) is not bool:
            raise InvalidSettingsError(f"sql must be True or False, got {sql!r}")
        when = check_time(occurred_at)
        secret_fields = check_names(secret_fields, "secret_fields")
        if config is not None and not isinstance(config, dict):
            json_object_bytes(config, "config")  # the usual error
        config, paths = self.secret_filter.filter(config or {}, secret_fields)
        config_bytes = json_object_bytes(config, "config")
        redacted: tuple[str, ...] = ("config",) if paths else ()
        if config_hash is not None:
            if type(config_hash) is not str:
                raise InvalidEventError(f"config_hash must be a str, got {config_hash!r}")
            if not paths and config_hash != hashlib.sha256(config_bytes).hexdigest():
                raise InvalidEventError(f"config_hash {config_hash!r} is not this config's hash")
        resolved: dict[str, Any] = {"durability": self.durability}
        if settings is not None:
            if isinstance(settings, dict):
                settings, paths = self.secret_filter.filter(settings, secret_fields)
                redacted += ("settings",) if paths else ()
            resolved.update(json_object(settings, "settings"))
        if export is not None:
            resolved["export"] = export.describe()
        canonical_value(resolved, "settings")  # the export's key file path, say
        if run_id is None:
            stamp = _dt.datetime.now(_UTC).strftime("%Y%m%dT%H%M%SZ")
            run_id = f"run-{stamp}-{secrets.token_hex(4)}"
        run_journal = self.journal(run_id)
        prefix = None if export is None else self.export_prefix(run_id, export)  # links refused
        lineage = LiveLineage.of(export, run_id, prefix)  # and a missing OpenLineage client
        if run_journal.created():
            raise RunExistsError(f"run {run_id!r} already has a journal in {run_journal.location}")
        if sql:
            self._check_new_sql_run(run_id)  # a bad database fails before the run exists
        if self.shared is not None:
            return self._start_shared_run(run_id, config_bytes, resolved, export, sql, lineage)
        # the live export takes its lock before the run is visible on disk (liveprojectors)
        start = LiveStart(self, run_id, export, sql)
        lock = threading.Lock()  # the recorder's, held around each append
        try:
            journal = self._open_journal(run_id, create=True, lock=lock)
        except BaseException:
            start.close()
            raise
        recorder = self._recorder(run_id, journal, RunState(), lock)
        try:
            first = recorder._emit_run_started(config_bytes, resolved, when, config_hash, redacted)
            # the run exists on disk from here on, whatever the durability mode
            journal.flush(fsync=self.durability != "none")
            if lineage is not None:
                lineage.attach(recorder, first)
            start.attach(recorder.live)
        except BaseException:
            start.close()
            try:
                recorder.close()
            except StorageError:  # cannot even write run_started: let go of the attempt
                recorder._abandon()
            raise
        return recorder

    def _start_shared_run(
        self,
        run_id: str,
        config_bytes: bytes,
        resolved: dict[str, Any],
        export: ExportSettings | None,
        sql: bool,
        lineage: LiveLineage | None,
    ) -> RunRecorder:
        """start_run with the journal in PostgreSQL: this process is the coordinator; the
        live projectors follow the local copy of the journal (``pgmirror``)."""
        assert self.shared is not None
        recorder = self.shared.create(run_id, self._recorders.remove)
        self._recorders.append(recorder)
        try:
            started = recorder._emit_run_started(config_bytes, resolved)
            recorder._journal.flush(fsync=True)
            if export is not None or sql:
                self._follow_locally(recorder, export, sql)
            if lineage is not None:
                lineage.attach(recorder, started)
        except BaseException:
            try:
                recorder.close()
            except StorageError:
                recorder._abandon()
            raise
        return recorder

    def _follow_locally(
        self, recorder: RunRecorder, export: ExportSettings | None, sql: bool
    ) -> None:
        """Start the local copy of the run's journal and the live projectors on it."""
        assert self.shared is not None
        start = LiveStart(self, recorder.run_id, export, sql)
        try:
            mirror = self.shared.mirror(recorder.run_id)
        except BaseException:
            start.close()
            raise
        live = recorder.live
        thread = MirrorThread(mirror, on_progress=lambda: _wake(live))
        recorder.close_hooks.append(thread.stop)
        start.attach(live)

    def join_run(self, run_id: str) -> RunRecorder:
        """A recorder for a run that another process (the coordinator) started, on this or
        another host, through the same ``journal_url``. Its events join the run's one
        sequence and hash chain. Leaving it (``with``) or ``close()`` commits what it
        recorded and does not complete the run.

        Raises :class:`RunNotFoundError` for a run the journal does not have and
        :class:`RunAlreadyCompletedError` for one that has completed.
        """
        if self.shared is None:
            raise InvalidSettingsError(
                "join_run needs a store opened with journal_url=... (the PostgreSQL journal); "
                "a file journal has exactly one writer"
            )
        recorder = self.shared.open(run_id, self._recorders.remove, joined=True)
        self._recorders.append(recorder)
        return recorder

    def sync_run(self, run_id: str) -> int:
        """Bring the local copy of a PostgreSQL run journal (and its payloads) up to date,
        for the commands that read ``<root>/runs/<run_id>/journal``; returns the entries
        copied. A store without ``journal_url`` has nothing to copy (0); nor has one whose
        copy of that run another mirror (a live run, ``project``) is keeping current."""
        return 0 if self.shared is None else self.shared.sync(run_id)

    def export_projector(
        self, run_id: str, export: ExportSettings, *, prefix: Path | None = None, live: bool = False
    ) -> ExportProjector:
        """A projector for the run's export (resuming from its checkpoint if there is one).

        ``live``: it follows a recorder of this process (payloads from memory).
        """
        if live:
            self.payloads.keep_recent()
        if prefix is None and export.path_prefix is None:
            real_dir(self.root, "runs", run_id, "export")  # created here, never through a link
        return ExportProjector(
            journal_dir=self.journal(run_id),
            run_id=run_id,
            payloads=self.payloads,
            settings=export,
            prefix=prefix or self.export_prefix(run_id, export),
            live=live,
            ledger=self.ledger,
        )

    # -- SQL tables -------------------------------------------------------------------

    def sql_database(self) -> SqlDatabase:
        """The audit tables at :attr:`database_url` (connected, schema checked, on first use)."""
        with self._sql_lock:
            if self._sql is None:
                self._sql = SqlDatabase(self.database_url)
            return self._sql

    def sql_projector(self, run_id: str, database: SqlDatabase | None = None) -> SqlProjector:
        """A projector of the run's journal into the tables (resuming from their checkpoint)."""
        return SqlProjector(
            database=database or self.sql_database(),
            journal_dir=self.journal(run_id),
            run_id=run_id,
        )

    def _check_new_sql_run(self, run_id: str) -> None:
        database = self.sql_database()
        if database.checkpoint(run_id) is not None:
            raise RunExistsError(
                f"run {run_id!r} already has audit tables in {database.url} "
                "(choose another run id, or start the run with sql=False)"
            )

    def resume_run(self, run_id: str, *, reason: str = "writer stopped") -> RunRecorder:
        """Reopen an unfinished run after a crash: repair a torn tail, rebuild its state.

        The repair (bytes dropped, if any) is in ``recorder.recovery``. The interruption
        and the resumption are recorded (``run_interrupted`` with the stopped writer's
        last seq and ``reason``, then ``run_resumed`` with this writer's host and pid;
        with a PostgreSQL journal: not recorded, this process is the coordinator again)."""
        reason = check_text(reason, "reason")
        if self.shared is not None:
            recorder = self.shared.open(run_id, self._recorders.remove, joined=False)
            self._recorders.append(recorder)
            return recorder
        lock = threading.Lock()  # the recorder's, held around each append
        journal = self._open_journal(run_id, create=False, lock=lock)
        state = RunState()
        try:
            for event in self.journal(run_id).read():
                state.apply(event)
            state.skip_generated_ids(journal.last_seq)
            if state.completed:
                raise RunAlreadyCompletedError(f"run {run_id!r} has already completed")
        except BaseException:
            journal.close()
            raise
        recorder = self._recorder(run_id, journal, state, lock)
        try:
            recorder._emit_resumed(reason)
        except BaseException:
            recorder.close()
            raise
        return recorder

    def _recorder(
        self, run_id: str, journal: JournalWriter, state: RunState, lock: threading.Lock
    ) -> RunRecorder:
        recorder = RunRecorder(
            run_id,
            journal,
            state,
            lock=lock,
            payloads=self.payloads,
            secrets=self.secret_filter,
            on_close=self._recorders.remove,
        )
        self._recorders.append(recorder)
        return recorder

    def finish_run(self, run_id: str, status: str, *, reason: str | None = None) -> RunRecorder:
        """Complete a run whose writer died: resume it (recording the interruption),
        append ``run_completed`` with ``status`` (``interrupted`` or ``failed``), and
        close it. Its export and SQL tables are then brought up and sealed by the
        projection service (as ``auditjournal project`` does); returns the recorder."""
        if status not in ("interrupted", "failed"):
            raise InvalidEventError(f"finish a run as interrupted or failed, not {status!r}")
        recorder = self.resume_run(run_id, reason=reason or f"finished as {status}")
        try:
            recorder.complete(status)
        finally:
            recorder.close()
        return recorder

    def append_export_event(
        self, run_id: str, event: ExportSealed | ExportFailed | CsvExported | ExportCheckpoint
    ) -> bool:
        """Record an export event in a completed run's journal from outside the recorder.

        Raises :class:`JournalLockedError` while the recorder still holds the
        journal. Returns False when the same seal is already recorded.
        """
        if type(event) not in EXPORT_EVENT_TYPES:
            raise InvalidEventError(f"{type(event).__name__} is not an export event")
        if self.shared is not None:
            return self.shared.append_export_event(run_id, event)
        journal = self._open_journal(run_id, create=False)
        try:
            state = RunState()
            for old in self.journal(run_id).read():
                state.apply(old)
                if old == msgspec.structs.replace(event, seq=old.seq, ts=old.ts):
                    return False
            if not state.completed:
                raise LifecycleError(f"run {run_id!r} has not completed; nothing to seal")
            journal.append(msgspec.structs.replace(event, run_id=run_id, seq=journal.next_seq))
            journal.flush(fsync=self.durability != "none")
            return True
        finally:
            journal.close()

    @staticmethod
    def now() -> _dt.datetime:
        """The timestamp events get (UTC)."""
        return _dt.datetime.now(_UTC)

    def read_journal(self, run_id: str) -> Iterator[Event]:
        """Every complete event of the run, in seq order, chain-verified while read."""
        return iter(self.journal_reader(run_id))

    def journal_reader(self, run_id: str) -> JournalCursor:
        """A cursor of the run's journal (with ``journal_url``: of its local copy, brought
        up to date first)."""
        self.sync_run(run_id)
        journal = self.journal(run_id)
        if not journal.exists():
            raise RunNotFoundError(f"no run {run_id!r} in {self.root}")
        return journal.cursor()

    def _open_journal(
        self, run_id: str, *, create: bool, lock: threading.Lock | None = None
    ) -> JournalWriter:
        journal = self.journal(run_id).open_writer(
            create=create,
            durability=self.durability,
            flush_interval=self.flush_interval,
            before_flush=lambda fsync: self.payloads.flush(fsync=fsync),
            lock=lock,
        )
        if (r := journal.recovery) is not None:
            _log.warning(
                "journal of run %s recovered after a crash: %d byte(s) of a torn last entry "
                "dropped from %s; it ends at seq %d",
                run_id,
                r.bytes_dropped,
                r.segment,
                r.last_seq,
            )
        return journal

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Close every recorder still open (their runs stay unfinished), then the payloads.

        If a recorder's journal cannot be written (a full disk), the others are
        closed, that error is raised, and the store stays open with what is
        buffered: close it again once there is room.
        """
        failed: StorageError | None = None
        for recorder in list(self._recorders):
            try:
                recorder.close()
            except StorageError as exc:
                failed = failed or exc
        if failed is not None:
            raise failed  # its payloads must be written before its entries: keep them
        self.payloads.close()
        if self.shared is not None:
            self.shared.close()
        with self._sql_lock:
            if self._sql is not None:
                self._sql.close()
                self._sql = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wake(live: LiveProjectors) -> None:
    """New entries in the local copy: the live projectors look now."""
    for follower in (live.export, live.sql):
        if follower is not None:
            follower.wake()
