"""The local copy of a run's PostgreSQL journal, which the projectors follow.

Projectors (live export, SQL tables, ``auditjournal project``, replay, verify,
tail) read a run's journal from ``<root>/runs/<run_id>/journal/`` and its
payloads from ``<root>/payloads/``. For a run whose journal is in PostgreSQL,
:class:`PgMirror` copies the entries there, in seq order, each line verified
against the chain before it is taken in (the copy's lines are re-made by the
file journal and must end in the same chain value as PostgreSQL's, else
:class:`CorruptJournalError`), with the payloads the entries refer to first.
The copy is derived data: it can be deleted and is made again; the file lock
of the local journal keeps one mirror per run and root.

:class:`MirrorThread` keeps a copy current: woken by ``LISTEN``/``NOTIFY`` on
:data:`~auditjournal.journal.postgres.NOTIFY_CHANNEL`, with a polling fallback
(a lost notification only delays; a lost LISTEN connection is made again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from ..errors import CorruptJournalError, JournalUnavailableError, StorageError
from ..journal.base import JournalPosition, RunJournal
from ..journal.pgbackend import Listener, PgRunJournal
from ..model.events import BaseEvent, RunCompleted
from ..payloads.store import PayloadStore

__all__ = ["MirrorThread", "PgMirror", "payload_refs"]

_log = logging.getLogger(__name__)
_BATCH: Final = 2048
POLL_INTERVAL: Final = 0.05


def payload_refs(event: BaseEvent) -> list[str]:
    """The payload refs an event names (``*_ref`` members, and an outcome's ``error_hash``)."""
    found = []
    for name in event.__struct_fields__:
        if name.endswith("_ref") or name == "error_hash":
            value = getattr(event, name)
            if isinstance(value, str):
                found.append(value)
    return found


class PgMirror:
    """Copies one run's journal from PostgreSQL into the store's local files."""

    def __init__(self, source: PgRunJournal, local: RunJournal, payloads: PayloadStore) -> None:
        """Copy ``source`` into ``local`` (the store's file journal of the same run; its
        writer lease: :class:`JournalLockedError` while another mirror keeps it)."""
        self.source = source
        self.db = source.db
        self.run_id = source.run_id
        self.payloads = payloads
        self._journal = local.open_writer(
            create=True,
            durability="none",
            before_flush=lambda fsync: payloads.flush(fsync=fsync),
        )
        self.completed = False

    @property
    def last_seq(self) -> int:
        return self._journal.last_seq

    def sync(self, limit: int = _BATCH) -> int:
        """Copy up to ``limit`` entries the copy does not have yet; return how many."""
        journal = self._journal
        start = journal.last_seq + 1
        chain = bytes.fromhex(journal.head_chain)
        cursor = self.source.cursor(JournalPosition(start, start, 0, chain))
        chains: list[bytes] = []
        decoded = cursor.poll(limit=limit, chains=chains)  # each entry verified
        if not decoded:
            return 0
        chain = chains[-1]
        refs = {ref for event in decoded for ref in payload_refs(event)}
        missing = [ref for ref in refs if ref not in self.payloads]
        if missing:
            found = self.db.payloads(missing)
            for ref in missing:
                data = found.get(ref)
                if data is None:
                    raise CorruptJournalError(
                        f"PostgreSQL journal of run {self.run_id!r}: payload {ref} is missing"
                    )
                if self.payloads.put_canonical(data) != ref:
                    raise CorruptJournalError(
                        f"PostgreSQL journal of run {self.run_id!r}: payload {ref} does not "
                        "match its hash"
                    )
        journal.append_batch(decoded)
        self.completed = self.completed or any(type(e) is RunCompleted for e in decoded)
        journal.flush(fsync=False)
        if journal.head_chain != chain.hex():
            raise CorruptJournalError(
                f"the local copy of run {self.run_id!r} does not end in PostgreSQL's chain value"
            )
        return len(decoded)

    def sync_all(self) -> int:
        """Copy everything the journal holds now; return how many entries were new."""
        total = 0
        while count := self.sync():
            total += count
        return total

    def close(self) -> None:
        self._journal.close()


class MirrorThread:
    """Keeps a :class:`PgMirror` current on a background thread until stopped."""

    def __init__(
        self,
        mirror: PgMirror,
        *,
        on_progress: Callable[[], None] | None = None,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.mirror = mirror
        self.error: BaseException | None = None
        self._on_progress = on_progress
        self._poll_interval = poll_interval
        self._stop = threading.Event()
        self._listener = Listener(mirror.db)
        self._thread = threading.Thread(
            target=self._loop, name=f"auditjournal-mirror-{mirror.run_id}", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        try:
            while True:
                try:
                    count = self.mirror.sync()
                except JournalUnavailableError as exc:  # the server restarts: try again
                    _log.warning("run %s: %s; retrying", self.mirror.run_id, exc)
                    count = 0
                    time.sleep(self._poll_interval)
                if count:
                    if self._on_progress is not None:
                        self._on_progress()
                    continue
                if self._stop.is_set():
                    return
                self._listener.wait(self._poll_interval)
        except BaseException as exc:
            self.error = exc
            _log.error("run %s: the local copy of the journal stopped: %s", self.mirror.run_id, exc)
        finally:
            self._listener.close()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Copy what is committed now, then stop and release the local journal."""
        self._stop.set()
        self._thread.join()
        try:
            self.mirror.close()
        except StorageError as exc:
            _log.warning("run %s: closing the local copy: %s", self.mirror.run_id, exc)
