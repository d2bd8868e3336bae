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
    BatchCreated,
    BatchMemberAdded,
    BatchOutputRecorded,
    BatchUpdated,
    CallRecorded,
    CheckpointRecorded,
    EdgeRegistered,
    ExportFailed,
    ExportSealed,
    FieldResolutionRecorded,
    NodeRegistered,
    NodeStateCompleted,
    NodeStateStarted,
    OperationCompleted,
    OperationStarted,
    PreflightResultRecorded,
    RoutingEventRecorded,
    RowCreated,
    RunCompleted,
    RunStarted,
    SchemaContractRecorded,
    SecretResolutionRecorded,
    TokenCreated,
    TokenOutcomeRecorded,
    TransformErrorRecorded,
    ValidationErrorRecorded,
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
        self.hash_only_nodes: set[str] = set()  # nodes with payload_policy hash_only
        self.state_nodes: dict[str, str] = {}  # open state id -> node id (hash_only nodes)
        self.states = _StateIds(self.open_states, self.closed_states)
        self.routing_events: set[str] = set()
        self.calls: set[str] = set()
        self.artifacts: set[str] = set()
        self.outcomes: set[str] = set()
        self.finished_tokens: set[str] = set()
        self.call_indexes: dict[str, int] = {}
        self.operations: dict[str, str] = {}  # operation id -> node id
        self.closed_operations: set[str] = set()
        self.batches: dict[str, str] = {}  # batch id -> its last status
        self.batch_members: dict[str, set[str]] = {}  # batch id -> token ids
        self.batch_ordinals: dict[str, set[int]] = {}  # batch id -> ordinals used
        self.batch_outputs: set[str] = set()
        self.validation_errors: set[str] = set()
        self.transform_errors: set[str] = set()
        self.checkpoints: set[str] = set()
        self.secret_resolutions: set[str] = set()
        self.preflight_results: set[str] = set()
        self.field_resolutions: set[str | None] = set()  # source node ids
        self.contracts: set[tuple[str | None, str]] = set()  # (node id, role)
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
    if e.payload_policy == "hash_only":
        s.hash_only_nodes.add(e.node_id)


def _edge(s: RunState, e: EdgeRegistered) -> None:
    s.edges.add(e.edge_id)


def _row(s: RunState, e: RowCreated) -> None:
    s.rows.add(e.row_id)


def _token(s: RunState, e: TokenCreated) -> None:
    s.tokens[e.token_id] = e.row_id


def _state_started(s: RunState, e: NodeStateStarted) -> None:
    s.open_states[e.state_id] = e.row_id
    if e.node_id in s.hash_only_nodes:
        s.state_nodes[e.state_id] = e.node_id


def _state_completed(s: RunState, e: NodeStateCompleted) -> None:
    s.closed_states[e.state_id] = s.open_states.pop(e.state_id, "")
    s.state_nodes.pop(e.state_id, None)
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


def _operation_started(s: RunState, e: OperationStarted) -> None:
    s.operations[e.operation_id] = e.node_id


def _operation_completed(s: RunState, e: OperationCompleted) -> None:
    s.closed_operations.add(e.operation_id)
    s.call_indexes.pop(e.operation_id, None)


def _batch_created(s: RunState, e: BatchCreated) -> None:
    s.batches[e.batch_id] = "draft"
    s.batch_members[e.batch_id] = set()
    s.batch_ordinals[e.batch_id] = set()


def _batch_member(s: RunState, e: BatchMemberAdded) -> None:
    s.batch_members.setdefault(e.batch_id, set()).add(e.token_id)
    s.batch_ordinals.setdefault(e.batch_id, set()).add(e.ordinal)


def _batch_updated(s: RunState, e: BatchUpdated) -> None:
    s.batches[e.batch_id] = e.status


def _batch_output(s: RunState, e: BatchOutputRecorded) -> None:
    s.batch_outputs.add(e.batch_output_id)


def _validation_error(s: RunState, e: ValidationErrorRecorded) -> None:
    s.validation_errors.add(e.validation_error_id)


def _transform_error(s: RunState, e: TransformErrorRecorded) -> None:
    s.transform_errors.add(e.transform_error_id)


def _checkpoint(s: RunState, e: CheckpointRecorded) -> None:
    s.checkpoints.add(e.checkpoint_id)


def _secret(s: RunState, e: SecretResolutionRecorded) -> None:
    s.secret_resolutions.add(e.secret_resolution_id)


def _preflight(s: RunState, e: PreflightResultRecorded) -> None:
    s.preflight_results.add(e.preflight_result_id)


def _field_resolution(s: RunState, e: FieldResolutionRecorded) -> None:
    s.field_resolutions.add(e.source_node_id)


def _contract(s: RunState, e: SchemaContractRecorded) -> None:
    s.contracts.add((e.node_id, e.role))


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
    OperationStarted: _operation_started,
    OperationCompleted: _operation_completed,
    BatchCreated: _batch_created,
    BatchMemberAdded: _batch_member,
    BatchUpdated: _batch_updated,
    BatchOutputRecorded: _batch_output,
    ValidationErrorRecorded: _validation_error,
    TransformErrorRecorded: _transform_error,
    CheckpointRecorded: _checkpoint,
    SecretResolutionRecorded: _secret,
    PreflightResultRecorded: _preflight,
    FieldResolutionRecorded: _field_resolution,
    SchemaContractRecorded: _contract,
    ExportSealed: _sealed,
    ExportFailed: _sealed,
}
