"""The import report: per run and per Landscape table, rows read, imported, not mapped."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["ImportProgress", "ImportReport", "PayloadCount", "RunImport", "TableCount", "Unmapped"]


class ImportProgress(msgspec.Struct, frozen=True):
    """``done`` of the run's ``total`` Landscape rows are recorded; the last was of ``table``."""

    run_id: str
    table: str
    done: int
    total: int


class Unmapped(msgspec.Struct, frozen=True):
    what: str
    rows: int
    reason: str


class TableCount(msgspec.Struct, frozen=True):
    table: str
    read: int
    imported: int
    not_mapped: tuple[Unmapped, ...] = ()


class PayloadCount(msgspec.Struct, frozen=True):
    referenced: int = 0
    copied: int = 0
    already_present: int = 0
    missing: int = 0
    filtered: int = 0
    """Held a secret field: stored filtered by the recorder, not copied."""


class RunImport(msgspec.Struct, frozen=True):
    run_id: str
    status: Literal["imported", "refused", "failed"]
    message: str | None
    landscape_status: str
    imported_status: str | None
    records: int | None
    manifest_sha256: str | None
    tables: tuple[TableCount, ...]
    payloads: PayloadCount
    notes: tuple[str, ...] = ()


class ImportReport(msgspec.Struct, frozen=True):
    database: str
    payloads_dir: str
    root: str
    runs: tuple[RunImport, ...]

    @property
    def ok(self) -> bool:
        return all(
            r.status == "imported" and not any(t.not_mapped for t in r.tables) for r in self.runs
        )
