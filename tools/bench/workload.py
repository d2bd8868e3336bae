"""The reference workload of SPEC §8, driving any recorder with the SPEC §6 method names.

Shape of one run
----------------
``drive()`` first registers the pipeline (``setup()``): 6 nodes (source, 3 transforms,
gate, sink) and 5 edges (source→t1→t2→t3→gate→sink), i.e. 11 events. Then, per row,
exactly these 15 recorder calls, in this order:

====  ==============================  =========================================
 #    call (event)                    payload argument(s)
====  ==============================  =========================================
 1    create_row                      ``data`` — the row (~1 KiB)             [P1]
 2    create_token                    —
 3    begin_node_state (transform 1)  ``input_data`` (~1 KiB)                 [P2]
 4    complete_node_state (t1)        ``output_data`` (~1 KiB)                [P3]
 5    begin_node_state (transform 2)  ``input_data`` (~1 KiB)                 [P4]
 6    record_call (on t2's state)     ``request`` (~0.5 KiB) [P5], ``response`` (~1 KiB) [P6]
 7    complete_node_state (t2)        ``output_data`` (~1 KiB)                [P7]
 8    begin_node_state (transform 3)  ``input_data`` (~1 KiB)                 [P8]
 9    complete_node_state (t3)        ``output_data`` (~1 KiB)                [P9]
10    begin_node_state (gate)         ``input_data`` = t3's output (same content as P9)
11    complete_node_state (gate)      ``output_data=None``
12    record_routing_event            ``reason`` — small (~100 B)             [P10]
13    begin_node_state (sink)         ``input_data`` = t3's output (same content as P9)
14    complete_node_state (sink)      ``output_data=None``
15    record_token_outcome            —
====  ==============================  =========================================

plus one ``record_artifact`` (on the sink state of the batch's last row, ``sink_input`` =
the list of row indexes/order ids the sink wrote, ~50 B per row) after every 1,000th row
and after the last row of a partial thousand.

So: **15 events per row** (+1 per 1,000 rows) and **9 payloads per row** in the sense of
SPEC §8 — the nine ~1 KiB payloads P1..P9 (row, 3 transform inputs, 3 transform outputs,
call request, call response), about 8.5 KiB of canonical JSON, all different from each
other and from every other row's. On top of those, each row has one small distinct payload
(the routing reason, P10) and two payload arguments that repeat P9's content (the gate's and
the sink's input: what a gate/sink receives is the last transform's output), which a
content-addressed store deduplicates but still has to serialize and hash. In numbers:
``PAYLOADS_PER_ROW = 9`` bulk, ``DISTINCT_PAYLOADS_PER_ROW = 10``,
``PAYLOAD_ARGS_PER_ROW = 12``.

Transform inputs are deliberately *not* identical to the previous step's output (each step
receives the record plus its own step context), so that no payload of a row deduplicates
against another except the two documented repeats.

Measuring the recorder, not the generator
-----------------------------------------
``prepare(rows, seed)`` (or the lazy ``iter_plans``) builds every payload dict up front;
``drive(run, plans)`` only makes recorder calls. Everything is deterministic from the seed
and every row differs from every other (row index, order id and random text all vary).
Payloads hold only JSON-native values (str, int, float with 2 decimals, bool, None, lists,
dicts with str keys), so both the library's canonical JSON and ``json.dumps`` accept them.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from workload_payloads import (
    ARTIFACT_EVERY,
    TRANSFORM_NAMES,
    Payload,
    make_call_request,
    make_call_response,
    make_routing_reason,
    make_row,
    make_transform_input,
    make_transform_output,
)

__all__ = [
    "ARTIFACT_EVERY",
    "DISTINCT_PAYLOADS_PER_ROW",
    "EDGES",
    "EVENTS_PER_ROW",
    "NAME",
    "NODES",
    "PAYLOADS_PER_ROW",
    "PAYLOAD_ARGS_PER_ROW",
    "SETUP_EVENTS",
    "ArtifactPlan",
    "Ids",
    "Recorder",
    "RowPlan",
    "drive",
    "expected_events",
    "iter_plans",
    "make_call_request",
    "make_call_response",
    "make_routing_reason",
    "make_row",
    "make_transform_input",
    "make_transform_output",
    "prepare",
    "run_config",
    "setup",
]

NAME = "reference"
"""The workload's name in the bench's figures (``workload_small.NAME`` is "small")."""
EVENTS_PER_ROW = 15
"""Recorder calls per row (artifacts not included)."""
PAYLOADS_PER_ROW = 9
"""The ~1 KiB payloads per row of SPEC §8: row, 3 inputs, 3 outputs, request, response."""
DISTINCT_PAYLOADS_PER_ROW = 10
"""The nine above plus the small routing reason."""
PAYLOAD_ARGS_PER_ROW = 12
"""Payload arguments per row, counting the gate's and sink's input (a repeat of t3's output)."""
NODES = 6
EDGES = 5
SETUP_EVENTS = NODES + EDGES
CALL_TRANSFORM = 1
"""Index (0-based) of the transform that makes the external call: the 2nd one."""
GATE_STEP = len(TRANSFORM_NAMES) + 1
SINK_STEP = GATE_STEP + 1


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True, slots=True)
class ArtifactPlan:
    """One ``record_artifact`` call, made after the row that carries it."""

    path_or_uri: str
    content_hash: str
    size_bytes: int
    sink_input: list[Payload]


