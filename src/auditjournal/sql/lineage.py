"""Queries over the SQL audit tables: list runs, show a run, explain one row's lineage.

Each query first brings the run's tables up to date from its journal
(``refresh=True``, the default: a no-op when a live projector keeps them
current), then reads them with indexed lookups by run and row / token /
state. Results are plain JSON-ready dicts; :func:`explain_row` returns the
row's records in exactly the shape the JSON export gives them (same fields,
payloads inlined from the payload store), so the two can be compared.

:mod:`.lineagetext` formats the results for people (the CLI prints them).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from ..errors import (
    AuditJournalError,
    DatabaseError,
    RowNotFoundError,
    RunNotFoundError,
    ValidationErrorNotFoundError,
)
from ..export.manifest import ExportPaths, chunk_name, prefix_name_of
from ..fs.safeio import MAX_MANIFEST_BYTES, read_regular
from ..journal.base import RunJournal
from ..model.records import iso
from ..model.recordtypes import CONDITIONAL_FIELDS, PAYLOAD_FIELDS, json_fields, required_columns
from ..model.settings import ExportSettings
from ..payloads.store import PayloadStore
from .lineage_landscape import landscape_story
from .projector import SqlProjector
from .schema import (
    SqlDatabase,
    artifacts,
    calls,
    checkpoints,
    db_error,
    edges,
    node_states,
    nodes,
    routing_events,
    rows,
    runs,
    token_outcomes,
    token_parents,
    tokens,
    validation_errors,
)

__all__ = [
    "explain_row",
    "explain_validation_error",
    "export_state",
    "list_runs",
    "refresh_tables",
    "show_run",
]

_log = logging.getLogger(__name__)  # under the "auditjournal" logger

_RUN_RECORD_COLUMNS: Final = tuple(
    f"{name}_json" if name in json_fields("run") else name
    for name in required_columns("run")[3:]  # after record_type, run_id, seq
)
"""The runs table's columns the ``run`` record is made of (JSON held as ``*_json`` text)."""


class LineageSource(Protocol):
    """The parts of a store the queries use (:class:`~auditjournal.AuditStore` has them)."""

    payloads: PayloadStore

    def sql_database(self) -> SqlDatabase: ...
    def sql_projector(self, run_id: str, database: SqlDatabase | None = None) -> SqlProjector: ...
    def journal(self, run_id: str) -> RunJournal: ...
    def run_ids(self) -> list[str]: ...
    def export_prefix(self, run_id: str, settings: ExportSettings) -> Path: ...


def refresh_tables(
    store: LineageSource,
    run_ids: Iterable[str],
    database: SqlDatabase | None = None,
    *,
    problems: dict[str, str] | None = None,
) -> None:
    """Project what the runs' journals hold and the tables do not yet.

    With ``problems``, a run that cannot be projected (a damaged journal, a
    file that cannot be read) is logged and noted there (run id -> reason)
    instead of stopping the others.
    """
    database = database or store.sql_database()
    for run_id in run_ids:
        if not store.journal(run_id).exists():
            continue  # known to the database only (a shared database): nothing to add
        try:
            projector = store.sql_projector(run_id, database)
            try:
                projector.run()
            finally:
                projector.close()
        except (AuditJournalError, OSError) as exc:
            if problems is None or isinstance(exc, DatabaseError):
                raise  # the database itself is everyone's problem
            problems[run_id] = str(exc) or type(exc).__name__
            _log.warning("run %s cannot be read (listing the others): %s", run_id, exc)


# -- runs --------------------------------------------------------------------------------


def list_runs(
    store: LineageSource, *, database: SqlDatabase | None = None, refresh: bool = True
) -> list[dict[str, Any]]:
    """Every run in the store: status, start, duration, rows, events, export state.

    A run that cannot be read is still listed, with what went wrong in its
    ``problem`` (None for a healthy run); the others are listed as usual.
    """
    database = database or store.sql_database()
    run_ids = store.run_ids()
    problems: dict[str, str] = {}
    if refresh:
        refresh_tables(store, run_ids, database, problems=problems)
    with _reading(database, "list runs") as conn:
        found = {r.run_id: r for r in conn.execute(sa.select(runs).where(_in(runs, run_ids)))}
        row_counts = _count_by_run(conn, rows, run_ids)
        query = sa.select(checkpoints.c.run_id, checkpoints.c.last_seq)
        events = {r[0]: r[1] for r in conn.execute(query.where(_in(checkpoints, run_ids)))}
    out = []
    for run_id in run_ids:
        run = found.get(run_id)
        out.append(
            {
                "run_id": run_id,
                "status": _status(run, run_id in problems),
                "started_at": None if run is None else _iso(run.started_at),
                "completed_at": None if run is None else _iso(run.completed_at),
                "duration_s": None if run is None else _duration(run),
                "rows": row_counts.get(run_id, 0),
                "events": events.get(run_id, 0),
                "export": _export_state_or_problem(store, run_id, run, problems),
                "problem": None,
            }
        )
        out[-1]["problem"] = problems.get(run_id)
    return out


