"""The after-run export of the Landscape-style baseline (``baseline.py``): one ``SELECT``
per table, streamed in insertion order, each referenced payload read back from its file."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO, Protocol

from baseline_schema import (
    artifacts,
    calls,
    edges,
    node_states,
    nodes,
    routing_events,
    rows,
    runs,
    token_outcomes,
    tokens,
)
from sqlalchemy import Table, literal_column, select
from sqlalchemy.engine import Connection


class PayloadLoader(Protocol):
    def load(self, ref: str | None) -> Any: ...


def write(out: BinaryIO, data: bytes) -> int:
    out.write(data)
    return len(data)


def _plain(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        return value.isoformat()
    return value


def _records_of(
    conn: Connection,
    stmt: Any,
    record_type: str,
    run_id: str,
    payload_cols: Mapping[str, str],
    payloads: PayloadLoader,
) -> Iterator[dict[str, Any]]:
    result = conn.execute(stmt)
    for row in result.mappings():
        record: dict[str, Any] = {k: _plain(v) for k, v in row.items()}
        record["record_type"] = record_type
        record["run_id"] = run_id
        for field, ref_col in payload_cols.items():
            record[field] = payloads.load(row[ref_col])
        yield record


def iter_records(
    conn: Connection, payloads: PayloadLoader, run_id: str
) -> Iterator[dict[str, Any]]:
    def rowid(table: Table) -> Any:
        return literal_column(f'"{table.name}".rowid')

    def own(table: Table) -> Any:
        return select(table).where(table.c.run_id == run_id).order_by(rowid(table))

    # (statement, record type, {payload field: ref column})
    plan: list[tuple[Any, str, dict[str, str]]] = [
        (own(runs), "run", {}),
        (own(nodes), "node", {}),
        (own(edges), "edge", {}),
        (own(rows), "row", {"source_data": "source_data_ref"}),
        (
            select(tokens)
            .join(rows, tokens.c.row_id == rows.c.row_id)
            .where(rows.c.run_id == run_id)
            .order_by(rowid(tokens)),
            "token",
            {},
        ),
        (
            own(node_states),
            "node_state",
            {"input_data": "input_data_ref", "output_data": "output_data_ref"},
        ),
        (
            select(routing_events)
            .join(node_states, routing_events.c.state_id == node_states.c.state_id)
            .where(node_states.c.run_id == run_id)
            .order_by(rowid(routing_events)),
            "routing_event",
            {"reason": "reason_ref"},
        ),
        (
            select(calls)
            .join(node_states, calls.c.state_id == node_states.c.state_id)
            .where(node_states.c.run_id == run_id)
            .order_by(rowid(calls)),
            "call",
            {"request": "request_ref", "response": "response_ref"},
        ),
        (own(artifacts), "artifact", {"sink_input": "sink_input_ref"}),
        (own(token_outcomes), "token_outcome", {}),
    ]
    for stmt, record_type, payload_cols in plan:
        yield from _records_of(conn, stmt, record_type, run_id, payload_cols, payloads)