@dataclass(frozen=True, slots=True)
class RowPlan:
    """Every argument of one row's recorder calls, built before timing starts."""

    row_index: int
    row: Payload
    inputs: tuple[Payload, Payload, Payload]
    outputs: tuple[Payload, Payload, Payload]
    request: Payload
    response: Payload
    reason: Payload
    durations_ms: tuple[float, float, float, float, float]
    """Transform 1..3, gate, sink."""
    latency_ms: float
    artifact: ArtifactPlan | None


def iter_plans(rows: int, seed: int) -> Iterator[RowPlan]:
    """Lazily yield the plans of ``prepare`` (same content), for runs too big to hold."""
    if rows < 0:
        raise ValueError("rows must be >= 0")
    rng = random.Random(seed)
    batch: list[Payload] = []
    batch_bytes = 0
    for i in range(rows):
        row = make_row(i, rng)
        inputs = (
            make_transform_input(i, 1, rng),
            make_transform_input(i, 2, rng),
            make_transform_input(i, 3, rng),
        )
        outputs = (
            make_transform_output(i, 1, rng),
            make_transform_output(i, 2, rng),
            make_transform_output(i, 3, rng),
        )
        request = make_call_request(i, rng)
        response = make_call_response(i, rng)
        reason = make_routing_reason(i, rng)
        durations = (
            round(rng.uniform(0.05, 2.0), 3),
            round(rng.uniform(50.0, 900.0), 3),
            round(rng.uniform(0.05, 2.0), 3),
            round(rng.uniform(0.01, 0.2), 3),
            round(rng.uniform(0.05, 1.0), 3),
        )
        latency = round(durations[CALL_TRANSFORM] * rng.uniform(0.8, 0.98), 3)
        batch.append({"row_index": i, "order_id": row["order_id"]})
        batch_bytes += 120 + rng.randrange(80)
        artifact: ArtifactPlan | None = None
        if (i + 1) % ARTIFACT_EVERY == 0 or i == rows - 1:
            part = i // ARTIFACT_EVERY
            digest = hashlib.sha256(f"{seed}:{part}:{batch_bytes}".encode()).hexdigest()
            artifact = ArtifactPlan(
                path_or_uri=f"out/orders-{seed}-part-{part:05d}.csv",
                content_hash=digest,
                size_bytes=batch_bytes,
                sink_input=batch,
            )
            batch = []
            batch_bytes = 0
        yield RowPlan(
            row_index=i,
            row=row,
            inputs=inputs,
            outputs=outputs,
            request=request,
            response=response,
            reason=reason,
            durations_ms=durations,
            latency_ms=latency,
            artifact=artifact,
        )


def prepare(rows: int, seed: int) -> list[RowPlan]:
    """Build all payloads of a ``rows``-row run up front (deterministic from ``seed``)."""
    return list(iter_plans(rows, seed))