def _status(run: Row[Any] | None, broken: bool) -> str:
    if run is not None:
        return str(run.status)
    return "unreadable" if broken else "not projected"


def _export_state_or_problem(
    store: LineageSource, run_id: str, run: Row[Any] | None, problems: dict[str, str]
) -> dict[str, Any]:
    try:
        return export_state(store, run_id, run)
    except OSError as exc:  # e.g. a manifest that cannot be read: this run's problem only
        problems.setdefault(run_id, f"cannot read its export: {exc}")
        return {"state": "unreadable", "manifest": None}


def show_run(
    store: LineageSource,
    run_id: str,
    *,
    database: SqlDatabase | None = None,
    refresh: bool = True,
) -> dict[str, Any]:
    """One run: its record, nodes, edges, counts by outcome / state / call, export state."""
    database = database or store.sql_database()
    if refresh:
        refresh_tables(store, [run_id], database)
    with _reading(database, f"show run {run_id!r}") as conn:
        run = _one_run(conn, run_id)
        result: dict[str, Any] = {
            "run": {**_run_record(run), "duration_s": _duration(run)},
            "events": conn.execute(
                sa.select(checkpoints.c.last_seq).where(checkpoints.c.run_id == run_id)
            ).scalar(),
            "nodes": [_record("node", r) for r in _select(conn, nodes, run_id)],
            "edges": [_record("edge", r) for r in _select(conn, edges, run_id)],
            "counts": {
                "rows": _count(conn, rows, run_id),
                "tokens": _count(conn, tokens, run_id),
                "node_states": _count(conn, node_states, run_id, node_states.c.status),
                "token_outcomes": _count(conn, token_outcomes, run_id, token_outcomes.c.outcome),
                "calls": _count(conn, calls, run_id, calls.c.call_type, calls.c.status),
                "routing_events": _count(conn, routing_events, run_id, routing_events.c.edge_id),
                "artifacts": _count(conn, artifacts, run_id),
            },
        }
    result["export"] = export_state(store, run_id, run)
    return result


def export_state(store: LineageSource, run_id: str, run: Row[Any] | None) -> dict[str, Any]:
    """The export as the journal recorded it (``export_sealed``) and as the files are."""
    default = ExportPaths(store.export_prefix(run_id, ExportSettings())).manifest
    recorded_path = None if run is None else run.export_path
    # the root we were given first: a copied or moved root reports on its own files, not
    # the original's; the recorded path only for an export written outside the root
    # (ExportSettings.path_prefix), where it may be relative to where the recorder ran
    candidates = [default, *([Path(recorded_path)] if recorded_path else [])]
    outside = [c for c in candidates[1:] if not _under_a_run_export(c, run_id)]
    manifest = next((c for c in [default, *outside] if c.is_file()), default)
    status = None if run is None else run.export_status
    present = manifest.is_file()
    state: dict[str, Any] = {"state": "none", "manifest": str(manifest) if present else None}
    if status == "sealed":
        state["state"] = "sealed" if present else "sealed, manifest missing"
        state["manifest_sha256"] = run.manifest_sha256  # type: ignore[union-attr]
        if present:
            try:
                data = read_regular(manifest, "manifest", MAX_MANIFEST_BYTES)
            except (OSError, AuditJournalError) as exc:
                state["state"] = f"sealed, manifest unreadable: {exc}"
                return state
            actual = hashlib.sha256(data).hexdigest()
            matches = actual == run.manifest_sha256  # type: ignore[union-attr]
            state["manifest_matches_journal"] = matches
            if not matches:
                state["state"] = "sealed, manifest differs from the journal"
    elif status == "failed":
        state["state"] = "failed"
        state["error"] = run.export_error  # type: ignore[union-attr]
    elif present:
        state["state"] = "sealed, not yet in the journal"
    elif _has_chunks(manifest):
        state["state"] = "live (unsealed)"
    return state


def _under_a_run_export(manifest: Path, run_id: str) -> bool:
    """Whether ``manifest`` is where a store keeps the run's export (``runs/<run_id>/export``
    of some root): in the given root, that is the default path."""
    parts = manifest.parent.parts
    return parts[-3:] == ("runs", run_id, "export")


def _has_chunks(manifest: Path) -> bool:
    prefix = prefix_name_of(manifest)
    first = (chunk_name(prefix, 0, False), chunk_name(prefix, 0, True))
    return any((manifest.parent / name).exists() for name in first)


# -- one row ---------------------------------------------------------------------------


