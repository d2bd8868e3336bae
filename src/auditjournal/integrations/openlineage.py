"""OpenLineage events for a sealed export (``auditjournal openlineage``), extra
``auditjournal[openlineage]``.

The events, their models and the transports are in
:mod:`auditjournal.export.openlineage` (re-exported here); a live run emits the
same events itself with ``ExportSettings(openlineage=...)``. This module adds
what needs the verifier: :func:`events_from_export`, which verifies an export
before vouching for its Merkle root.
"""

from __future__ import annotations

from pathlib import Path

from openlineage.client.event_v2 import RunEvent

from ..errors import ExportInvalidError
from ..evidence.verify import find_manifest, verify_export
from ..export.openlineage import (
    DEFAULT_NAMESPACE,
    FACET_KEY,
    FACET_SCHEMA_URL,
    PRODUCER,
    AuditjournalRunFacet,
    DatasetCollector,
    DatasetRef,
    RunEnd,
    RunStart,
    emit,
    end_event,
    event_type,
    events_from_manifest,
    job_name_of,
    location_dataset,
    openlineage_run_id,
    start_event,
    to_json,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "FACET_KEY",
    "FACET_SCHEMA_URL",
    "PRODUCER",
    "AuditjournalRunFacet",
    "DatasetCollector",
    "DatasetRef",
    "RunEnd",
    "RunStart",
    "emit",
    "end_event",
    "event_type",
    "events_from_export",
    "events_from_manifest",
    "job_name_of",
    "location_dataset",
    "openlineage_run_id",
    "start_event",
    "to_json",
]


def events_from_export(
    export: Path | str,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    job_name: str | None = None,
    verify: bool = True,
) -> list[RunEvent]:
    """START and COMPLETE/FAIL/ABORT for the sealed export at ``export`` (dir or manifest).

    With ``verify`` (the default) the export must verify first, else
    :class:`~auditjournal.errors.ExportInvalidError`.
    """
    manifest_path = find_manifest(Path(export))
    if verify:
        report = verify_export(manifest_path)
        if not report.ok:
            raise ExportInvalidError(f"{manifest_path}: {report.summary()}")
    return events_from_manifest(manifest_path, namespace=namespace, job_name=job_name)
