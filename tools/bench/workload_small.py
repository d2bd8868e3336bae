"""A second bench workload shaped like real pipeline runs (issue 13): many small records.

The reference workload (``workload.py``, SPEC §8) stores nine ~1 KiB payloads per row.
Runs we see in practice look different: rows of about ten short fields, intermediate
node states recorded by hash only (the transforms' nodes have
``payload_policy="hash_only"``: their inputs and outputs are hashed, not stored), a few
external calls, and so many small records. This module drives that shape with the same
``prepare`` / ``drive`` / ``run_config`` / ``expected_events`` surface as ``workload.py``,
so the bench measures both the same way.

Shape of one run
----------------
``setup()``: 5 nodes (source; ``parse``, ``enrich``, ``classify`` transforms, all
``hash_only``; a sink, which keeps its input) and 4 edges: 9 events. Per row:

====  ==============================  ==========================================
 #    call (event)                    payload
====  ==============================  ==========================================
 1    create_row                      the row: 10 short fields, ~200 B, stored
 2    create_token                    --
 3-8  begin/complete_node_state x3    input and output hashed only (hash_only nodes)
 9    begin_node_state (sink)         the classified row, ~200 B, stored
10    complete_node_state (sink)      --
11    record_token_outcome            --
====  ==============================  ==========================================

plus, on every ``CALL_EVERY``-th row (1 in 25), one ``record_call`` on the ``classify``
state (request and response ~150 B each, stored) before it completes. So **11 events and
7 records per row** (row, token, 4 node states, outcome; + 1 call record on 4 % of rows),
**2 stored payloads per row** of ~200 B (4 on call rows), and 6 hashed-only ones.
Everything is deterministic from the seed; every row differs from every other.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

Payload = dict[str, Any]

__all__ = [
    "CALL_EVERY",
    "EVENTS_PER_ROW",
    "NAME",
    "RECORDS_PER_ROW",
    "SETUP_EVENTS",
    "RowPlan",
    "drive",
    "expected_events",
    "iter_plans",
    "prepare",
    "run_config",
]

NAME = "small"
EVENTS_PER_ROW = 11
"""Recorder calls per row without a call (a call row has one more)."""
RECORDS_PER_ROW = 7
"""Export records per row without a call."""
CALL_EVERY = 25
SETUP_EVENTS = 9
_TRANSFORMS = ("parse", "enrich", "classify")
_STATUSES = ("new", "open", "paid", "shipped", "returned")
_COUNTRIES = ("DE", "FR", "NL", "SE", "US", "GB", "PL")


@dataclass(frozen=True, slots=True)
class RowPlan:
    """Every argument of one row's recorder calls, built before timing starts."""

    row_index: int
    row: Payload
    """~200 B: ten short fields."""
    steps: tuple[Payload, Payload, Payload, Payload]
    """What each transform receives/returns in turn: row, parsed, enriched, classified."""
    call: tuple[Payload, Payload] | None
    """(request, response) on call rows."""
    durations_ms: tuple[float, float, float, float]


def _row(i: int, rng: random.Random) -> Payload:
    return {
        "id": i,
        "order": f"O{100000 + i}",
        "customer": f"C{rng.randrange(10**6):06d}",
        "email": f"u{rng.randrange(10**5)}@example.org",
        "status": rng.choice(_STATUSES),
        "country": rng.choice(_COUNTRIES),
        "qty": rng.randrange(1, 20),
        "price": round(rng.uniform(1, 500), 2),
        "priority": rng.random() < 0.1,
        "note": "".join(rng.choice("abcdefghij ") for _ in range(24)),
    }


