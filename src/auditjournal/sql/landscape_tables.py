"""How the SQL projector applies the updates of the rest of the Landscape model (issue 14).

Operations are inserted ``open`` when they start and updated when they complete;
batches are inserted ``draft`` and updated with each status (a trigger or state
given once is kept); at ``run_completed`` those still open get its seq, as in the
export. The inserts themselves are declared with the others in :mod:`.rowmap`.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Final

import sqlalchemy as sa

from ..model.events import BatchUpdated, OperationCompleted
from .schema import batches, operations

__all__ = ["OPEN_OPERATION", "batch_updated", "close_open", "operation_completed"]

_UTC = _dt.UTC
_B_RUN: Final[sa.BindParameter[str]] = sa.bindparam("b_run_id", type_=sa.String())
_Update = tuple[Any, dict[str, Any]]


def _utc(ts: _dt.datetime) -> _dt.datetime:
    return ts if ts.utcoffset() == _dt.timedelta(0) else ts.astimezone(_UTC)


OPEN_OPERATION: Final = tuple(
    (c, None)
    for c in (
        "output_hash",
        "output_data_ref",
        "error_message",
        "duration_ms",
        "completed_at",
        "seq",
        "appended_at",
    )
)
_COMPLETE_OPERATION = (
    sa.update(operations)
    .where(operations.c.run_id == _B_RUN, operations.c.operation_id == sa.bindparam("b_id"))
    .values({c: sa.bindparam(c) for c, _ in (("status", None), *OPEN_OPERATION)})
)
_CLOSE_OPEN_OPERATIONS = (
    sa.update(operations)
    .where(operations.c.run_id == _B_RUN, operations.c.status == "open")
    .values(seq=sa.bindparam("b_seq"))
)
_UPDATE_BATCH = (
    sa.update(batches)
    .where(batches.c.run_id == _B_RUN, batches.c.batch_id == sa.bindparam("b_id"))
    .values(
        status=sa.bindparam("b_status"),
        trigger_type=sa.func.coalesce(sa.bindparam("b_trigger_type"), batches.c.trigger_type),
        trigger_reason=sa.func.coalesce(
            sa.bindparam("b_trigger_reason", type_=sa.Text()), batches.c.trigger_reason
        ),
        aggregation_state_id=sa.func.coalesce(
            sa.bindparam("b_state", type_=sa.Text()), batches.c.aggregation_state_id
        ),
    )
)
_FINISH_BATCH = (
    sa.update(batches)
    .where(batches.c.run_id == _B_RUN, batches.c.batch_id == sa.bindparam("b_id"))
    .values(
        completed_at=sa.bindparam("b_completed_at"),
        seq=sa.bindparam("b_seq"),
        appended_at=sa.bindparam("b_appended_at"),
    )
)
_CLOSE_OPEN_BATCHES = (
    sa.update(batches)
    .where(batches.c.run_id == _B_RUN, batches.c.seq.is_(None))
    .values(seq=sa.bindparam("b_seq"))
)


def close_open(closing: dict[str, Any]) -> list[_Update]:
    """At run_completed: operations and batches still open get its seq."""
    return [(_CLOSE_OPEN_OPERATIONS, closing), (_CLOSE_OPEN_BATCHES, closing)]


def operation_completed(e: OperationCompleted) -> list[_Update]:
    values = {
        "b_run_id": e.run_id,
        "b_id": e.operation_id,
        "status": e.status,
        "output_hash": e.output_hash,
        "output_data_ref": e.output_data_ref,
        "error_message": e.error_message,
        "duration_ms": e.duration_ms,
        "completed_at": _utc(e.ts) if e.occurred_at is None else e.occurred_at,
        "seq": e.seq,
        "appended_at": None if e.occurred_at is None else _utc(e.ts),
    }
    return [(_COMPLETE_OPERATION, values)]


def batch_updated(e: BatchUpdated) -> list[_Update]:
    key = {"b_run_id": e.run_id, "b_id": e.batch_id}
    out: list[_Update] = [
        (
            _UPDATE_BATCH,
            {
                **key,
                "b_status": e.status,
                "b_trigger_type": e.trigger_type,
                "b_trigger_reason": e.trigger_reason,
                "b_state": e.aggregation_state_id,
            },
        )
    ]
    if e.status in ("completed", "failed"):
        finish = {
            **key,
            "b_completed_at": _utc(e.ts) if e.occurred_at is None else e.occurred_at,
            "b_seq": e.seq,
            "b_appended_at": None if e.occurred_at is None else _utc(e.ts),
        }
        out.append((_FINISH_BATCH, finish))
    return out
