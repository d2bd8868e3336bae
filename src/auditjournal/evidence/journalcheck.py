"""Verify's look at the journal behind an export: the hash chain up to its last byte,
the pack records of every payload it names, and the ``export_sealed`` entry a run's
live export must have (with this manifest's sha256).

Thread-safety: plain functions.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..errors import AuditJournalError
from ..journal.base import RunJournal
from ..model.events import ExportFailed, ExportSealed, RunStarted
from ..model.recordtypes import REF_FIELDS
from ..payloads.store import PayloadStore

__all__ = ["scan_journal"]

_RETAINED = {
    "source_data_ref": "source_data_retained",
    "input_data_ref": "input_retained",
    "request_ref": "request_retained",
}
"""Required refs that repeat the hash when only the hash was recorded (the flag is false)."""


def scan_journal(
    journal: RunJournal,
    payloads: PayloadStore,
    raw: bytes,
    manifest_path: Path,
    live_dir: Path | None,
) -> tuple[str, str]:
    """(journal problem, payload problem) after reading the whole journal.

    Projecting stops at ``run_completed``; this reads on to the last byte, so an
    edited or cut entry after it, or a torn last line, is found too. Every payload
    the journal names must have an intact pack record.
    """
    reader = journal.cursor()
    live_export = False  # run_started asked for a live export
    failed = False
    sealed: list[ExportSealed] = []
    payload_problem = ""
    try:
        for event in reader:
            if type(event) is RunStarted:
                live_export = isinstance(event.settings.get("export"), dict)
            elif type(event) is ExportSealed:
                sealed.append(event)
            elif type(event) is ExportFailed:
                failed = True
            for field_name in REF_FIELDS:
                ref = getattr(event, field_name, None)
                if not getattr(event, _RETAINED.get(field_name, ""), True):
                    continue  # a hash only: the data was not retained, not missing
                if ref is not None and not payload_problem:
                    try:
                        payloads.check_stored(ref)
                    except AuditJournalError as exc:
                        payload_problem = str(exc)
        position = reader.position
    finally:
        reader.close()
    if not payload_problem:
        payload_problem = payloads.check_indexes()
    incomplete = journal.incomplete_tail(position)
    if incomplete:
        return incomplete, payload_problem
    last = journal.where(position)
    digest = hashlib.sha256(raw).hexdigest()
    is_live = (
        live_dir is not None and _same_file(live_dir / manifest_path.name, manifest_path)
    ) or any(_same_file(Path(e.export_path), manifest_path) for e in sealed if e.export_path)
    if is_live and (live_export or sealed):
        if not sealed and not failed:
            return (
                f"{last}: no export_sealed entry for this run's live export (last entry removed?)",
                payload_problem,
            )
        if sealed and all(e.manifest_sha256 != digest for e in sealed):
            return (
                f"{last}: the export_sealed entry has another manifest sha256 than this one",
                payload_problem,
            )
    return "", payload_problem


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