def expected_events(rows: int) -> int:
    """What ``drive`` returns for ``rows`` rows: setup + 15/row + artifacts."""
    artifacts = -(-rows // ARTIFACT_EVERY)
    return SETUP_EVENTS + EVENTS_PER_ROW * rows + artifacts


def run_config(rows: int, seed: int) -> Payload:
    """A plausible resolved settings dict for ``start_run(config=...)``."""
    return {
        "pipeline": "reference-workload",
        "workload": "SPEC §8",
        "rows": rows,
        "seed": seed,
        "source": {"plugin": "csv", "path": "in/orders.csv"},
        "transforms": [{"plugin": name} for name in TRANSFORM_NAMES],
        "gate": {"plugin": "threshold_gate", "threshold": 0.5},
        "sink": {"plugin": "csv", "path": "out/orders.csv"},
    }


# --------------------------------------------------------------------------- driving


class Recorder(Protocol):
    """The SPEC §6 RunRecorder surface that ``drive`` uses (keyword names as in §6)."""

    def register_node(
        self,
        *,
        plugin_name: str,
        node_type: str,
        plugin_version: str,
        config: Payload,
        determinism: str = ...,
        input_schema: Payload | None = ...,
        output_schema: Payload | None = ...,
    ) -> str: ...

    def register_edge(
        self, *, from_node_id: str, to_node_id: str, label: str, mode: str
    ) -> str: ...

    def create_row(self, *, source_node_id: str, row_index: int, data: Payload) -> str: ...

    def create_token(self, *, row_id: str) -> str: ...

    def begin_node_state(
        self, *, token_id: str, node_id: str, step_index: int, input_data: Payload
    ) -> str: ...

    def record_call(
        self,
        *,
        state_id: str,
        call_type: str,
        status: str,
        request: Payload,
        response: Payload,
        latency_ms: float,
    ) -> object: ...

    def complete_node_state(
        self,
        state_id: str,
        /,
        *,
        status: str,
        output_data: Payload | None = ...,
        duration_ms: float | None = ...,
    ) -> object: ...

    def record_routing_event(
        self, *, state_id: str, edge_id: str, mode: str, reason: Payload
    ) -> object: ...

    def record_artifact(
        self,
        *,
        state_id: str,
        sink_node_id: str,
        artifact_type: str,
        path_or_uri: str,
        content_hash: str,
        size_bytes: int,
        sink_input: list[Payload],
    ) -> object: ...

    def record_token_outcome(
        self, *, token_id: str, outcome: str, sink_name: str | None = ...
    ) -> object: ...


@dataclass(frozen=True, slots=True)
class Ids:
    """Node and edge ids returned by ``setup``."""

    source: str
    transforms: tuple[str, str, str]
    gate: str
    sink: str
    edges: tuple[str, str, str, str, str]
    """source→t1, t1→t2, t2→t3, t3→gate, gate→sink."""

    @property
    def gate_edge(self) -> str:
        return self.edges[4]


_ROW_SCHEMA: Payload = {
    "type": "object",
    "properties": {
        "row_index": {"type": "integer"},
        "order_id": {"type": "string"},
        "customer_id": {"type": "string"},
        "email": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "status": {"type": "string"},
        "channel": {"type": "string"},
        "quantity": {"type": "integer"},
        "unit_price": {"type": "number"},
        "amount": {"type": "number"},
        "currency": {"type": "string"},
        "is_priority": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "notes": {"type": "string"},
        "shipping": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "country": {"type": "string"},
                "postcode": {"type": "string"},
                "geo": {
                    "type": "object",
                    "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                },
            },
        },
    },
}
_ANY_OBJECT: Payload = {"type": "object"}