def iter_plans(rows: int, seed: int) -> Iterator[RowPlan]:
    """Lazily yield the plans of ``prepare`` (same content)."""
    if rows < 0:
        raise ValueError("rows must be >= 0")
    rng = random.Random(seed)
    for i in range(rows):
        row = _row(i, rng)
        parsed = {**row, "price_cents": int(row["price"] * 100)}
        enriched = {**parsed, "segment": rng.choice(("a", "b", "c")), "score": rng.randrange(100)}
        classified = {
            "id": i,
            "order": row["order"],
            "label": rng.choice(("ok", "review", "fraud")),
            "confidence": round(rng.uniform(0.5, 1), 3),
            "country": row["country"],
            "qty": row["qty"],
            "amount": round(row["qty"] * row["price"], 2),
            "segment": enriched["segment"],
            "priority": row["priority"],
            "note": row["note"][:12],
        }
        call = None
        if i % CALL_EVERY == CALL_EVERY - 1:
            call = (
                {"model": "m-small", "prompt": f"classify order {row['order']}", "max_tokens": 8},
                {"label": classified["label"], "confidence": classified["confidence"]},
            )
        yield RowPlan(
            row_index=i,
            row=row,
            steps=(row, parsed, enriched, classified),
            call=call,
            durations_ms=tuple(round(rng.uniform(0.01, 3.0), 3) for _ in range(4)),  # type: ignore[arg-type]
        )


def prepare(rows: int, seed: int) -> list[RowPlan]:
    """Build all payloads of a ``rows``-row run up front (deterministic from ``seed``)."""
    return list(iter_plans(rows, seed))


def expected_events(rows: int) -> int:
    """What ``drive`` returns for ``rows`` rows: setup + 11/row + the calls."""
    return SETUP_EVENTS + EVENTS_PER_ROW * rows + rows // CALL_EVERY


def run_config(rows: int, seed: int) -> Payload:
    """The resolved settings of a run of this workload."""
    return {
        "pipeline": "small-records",
        "workload": "issue 13 item 4",
        "rows": rows,
        "seed": seed,
        "transforms": [{"plugin": name, "payload_policy": "hash_only"} for name in _TRANSFORMS],
    }


def drive(run: Any, plans: Iterable[RowPlan]) -> int:
    """Register the pipeline, then make every row's recorder calls; return events recorded
    (``run_started``/``run_completed`` not counted; equals ``expected_events(rows)``)."""
    source = run.register_node(
        plugin_name="csv", node_type="source", plugin_version="1.0", config={"path": "in.csv"}
    )
    transforms = [
        run.register_node(
            plugin_name=name,
            node_type="transform",
            plugin_version="1.0",
            config={"step": k},
            payload_policy="hash_only",
        )
        for k, name in enumerate(_TRANSFORMS)
    ]
    sink = run.register_node(
        plugin_name="csv", node_type="sink", plugin_version="1.0", config={"path": "out.csv"}
    )
    chain = [source, *transforms, sink]
    for a, b in itertools.pairwise(chain):
        run.register_edge(from_node_id=a, to_node_id=b, label="continue", mode="move")
    events = SETUP_EVENTS
    for plan in plans:
        row_id = run.create_row(source_node_id=source, row_index=plan.row_index, data=plan.row)
        token = run.create_token(row_id=row_id)
        steps = plan.steps
        durations = plan.durations_ms
        for k, node in enumerate(transforms):
            state = run.begin_node_state(
                token_id=token, node_id=node, step_index=k + 1, input_data=steps[k]
            )
            if k == 2 and plan.call is not None:
                run.record_call(
                    state_id=state,
                    call_type="llm",
                    status="success",
                    request=plan.call[0],
                    response=plan.call[1],
                    latency_ms=durations[k],
                )
                events += 1
            run.complete_node_state(
                state, status="completed", output_data=steps[k + 1], duration_ms=durations[k]
            )
        state = run.begin_node_state(
            token_id=token, node_id=sink, step_index=4, input_data=steps[3]
        )
        run.complete_node_state(state, status="completed", duration_ms=durations[3])
        run.record_token_outcome(token_id=token, outcome="completed", sink_name="out")
        events += EVENTS_PER_ROW
    return events
