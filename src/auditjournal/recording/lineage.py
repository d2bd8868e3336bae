"""A live run's OpenLineage events (``ExportSettings(openlineage=...)``).

The run's START event goes out once ``run_started`` is written; its end event
(COMPLETE, FAIL or ABORT, by the run's status) once the export is sealed and
``export_sealed`` recorded. The end event is made from the export just sealed,
exactly as ``auditjournal openlineage`` makes it (:mod:`auditjournal.export.openlineage`):
one read of the export's chunks at the seal, none on the recording path.

Sending never stands in the run's way: the events are news about the run, not
its evidence. A failure to send is logged (logger ``auditjournal``, without
credentials) and the run goes on; nothing about it is recorded in the journal,
so the journal never claims lineage that was not delivered. The client
(extra ``auditjournal[openlineage]``) is imported when the run starts, so a
missing extra fails :meth:`~auditjournal.AuditStore.start_run` with
:class:`~auditjournal.errors.MissingExtraError` before the run exists, not at
its seal.

Runs finished by another process (``auditjournal project`` after a crash,
``finish``) emit nothing: the option is not part of the recorded settings.
Thread-safety: called from the recorder's thread at start and at completion.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AuditJournalError, LineageEmitError, MissingExtraError
from ..export.projector import SealResult
from ..model.events import RunStarted
from ..model.settings import ExportSettings, OpenLineageSettings

if TYPE_CHECKING:
    from openlineage.client.event_v2 import RunEvent

    from .recorder import RunRecorder

__all__ = ["LiveLineage"]

_log = logging.getLogger(__name__)  # under the "auditjournal" logger

_INSTALL = (
    "ExportSettings(openlineage=...) needs the OpenLineage client: "
    "pip install 'auditjournal[openlineage]' (or pip install openlineage-python)"
)


class LiveLineage:
    """Sends one run's START and end events where ``settings`` say."""

    def __init__(self, settings: OpenLineageSettings, run_id: str, export_dir: Path) -> None:
        """Raises :class:`MissingExtraError` when the OpenLineage client is not installed."""
        try:
            from ..export import openlineage  # noqa: F401 - the check: the client imports
        except ImportError as exc:
            raise MissingExtraError(f"{_INSTALL} ({exc})") from None
        self.settings = settings
        self.run_id = run_id
        self.export_location = export_dir.resolve().as_uri()
        self._ended = False

    @classmethod
    def of(
        cls, export: ExportSettings | None, run_id: str, prefix: Path | None
    ) -> LiveLineage | None:
        """The run's sender if ``export`` asks for OpenLineage events (``prefix``: its
        export's path prefix), else None."""
        if export is None or export.openlineage is None or prefix is None:
            return None
        return cls(export.openlineage, run_id, prefix.parent)

    def attach(self, recorder: RunRecorder, started: RunStarted) -> None:
        """Send START for ``started`` and send the end event when the recorder's live
        export is sealed."""
        from ..export import openlineage as ol

        recorder.live.on_sealed = self.sealed
        event = ol.start_event(
            ol.RunStart.from_event(started),
            namespace=self.settings.namespace,
            job_name=self.settings.job_name,
            export_location=self.export_location,
        )
        self._send([event], "START")

    def sealed(self, result: SealResult) -> None:
        """Send the end event of the export sealed as ``result`` (once)."""
        if self._ended:
            return
        self._ended = True
        from ..export import openlineage as ol

        try:
            events = ol.events_from_manifest(
                Path(result.manifest_path),
                namespace=self.settings.namespace,
                job_name=self.settings.job_name,
            )
        except (AuditJournalError, OSError) as exc:
            _log.warning("run %s: no OpenLineage end event: %s", self.run_id, exc)
            return
        self._send(events[1:], events[1].eventType.value if events[1].eventType else "end")

    def _send(self, events: list[RunEvent], what: str) -> None:
        from ..export import openlineage as ol

        settings = self.settings
        try:
            ol.emit(
                events,
                out=settings.file,
                url=settings.url,
                endpoint=settings.endpoint,
                api_key=os.environ.get("OPENLINEAGE_API_KEY"),
                timeout=settings.timeout,
            )
        except LineageEmitError as exc:  # its message has no credentials
            _log.warning("run %s: OpenLineage %s event not sent: %s", self.run_id, what, exc)
        except Exception as exc:  # news of the run never fails the run
            # only the type: a message from deep in the client may quote the URL
            name = type(exc).__name__
            _log.warning("run %s: OpenLineage %s event not sent (%s)", self.run_id, what, name)
