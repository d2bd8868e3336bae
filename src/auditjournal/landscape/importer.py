"""Import Landscape databases: each Landscape run becomes an auditjournal run.

:func:`import_landscape` reads a Landscape database (a SQLite path, opened
read-only, or any SQLAlchemy URL; it only SELECTs), and for each run calls the
public recorder once per happening -- with the same ids, the original times
(``occurred_at``), the same hashes and payload refs -- in the order things
happened (Landscape time, then the order a pipeline records in). Payload files
are checked (their SHA-256 must equal the file name and the database's hash,
their bytes must be canonical JSON as auditjournal writes it) and copied into the
store; a purged payload is imported hash-only. Node-state data is hash-only, as
Landscape keeps it. The run is completed with its Landscape status (``running``
becomes ``interrupted``) and reproducibility grade, which seals its export; the
store ledger gets an ``import`` entry for that export, beside the seal's own.

The report gives, per run and per table, rows read, rows imported, and anything
not mapped with the reason. A run already in the store is refused, unless it is
an import of it that never finished (the importer died: its journal, marked as an
import by ``run_started``'s settings, has no ``export_sealed``, and no writer holds
it): that one is removed and the run imported again from the start, so the result
is the one an uninterrupted import gives. A run that fails a check is removed again
(its journal and SQL rows; copied payloads stay, content-addressed and harmless)
and the others go on. A run Landscape still marks ``running`` (its pipeline may
still be writing) is refused unless ``allow_running``; then it is imported as
``interrupted``.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import sqlalchemy as sa

from ..errors import (
    AuditJournalError,
    JournalLockedError,
    LandscapeDataError,
    NotALandscapeDatabaseError,
    RunAlreadyImportedError,
    RunExistsError,
    RunStillRunningError,
)
from ..export.projector import record_seal
from ..model.events import ExportSealed, RunStarted
from ..recording.recorder import RunRecorder
from ..recording.store import AuditStore
from .plan import Match, RunPlan
from .reader import Reader, database_url
from .report import ImportProgress, ImportReport, PayloadCount, RunImport, TableCount, Unmapped
from .schema import KNOWN_COLUMNS, TABLES

__all__ = [
    "ImportProgress",
    "ImportReport",
    "PayloadCount",
    "RunImport",
    "TableCount",
    "Unmapped",
    "import_landscape",
]


class _RunImporter(RunPlan):
    """The plan, recorded; and what was read and imported, per table."""

    progress: Callable[[ImportProgress], None] | None = None

    def _step(self, table: str, total: int) -> None:
        """Tell ``progress`` that one more Landscape row (of ``table``) is recorded."""
        if self.progress is not None:
            done = sum(self.imported.values())
            self.progress(ImportProgress(self.run_id, table, done, total))

    def record(self, database: str) -> RunRecorder:
        run = self.run
        where = f"runs {self.run_id}"
        status = run["status"]
        imported_status = {"running": "interrupted"}.get(status, status)
        if imported_status != status:
            self.notes.append(f"Landscape status {status!r} imported as {imported_status!r}")
        settings = {
            "import": {
                "source": "landscape",
                "database": database,
                "landscape_status": status,
                "canonical_version": run["canonical_version"],
                "source_schema": self._json("runs", run, "source_schema_json"),
                "landscape_export": {
                    "status": run["export_status"],
                    "format": run["export_format"],
                    "sink": run["export_sink"],
                    "exported_at": None if run["exported_at"] is None else str(run["exported_at"]),
                    "error": run["export_error"],
                },
            }
        }
        recorder = self.store.start_run(
            run_id=self.run_id,
            config=self._json("runs", run, "settings_json"),
            config_hash=run["config_hash"],
            settings=settings,
            occurred_at=self._time("runs", run, "started_at"),
        )
        self.imported["runs"] = 1
        # the rows: one per table row in the plan (completions are not rows), token parents
        total = 1 + sum(1 for p in self.plan if p[3]) + len(self.rows["token_parents"])
        self._step("runs", total)
        try:
            for _, _, _, table, (method, args, kw) in sorted(self.plan, key=lambda p: p[:3]):
                match = kw.get("row_id")
                if isinstance(match, Match):  # the row a validation error made, if recorded
                    rows = match.rows
                    kw["row_id"] = (
                        rows[0] if len(rows) == 1 and rows[0] in recorder._state.rows else None
                    )
                try:
                    getattr(recorder, method)(*args, **kw)
                except AuditJournalError as exc:
                    ident = next(iter(kw.values()), "?") if not args else args[0]
                    raise LandscapeDataError(f"{table or method} {ident}: {exc}") from exc
                if table:
                    self.imported[table] += 1
                if table == "tokens":
                    self.imported["token_parents"] += len(kw["parent_token_ids"])
                if table:
                    self._step(table, total)
            completed = self._time("runs", run, "completed_at")
            if completed is None:
                self.notes.append("completed_at is NULL: the run's latest time stands for it")
            grade = run["reproducibility_grade"]
            recorder.complete(
                imported_status,
                reproducibility_grade=grade,
                occurred_at=completed or self.latest,
            )
        except BaseException:
            recorder.close()
            raise
        recorder.close()
        del where
        return recorder

    def tables(self, reader: Reader) -> tuple[TableCount, ...]:
        out = []
        for name in TABLES:
            rows = self.rows[name]
            unknown = [
                c.name for c in reader.tables[name].columns if c.name not in KNOWN_COLUMNS[name]
            ]
            unmapped = tuple(
                Unmapped(column, sum(r[column] is not None for r in rows),
                         "column unknown to this importer (newer Landscape schema?)")
                for column in unknown
            )  # fmt: skip
            out.append(TableCount(name, len(rows), self.imported[name], unmapped))
        return tuple(out)


def import_landscape(
    db: str,
    payloads_dir: Path,
    store: AuditStore,
    *,
    run_ids: Sequence[str] = (),
    allow_running: bool = False,
    progress: Callable[[ImportProgress], None] | None = None,
) -> ImportReport:
    """Import the runs of a Landscape database into ``store`` (see the module docstring).

    ``progress`` is called after each Landscape row is recorded, with the run, the row's
    table and how many of the run's rows are done of how many (it ends at ``total``
    when the run is imported whole)."""
    reader = Reader(db)
    try:
        known = reader.run_ids()
        wanted = list(run_ids) or known
        unknown = [r for r in wanted if r not in known]
        if unknown:
            raise NotALandscapeDatabaseError(f"no run {', '.join(unknown)} in {db}")
        shown = sa.make_url(database_url(db)).render_as_string(hide_password=True)
        results = [
            _import_one(reader, store, payloads_dir, run_id, shown, allow_running, progress)
            for run_id in wanted
        ]
    finally:
        reader.close()
    return ImportReport(str(db), str(payloads_dir), str(store.root), tuple(results))


def _import_one(
    reader: Reader,
    store: AuditStore,
    payloads_dir: Path,
    run_id: str,
    shown: str,
    allow_running: bool,
    progress: Callable[[ImportProgress], None] | None,
) -> RunImport:
    rows = reader.rows(run_id)
    (run,) = rows["runs"]
    importer = _RunImporter(store, payloads_dir, run, rows)
    importer.progress = progress
    status: Literal["imported", "refused", "failed"] = "imported"
    message = None
    records = manifest = None
    imported_status = None
    try:
        if run["status"] == "running" and not allow_running:
            raise RunStillRunningError(
                f"run {run_id} is still marked running in Landscape (its pipeline may still "
                "be writing); give --allow-running to import it as interrupted"
            )
        left = _clear_unfinished_import(store, run_id)
        if left is not None:
            importer.notes.append(left)
        importer.build()
        recorder = importer.record(shown)
        result = recorder.export_result
        if result is not None:  # the ledger says which runs came in by import (issue 16)
            record_seal(store.ledger, run_id, result, kind="import")
        records = None if result is None else result.record_count
        manifest = None if result is None else result.manifest_sha256
        imported_status = {"running": "interrupted"}.get(run["status"], run["status"])
    except (RunExistsError, RunStillRunningError, JournalLockedError) as exc:
        status, message = "refused", str(exc)
    except AuditJournalError as exc:
        status, message = "failed", str(exc).splitlines()[0]
        _remove(store, run_id)
    return RunImport(
        run_id=run_id,
        status=status,
        message=message,
        landscape_status=run["status"],
        imported_status=imported_status,
        records=records,
        manifest_sha256=manifest,
        tables=importer.tables(reader),
        payloads=importer.payloads,
        notes=tuple(importer.notes),
    )


def _clear_unfinished_import(store: AuditStore, run_id: str) -> str | None:
    """Make room for importing ``run_id``: nothing to do when the store lacks it; an
    import of it that died before its export was sealed is removed (returns a note);
    anything else is :class:`RunAlreadyImportedError` (a finished import, or a run that
    was not imported), and a writer still holding the journal
    :class:`JournalLockedError` (that import is alive)."""
    journal = store.journal(run_id)
    if not journal.created():
        if not store.run_dir(run_id).exists():
            return None
        _remove(store, run_id)  # died before its first segment: nothing of it to keep
        return "an earlier import of this run died before recording anything; removed"
    refused = RunAlreadyImportedError(f"run {run_id} is already in {store.root}")
    if store.shared is not None:  # a PostgreSQL journal is not removed by the importer
        raise refused
    with journal.lease():  # no writer can start while we look and remove
        events = 0
        first = sealed = None
        for event in journal.read():
            first = first or event
            events += 1
            sealed = sealed or type(event) is ExportSealed
        settings = first.settings if type(first) is RunStarted else {}
        marker = settings.get("import")
        ours = isinstance(marker, dict) and marker.get("source") == "landscape"
        if sealed or (first is not None and not ours):
            raise refused
        _remove(store, run_id)
    return (
        f"an earlier import of this run died after {events} events; "
        "removed and imported again from the start"
    )


def _remove(store: AuditStore, run_id: str) -> None:
    """Undo a failed import: the run's directory and its SQL rows."""
    shutil.rmtree(store.journal_dir(run_id).parent, ignore_errors=True)
    with contextlib.suppress(AuditJournalError):
        store.sql_database().delete_run(run_id)
