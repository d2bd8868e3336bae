"""The SQL projector: keeps the audit tables (:mod:`sqlschema`) current from a journal.

Which row each event makes is declared in :mod:`.rowmap`; :mod:`.rowbuild` compiles
that into the tuple builders used here (per dialect), :mod:`.bulkinsert` writes them.

Exactly-once: events are applied in batches (``executemany`` per table), one
transaction per batch, and the run's checkpoint row is moved in the *same*
transaction, first, guarded by the seq it expects (``UPDATE ... WHERE
last_seq = :old``). A crash rolls back the rows and the checkpoint together;
a restart positions the journal cursor at the stored position. Two
projectors racing on one run cannot both apply a batch: the loser's guard
matches no row, it rolls back and re-reads the checkpoint.

A node state is inserted with status ``open`` when it starts (one INSERT if
it also completes within the batch); when the run ends, states still open
get the ``run_completed`` seq, as in the export. The projector holds no state
besides its journal position, so it can stop and resume anywhere.

Thread-safety: a :class:`SqlProjector` is driven by one thread (while a run is recorded,
the projector process's main loop or :class:`~auditjournal.projection.live.LiveSql`'s thread).
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import RunNotFoundError
from ..journal.base import JournalCursor, JournalPosition, RunJournal
from ..journal.filebackend import as_run_journal
from ..model.events import (
    BaseEvent,
    BatchUpdated,
    CsvExported,
    ExportFailed,
    ExportSealed,
    NodeStateCompleted,
    NodeStateStarted,
    OperationCompleted,
    RunCompleted,
    TokenCreated,
)
from . import bulkinsert
from .landscape_tables import batch_updated, close_open, operation_completed
from .rowbuild import RowMakers, row_makers
from .rowmap import COMPLETION_COLUMNS, completion_values, json_text, utc
from .schema import (
    TABLES,
    SqlDatabase,
    checkpoints,
    db_error,
    node_states,
    runs,
    token_parents,
)

__all__ = ["DEFAULT_BATCH", "SqlProjector", "replay_sql", "table_rows"]

DEFAULT_BATCH: Final = 4096
_UTC = _dt.UTC

_row_makers = row_makers  # tests swap in rowbuild.reference_makers to compare

_B_RUN: Final[sa.BindParameter[str]] = sa.bindparam("b_run_id", type_=sa.String())
_COMPLETE_STATE = (
    sa.update(node_states)
    .where(node_states.c.run_id == _B_RUN, node_states.c.state_id == sa.bindparam("b_state_id"))
    .values({c: sa.bindparam(c) for c in COMPLETION_COLUMNS})
)

_CLOSE_OPEN_STATES = (
    sa.update(node_states)
    .where(node_states.c.run_id == _B_RUN, node_states.c.status == "open")
    .values(seq=sa.bindparam("b_seq"))
)
_UPDATE_RUN = sa.update(runs).where(runs.c.run_id == _B_RUN)
_MOVE_CHECKPOINT = (  # built once: building it per step cost ~0.1-0.3 ms of SQLAlchemy
    sa.update(checkpoints)
    .where(checkpoints.c.run_id == _B_RUN, checkpoints.c.last_seq == sa.bindparam("b_applied"))
    .values(
        {c: sa.bindparam(c) for c in ("last_seq", "segment_first_seq", "segment_offset", "chain")}
    )
)


class _Batch:
    """The table rows and updates that one batch of events makes, written in one transaction.

    A node state that starts and completes within the batch becomes one INSERT.
    """

    def __init__(self, run_id: str, rows: RowMakers) -> None:
        self.run_id = run_id
        self.rows = rows
        self.makers = rows.makers
        self.inserts: dict[sa.Table, list[Any]] = {t: [] for t in TABLES}
        """Each table's rows (tuples of ``columns[table]``; see ``started``)"""
        self.columns: dict[sa.Table, tuple[str, ...]] = {}
        self.started: dict[str, int] = {}
        """state_id -> the index in ``inserts[node_states]`` of its ``node_state_started``,
        kept as the event until it completes in this batch or the batch is written"""
        self.completions: list[dict[str, Any]] = []
        self.run_updates: list[tuple[Any, dict[str, Any]]] = []

    def add(self, event: BaseEvent) -> None:
        kind = type(event)
        maker = self.makers.get(kind)
        if maker is not None:
            rows = self.inserts[maker.table]
            if not rows:
                self.columns[maker.table] = maker.columns
            if kind is NodeStateStarted:
                self._state_started(event, rows)  # type: ignore[arg-type]
                return
            if kind is TokenCreated:
                self._parents(event.token_id, event.parent_token_ids)  # type: ignore[attr-defined]
            rows.append(maker.build(event))
        elif kind is NodeStateCompleted:
            self._state_completed(event)  # type: ignore[arg-type]
        else:
            update = _RUN_UPDATES.get(kind)
            if update is not None:
                self.run_updates += update(event)

    def write(self, conn: Connection) -> None:
        if self.started:  # started, not completed: open rows
            rows, build = self.inserts[node_states], self.makers[NodeStateStarted].build
            for index in self.started.values():
                rows[index] = build(rows[index])
            self.started.clear()
        insert = self.rows.insert
        for table, rows in self.inserts.items():
            if rows:
                insert(conn, table, self.columns[table], rows)
        if self.completions:
            conn.execute(_COMPLETE_STATE, self.completions)
        for statement, params in self.run_updates:
            conn.execute(statement, params)

    def _parents(self, token_id: str, parents: tuple[str, ...]) -> None:
        if parents:  # (no bind processor on these columns' types, on any dialect)
            self.columns[token_parents] = _PARENT_COLUMNS
            run_id = self.run_id
            self.inserts[token_parents] += ((run_id, token_id, i, p) for i, p in enumerate(parents))

    def _state_started(self, e: NodeStateStarted, rows: list[Any]) -> None:
        earlier = self.started.get(e.state_id)
        if earlier is not None:  # the same state_id twice: the first stays a row of its own
            rows[earlier] = self.makers[NodeStateStarted].build(rows[earlier])
        self.started[e.state_id] = len(rows)
        rows.append(e)

    def _state_completed(self, e: NodeStateCompleted) -> None:
        index = self.started.pop(e.state_id, None)
        if index is not None:  # started in this batch: still one INSERT
            rows = self.inserts[node_states]
            rows[index] = self.rows.merged(rows[index], e)
        else:
            values = completion_values(e)
            values.update(b_run_id=self.run_id, b_state_id=e.state_id)
            self.completions.append(values)


