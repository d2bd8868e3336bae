"""The parts of a row's story that the rest of the Landscape model adds (issue 14).

For :func:`~auditjournal.sql.lineage.explain_row`: the row's validation errors
(recorded with its row id, or matching its source and hash), transform errors,
checkpoints and batch memberships, and each batch it was consumed into with all
of that batch's members and outputs. Every record has the export's shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from .schema import (
    batch_members,
    batch_outputs,
    batches,
    landscape_checkpoints,
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
        story["batches"].append(
            {
                "batch": record("batch", found),
                "members": [record("batch_member", m) for m in all_members],
                "outputs": [record("batch_output", o) for o in outputs],
            }
        )
    return story


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
