"""From journal events to export records: flat JSON objects, one entity each.

Every record has ``record_type``, ``run_id`` and ``seq`` (the journal seq of the
event that completed the entity), its ids, hashes and refs; rows, node
states, calls, routing events and artifacts also carry the ``row_id`` they
concern, so a subset of records (say, everything about one row) is complete
on its own. With payloads included the payload's canonical bytes are spliced
in (``row.source_data``, ``node_state.input_data``/``output_data``,
``routing_event.reason``, ``call.request``/``response``, ``artifact.sink_input``).

A node state becomes a record when it completes; until then only its
``node_state_started`` fields are held (memory is bounded by the number of
*open* states, not by the run's size). When the run ends, still-open states
are exported with status ``open`` and the ``run`` record comes last.

Records are encoded as RFC 8785 canonical JSON, so anyone can re-derive a record's exact
bytes from its parsed value. msgspec writes each record directly (sorted ASCII keys,
strings, ints, UTC datetimes as :func:`iso` does); fields that may hold floats or nested
JSON go through :func:`canonical_json` first. The records of the events every run has
many of are built with their keys already sorted (msgspec sorting them cost as much as
the rest), and written in C where that is built (``recordvalues.compiled_extend``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from msgspec import Raw

from .events import (
    ArtifactRecorded,
    BaseEvent,
    CallRecorded,
    EdgeRegistered,
    NodeRegistered,
    NodeStateCompleted,
    NodeStateStarted,
    RoutingEventRecorded,
    RowCreated,
    RunCompleted,
    RunStarted,
    TokenCreated,
    TokenOutcomeRecorded,
    ValidationErrorRecorded,
)
from .landscape_records import LandscapeRecords
from .recordtypes import PAYLOAD_FIELDS, RECORD_TYPES
from .recordvalues import ENCODER as _ENCODER
from .recordvalues import HOT_EVENTS as _HOT
from .recordvalues import IN_ORDER as _IN_ORDER
from .recordvalues import compiled_extend, compiled_extend_lines, iso, json_bytes
from .recordvalues import json_value as _json

__all__ = ["RECORD_TYPES", "RecordMaker", "iso"]

PayloadGetter = Callable[[str], bytes]
Record = tuple[int, bytes]  # (seq, canonical JSON bytes)

_NODE_SCHEMA: Final = ("schema_hash", "sequence_in_pipeline", "schema_mode", "schema_fields")
_OUTCOME_KEPT: Final = (
    "batch_id", "expand_group_id", "expected_branches", "fork_group_id", "join_group_id"
)  # fmt: skip


class RecordMaker:
    """Turns events, in seq order, into encoded records.

    ``get_payload`` (ref -> canonical bytes, integrity-checked) is used when payloads
    are inlined (the compiled loop's ``window_source`` first); ``None`` exports refs only.
    """

    def __init__(self, run_id: str, get_payload: PayloadGetter | None, window_source: Any = None):
        self.run_id = run_id
        self._get = get_payload
        self._c_get = get_payload if window_source is None else (get_payload, window_source)
        self.open_states: dict[str, dict[str, Any]] = {}
        self.run: dict[str, Any] = {}
        self.completed: RunCompleted | None = None
        self.tally: dict[str, int] = {}  # the completeness certificate's counts
        self._handlers: dict[type[BaseEvent], Callable[[Any], list[Record]]] = {
            RunStarted: self._run_started,
            NodeRegistered: self._node,
            EdgeRegistered: self._edge,
            RowCreated: self._row,
            TokenCreated: self._token,
            NodeStateStarted: self._state_started,
            NodeStateCompleted: self._state_completed,
            RoutingEventRecorded: self._routing,
            CallRecorded: self._call,
            ArtifactRecorded: self._artifact,
            TokenOutcomeRecorded: self._outcome,
            RunCompleted: self._run_completed,
        }
        self.landscape = LandscapeRecords(self._base, _json)
        for kind, handler in self.landscape.handlers.items():
            self._handlers[kind] = self._encoding(handler)
        # the completeness certificate counts validation errors (verify counts the records)
        self._handlers[ValidationErrorRecorded] = self._counted(
            "validation_error", self._handlers[ValidationErrorRecorded]
        )

    def records(self, event: BaseEvent) -> list[Record]:
        """The records ``event`` completes (often one, none for a started state)."""
        handler = self._handlers.get(type(event))
        return [] if handler is None else handler(event)

    def extend(
        self,
        events: Sequence[BaseEvent],
        seqs: list[int],
        records: list[bytes],
        overrides: dict[type[BaseEvent], Callable[[Any], list[Record]]] | None = None,
    ) -> int:
        """:meth:`records` of ``events`` in order, appended to ``seqs`` and ``records``
        (one call a batch, not one an event), up to ``run_completed`` (its records too);
        return how many events were used. ``overrides`` replace handlers (a hot event's
        is then used only for what the compiled loop leaves to Python)."""
        handlers = self._handlers if overrides is None else {**self._handlers, **overrides}
        if compiled_extend is not None:
            used = compiled_extend(
                events, seqs, records, handlers, _HOT, self.run_id, self._c_get,
                self.open_states, self.tally, json_bytes,
            )  # fmt: skip
            if used is not None:  # else a run id it cannot write: the loop below does
                return used
        add_seq, add_record = seqs.append, records.append
        for index, event in enumerate(events):
            kind = type(event)
            handler = handlers.get(kind)
            if handler is not None:
                for seq, record in handler(event):
                    add_seq(seq)
                    add_record(record)
                if kind is RunCompleted:
                    return index + 1
        return len(events)

    def extend_lines(
        self,
        events: Sequence[BaseEvent],
        seqs: list[int],
        overrides: dict[type[BaseEvent], Callable[[Any], list[Record]]] | None = None,
    ) -> tuple[int, bytes, list[int], bytes] | None:
        """:meth:`extend` as ``ChunkWriter.add_lines`` takes records (events used, lines,
        lengths, leaf hashes; seqs to ``seqs``); None without the compiled loop."""
        if compiled_extend_lines is None:
            return None
        handlers = self._handlers if overrides is None else {**self._handlers, **overrides}
        out = compiled_extend_lines(
            events, handlers, _HOT, self.run_id, self._c_get,
            self.open_states, self.tally, json_bytes, seqs,
        )  # fmt: skip
        return None if out is None else (out[0], out[1], out[2], out[4])

    # -- state for checkpoints ----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "open_states": self.open_states,
            "run": self.run,
            "tally": dict(self.tally),
            "landscape": self.landscape.snapshot(),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.open_states = dict(snapshot["open_states"])
        self.run = dict(snapshot["run"])
        self.tally = dict(snapshot["tally"])
        self.landscape.restore(snapshot.get("landscape", {}))

    def _counted(
        self, key: str, handler: Callable[[Any], list[Record]]
    ) -> Callable[[Any], list[Record]]:
        def counted(event: Any) -> list[Record]:
            out = handler(event)
            self._count(key)
            return out

        return counted

    def _count(self, key: str) -> None:
        tally = self.tally
        tally[key] = tally.get(key, 0) + 1

    # -- helpers ------------------------------------------------------------------------

    def _payload(self, record: dict[str, Any], name: str, ref: str | None) -> None:
        if self._get is not None:
            record[name] = None if ref is None else Raw(self._get(ref))

    @staticmethod
    def _appended(record: dict[str, Any], event: BaseEvent) -> dict[str, Any]:
        """``appended_at`` (the journal's time) when the event said when it happened."""
        if event.occurred_at is not None:
            record["appended_at"] = event.ts
        return record

    def _base(self, kind: str, event: BaseEvent) -> dict[str, Any]:
        return {"record_type": kind, "run_id": self.run_id, "seq": event.seq}

    @staticmethod
    def _done(record: dict[str, Any]) -> list[Record]:
        return [(record["seq"], _ENCODER.encode(record))]

    def _encoding(
        self, handler: Callable[[Any], list[dict[str, Any]]]
    ) -> Callable[[Any], list[Record]]:
        """A :class:`LandscapeRecords` handler whose records get their payloads and bytes."""

        def records(event: BaseEvent) -> list[Record]:
            out = []
            for r in handler(event):
                for name, ref_name in PAYLOAD_FIELDS.get(r["record_type"], ()):
                    self._payload(r, name, r[ref_name])
                out.append((r["seq"], _ENCODER.encode(r)))
            return out

        return records

    # -- one handler per event type -----------------------------------------------------

    def _run_started(self, e: RunStarted) -> list[Record]:
        self.run = {
            "started_seq": e.seq,
            "started_at": iso(e.occurred_at or e.ts),
            "config": e.config,
            "config_hash": e.config_hash,
            "settings": e.settings,
            "canonical_version": e.canonical_version,
        }
        if e.redacted:
            self.run["redacted"] = list(e.redacted)
        return []

    def _node(self, e: NodeRegistered) -> list[Record]:
        r = {
            "record_type": "node",
            "run_id": self.run_id,
            "seq": e.seq,
            "node_id": e.node_id,
            "plugin_name": e.plugin_name,
            "plugin_version": e.plugin_version,
            "node_type": e.node_type,
            "determinism": e.determinism,
            "config": _json(e.config),
            "config_hash": e.config_hash,
            "input_schema": _json(e.input_schema),
            "output_schema": _json(e.output_schema),
            "registered_at": e.occurred_at or e.ts,
        }
        if e.payload_policy != "retain":
            r["payload_policy"] = e.payload_policy
        if e.redacted:
            r["redacted"] = list(e.redacted)
        for name in _NODE_SCHEMA:
            value = getattr(e, name)
            if value is not None:
                r[name] = _json(value)
        return self._done(self._appended(r, e))

    def _edge(self, e: EdgeRegistered) -> list[Record]:
        r = {
            "record_type": "edge",
            "run_id": self.run_id,
            "seq": e.seq,
            "edge_id": e.edge_id,
            "from_node_id": e.from_node_id,
            "to_node_id": e.to_node_id,
            "label": e.label,
            "mode": e.mode,
            "created_at": e.occurred_at or e.ts,
        }
        return self._done(self._appended(r, e))

    # The handlers below list their keys sorted; a key that is absent is dropped after
    # (deleting keeps the others in order).

    def _row(self, e: RowCreated) -> list[Record]:
        self._count("row")
        retained = e.source_data_retained
        ref = e.source_data_ref if retained else None
        get = self._get
        r: dict[str, Any] = {
            "appended_at": e.ts,
            "created_at": e.occurred_at or e.ts,
            "record_type": "row",
            "row_id": e.row_id,
            "row_index": e.row_index,
            "run_id": self.run_id,
            "seq": e.seq,
            "source_data": None if get is None or ref is None else Raw(get(ref)),
            "source_data_hash": e.source_data_hash,
            "source_data_ref": ref,
            "source_data_retained": False,
            "source_node_id": e.source_node_id,
        }
        if e.occurred_at is None:
            del r["appended_at"]
        if get is None:
            del r["source_data"]
        if retained:
            del r["source_data_retained"]
        return [(e.seq, _IN_ORDER.encode(r))]

    def _token(self, e: TokenCreated) -> list[Record]:
        self._count("token")
        r = {
            "appended_at": e.ts,
            "branch_name": e.branch_name,
            "created_at": e.occurred_at or e.ts,
            "expand_group_id": e.expand_group_id,
            "fork_group_id": e.fork_group_id,
            "join_group_id": e.join_group_id,
            "parent_token_ids": list(e.parent_token_ids),
            "record_type": "token",
            "row_id": e.row_id,
            "run_id": self.run_id,
            "seq": e.seq,
            "step_in_pipeline": e.step_in_pipeline,
            "token_id": e.token_id,
        }
        if e.occurred_at is None:
            del r["appended_at"]
        if e.step_in_pipeline is None:
            del r["step_in_pipeline"]
        return [(e.seq, _IN_ORDER.encode(r))]

    def _state_started(self, e: NodeStateStarted) -> list[Record]:
        self.open_states[e.state_id] = {
            "state_id": e.state_id,
            "token_id": e.token_id,
            "row_id": e.row_id,
            "node_id": e.node_id,
            "step_index": e.step_index,
            "attempt": e.attempt,
            "input_hash": e.input_hash,
            "input_data_ref": e.input_data_ref,
            "started_seq": e.seq,
            # msgspec writes it as iso() does (also after a checkpoint)
            "started_at": e.occurred_at or e.ts,
        }
        if not e.input_retained:
            started = self.open_states[e.state_id]
            started.update(input_data_ref=None, input_data_retained=False)
        if e.context_before is not None:
            self.open_states[e.state_id]["context_before"] = e.context_before
        return []

    def _state_record(self, started: dict[str, Any], seq: int) -> dict[str, Any]:
        r = {"record_type": "node_state", "run_id": self.run_id, "seq": seq, **started}
        self._payload(r, "input_data", started["input_data_ref"])
        return r

    def _state_completed(self, e: NodeStateCompleted) -> list[Record]:
        s = self.open_states.pop(e.state_id)  # _state_started's fields
        # other keys than those (only a checkpoint's state can have them): more keys, or
        # as many with one of the ten always there missing (a KeyError below)
        if len(s) - ("context_before" in s) - ("input_data_retained" in s) != 10:
            return self._state_completed_general(e, s)
        try:
            return self._state_record_sorted(e, s)
        except KeyError:
            return self._state_completed_general(e, s)

    def _state_record_sorted(self, e: NodeStateCompleted, s: dict[str, Any]) -> list[Record]:
        get = self._get
        in_ref = s["input_data_ref"]
        out_ref = e.output_data_ref
        r = {
            "appended_at": e.ts,
            "attempt": s["attempt"],
            "completed_at": e.occurred_at or e.ts,
            "context_after": None if e.context_after is None else _json(e.context_after),
            "context_before": _json(s.get("context_before")),
            "duration_ms": _json(e.duration_ms),
            "error": None if e.error is None else _json(e.error),
            "input_data": None if get is None or in_ref is None else Raw(get(in_ref)),
            "input_data_ref": in_ref,
            "input_data_retained": s.get("input_data_retained"),
            "input_hash": s["input_hash"],
            "node_id": s["node_id"],
            "output_data": None if get is None or out_ref is None else Raw(get(out_ref)),
            "output_data_ref": out_ref,
            "output_data_retained": False,
            "output_hash": e.output_hash,
            "record_type": "node_state",
            "row_id": s["row_id"],
            "run_id": self.run_id,
            "seq": e.seq,
            "started_at": s["started_at"],
            "started_seq": s["started_seq"],
            "state_id": s["state_id"],
            "status": e.status,
            "step_index": s["step_index"],
            "success_reason": None if e.success_reason is None else _json(e.success_reason),
            "token_id": s["token_id"],
        }
        if e.occurred_at is None:
            del r["appended_at"]
        if e.context_after is None:
            del r["context_after"]
        if "context_before" not in s:
            del r["context_before"]
        if get is None:
            del r["input_data"], r["output_data"]
        if "input_data_retained" not in s:
            del r["input_data_retained"]
        if out_ref is not None or e.output_hash is None:
            del r["output_data_retained"]
        return [(e.seq, _IN_ORDER.encode(r))]

    def _state_completed_general(self, e: NodeStateCompleted, s: dict[str, Any]) -> list[Record]:
        """:meth:`_state_completed` of a started state whose keys are not the usual ones
        (only a checkpoint can hold such a state): encoded with sorting."""
        r = {
            "record_type": "node_state",
            "run_id": self.run_id,
            "seq": e.seq,
            **s,
            "status": e.status,
            "output_hash": e.output_hash,
            "output_data_ref": e.output_data_ref,
            "duration_ms": _json(e.duration_ms),
            "error": _json(e.error),
            "success_reason": _json(e.success_reason),
            "completed_at": e.occurred_at or e.ts,
        }
        if e.occurred_at is not None:
            r["appended_at"] = e.ts
        if e.output_data_ref is None and e.output_hash is not None:
            r["output_data_retained"] = False
        if "context_before" in r:
            r["context_before"] = _json(r["context_before"])
        if e.context_after is not None:
            r["context_after"] = _json(e.context_after)
        get = self._get
        if get is not None:
            ref = r["input_data_ref"]
            r["input_data"] = None if ref is None else Raw(get(ref))
            ref = e.output_data_ref
            r["output_data"] = None if ref is None else Raw(get(ref))
        return [(e.seq, _ENCODER.encode(r))]

    def _routing(self, e: RoutingEventRecorded) -> list[Record]:
        get = self._get
        ref = e.reason_ref
        r = {
            "appended_at": e.ts,
            "created_at": e.occurred_at or e.ts,
            "edge_id": e.edge_id,
            "mode": e.mode,
            "ordinal": e.ordinal,
            "reason": None if get is None or ref is None else Raw(get(ref)),
            "reason_hash": e.reason_hash,
            "reason_ref": ref,
            "reason_retained": False,
            "record_type": "routing_event",
            "routing_event_id": e.routing_event_id,
            "routing_group_id": e.routing_group_id,
            "row_id": e.row_id,
            "run_id": self.run_id,
            "seq": e.seq,
            "state_id": e.state_id,
        }
        if e.occurred_at is None:
            del r["appended_at"]
        if get is None:
            del r["reason"]
        if ref is not None or e.reason_hash is None:
            del r["reason_retained"]
        return [(e.seq, _IN_ORDER.encode(r))]

    def _call(self, e: CallRecorded) -> list[Record]:
        get = self._get
        request_ref = e.request_ref if e.request_retained else None
        response_ref = e.response_ref
        r: dict[str, Any] = {
            "appended_at": e.ts,
            "call_id": e.call_id,
            "call_index": e.call_index,
            "call_type": e.call_type,
            "created_at": e.occurred_at or e.ts,
            "error": _json(e.error),
            "latency_ms": _json(e.latency_ms),
            "operation_id": e.operation_id,
            "record_type": "call",
            "redacted": list(e.redacted),
            "request": None if get is None or request_ref is None else Raw(get(request_ref)),
            "request_hash": e.request_hash,
            "request_ref": request_ref,
            "request_retained": False,
            "response": None if get is None or response_ref is None else Raw(get(response_ref)),
            "response_hash": e.response_hash,
            "response_ref": response_ref,
            "response_retained": False,
            "row_id": e.row_id,
            "run_id": self.run_id,
            "seq": e.seq,
            "state_id": e.state_id,
            "status": e.status,
        }
        if e.occurred_at is None:
            del r["appended_at"]
        if not e.redacted:
            del r["redacted"]
        if get is None:
            del r["request"], r["response"]
        if e.request_retained:
            del r["request_retained"]
        if response_ref is not None or e.response_hash is None:
            del r["response_retained"]
        return [(e.seq, _IN_ORDER.encode(r))]

    def _artifact(self, e: ArtifactRecorded) -> list[Record]:
        r = {
            "record_type": "artifact",
            "run_id": self.run_id,
            "seq": e.seq,
            "artifact_id": e.artifact_id,
            "state_id": e.state_id,
            "sink_node_id": e.sink_node_id,
            "artifact_type": e.artifact_type,
            "path_or_uri": e.path_or_uri,
            "content_hash": e.content_hash,
            "size_bytes": e.size_bytes,
            "sink_input_hash": e.sink_input_hash,
            "sink_input_ref": e.sink_input_ref,
            "created_at": e.occurred_at or e.ts,
        }
        if e.idempotency_key is not None:
            r["idempotency_key"] = e.idempotency_key
        if e.sink_input_ref is None and e.sink_input_hash is not None:
            r["sink_input_retained"] = False
        self._payload(r, "sink_input", e.sink_input_ref)
        return self._done(self._appended(r, e))

    def _outcome(self, e: TokenOutcomeRecorded) -> list[Record]:
        self._count("outcome." + e.outcome)
        r = {
            "appended_at": e.ts,
            "batch_id": e.batch_id,
            "context": _json(e.context),
            "error_hash": e.error_hash,
            "expand_group_id": e.expand_group_id,
            "expected_branches": _json(e.expected_branches),
            "fork_group_id": e.fork_group_id,
            "join_group_id": e.join_group_id,
            "outcome": e.outcome,
            "outcome_id": e.outcome_id,
            "record_type": "token_outcome",
            "recorded_at": e.occurred_at or e.ts,
            "row_id": e.row_id,
            "run_id": self.run_id,
            "seq": e.seq,
            "sink_name": e.sink_name,
            "token_id": e.token_id,
        }
        if e.occurred_at is None:
            del r["appended_at"]
        for name in _OUTCOME_KEPT:  # present only with a value
            if r[name] is None:
                del r[name]
        return [(e.seq, _IN_ORDER.encode(r))]

    def _run_completed(self, e: RunCompleted) -> list[Record]:
        """Still-open states (a failed or interrupted run) as ``open``, then the run."""
        self.completed = e
        out: list[Record] = []
        if self.open_states:
            self.tally["open_states"] = self.tally.get("open_states", 0) + len(self.open_states)
        for started in self.open_states.values():
            r = self._state_record(started, e.seq)
            r.update(
                status="open",
                output_hash=None,
                output_data_ref=None,
                duration_ms=None,
                error=None,
                success_reason=None,
                completed_at=None,
            )
            if self._get is not None:
                r["output_data"] = None
            out += self._done(r)
        self.open_states.clear()
        out += self._encoding(self.landscape.finish)(e)
        r = self._base("run", e)
        r.update(self.run)
        r.update(
            config=_json(r.get("config")),
            settings=_json(r.get("settings")),
            status=e.status,
            error=_json(e.error),
            completed_at=e.occurred_at or e.ts,
        )
        if e.reproducibility_grade is not None:
            r["reproducibility_grade"] = e.reproducibility_grade
        r.update(self.landscape.run_fields())
        return [*out, *self._done(self._appended(r, e))]