_PARENT_COLUMNS: Final = ("run_id", "token_id", "ordinal", "parent_token_id")


_Update = tuple[Any, dict[str, Any]]


def _run_completed(e: RunCompleted) -> list[_Update]:
    run = {"b_run_id": e.run_id}
    values = {
        "status": e.status,
        "completed_at": utc(e.ts) if e.occurred_at is None else e.occurred_at,
        "seq": e.seq,
        "error_json": json_text(e.error),
        "reproducibility_grade": e.reproducibility_grade,
        "appended_at": None if e.occurred_at is None else utc(e.ts),
    }
    # states (operations, batches) still open when the run ends keep status "open" (their
    # last status) and get its seq, as in the export
    closing = {**run, "b_seq": e.seq}
    return [
        (_CLOSE_OPEN_STATES, closing),
        *close_open(closing),
        (_UPDATE_RUN.values(values), run),
    ]


def _sealed(e: ExportSealed) -> list[_Update]:
    values = {
        "export_status": "sealed",
        "export_seq": e.seq,
        "manifest_sha256": e.manifest_sha256,
        "export_chunk_count": e.chunk_count,
        "export_record_count": e.record_count,
        "export_path": e.export_path,
        "merkle_root": e.merkle_root,
        "export_error": None,
    }
    return [(_UPDATE_RUN.values(values), {"b_run_id": e.run_id})]


def _export_failed(e: ExportFailed) -> list[_Update]:
    values = {"export_status": "failed", "export_seq": e.seq, "export_error": e.error}
    return [(_UPDATE_RUN.values(values), {"b_run_id": e.run_id})]


def _csv(e: CsvExported) -> list[_Update]:
    values = {"csv_out_dir": e.out_dir, "csv_listing_sha256": e.listing_sha256}
    return [(_UPDATE_RUN.values(values), {"b_run_id": e.run_id})]


_RUN_UPDATES: Final[dict[type[BaseEvent], Callable[[Any], list[_Update]]]] = {
    RunCompleted: _run_completed,
    OperationCompleted: operation_completed,
    BatchUpdated: batch_updated,
    ExportSealed: _sealed,
    ExportFailed: _export_failed,
    CsvExported: _csv,
}


# -- the projector -----------------------------------------------------------------------


class _Conflict(Exception):
    """Another projector moved this run's checkpoint first."""