def setup(run: Recorder) -> Ids:
    """Register the 6 nodes and 5 edges of the reference pipeline (11 events)."""
    source = run.register_node(
        plugin_name="csv",
        node_type="source",
        plugin_version="1.0",
        config={"path": "in/orders.csv", "delimiter": ",", "encoding": "utf-8"},
        determinism="deterministic",
        output_schema=_ROW_SCHEMA,
    )
    t1 = run.register_node(
        plugin_name=TRANSFORM_NAMES[0],
        node_type="transform",
        plugin_version="1.2.0",
        config={"currency": "EUR", "trim": True},
        determinism="deterministic",
        input_schema=_ROW_SCHEMA,
        output_schema=_ANY_OBJECT,
    )
    t2 = run.register_node(
        plugin_name=TRANSFORM_NAMES[1],
        node_type="transform",
        plugin_version="0.9.1",
        config={"model": "gpt-4o-mini", "temperature": 0.0, "max_tokens": 256},
        determinism="external_call",
        input_schema=_ANY_OBJECT,
        output_schema=_ANY_OBJECT,
    )
    t3 = run.register_node(
        plugin_name=TRANSFORM_NAMES[2],
        node_type="transform",
        plugin_version="2.0.0",
        config={"weights": {"amount": 0.6, "sentiment": 0.4}},
        determinism="deterministic",
        input_schema=_ANY_OBJECT,
        output_schema=_ANY_OBJECT,
    )
    gate = run.register_node(
        plugin_name="threshold_gate",
        node_type="gate",
        plugin_version="1.0",
        config={"field": "risk_score", "threshold": 0.5},
        determinism="deterministic",
        input_schema=_ANY_OBJECT,
    )
    sink = run.register_node(
        plugin_name="csv",
        node_type="sink",
        plugin_version="1.0",
        config={"path": "out/orders.csv", "mode": "write"},
        determinism="deterministic",
        input_schema=_ANY_OBJECT,
    )
    e1 = run.register_edge(from_node_id=source, to_node_id=t1, label="continue", mode="move")
    e2 = run.register_edge(from_node_id=t1, to_node_id=t2, label="continue", mode="move")
    e3 = run.register_edge(from_node_id=t2, to_node_id=t3, label="continue", mode="move")
    e4 = run.register_edge(from_node_id=t3, to_node_id=gate, label="continue", mode="move")
    e5 = run.register_edge(from_node_id=gate, to_node_id=sink, label="approved", mode="move")
    return Ids(
        source=source,
        transforms=(t1, t2, t3),
        gate=gate,
        sink=sink,
        edges=(e1, e2, e3, e4, e5),
    )


def drive(run: Recorder, plans: Iterable[RowPlan]) -> int:
    """Register the pipeline, then make every row's recorder calls; return events recorded.

    ``run_started``/``run_completed`` are the caller's (``start_run``/``complete``) and are
    not counted. The result equals ``expected_events(len(plans))``.
    """
    ids = setup(run)
    events = SETUP_EVENTS
    source = ids.source
    transforms = ids.transforms
    gate = ids.gate
    sink = ids.sink
    gate_edge = ids.gate_edge
    per_row = EVENTS_PER_ROW
    for plan in plans:
        row_id = run.create_row(source_node_id=source, row_index=plan.row_index, data=plan.row)
        token = run.create_token(row_id=row_id)
        durations = plan.durations_ms
        for k in range(3):
            state = run.begin_node_state(
                token_id=token,
                node_id=transforms[k],
                step_index=k + 1,
                input_data=plan.inputs[k],
            )
            if k == CALL_TRANSFORM:
                run.record_call(
                    state_id=state,
                    call_type="llm",
                    status="success",
                    request=plan.request,
                    response=plan.response,
                    latency_ms=plan.latency_ms,
                )
            run.complete_node_state(
                state, status="completed", output_data=plan.outputs[k], duration_ms=durations[k]
            )
        last_output = plan.outputs[2]
        state = run.begin_node_state(
            token_id=token, node_id=gate, step_index=GATE_STEP, input_data=last_output
        )
        run.complete_node_state(state, status="completed", duration_ms=durations[3])
        run.record_routing_event(state_id=state, edge_id=gate_edge, mode="move", reason=plan.reason)
        state = run.begin_node_state(
            token_id=token, node_id=sink, step_index=SINK_STEP, input_data=last_output
        )
        run.complete_node_state(state, status="completed", duration_ms=durations[4])
        run.record_token_outcome(token_id=token, outcome="completed", sink_name="out")
        events += per_row
        art = plan.artifact
        if art is not None:
            run.record_artifact(
                state_id=state,
                sink_node_id=sink,
                artifact_type="file",
                path_or_uri=art.path_or_uri,
                content_hash=art.content_hash,
                size_bytes=art.size_bytes,
                sink_input=art.sink_input,
            )
            events += 1
    return events
