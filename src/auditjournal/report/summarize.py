"""One pass over an export's records: counts, the graph's traffic, the timeline.

The records come in export order (the seq of the event that completed each
one). Memory is bounded by the run's shape, not its size: nodes, edges, one
small entry per token (its last node, for the edge counts) and per row (its
source node), and the routing events whose state is still to come -- about
100 bytes per token, never the payloads (the decoder skips them).

How tokens are counted on edges: a token's node states, in the order they
completed, are its path; consecutive states at the same node are retries. A
state with routing events sends the token along those edges (each routing
event counts once); otherwise the move from the previous node is counted on
the one edge between the two nodes. A token's first move starts at its row's
source node, or, for a token made by a fork, coalesce or expansion, at its
parents' last nodes. A move that no single edge explains is counted as
``unattributed``.
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

__all__ = ["BIN_COUNT", "EdgeInfo", "NodeInfo", "Summary", "summarize"]

BIN_COUNT: Final = 60


class _Record(msgspec.Struct):
    """The fields the summary reads; everything else (payloads) is skipped unparsed."""

    record_type: str = ""
    seq: int = 0
    node_id: str | None = None
    plugin_name: str = ""
    plugin_version: str = ""
    node_type: str = ""
    determinism: str = ""
    edge_id: str | None = None
    from_node_id: str = ""
    to_node_id: str = ""
    label: str = ""
    mode: str | None = None
    row_id: str | None = None
    source_node_id: str | None = None
    token_id: str | None = None
    parent_token_ids: list[str] = []
    state_id: str | None = None
    status: str | None = None
    outcome: str | None = None
    sink_name: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    registered_at: str | None = None
    created_at: str | None = None
    recorded_at: str | None = None


_DECODE: Final = msgspec.json.Decoder(_Record).decode


@dataclass
class NodeInfo:
    node_id: str
    plugin_name: str
    plugin_version: str
    node_type: str
    determinism: str
    states: Counter[str] = field(default_factory=Counter)
    first_started: _dt.datetime | None = None
    last_ended: _dt.datetime | None = None
    bins: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class EdgeInfo:
    edge_id: str
    from_node_id: str
    to_node_id: str
    label: str
    mode: str
    tokens: int = 0
    routing_events: int = 0


@dataclass
class Summary:
    """What :func:`summarize` found."""

    counts: Counter[str] = field(default_factory=Counter)
    states_by_status: Counter[str] = field(default_factory=Counter)
    calls_by_status: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    outcomes_by_sink: Counter[str] = field(default_factory=Counter)
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    edges: dict[str, EdgeInfo] = field(default_factory=dict)
    unattributed: int = 0
    unreadable_lines: int = 0
    run: dict[str, Any] | None = None  # the run record, decoded whole (it is small)
    start: _dt.datetime | None = None
    end: _dt.datetime | None = None


def parse_ts(text: str | None) -> _dt.datetime | None:
    """An export timestamp (ISO-8601, ``Z``) as an aware datetime; None if absent or bad."""
    if not text:
        return None
    try:
        ts = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=_dt.UTC)


class _Tracker:
    """Follows each token's path to count tokens per edge (see the module docstring)."""

    def __init__(self, summary: Summary) -> None:
        self.s = summary
        self.row_source: dict[str, str] = {}
        self.token_parents: dict[str, list[str]] = {}
        self.last: dict[str, tuple[str, str]] = {}  # token -> (node id, state id)
        self.routed: set[str] = set()  # states with routing events, until their token moves on
        self.pairs: dict[tuple[str, str], list[str]] = defaultdict(list)

    def edge(self, r: _Record) -> None:
        self.pairs[(r.from_node_id, r.to_node_id)].append(r.edge_id or "")

    def row(self, r: _Record) -> None:
        if r.row_id is not None and r.source_node_id is not None:
            self.row_source[r.row_id] = r.source_node_id

    def token(self, r: _Record) -> None:
        if r.token_id is None:
            return
        if r.parent_token_ids:
            self.token_parents[r.token_id] = list(r.parent_token_ids)
        elif r.row_id is not None and r.row_id in self.row_source:
            self.last[r.token_id] = (self.row_source[r.row_id], "")

    def routing(self, r: _Record) -> None:
        edge = self.s.edges.get(r.edge_id or "")
        if edge is not None:
            edge.routing_events += 1
            edge.tokens += 1
        if r.state_id is not None:
            self.routed.add(r.state_id)

    def state(self, r: _Record) -> None:
        token, node, state = r.token_id, r.node_id, r.state_id
        if token is None or node is None or state is None:
            return
        before = self.last.get(token)
        if before is None:
            parents = self.token_parents.pop(token, [])
            for parent in parents:
                if (p := self.last.get(parent)) is not None:
                    self._move(p, node)
        elif before[0] != node:
            self._move(before, node)
            self.routed.discard(before[1])
        self.last[token] = (node, state)

    def _move(self, before: tuple[str, str], to_node: str) -> None:
        from_node, from_state = before
        if from_state in self.routed:
            return  # its routing events already counted the move
        candidates = self.pairs.get((from_node, to_node), [])
        if len(candidates) == 1 and candidates[0] in self.s.edges:
            self.s.edges[candidates[0]].tokens += 1
        else:
            self.s.unattributed += 1


