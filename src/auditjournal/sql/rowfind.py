"""Finding rows as people name them, and showing what a step changed.

"What happened to customer C0001?": :func:`find_rows` looks a run's rows up by
``row_index`` (the source's own position) or by a field of the source data
(``customer_id=C0001``), not only by the internal row id. :func:`field_diff`
says, field by field, what a node state's output changed in its input.
"""

from __future__ import annotations

import json
from typing import Any, Final, Protocol

import sqlalchemy as sa

from ..errors import AuditJournalError, RowNotFoundError, RunNotFoundError
from ..payloads.store import PayloadStore
from .schema import SqlDatabase, db_error, rows, runs

__all__ = ["RowSource", "field_diff", "find_rows", "parse_where"]

_MISSING: Final = object()


class RowSource(Protocol):
    """The part of a store :func:`find_rows` uses (:class:`~auditjournal.AuditStore` has it)."""

    payloads: PayloadStore


def parse_where(text: str) -> tuple[str, str]:
    """``field=value`` (a dotted path for nested fields: ``address.city=Paris``)."""
    field, sep, value = text.partition("=")
    if not sep or not field.strip():
        raise AuditJournalError(f"--where {text!r}: expected FIELD=VALUE, e.g. customer_id=C0001")
    return field.strip(), value


def find_rows(
    store: RowSource,
    run_id: str,
    database: SqlDatabase,
    *,
    row_index: int | None = None,
    where: tuple[str, str] | None = None,
) -> list[str]:
    """The ids of the run's rows with this ``row_index`` and/or whose source data has
    ``field`` equal to ``value`` (compared as text: a number 5 matches ``"5"``), in the
    order they were created (rows whose data was not retained match no ``where``).
    :class:`RowNotFoundError` if none matches."""
    query = sa.select(rows.c.row_id, rows.c.source_data_ref).where(rows.c.run_id == run_id)
    if row_index is not None:
        query = query.where(rows.c.row_index == row_index)
    try:
        with database.engine.connect() as conn:
            if (
                conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id == run_id)).first()
                is None
            ):
                raise RunNotFoundError(f"no run {run_id!r} in the audit tables")
            found = list(conn.execute(query.order_by(rows.c.seq)))
    except sa.exc.SQLAlchemyError as exc:
        raise db_error(exc, f"cannot look up rows of run {run_id!r}") from None
    if where is not None:
        path, wanted = where
        found = [  # a row whose data was not retained (hash only) has nothing to match
            r
            for r in found
            if r[1] is not None and _as_text(_field(store.payloads.get_json(r[1]), path)) == wanted
        ]
    if not found:
        asked = " and ".join(
            ([f"row_index {row_index}"] if row_index is not None else [])
            + ([f"{where[0]}={where[1]}"] if where is not None else [])
        )
        raise RowNotFoundError(f"no row with {asked} in run {run_id!r}")
    return [r[0] for r in found]


def _field(value: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _as_text(value: Any) -> str | None:
    if value is _MISSING:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def field_diff(before: Any, after: Any) -> list[tuple[str, str, Any, Any]]:
    """What ``after`` changed in ``before``, field by field (nested objects by dotted
    path): ``(op, path, old, new)`` with op ``+`` (added), ``-`` (removed) or ``~``
    (changed), in field order. Values that are not both objects compare whole (path
    ``""``); equal values give nothing."""
    out: list[tuple[str, str, Any, Any]] = []
    _diff(before, after, "", out)
    return out


def _diff(before: Any, after: Any, path: str, out: list[tuple[str, str, Any, Any]]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in before:
            where = f"{path}.{key}" if path else str(key)
            if key not in after:
                out.append(("-", where, before[key], None))
            else:
                _diff(before[key], after[key], where, out)
        for key in after:
            if key not in before:
                out.append(("+", f"{path}.{key}" if path else str(key), None, after[key]))
    elif before != after or type(before) is not type(after):
        out.append(("~", path, before, after))