def explain_row(
    store: LineageSource,
    run_id: str,
    row_id: str,
    *,
    database: SqlDatabase | None = None,
    refresh: bool = True,
) -> dict[str, Any]:
    """The full lineage of one row, as export records with payloads inlined: the row and
    its source data, its tokens, every node state (input/output), routing decisions
    (reasons), calls (request/response), artifacts written from its states, outcomes."""
    database = database or store.sql_database()
    if refresh:
        refresh_tables(store, [run_id], database)
    get = store.payloads.get_json
    with _reading(database, f"explain row {row_id!r} of run {run_id!r}") as conn:
        _one_run(conn, run_id)
        row = conn.execute(sa.select(rows).where(_key(rows, run_id, row_id))).first()
        if row is None:
            raise RowNotFoundError(f"no row {row_id!r} in run {run_id!r}")
        parents: dict[str, list[str]] = {}
        for p in conn.execute(
            sa.select(token_parents)
            .where(token_parents.c.run_id == run_id)
            .where(token_parents.c.token_id.in_(_of_row(tokens.c.token_id, tokens, run_id, row_id)))
            .order_by(token_parents.c.token_id, token_parents.c.ordinal)
        ):
            parents.setdefault(p.token_id, []).append(p.parent_token_id)
        token_records = []
        for r in _by_row(conn, tokens, run_id, row_id):
            token_records.append(
                {**_record("token", r), "parent_token_ids": parents.get(r.token_id, [])}
            )
        states_of_row = _of_row(node_states.c.state_id, node_states, run_id, row_id)
        artifact_rows = conn.execute(
            sa.select(artifacts)
            .where(artifacts.c.run_id == run_id)
            .where(artifacts.c.state_id.in_(states_of_row))
            .order_by(artifacts.c.seq)
        )
        names = sa.select(nodes.c.node_id, nodes.c.plugin_name).where(nodes.c.run_id == run_id)
        node_names = {r[0]: r[1] for r in conn.execute(names)}
        routed = sa.select(routing_events.c.edge_id).where(_key(routing_events, run_id, row_id))
        edge_rows = conn.execute(
            sa.select(edges).where(edges.c.run_id == run_id).where(edges.c.edge_id.in_(routed))
        )
        routes = {
            e.edge_id: {"label": e.label, "to_node_id": e.to_node_id, "mode": e.mode}
            for e in edge_rows
        }
        result: dict[str, Any] = {
            "run_id": run_id,
            "row_id": row_id,
            "node_names": node_names,
            "edges": routes,
            "row": _record("row", row, get),
            "tokens": sorted(token_records, key=lambda r: r["seq"]),
            "node_states": [
                _record("node_state", r, get)
                for r in _by_row(conn, node_states, run_id, row_id, node_states.c.started_seq)
            ],
            "routing_events": [
                _record("routing_event", r, get)
                for r in _by_row(conn, routing_events, run_id, row_id)
            ],
            "calls": [_record("call", r, get) for r in _by_row(conn, calls, run_id, row_id)],
            "artifacts": [_record("artifact", r, get) for r in artifact_rows],
            "token_outcomes": [
                _record("token_outcome", r) for r in _by_row(conn, token_outcomes, run_id, row_id)
            ],
        }
        result.update(landscape_story(conn, run_id, row, _record, get))
    terminal = [o["outcome"] for o in result["token_outcomes"] if o["outcome"] != "buffered"]
    result["outcome"] = ", ".join(dict.fromkeys(terminal)) or None
    return result


def explain_validation_error(
    store: LineageSource,
    run_id: str,
    validation_error_id: str,
    *,
    database: SqlDatabase | None = None,
    refresh: bool = True,
) -> dict[str, Any]:
    """A row rejected at source validation: when the rejection made a row (a quarantine
    path: recorded with its ``row_id``, or the one row of that source with its hash), that
    row's whole story (:func:`explain_row`); otherwise the error alone (its data, schema
    mode, error and destination) with ``row`` None. Either way ``validation_error``
    holds the error's record."""
    database = database or store.sql_database()
    if refresh:
        refresh_tables(store, [run_id], database)
    with _reading(database, f"explain validation error {validation_error_id!r}") as conn:
        _one_run(conn, run_id)
        key = validation_errors.c.validation_error_id == validation_error_id
        error = conn.execute(
            sa.select(validation_errors).where(validation_errors.c.run_id == run_id, key)
        ).first()
        if error is None:
            raise ValidationErrorNotFoundError(
                f"no validation error {validation_error_id!r} in run {run_id!r}"
            )
        row_id = error.row_id
        if row_id is None and error.node_id is not None:
            same = conn.execute(
                sa.select(rows.c.row_id).where(
                    rows.c.run_id == run_id,
                    rows.c.source_node_id == error.node_id,
                    rows.c.source_data_hash == error.row_hash,
                )
            ).all()
            row_id = same[0][0] if len(same) == 1 else None
        record = _record("validation_error", error, store.payloads.get_json)
        names = sa.select(nodes.c.node_id, nodes.c.plugin_name).where(nodes.c.run_id == run_id)
        node_names = {r[0]: r[1] for r in conn.execute(names)}
    if row_id is None:
        return {
            "run_id": run_id,
            "validation_error": record,
            "row": None,
            "node_names": node_names,
            "outcome": None,
        }
    story = explain_row(store, run_id, row_id, database=database, refresh=False)
    return {**story, "validation_error": record}


