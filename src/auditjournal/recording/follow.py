"""What an operator following a run needs to know: which run is the newest, whether
its writer is still there, and why waiting for its export cannot end.

A writer holds its journal's writer lease (:meth:`RunJournal.writer_active`) while it
records; a live or separate export projector holds the export's lock while it writes.
Neither is held and nothing moves: no one will add anything, so ``tail`` stops and says
why instead of waiting forever (issue 15 item 3). The same check marks a run
``runs`` shows as running whose writer is gone (item 4).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import AuditJournalError
from ..export.manifest import ExportPaths
from ..fs.storage import lock_held
from ..journal.base import RunJournal
from ..model.events import EXPORT_EVENT_TYPES, Event, RunCompleted, RunStarted
from .store import AuditStore

__all__ = [
    "RunActivity",
    "follow_journal",
    "journal_completed",
    "journal_stalled",
    "latest_run",
    "run_activity",
    "writer_gone",
    "writer_present",
]


def writer_present(store: AuditStore, run_id: str) -> bool:
    """Whether a process holds the run's journal (is recording it right now)."""
    return store.journal(run_id).writer_active()


def journal_completed(journal: RunJournal) -> bool:
    """Whether the journal's last complete entry is ``run_completed`` or an export event
    (which only follow it). Reads the journal's end only; a damaged last entry is not
    complete."""
    try:
        event = journal.last_event()
    except (AuditJournalError, OSError):
        return False
    return isinstance(event, RunCompleted) or type(event) in EXPORT_EVENT_TYPES


def writer_gone(store: AuditStore, run_id: str) -> bool:
    """A run that did not complete and that no process records any more (a crashed or
    killed writer): it stays ``running`` until someone resumes and completes it."""
    journal = store.journal(run_id)
    return not journal.writer_active() and not journal_completed(journal)


def latest_run(store: AuditStore) -> str | None:
    """The run started last (by its ``run_started`` time; run ids may be caller-given,
    so their names say nothing), or None if the store has no run."""
    newest: tuple[float, str] | None = None
    for run_id in store.run_ids():
        reader = store.journal_reader(run_id)
        try:
            first = reader.poll(limit=1)
        finally:
            reader.close()
        if first and isinstance(first[0], RunStarted):
            key = (first[0].ts.timestamp(), run_id)
            if newest is None or key > newest:
                newest = key
    return None if newest is None else newest[1]


@dataclass(frozen=True)
class RunActivity:
    """Who is at work on a run: its writer, an export projector; and how far it got."""

    writer: bool
    exporter: bool
    completed: bool
    live_export: bool

    def stalled_export(self, run_id: str, root: Path) -> str | None:
        """Why the run's export will not grow, or None while someone may still write it."""
        if self.writer or self.exporter:
            return None
        project = f"auditjournal project {root} --run {run_id}"
        if not self.completed:
            return (
                f"the writer of run {run_id} is gone (its journal is not locked) and the run "
                f"did not complete; resume and finish it, then `{project}` seals the export"
            )
        if not self.live_export:
            return (
                f"run {run_id} completed without a live export, and no projector is writing "
                f"one; `{project}` writes it"
            )
        return f"run {run_id} completed but nothing is writing its export; `{project}` seals it"


def run_activity(store: AuditStore, run_id: str, prefix: Path, live_export: bool) -> RunActivity:
    """Look once: the two locks, and whether the journal holds ``run_completed``.

    Completion is read from the journal's last entry (only when no writer holds it:
    a writer's run is not complete until it says so)."""
    writer = writer_present(store, run_id)
    exporter = lock_held(ExportPaths(prefix).lock)
    completed = False
    if not writer:
        completed = journal_completed(store.journal(run_id))
    return RunActivity(writer, exporter, completed, live_export)


def journal_stalled(store: AuditStore, run_id: str) -> str | None:
    """Why a follow of the journal cannot end, or None while its writer is there."""
    if writer_present(store, run_id):
        return None
    return (
        f"the writer of run {run_id} is gone (its journal is not locked) and the run did "
        "not complete; resume it (store.resume_run) to finish it"
    )


def follow_journal(
    store: AuditStore,
    run_id: str,
    *,
    poll_interval: float = 0.02,
    timeout: float | None = None,
    stalled: Callable[[], str | None] | None = None,
    stall_after: float = 1.0,
    stopped: list[str] | None = None,
) -> Iterator[Event]:
    """The run's journal events as they are appended, up to ``run_completed``.

    Like :meth:`ExportTail.follow`: ``stalled`` is asked after ``stall_after``
    idle seconds whether waiting can still end; its reason (appended to
    ``stopped``) ends the follow, after one more read."""
    reader = store.journal_reader(run_id)
    deadline = None if timeout is None else time.monotonic() + timeout
    idle_since = time.monotonic()
    try:
        while True:
            batch = reader.poll(limit=4096)
            for event in batch:
                yield event
                if isinstance(event, RunCompleted):
                    return
            now = time.monotonic()
            if batch:
                idle_since = now
                continue
            if deadline is not None and now > deadline:
                return
            if stalled is not None and now - idle_since >= stall_after:
                reason = stalled()
                if reason is not None:
                    late = reader.poll()
                    yield from late
                    if not any(isinstance(e, RunCompleted) for e in late) and stopped is not None:
                        stopped.append(reason)
                    return
                idle_since = now
            time.sleep(poll_interval)
    finally:
        reader.close()
