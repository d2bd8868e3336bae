"""A run's lifecycle state when several writers append to it (the PostgreSQL journal).

Each writer validates a call against its own :class:`SharedRunState`: what the
run had committed when the writer last looked, plus its own calls. Two things
change with other writers:

* an id this writer does not know may have been recorded by another writer:
  before calling it unknown, the state looks at the journal again
  (:meth:`SharedRunState.need`);
* two writers may both be sure they are first (a state completed twice, a second
  terminal outcome for a token, the same caller-given id, an event after
  ``run_completed``). The journal settles it under the run's head-row lock: at
  each flush the events other writers committed meanwhile are applied
  (:meth:`SharedRunState.absorb`) and the own events they contradict are
  rejected, with the error the file journal would have raised at the call.

Generated ids of a joined writer carry its random tag (``row-3fa9c2d1-7``), so
writers never generate the same id; the coordinator keeps the file journal's
``row-7``, so one writer's run is byte-identical whatever the backend.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from ..errors import (
    AuditJournalError,
    DuplicateIdError,
    LifecycleError,
    RunAlreadyCompletedError,
    StateAlreadyCompletedError,
)
from ..model.events import (
    EXPORT_EVENT_TYPES,
    ArtifactRecorded,
    BaseEvent,
    CallRecorded,
    EdgeRegistered,
    Event,
    NodeRegistered,
    NodeStateCompleted,
    NodeStateStarted,
    RoutingEventRecorded,
    RowCreated,
    RunCompleted,
    TokenCreated,
    TokenOutcomeRecorded,
)
from .runstate import RunState

__all__ = ["SharedRunState", "claim_keys", "claims"]

_Claim = tuple[str, str]


def claims(event: BaseEvent) -> list[_Claim]:
    """What an event takes that no other event of the run may take again."""
    kind = type(event)
    if kind is NodeRegistered:
        return [("node", event.node_id)]  # type: ignore[attr-defined]
    if kind is EdgeRegistered:
        return [("edge", event.edge_id)]  # type: ignore[attr-defined]
    if kind is RowCreated:
        return [("row", event.row_id)]  # type: ignore[attr-defined]
    if kind is TokenCreated:
        return [("tok", event.token_id)]  # type: ignore[attr-defined]
    if kind is NodeStateStarted:
        return [("st", event.state_id)]  # type: ignore[attr-defined]
    if kind is NodeStateCompleted:
        return [("st-done", event.state_id)]  # type: ignore[attr-defined]
    if kind is RoutingEventRecorded:
        return [("rte", event.routing_event_id)]  # type: ignore[attr-defined]
    if kind is CallRecorded:
        return [("call", event.call_id)]  # type: ignore[attr-defined]
    if kind is ArtifactRecorded:
        return [("art", event.artifact_id)]  # type: ignore[attr-defined]
    if kind is TokenOutcomeRecorded:
        outcome: TokenOutcomeRecorded = event  # type: ignore[assignment]
        taken = [("out", outcome.outcome_id)]
        if outcome.outcome != "buffered":
            taken.append(("tok-done", outcome.token_id))
        return taken
    if kind is RunCompleted:
        return [("run-done", "")]
    return []


def claim_keys(event: BaseEvent) -> list[str]:
    """:func:`claims` as the journal's claims table holds them: ``kind:value``."""
    return [f"{what}:{value}" for what, value in claims(event)]


def _conflict(claim: _Claim, run_id: str) -> AuditJournalError:
    what, value = claim
    if what == "st-done":
        return StateAlreadyCompletedError(f"node state {value!r} is already completed")
    if what == "tok-done":
        return LifecycleError(f"token {value!r} already has a terminal outcome")
    if what == "run-done":
        return RunAlreadyCompletedError(
            f"run {run_id!r} has completed; only export events may follow"
        )
    return DuplicateIdError(f"{what} id {value!r} is already used in this run")


class SharedRunState(RunState):
    """:class:`RunState` for one of several writers of a run (see the module docstring)."""

    def __init__(self, run_id: str, refresh: Callable[[], bool], tag: str | None) -> None:
        super().__init__()
        self.run_id = run_id
        self._refresh = refresh
        self._tag = tag
        if tag is not None:
            self._check_generated = True  # another writer may give an id of any shape

    def need(self, known: Collection[str], value: str, what: str) -> None:  # type: ignore[override]
        """As :meth:`RunState.need`, but an id another writer committed meanwhile is known."""
        try:
            if value in known:
                return
        except TypeError:
            pass
        if isinstance(value, str) and self._refresh() and value in known:
            return
        RunState.need(known, value, what)

    def new_id(self, prefix: str, given: str | None, known: Collection[str]) -> str:
        if given is None and self._tag is not None:
            while True:
                self._counter += 1
                candidate = f"{prefix}-{self._tag}-{self._counter}"
                if candidate not in known:
                    return candidate
        return super().new_id(prefix, given, known)

    def conflict(self, key: str) -> AuditJournalError:
        """The error for an own event whose claim ``key`` another writer took first."""
        what, _, value = key.partition(":")
        return _conflict((what, value), self.run_id)

    def absorb(
        self, foreign: list[Event], pending: list[BaseEvent]
    ) -> dict[int, AuditJournalError]:
        """Apply other writers' events; return own pending events they contradict."""
        taken: set[_Claim] = set()
        completed = False
        for done in foreign:
            self.apply(done)
            taken.update(claims(done))
            completed = completed or type(done) is RunCompleted
        self._check_generated = True  # another writer's given id may look generated
        rejected: dict[int, AuditJournalError] = {}
        for index, event in enumerate(pending):
            if type(event) in EXPORT_EVENT_TYPES:
                continue
            if completed:
                rejected[index] = _conflict(("run-done", ""), self.run_id)
                continue
            for claim in claims(event):
                if claim in taken:
                    rejected[index] = _conflict(claim, self.run_id)
                    break
        return rejected