def summarize(
    lines: Iterable[bytes], *, end: _dt.datetime | None, bin_count: int = BIN_COUNT
) -> Summary:
    """Summarize record lines (in export order); ``end`` closes the timeline (the seal time)."""
    s = Summary(end=end)
    track = _Tracker(s)
    span = 0.0
    for line in lines:
        try:
            r = _DECODE(line)
        except (msgspec.DecodeError, msgspec.ValidationError):
            s.unreadable_lines += 1
            continue
        kind = r.record_type
        s.counts[kind] += 1
        if s.start is None:
            s.start = parse_ts(r.registered_at or r.created_at or r.started_at)
            if s.start is not None and end is not None:
                span = max((end - s.start).total_seconds(), 1e-6)
        if kind == "node" and r.node_id is not None:
            s.nodes[r.node_id] = NodeInfo(
                r.node_id, r.plugin_name, r.plugin_version, r.node_type, r.determinism
            )
        elif kind == "edge" and r.edge_id is not None:
            s.edges[r.edge_id] = EdgeInfo(
                r.edge_id, r.from_node_id, r.to_node_id, r.label, r.mode or ""
            )
            track.edge(r)
        elif kind == "row":
            track.row(r)
        elif kind == "token":
            track.token(r)
        elif kind == "node_state":
            status = r.status or "unknown"
            s.states_by_status[status] += 1
            node = s.nodes.get(r.node_id or "")
            if node is not None:
                _place(node, r, status, s.start, span, bin_count)
            track.state(r)
        elif kind == "routing_event":
            track.routing(r)
        elif kind == "call":
            s.calls_by_status[r.status or "unknown"] += 1
        elif kind == "token_outcome":
            s.outcomes[r.outcome or "unknown"] += 1
            s.outcomes_by_sink[r.sink_name or "(no sink)"] += 1
        elif kind == "run":
            s.run = msgspec.json.decode(line)
    return s


def _place(
    node: NodeInfo,
    r: _Record,
    status: str,
    start: _dt.datetime | None,
    span: float,
    bin_count: int,
) -> None:
    """Count a state in its node's lane: its status, its times, the bin it ended in."""
    node.states[status] += 1
    began, ended = parse_ts(r.started_at), parse_ts(r.completed_at)
    if began is not None and (node.first_started is None or began < node.first_started):
        node.first_started = began
    at = ended or began
    if ended is not None and (node.last_ended is None or ended > node.last_ended):
        node.last_ended = ended
    if at is None or start is None or span <= 0:
        return
    index = int((at - start).total_seconds() / span * bin_count)
    bins = node.bins.setdefault(status, [0] * bin_count)
    bins[min(max(index, 0), bin_count - 1)] += 1
