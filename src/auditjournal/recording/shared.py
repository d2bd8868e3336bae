"""A run's lifecycle state when several writers append to it (the PostgreSQL journal).

Each writer validates a call against its own :class:`SharedRunState`: what the
run had committed when the writer last looked, plus its own calls. Two things
change with other writers:

* an id this writer does not know may have been recorded by another writer:
  before calling it unknown, the state looks at the journal again
  (:meth:`SharedRunState.need`);
* two writers may both be sure they are first (a state completed twice, a second
  terminal outcome for a token, the same caller-given id, an event after
  ``run_completed``). The journal settles it under the run's head-row lock: each
  event's claims (:func:`claims`, :meth:`SharedRunState.claim_keys`) are asked for
  in the run's claims table, and an own event whose claim another writer took
  first is rejected, with the error the file journal would have raised at the call
  (:meth:`SharedRunState.conflict`). Events another writer committed are applied
  to the state (:meth:`SharedRunState.absorb`) only when the writer reads the
  journal again (an unknown id), and own pending events they contradict are then
  rejected at once.

Generated ids of a joined writer carry its random tag (``row-3fa9c2d1-7``), so
writers never generate the same id, and the writer takes that tag's namespace when
it joins (no other writer may give such an id), so they need no claim each; the
coordinator keeps the file journal's ``row-7``, so one writer's run is
byte-identical whatever the backend.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence

from ..errors import (
    AuditJournalError,
    DuplicateIdError,
    LifecycleError,
    OperationAlreadyCompletedError,
    RunAlreadyCompletedError,
    StateAlreadyCompletedError,
)
from ..model.events import (
    EXPORT_EVENT_TYPES,
    ArtifactRecorded,
    BaseEvent,
    BatchCreated,
    BatchOutputRecorded,
    CallRecorded,
    CheckpointRecorded,
    EdgeRegistered,
    Event,
    NodeRegistered,
    NodeStateCompleted,
    NodeStateStarted,
    OperationCompleted,
    OperationStarted,
    PreflightResultRecorded,
    RoutingEventRecorded,
    RowCreated,
    RunCompleted,
    SecretResolutionRecorded,
    TokenCreated,
    TokenOutcomeRecorded,
    TransformErrorRecorded,
    ValidationErrorRecorded,
)
from .runstate import RunState

__all__ = ["SharedRunState", "claim_keys", "claims"]

_Claim = tuple[str, str]

_ID_CLAIMS: dict[type[BaseEvent], tuple[str, str]] = {
    NodeRegistered: ("node", "node_id"),
    EdgeRegistered: ("edge", "edge_id"),
    RowCreated: ("row", "row_id"),
    TokenCreated: ("tok", "token_id"),
    NodeStateStarted: ("st", "state_id"),
    RoutingEventRecorded: ("rte", "routing_event_id"),
    CallRecorded: ("call", "call_id"),
    ArtifactRecorded: ("art", "artifact_id"),
    TokenOutcomeRecorded: ("out", "outcome_id"),
    OperationStarted: ("op", "operation_id"),
    BatchCreated: ("batch", "batch_id"),
    BatchOutputRecorded: ("bout", "batch_output_id"),
    ValidationErrorRecorded: ("verr", "validation_error_id"),
    TransformErrorRecorded: ("terr", "transform_error_id"),
    CheckpointRecorded: ("cp", "checkpoint_id"),
    SecretResolutionRecorded: ("secret", "secret_resolution_id"),
    PreflightResultRecorded: ("pre", "preflight_result_id"),
}
"""The id each kind of event makes (unique in the run), as (claim kind, field)."""

_ID_KINDS = frozenset(kind for kind, _ in _ID_CLAIMS.values())
_TAGGED = re.compile(r"[a-z]+-([0-9a-f]{8})-[0-9]+")
"""A joined writer's generated id (``row-3fa9c2d1-7``): group 1 is the writer's tag."""


def _completion(event: BaseEvent) -> _Claim | None:
    """What an event completes that may be completed once: a state, a token (its
    terminal outcome), an operation, the run."""
    kind = type(event)
    if kind is NodeStateCompleted:
        return ("st-done", event.state_id)  # type: ignore[attr-defined]
    if kind is TokenOutcomeRecorded:
        outcome: TokenOutcomeRecorded = event  # type: ignore[assignment]
        return None if outcome.outcome == "buffered" else ("tok-done", outcome.token_id)
    if kind is OperationCompleted:
        return ("op-done", event.operation_id)  # type: ignore[attr-defined]
    if kind is RunCompleted:
        return ("run-done", "")
    return None


_COMPLETING = frozenset(
    {NodeStateCompleted, TokenOutcomeRecorded, OperationCompleted, RunCompleted}
)


def claims(event: BaseEvent) -> list[_Claim]:
    """What an event takes that no other event of the run may take again: the id it
    makes, and a state's completion, a token's terminal outcome, an operation's
    completion, the run's completion."""
    made = _ID_CLAIMS.get(type(event))
    taken = [] if made is None else [(made[0], getattr(event, made[1]))]
    done = _completion(event)
    if done is not None:
        taken.append(done)
    return taken


def claim_keys(event: BaseEvent) -> list[str]:
    """:func:`claims` as the journal's claims table holds them: ``kind:value``."""
    return [f"{what}:{value}" for what, value in claims(event)]


def _conflict(claim: _Claim, run_id: str) -> AuditJournalError:
    what, value = claim
    if what == "st-done":
        return StateAlreadyCompletedError(f"node state {value!r} is already completed")
    if what == "tok-done":
        return LifecycleError(f"token {value!r} already has a terminal outcome")
    if what == "op-done":
        return OperationAlreadyCompletedError(f"operation {value!r} is already completed")
    if what == "ns":
        return DuplicateIdError(
            f"ids of the shape <prefix>-{value}-<n> are generated by another writer of this "
            "run: give another id"
        )
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
        self._own_prefixes = {} if tag is None else {k: f"{k}-{tag}-" for k in _ID_KINDS}
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

    def claim_keys(self, event: BaseEvent) -> Sequence[str]:
        """The claims of an event of this writer as the journal asks and adds them
        (``?key``: only asked, ``+key``: only added; see ``PgJournal.claims``).

        A joined writer's generated ids (``row-<tag>-7``) are not claimed one by one:
        the writer took their whole namespace (``ns:<tag>``) when it joined
        (``PgDatabase.reserve_tag``), so no other writer can make such an id, and the
        writer's own state settles its own. An id of that shape in *another* writer's
        namespace asks for the namespace (refused while a writer holds it) and marks it
        (``given:<tag>``, so no writer takes it later). That leaves one claim per
        completed state or token for the common case, not one per event.
        """
        # called for every event at every flush: the usual event (an id of this writer's
        # own, nothing completed) is settled by a dict lookup and a prefix test
        kind = type(event)
        keys: Sequence[str] = ()
        made = _ID_CLAIMS.get(kind)
        if made is not None:
            what, field = made
            value = getattr(event, field)
            own = self._own_prefixes.get(what)
            if own is None or not value.startswith(own) or not value[len(own) :].isdigit():
                found = _TAGGED.fullmatch(value)
                if found is None:
                    keys = [f"{what}:{value}"]
                elif found[1] != self._tag:
                    keys = [f"{what}:{value}", f"?ns:{found[1]}", f"+given:{found[1]}"]
        if kind in _COMPLETING:
            done = _completion(event)
            if done is not None:
                keys = [*keys, f"{done[0]}:{done[1]}"]
        return keys

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
