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
not mapped with the reason. A run already in the store is refused; a run that
fails a check is removed again (its journal and SQL rows; copied payloads stay,
content-addressed and harmless) and the others go on.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import sqlalchemy as sa

from ..errors import (
    AuditJournalError,
    LandscapeDataError,
    NotALandscapeDatabaseError,
    RunAlreadyImportedError,
)
from ..export.projector import record_seal
from ..recording.recorder import RunRecorder
from ..recording.store import AuditStore
from .plan import Match, RunPlan
from .reader import Reader, database_url
from .report import ImportReport, PayloadCount, RunImport, TableCount, Unmapped
from .schema import KNOWN_COLUMNS, TABLES

__all__ = [
    "ImportReport",
    "PayloadCount",
    "RunImport",
    "TableCount",
    "Unmapped",
    "import_landscape",
]


class _RunImporter(RunPlan):
    """The plan, recorded; and what was read and imported, per table."""

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
            idempotency = (
                sum(r["idempotency_key"] is not None for r in rows) if name == "artifacts" else 0
            )
            if idempotency:
                unmapped += (Unmapped("idempotency_key", idempotency, "no field for it yet"),)
            out.append(TableCount(name, len(rows), self.imported[name], unmapped))
        return tuple(out)


def import_landscape(
    db: str, payloads_dir: Path, store: AuditStore, *, run_ids: Sequence[str] = ()
) -> ImportReport:
    """Import the runs of a Landscape database into ``store`` (see the module docstring)."""
    reader = Reader(db)
    try:
        known = reader.run_ids()
        wanted = list(run_ids) or known
        unknown = [r for r in wanted if r not in known]
        if unknown:
            raise NotALandscapeDatabaseError(f"no run {', '.join(unknown)} in {db}")
        shown = sa.make_url(database_url(db)).render_as_string(hide_password=True)
        results = [_import_one(reader, store, payloads_dir, run_id, shown) for run_id in wanted]
    finally:
        reader.close()
    return ImportReport(str(db), str(payloads_dir), str(store.root), tuple(results))


def _import_one(
    reader: Reader, store: AuditStore, payloads_dir: Path, run_id: str, shown: str
) -> RunImport:
    rows = reader.rows(run_id)
    (run,) = rows["runs"]
    importer = _RunImporter(store, payloads_dir, run, rows)
    status: Literal["imported", "refused", "failed"] = "imported"
    message = None
    records = manifest = None
    imported_status = None
    try:
        if store.journal_dir(run_id).is_dir() and any(store.journal_dir(run_id).glob("*.jsonl")):
            raise RunAlreadyImportedError(f"run {run_id} is already in {store.root}")
        importer.build()
        recorder = importer.record(shown)
        result = recorder.export_result
        if result is not None:  # the ledger says which runs came in by import (issue 16)
            record_seal(store.ledger, run_id, result, kind="import")
        records = None if result is None else result.record_count
        manifest = None if result is None else result.manifest_sha256
        imported_status = {"running": "interrupted"}.get(run["status"], run["status"])
    except RunAlreadyImportedError as exc:
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


def _remove(store: AuditStore, run_id: str) -> None:
    """Undo a failed import: the run's directory and its SQL rows."""
    shutil.rmtree(store.journal_dir(run_id).parent, ignore_errors=True)
    with contextlib.suppress(AuditJournalError):
        store.sql_database().delete_run(run_id)
