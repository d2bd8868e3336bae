"""The in-process projectors of a run being recorded, seen from its recorder.

``AuditStore.start_run`` starts a live export (a projector thread, :class:`LiveExport`)
and live SQL tables (:class:`LiveSql`) beside the recorder. They share the GIL
with the recording threads, so the recorder applies backpressure
(:meth:`LiveProjectors.throttle`), and when the run completes it waits for them
(:meth:`LiveProjectors.finish`): the export's seal is recorded as
``export_sealed`` (or ``export_failed``, then :class:`ExportError` is raised).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from .errors import DatabaseError, ExportError
from .events import BaseEvent, ExportFailed, ExportSealed

if TYPE_CHECKING:
    from .export import LiveExport, SealResult
    from .journal import Journal
    from .sqlproj import LiveSql

__all__ = ["MAX_BEHIND", "THROTTLE_EVERY", "LiveProjectors"]

THROTTLE_EVERY: Final = 64  # events between checks of the in-process projectors' backlog
MAX_BEHIND: Final = 200  # events a live projector may trail the journal by (~10 ms of work)
_THROTTLE_WAIT: Final = 0.25  # seconds a recorder yields at most per check


class LiveProjectors:
    """A run's live export and live SQL tables, if it has them."""

    def __init__(self) -> None:
        self.export: LiveExport | None = None
        self.sql: LiveSql | None = None

    def throttle(self, journal: Journal) -> None:
        """Backpressure: keep the projectors within ``MAX_BEHIND`` events.

        Without it a fast recorder would leave them ever further behind (live-export
        lag and memory growing through the run). When one falls behind, the recorder
        makes the backlog visible (writes the journal, no fsync) and yields until it
        is halfway caught up, or ``_THROTTLE_WAIT`` passes. The projector is woken
        at once and signals its progress, so neither side sleeps while the other waits.
        """
        last = journal.last_seq
        for live in (self.export, self.sql):
            if live is None or not live.alive() or last - live.done_seq() <= MAX_BEHIND:
                continue
            journal.flush(fsync=False)
            live.wake()
            deadline = time.monotonic() + _THROTTLE_WAIT
            target = last - MAX_BEHIND // 2
            while live.done_seq() < target and live.alive() and time.monotonic() < deadline:
                live.wait_progress(0.005)

    def finish(
        self,
        run_id: str,
        append_export_event: Callable[[BaseEvent], BaseEvent],
        last_seq: Callable[[], int],
    ) -> SealResult | None:
        """After ``run_completed``: wait for the export's seal and record it, then wait
        until the SQL tables hold every event (:class:`DatabaseError` if their
        projection failed; the journal is complete either way)."""
        export, self.export = self.export, None
        sql, self.sql = self.sql, None
        try:
            result = None if export is None else _seal(export, run_id, append_export_event)
        except BaseException:
            if sql is not None:
                with contextlib.suppress(DatabaseError):
                    sql.finish(last_seq())
            raise
        if sql is not None:
            sql.finish(last_seq())
        return result

    def stop(self) -> None:
        """An unfinished run: both stay at their checkpoints, resumable."""
        if self.export is not None:
            self.export.stop()
            self.export = None
        if self.sql is not None:
            self.sql.stop()
            self.sql = None


def _seal(
    live: LiveExport, run_id: str, append_export_event: Callable[[BaseEvent], BaseEvent]
) -> SealResult:
    now = _dt.datetime.now(_dt.UTC)
    try:
        result = live.wait()
    except ExportError as exc:
        append_export_event(ExportFailed(run_id=run_id, ts=now, error=str(exc)[:2000]))
        raise
    append_export_event(
        ExportSealed(
            run_id=run_id,
            ts=now,
            manifest_sha256=result.manifest_sha256,
            chunk_count=result.chunk_count,
            record_count=result.record_count,
            export_path=result.manifest_path,
            merkle_root=result.merkle_root,
        )
    )
    return result
