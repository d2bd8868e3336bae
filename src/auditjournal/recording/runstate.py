"""What a run has recorded so far, as far as lifecycle checks need it.

The recorder validates a call against this state and then applies the event
it appended; :meth:`RunState.apply` is also how a resumed run rebuilds the
state from its journal, so live recording and recovery share one code path.

Memory: the state keeps the ids the run has used (about 100 bytes per id);
ids of completed node states move from ``open_states`` to ``closed_states``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any

from ..errors import DuplicateIdError, InvalidIdError, UnknownIdError
from ..fs.storage import validate_id
from ..model.events import (
    ArtifactRecorded,
    BaseEvent,
    CallRecorded,
    EdgeRegistered,
    ExportFailed,
    ExportSealed,
    NodeRegistered,
    NodeStateCompleted,
    NodeStateStarted,
    RoutingEventRecorded,
    RowCreated,
    RunCompleted,
    RunStarted,
    TokenCreated,
    TokenOutcomeRecorded,
)

_GENERATED_SHAPE = re.compile(r"[a-z]+-[0-9]+")
"""What a generated id looks like (``row-12``); see :meth:`RunState.new_id`."""

__all__ = ["RunState"]


class _StateIds(Collection[str]):
    """Open and closed node states seen as one collection of known state ids."""

    def __init__(self, opened: dict[str, str], closed: dict[str, str]) -> None:
        self._open = opened
        self._closed = closed

    def __contains__(self, item: object) -> bool:
        return item in self._open or item in self._closed

    def __len__(self) -> int:
        return len(self._open) + len(self._closed)

    def __iter__(self) -> Any:
        yield from self._open
        yield from self._closed

    def row_of(self, state_id: str) -> str:
        row = self._open.get(state_id)
        return self._closed[state_id] if row is None else row


class RunState:
    """Ids in use and the run's phase. Not thread-safe: the recorder's lock guards it."""

    def __init__(self) -> None:
        self.nodes: dict[str, str] = {}  # node id -> node type
        self.edges: set[str] = set()
        self.rows: set[str] = set()
        self.tokens: dict[str, str] = {}  # token id -> row id
        self.open_states: dict[str, str] = {}  # state id -> row id
        self.closed_states: dict[str, str] = {}  # state id -> row id
        self.states = _StateIds(self.open_states, self.closed_states)
        self.routing_events: set[str] = set()
        self.calls: set[str] = set()
        self.artifacts: set[str] = set()
        self.outcomes: set[str] = set()
        self.finished_tokens: set[str] = set()
        self.call_indexes: dict[str, int] = {}
        self.started = False
        self.completed = False
        self.sealed = False
        self._counter = 0
        self._check_generated = False  # see new_id()

    # -- checks (recorder side) -------------------------------------------------------

    @staticmethod
    def need(known: Collection[str], value: str, what: str) -> None:
        try:
            if value in known:
                return
        except TypeError:  # unhashable: a list, a dict, ...
            pass
        if not isinstance(value, str):
            raise InvalidIdError(f"{what} id must be a str, got {value!r}")
        raise UnknownIdError(f"unknown {what} id {value!r} in this run")

    def new_id(self, prefix: str, given: str | None, known: Collection[str]) -> str:
        """Validate a caller-given id (unique, path-safe) or generate a fresh one.

        Generated ids are ``prefix-N`` with a counter that only grows, so they
        cannot collide with each other; they are checked against ``known`` only
        once a caller-given (or resumed) id could look like one.
        """
        if given is None:
            while True:
                self._counter += 1
                candidate = f"{prefix}-{self._counter}"
                if not self._check_generated or candidate not in known:
                    return candidate
        given = validate_id(given, f"{prefix} id")
        if given in known:
            raise DuplicateIdError(f"{prefix} id {given!r} is already used in this run")
        if not self._check_generated and _GENERATED_SHAPE.fullmatch(given):
            self._check_generated = True
        return given

    def skip_generated_ids(self, last_seq: int) -> None:
        """After a resume: each event made at most one id, so counting on from the last
        seq cannot collide with an id generated before."""
        self._counter = max(self._counter, last_seq)
        self._check_generated = True  # the journal may hold caller-given ids of that shape

    def next_call_index(self, owner: str, given: int | None) -> int:
        """The index a call gets (the given one, or one past the owner's last);
        :meth:`apply` moves the counter on, so a call refused later changes nothing."""
        return self.call_indexes.get(owner, 0) if given is None else given

    def counts(self) -> dict[str, int]:
        return {
            "nodes": len(self.nodes),
            "edges": len(self.edges),
            "rows": len(self.rows),
            "tokens": len(self.tokens),
            "open_states": len(self.open_states),
            "closed_states": len(self.closed_states),
        }

    # -- applying events (live and on resume) -----------------------------------------

    def apply(self, event: BaseEvent) -> None:
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)


def _run_started(s: RunState, e: RunStarted) -> None:
    s.started = True


def _node(s: RunState, e: NodeRegistered) -> None:
    s.nodes[e.node_id] = e.node_type


def _edge(s: RunState, e: EdgeRegistered) -> None:
    s.edges.add(e.edge_id)


def _row(s: RunState, e: RowCreated) -> None:
    s.rows.add(e.row_id)


def _token(s: RunState, e: TokenCreated) -> None:
    s.tokens[e.token_id] = e.row_id


def _state_started(s: RunState, e: NodeStateStarted) -> None:
    s.open_states[e.state_id] = e.row_id


def _state_completed(s: RunState, e: NodeStateCompleted) -> None:
    s.closed_states[e.state_id] = s.open_states.pop(e.state_id, "")
    s.call_indexes.pop(e.state_id, None)


def _routing(s: RunState, e: RoutingEventRecorded) -> None:
    s.routing_events.add(e.routing_event_id)


def _call(s: RunState, e: CallRecorded) -> None:
    s.calls.add(e.call_id)
    owner = e.state_id or e.operation_id or ""
    s.call_indexes[owner] = max(s.call_indexes.get(owner, 0), e.call_index + 1)


def _artifact(s: RunState, e: ArtifactRecorded) -> None:
    s.artifacts.add(e.artifact_id)


def _outcome(s: RunState, e: TokenOutcomeRecorded) -> None:
    s.outcomes.add(e.outcome_id)
    if e.outcome != "buffered":
        s.finished_tokens.add(e.token_id)


def _run_completed(s: RunState, e: RunCompleted) -> None:
    s.completed = True


def _sealed(s: RunState, e: ExportSealed | ExportFailed) -> None:
    s.sealed = isinstance(e, ExportSealed)


_HANDLERS: dict[type[BaseEvent], Callable[[RunState, Any], None]] = {
    RunStarted: _run_started,
    NodeRegistered: _node,
    EdgeRegistered: _edge,
    RowCreated: _row,
    TokenCreated: _token,
    NodeStateStarted: _state_started,
    NodeStateCompleted: _state_completed,
    RoutingEventRecorded: _routing,
    CallRecorded: _call,
    ArtifactRecorded: _artifact,
    TokenOutcomeRecorded: _outcome,
    RunCompleted: _run_completed,
    ExportSealed: _sealed,
    ExportFailed: _sealed,
}