class SqlProjector:
    """Projects one run's journal into the audit tables, exactly once, restartably."""

    def __init__(
        self,
        *,
        database: SqlDatabase,
        journal_dir: Path | RunJournal,
        run_id: str,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        self.database = database
        self.run_id = run_id
        self.batch_size = batch_size
        self._journal = as_run_journal(journal_dir, run_id)
        self._rows = _row_makers(database.engine.dialect)
        self._move = bulkinsert.driver_update(database.engine.dialect, _MOVE_CHECKPOINT)
        self.applied_seq = 0
        """The last seq the tables hold (as far as this projector knows)."""
        self.run_completed = False
        """True once ``run_completed`` is in the tables."""
        self._reader: JournalCursor | None = self._resync()

    def step(self, limit: int | None = None) -> int:
        """Apply what the journal has now (up to ``limit`` events) in one transaction.

        Returns how far the tables moved (0 when there was nothing new).
        """
        if self._reader is None:
            self._reader = self._resync()
        events = self._reader.poll(limit=limit or self.batch_size)
        if not events:
            return 0
        batch = _Batch(self.run_id, self._rows)
        completed = False
        for event in events:
            batch.add(event)
            completed = completed or type(event) is RunCompleted
        last = events[-1].seq
        before = self.applied_seq
        try:
            with self.database.engine.begin() as conn:
                self._advance_checkpoint(conn, last, self._reader.position)
                batch.write(conn)
        except _Conflict:
            self._reader.close()
            self._reader = self._resync()
            return max(self.applied_seq - before, 0)
        except sa.exc.SQLAlchemyError as exc:
            self._reader.close()
            self._reader = None  # re-read the checkpoint before the next step
            where = f"seqs {events[0].seq}-{last}"
            raise db_error(exc, f"cannot project {where} of run {self.run_id!r}") from None
        self.applied_seq = last
        self.run_completed = self.run_completed or completed
        return len(events)

    def run(
        self,
        *,
        follow: bool = False,
        stop: threading.Event | None = None,
        poll_interval: float = 0.005,
    ) -> int:
        """Project until the journal's end (``follow``: until ``stop`` is set); returns the
        last applied seq."""
        while True:
            if self.step():
                continue
            if not follow or (stop is not None and stop.is_set()):
                return self.applied_seq
            time.sleep(poll_interval)

    def close(self) -> None:
        """Close the journal reader; the tables and their checkpoint stay (resumable)."""
        if self._reader is not None:
            self._reader.close()

    def _advance_checkpoint(self, conn: Connection, last: int, pos: JournalPosition) -> None:
        values = {
            "last_seq": last,
            "segment_first_seq": pos.segment_first_seq,
            "segment_offset": pos.offset,
            "chain": pos.chain.hex(),
        }
        if self.applied_seq == 0:
            try:  # a failed INSERT aborts the whole transaction, which is what we want
                conn.execute(checkpoints.insert(), {"run_id": self.run_id, **values})
            except sa.exc.IntegrityError:
                raise _Conflict from None
            return
        values.update(b_run_id=self.run_id, b_applied=self.applied_seq)
        if self._move is not None:
            moved = self._move(conn, values)
        else:
            moved = conn.execute(_MOVE_CHECKPOINT, values).rowcount
        if moved != 1:
            raise _Conflict

    def _resync(self) -> JournalCursor:
        """A reader positioned after what the tables hold (per the stored checkpoint)."""
        try:
            with self.database.engine.connect() as conn:
                checkpoint = self.database.checkpoint(self.run_id, conn)
                status = conn.execute(
                    sa.select(runs.c.status).where(runs.c.run_id == self.run_id)
                ).scalar()
        except sa.exc.SQLAlchemyError as exc:
            raise db_error(exc, f"cannot read the tables of run {self.run_id!r}") from None
        self.run_completed = status not in (None, "running")
        if checkpoint is None:
            self.applied_seq = 0
            return self._journal.cursor()
        self.applied_seq = checkpoint.last_seq
        return self._journal.cursor(checkpoint.position)


def replay_sql(
    *,
    database: SqlDatabase,
    journal_dir: Path | RunJournal,
    run_id: str,
    batch_size: int = DEFAULT_BATCH,
) -> int:
    """Rebuild one run's tables from its journal (its old rows are deleted first); returns
    the last seq applied. Readers may see the tables half-built while it runs."""
    journal = as_run_journal(journal_dir, run_id)
    if not journal.exists():
        raise RunNotFoundError(f"no journal for run {run_id!r} at {journal.location}")
    database.delete_run(run_id)
    projector = SqlProjector(
        database=database, journal_dir=journal, run_id=run_id, batch_size=batch_size
    )
    try:
        return projector.run()
    finally:
        projector.close()


def table_rows(database: SqlDatabase, run_id: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Every table's rows of one run, in key order (for comparisons and debugging)."""
    with database.engine.connect() as conn:
        for table in (*TABLES, checkpoints):
            query = sa.select(table).where(table.c.run_id == run_id)
            query = query.order_by(*table.primary_key.columns)
            yield table.name, [dict(r._mapping) for r in conn.execute(query)]