# -- SQL helpers -------------------------------------------------------------------------


@contextlib.contextmanager
def _reading(database: SqlDatabase, action: str) -> Iterator[Connection]:
    """A read connection whose SQL errors become one clear :class:`DatabaseError`."""
    try:
        with database.engine.connect() as conn:
            yield conn
    except sa.exc.SQLAlchemyError as exc:
        raise db_error(exc, f"cannot {action}") from None


def _in(table: sa.Table, run_ids: Sequence[str]) -> sa.ColumnElement[bool]:
    return table.c.run_id.in_(run_ids)


def _key(table: sa.Table, run_id: str, row_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.run_id == run_id, table.c.row_id == row_id)


def _of_row(column: sa.Column[Any], table: sa.Table, run_id: str, row_id: str) -> sa.Select[Any]:
    return sa.select(column).where(_key(table, run_id, row_id))


def _by_row(
    conn: Connection, table: sa.Table, run_id: str, row_id: str, *then: sa.Column[Any]
) -> list[Row[Any]]:
    query = sa.select(table).where(_key(table, run_id, row_id)).order_by(table.c.seq, *then)
    return list(conn.execute(query))


def _select(conn: Connection, table: sa.Table, run_id: str) -> list[Row[Any]]:
    return list(
        conn.execute(sa.select(table).where(table.c.run_id == run_id).order_by(table.c.seq))
    )


def _one_run(conn: Connection, run_id: str) -> Row[Any]:
    run = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
    if run is None:
        raise RunNotFoundError(f"no run {run_id!r} in the audit tables")
    return run


def _count(conn: Connection, table: sa.Table, run_id: str, *by: sa.Column[Any]) -> Any:
    """A count, or counts keyed by ``by`` (several columns joined with ``/``)."""
    query = sa.select(*by, sa.func.count()).where(table.c.run_id == run_id)
    if not by:
        return conn.execute(query).scalar() or 0
    result = conn.execute(query.group_by(*by).order_by(*by))
    return {"/".join(str(v) for v in r[:-1]): r[-1] for r in result}


def _count_by_run(conn: Connection, table: sa.Table, run_ids: Sequence[str]) -> dict[str, int]:
    query = sa.select(table.c.run_id, sa.func.count()).where(_in(table, run_ids))
    return {r[0]: r[1] for r in conn.execute(query.group_by(table.c.run_id))}


# -- records -----------------------------------------------------------------------------


def _iso(ts: _dt.datetime | None) -> str | None:
    """As the export writes timestamps (SQLite hands back naive UTC datetimes)."""
    return None if ts is None else iso(ts)


def _record(kind: str, row: Row[Any], get: Any = None) -> dict[str, Any]:
    """A table row as the export's record of that entity (payloads inlined with ``get``)."""
    record: dict[str, Any] = {"record_type": kind}
    for name, value in row._mapping.items():
        if name.endswith("_json"):
            record[name[:-5]] = None if value is None else msgspec.json.decode(value)
        elif isinstance(value, _dt.datetime):
            record[name] = iso(value)
        else:
            record[name] = value
    for name in CONDITIONAL_FIELDS.get(kind, ("appended_at",)):
        if record.get(name, 0) is None:  # absent from the export record too
            del record[name]
    if get is not None:
        for field, ref_column in PAYLOAD_FIELDS.get(kind, ()):
            ref = record[ref_column]
            record[field] = None if ref is None else get(ref)
    return record


def _run_record(run: Row[Any]) -> dict[str, Any]:
    """The run as the export's ``run`` record (status ``running`` until it completes)."""
    values = {name: getattr(run, name) for name in _RUN_RECORD_COLUMNS}
    record = {"record_type": "run", "run_id": run.run_id, "seq": run.seq}
    for name, value in values.items():
        if name.endswith("_json"):
            record[name[:-5]] = None if value is None else msgspec.json.decode(value)
        else:
            record[name] = _iso(value) if isinstance(value, _dt.datetime) else value
    return record


def _duration(run: Row[Any]) -> float | None:
    if run.started_at is None or run.completed_at is None:
        return None
    seconds: float = (run.completed_at - run.started_at).total_seconds()
    return round(seconds, 6)
