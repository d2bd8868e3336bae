"""The parts of a row's story that the rest of the Landscape model adds (issue 14).

For :func:`~auditjournal.sql.lineage.explain_row`: the row's validation errors
(recorded with its row id, or matching its source and hash), transform errors,
checkpoints and batch memberships, and each batch it was consumed into with all
of that batch's members and outputs, and what the batch produced: each token
(with its node states, calls, routing, artifacts and outcomes; usually of another
row) named by a ``batch_output``, or else found through the tokens -- a child of a
member token (``token_parents``), which is how a pipeline that writes no
``batch_outputs`` (elspeth) links a flush's result. Every record has the export's
shape; each produced token says how it was found.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from .schema import (
    artifacts,
    batch_members,
    batch_outputs,
    batches,
    calls,
    landscape_checkpoints,
    node_states,
    routing_events,
    token_outcomes,
    token_parents,
    tokens,
    transform_errors,
    validation_errors,
)

__all__ = ["OUTCOME_LABELS", "data_text", "landscape_story"]

Recorder = Callable[..., dict[str, Any]]


def landscape_story(
    conn: Connection, run_id: str, row: Row[Any], record: Recorder, get: Any
) -> dict[str, Any]:
    """The row's new-model records, keyed like the other lists of ``explain_row``."""
    row_id = row.row_id

    def of_row(table: sa.Table, kind: str, *extra: sa.ColumnElement[bool]) -> list[dict[str, Any]]:
        query = sa.select(table).where(table.c.run_id == run_id)
        match = table.c.row_id == row_id
        if extra:
            match = sa.or_(match, sa.and_(*extra))
        rows = conn.execute(query.where(match).order_by(table.c.seq))
        return [record(kind, r, get) for r in rows]

    unlinked = (
        validation_errors.c.row_id.is_(None),
        validation_errors.c.node_id == row.source_node_id,
        validation_errors.c.row_hash == row.source_data_hash,
    )
    members = of_row(batch_members, "batch_member")
    batch_ids = sorted({m["batch_id"] for m in members})
    story: dict[str, Any] = {
        "validation_errors": of_row(validation_errors, "validation_error", *unlinked),
        "transform_errors": of_row(transform_errors, "transform_error"),
        "checkpoints": of_row(landscape_checkpoints, "checkpoint"),
        "batch_members": members,
        "batches": [],
    }
    for batch_id in batch_ids:
        key = sa.and_(batches.c.run_id == run_id, batches.c.batch_id == batch_id)
        found = conn.execute(sa.select(batches).where(key)).first()
        if found is None:
            continue
        all_members = conn.execute(
            sa.select(batch_members)
            .where(batch_members.c.run_id == run_id, batch_members.c.batch_id == batch_id)
            .order_by(batch_members.c.ordinal)
        )
        outputs = conn.execute(
            sa.select(batch_outputs)
            .where(batch_outputs.c.run_id == run_id, batch_outputs.c.batch_id == batch_id)
            .order_by(batch_outputs.c.seq)
        )
        member_records = [record("batch_member", m) for m in all_members]
        output_records = [record("batch_output", o) for o in outputs]
        story["batches"].append(
            {
                "batch": record("batch", found),
                "members": member_records,
                "outputs": output_records,
                "produced": _produced(conn, run_id, member_records, output_records, record, get),
            }
        )
    return story


def _produced(
    conn: Connection,
    run_id: str,
    members: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    record: Recorder,
    get: Any,
) -> list[dict[str, Any]]:
    """The tokens a batch produced, each with its own story and how it was found."""
    found: dict[str, str] = {
        o["output_id"]: "batch_output" for o in outputs if o["output_type"] == "token"
    }
    member_ids = [m["token_id"] for m in members]
    children = conn.execute(
        sa.select(token_parents.c.token_id, token_parents.c.parent_token_id)
        .where(token_parents.c.run_id == run_id)
        .where(token_parents.c.parent_token_id.in_(member_ids))
        .order_by(token_parents.c.token_id, token_parents.c.ordinal)
    )
    for child, parent in children:
        if child not in member_ids:
            found.setdefault(child, f"child of member {parent}")
    out = []
    for token_id, how in found.items():
        token = conn.execute(
            sa.select(tokens).where(tokens.c.run_id == run_id, tokens.c.token_id == token_id)
        ).first()
        if token is None:
            continue
        parents = conn.execute(
            sa.select(token_parents.c.parent_token_id)
            .where(token_parents.c.run_id == run_id, token_parents.c.token_id == token_id)
            .order_by(token_parents.c.ordinal)
        )
        states = sa.select(node_states.c.state_id).where(
            node_states.c.run_id == run_id, node_states.c.token_id == token_id
        )

        state_rows = conn.execute(
            sa.select(node_states)
            .where(node_states.c.run_id == run_id, node_states.c.token_id == token_id)
            .order_by(node_states.c.started_seq)
        )
        outcome_rows = conn.execute(
            sa.select(token_outcomes)
            .where(token_outcomes.c.run_id == run_id, token_outcomes.c.token_id == token_id)
            .order_by(token_outcomes.c.seq)
        )
        own: dict[str, list[dict[str, Any]]] = {
            key: [record(kind, r, get) for r in conn.execute(_of_states(table, run_id, states))]
            for key, kind, table in (
                ("calls", "call", calls),
                ("routing_events", "routing_event", routing_events),
                ("artifacts", "artifact", artifacts),
            )
        }
        story: dict[str, Any] = {
            "found": how,
            "token": {**record("token", token), "parent_token_ids": [p[0] for p in parents]},
            "node_states": [record("node_state", r, get) for r in state_rows],
        }
        out.append(
            {**story, **own, "token_outcomes": [record("token_outcome", r) for r in outcome_rows]}
        )
    return out


def _of_states(table: sa.Table, run_id: str, states: sa.Select[Any]) -> sa.Select[Any]:
    """The rows of ``table`` of the run that belong to the node states ``states`` selects."""
    where = (table.c.run_id == run_id, table.c.state_id.in_(states))
    return sa.select(table).where(*where).order_by(table.c.seq)


OUTCOME_LABELS = (
    ("batch_id", "batch"),
    ("fork_group_id", "fork group"),
    ("join_group_id", "join group"),
    ("expand_group_id", "expand group"),
    ("expected_branches", "expected branches"),
    ("error_hash", "error hash"),
)


def compact(value: Any, width: int | None) -> str:
    """A JSON value on one line, cut at ``width``."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if width is not None and len(text) > width:
        return text[: width - 1] + "…"
    return text


def data_text(record: dict[str, Any], field: str, hash_field: str, width: int | None) -> str:
    """A payload, or its hash when the data was not retained."""
    if record.get(field) is None and record.get(hash_field) is not None:
        return f"sha256:{record[hash_field]} (not retained)"
    return compact(record.get(field), width)
