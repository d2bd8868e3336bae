"""The write side's front door: :class:`AuditStore` and :class:`RunRecorder`.

A pipeline calls a :class:`RunRecorder`; each call validates the run's
lifecycle, stores big data in the payload store, and appends one immutable
event to the run's journal. Every argument is checked first (:mod:`arguments`:
its declared type, and what the export and every verifier can carry); a
rejected call raises a typed error naming the argument and appends nothing,
so nothing recorded before it is lost. The one exception is a write that fails
after the event took its seq (``always`` durability, ``complete()``): the
error's ``recorded_event`` then names the event, recorded but not yet durable
(docs/durability.md, "Disk full").

Thread-safety: one ``RunRecorder`` may be shared by several threads. Payloads
are canonicalized and stored outside the run's lock; validation, seq
assignment and the append happen under it, so events are totally ordered
and validated against everything before them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import msgspec

from ..errors import (
    DatabaseError,
    ExportError,
    InvalidEventError,
    LifecycleError,
    RunAlreadyCompletedError,
    StorageError,
)
from ..journal.base import JournalWriter
from ..model.events import (
    EXPORT_EVENT_TYPES,
    REPRODUCIBILITY_GRADES,
    RUN_STATUSES,
    BaseEvent,
    RunCompleted,
    RunInterrupted,
    RunResumed,
    RunStarted,
)
from ..projection.live import THROTTLE_EVERY, LiveProjectors
from .arguments import (
    check_choice,
    check_time,
    json_object,
)
from .calls import PayloadSink, PipelineCalls
from .landscape import LandscapeFacts
from .operations import OperationCalls
from .outcomes import OutcomeCalls
from .runstate import RunState

if TYPE_CHECKING:
    from ..export.projector import SealResult
    from ..model.secretfilter import SecretFilter

__all__ = ["RunRecorder"]

_UTC = _dt.UTC
_now = _dt.datetime.now


class RunRecorder(PipelineCalls, OutcomeCalls, OperationCalls, LandscapeFacts):
    """Records one run. Every method appends exactly one event or raises and appends nothing
    (the calls that record the pipeline are :class:`~.calls.PipelineCalls`,
    :class:`~.outcomes.OutcomeCalls`, :class:`~.operations.OperationCalls` and
    :class:`~.landscape.LandscapeFacts`)."""

    def __init__(
        self,
        run_id: str,
        journal: JournalWriter,
        state: RunState,
        *,
        lock: threading.Lock,
        payloads: PayloadSink,
        secrets: SecretFilter,
        on_close: Callable[[RunRecorder], None],
        joined: bool = False,
    ) -> None:
        self.joined = joined
        """A writer that joined another process's run (PostgreSQL journal): leaving it
        does not complete the run, and ``complete()`` is the coordinator's."""
        self.close_hooks: list[Callable[[], None]] = []
        """Called after the recorder let go of its journal (the local copy's thread)."""
        self.export_result: SealResult | None = None
        """Set when the live export was sealed."""
        self.live = LiveProjectors()
        """The run's in-process projectors (live export, live SQL tables), if any."""
        self.run_id = run_id
        self.recovery = journal.recovery
        self._journal = journal
        self._lock = lock
        """Held while validating a call against the state, taking its seq and appending
        (the journal writer was given it: it takes it only to take what is buffered; the
        PostgreSQL writer also applies other writers' events under it)."""
        self._payloads = payloads
        self._secrets = secrets
        """The secret filter configs, calls and preflight results pass."""
        self._on_close: Callable[[RunRecorder], None] | None = on_close
        self._state = state
        self._always = journal.durability == "always"
        self._closed = False
        self._until_throttle = THROTTLE_EVERY
        self._unsynced = threading.local()  # always: this thread's event awaiting its fsync
        self._completion: RunCompleted | None = None  # run_completed, once appended here
        self._finished = False  # complete() went through to the end

    # -- ending ------------------------------------------------------------------------

    def complete(
        self,
        status: str = "completed",
        *,
        error: dict[str, Any] | None = None,
        reproducibility_grade: str | None = None,
        occurred_at: _dt.datetime | None = None,
    ) -> None:
        """Append ``run_completed``; afterwards only export events are accepted.

        ``reproducibility_grade`` (``full_reproducible``, ``replay_reproducible``,
        ``attributable_only``) is recorded as given (None: not graded).

        With a live export, waits until it is sealed and appends ``export_sealed``
        (or ``export_failed``, then raises :class:`ExportError`). With live SQL
        tables, then waits until they hold every event (:class:`DatabaseError`
        if their projection failed; the journal is complete either way).

        A :class:`StorageError` (say :class:`DiskFullError`: the journal or the
        live export could not be written) leaves the run to be finished: call
        ``complete()`` again with the same status once there is room. It goes on
        where it stopped (writes ``run_completed``, seals the export, records
        ``export_sealed``) and records nothing twice. The error's
        ``recorded_event`` is the ``run_completed`` event, or ``None`` if the call
        was refused before recording it.
        """
        if self.joined:
            raise LifecycleError(
                f"this writer joined run {self.run_id!r}: only the process that started it "
                "completes it (leave the `with` block, or call close())"
            )
        status = check_choice(status, RUN_STATUSES, "run status")
        error_value = None if error is None else json_object(error, "error")
        when = check_time(occurred_at)
        if reproducibility_grade is not None:
            reproducibility_grade = check_choice(
                reproducibility_grade, REPRODUCIBILITY_GRADES, "reproducibility_grade"
            )
        with self._lock:
            if self._completion is not None:
                self._check_retry(status, error_value)
            else:
                self._open_state()
                completion = RunCompleted(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    occurred_at=when,
                    status=status,  # type: ignore[arg-type]
                    error=error_value,
                    reproducibility_grade=reproducibility_grade,  # type: ignore[arg-type]
                )
                self._emit(completion)
                self._completion = completion
        self._finish_completion(self._completion)

    def _check_retry(self, status: str, error: Any) -> None:
        """complete() again after it failed: only to finish the same run_completed."""
        completion = self._completion
        assert completion is not None
        if self._finished or self._closed:
            raise RunAlreadyCompletedError(
                f"run {self.run_id!r} has completed; only export events may follow"
            )
        if status != completion.status or (error is not None and error != completion.error):
            raise RunAlreadyCompletedError(
                f"run {self.run_id!r} already recorded run_completed with status "
                f"{completion.status!r}; call complete({completion.status!r}) to finish it"
            )

    def _finish_completion(self, completion: RunCompleted | None) -> None:
        """Write run_completed, seal the live export and record it, wait for the SQL tables.
        A StorageError leaves it to a later complete(); any other error ends it."""
        assert completion is not None
        try:
            self._journal.flush(fsync=self._journal.durability != "none")
            self.export_result = self.live.finish(
                self.run_id, self.append_export_event, lambda: self._journal.last_seq
            )
        except StorageError as exc:
            error = type(exc)(
                f"{exc} [run_completed (seq {completion.seq}) is recorded; call "
                f"complete({completion.status!r}) again once there is room, to finish the run]"
            )
            error.recorded_event = completion
            raise error from exc
        except BaseException:
            self._finished = True
            raise
        self._finished = True

    def flush(self) -> None:
        """Make what this recorder has recorded durable now (``batch`` does it within its
        interval anyway). With the PostgreSQL journal: commit it, so that other writers
        of the run can refer to the ids it made."""
        self._journal.flush(fsync=self._journal.durability != "none")

    @property
    def completed(self) -> bool:
        """True once ``run_completed`` is recorded (then only export events are accepted)."""
        return self._state.completed

    @property
    def last_seq(self) -> int:
        """The seq of the last event in the run's journal (appended, maybe not yet durable)."""
        return self._journal.last_seq

    def append_export_event(self, event: BaseEvent) -> BaseEvent:
        """Append an export event (only these are accepted after ``run_completed``)."""
        if type(event) not in EXPORT_EVENT_TYPES:
            raise InvalidEventError(f"{type(event).__name__} is not an export event")
        with self._lock:
            if self._closed:
                raise RunAlreadyCompletedError(f"recorder of run {self.run_id!r} is closed")
            if not self._state.completed:
                raise LifecycleError(
                    f"run {self.run_id!r} has not completed; export events come after run_completed"
                )
            event = msgspec.structs.replace(
                event, run_id=self.run_id, seq=self._journal.next_seq, ts=_now(_UTC)
            )
            self._emit(event)
        try:
            self._journal.flush(fsync=self._journal.durability != "none")
        except StorageError as exc:
            raise _not_durable(exc, event) from exc
        return event

    def close(self) -> None:
        """Write and fsync what is buffered and release the journal (the run stays as it is).

        If the journal cannot be written (a full disk) this raises and the recorder
        stays open with everything buffered: close (or complete) it again once
        there is room.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._journal.close()
        except BaseException:
            with self._lock:
                self._closed = False
            raise
        self.live.stop()  # an unfinished run: the projectors stay resumable
        self._run_close_hooks()
        self._closed_for_good()

    def _run_close_hooks(self) -> None:
        hooks, self.close_hooks = self.close_hooks, []
        for hook in hooks:
            hook()

    def _abandon(self) -> None:
        """Let go of everything without writing what is still buffered (a failed start)."""
        with self._lock:
            self._closed = True
        self.live.stop()
        self._run_close_hooks()
        self._journal.abandon()
        self._closed_for_good()

    def _closed_for_good(self) -> None:
        """Tell the owner (the store) once that this recorder is closed."""
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.joined:
            self.close()  # a joined writer leaves the run to its coordinator
            return
        try:
            if not self._state.completed and not self._closed:
                if exc is None:
                    self.complete("completed")
                else:
                    status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                    # a lone surrogate (a file name decoded with surrogateescape, say) has no
                    # UTF-8 form: escaped, so that the failure itself can be recorded
                    message = str(exc)[:2000].encode("utf-8", "backslashreplace").decode()
                    # an export failure is recorded as export_failed; the body's error is the news
                    with contextlib.suppress(ExportError, DatabaseError):
                        self.complete(
                            status, error={"type": type(exc).__name__, "message": message}
                        )
        except StorageError:
            raise  # the recorder stays open: complete() again once there is room, then close()
        except BaseException:
            self.close()
            raise
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _emit_run_started(
        self,
        config_bytes: bytes,
        settings: dict[str, Any],
        occurred_at: _dt.datetime | None = None,
        config_hash: str | None = None,
        redacted: tuple[str, ...] = (),
    ) -> RunStarted:
        with self._lock:
            started = RunStarted(
                run_id=self.run_id,
                seq=self._journal.next_seq,
                ts=_now(_UTC),
                occurred_at=occurred_at,
                config=msgspec.json.decode(config_bytes),
                config_hash=config_hash or self._hash(config_bytes),
                settings=settings,
                redacted=redacted,
            )
            self._emit(started)
        self._commit()
        return started

    def _emit_resumed(self, reason: str) -> None:
        """A new writer takes over a stopped run (``store.resume_run``)."""
        with self._lock:
            self._open_state()
            last = self._journal.last_seq
            self._emit(
                RunInterrupted(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    last_seq=last,
                    bytes_dropped=0 if self.recovery is None else self.recovery.bytes_dropped,
                    reason=reason,
                )
            )
            self._emit(
                RunResumed(
                    run_id=self.run_id,
                    seq=self._journal.next_seq,
                    ts=_now(_UTC),
                    writer={"host": socket.gethostname(), "pid": os.getpid()},
                )
            )
        self._journal.flush(fsync=self._journal.durability != "none")

    def _open_state(self) -> RunState:
        """The run's state, if it still accepts events (caller holds the lock)."""
        if self._state.completed:
            raise RunAlreadyCompletedError(
                f"run {self.run_id!r} has completed; only export events may follow"
            )
        if self._closed:
            raise RunAlreadyCompletedError(f"recorder of run {self.run_id!r} is closed")
        return self._state

    def _emit(self, event: BaseEvent) -> None:
        """Append and apply (caller holds the lock and has validated)."""
        self._journal.append(event)
        self._state.apply(event)
        if self._always:
            self._unsynced.event = event

    def _commit(self) -> None:
        """After an append: under ``always`` make it durable (a failure: recorded, not yet
        durable); else write a big buffer behind (a failure refuses the next call)."""
        journal = self._journal
        if self._always:
            event = self._unsynced.event
            try:
                journal.commit(event.seq)
            except StorageError as exc:
                raise _not_durable(exc, event) from exc
        elif journal.needs_flush:
            journal.write_behind()
        self._until_throttle -= 1
        if not self._until_throttle:
            self._until_throttle = THROTTLE_EVERY
            self.live.throttle(journal)

    def __repr__(self) -> str:
        return f"RunRecorder(run_id={self.run_id!r}, last_seq={self._journal.last_seq})"

    @property
    def known_ids(self) -> dict[str, int]:
        """How many ids of each kind the run has (for diagnostics)."""
        return self._state.counts()


def _not_durable(exc: StorageError, event: BaseEvent) -> StorageError:
    """``exc`` for a call whose ``event`` is in the journal but could not be written."""
    error = type(exc)(
        f"{exc} (seq {event.seq}, {type(event).__name__}, is recorded but not yet durable: "
        "it is written by the next flush that succeeds; do not record it again)"
    )
    error.recorded_event = event
    return error
