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

import contextlib
import datetime as _dt
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
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
    Event,
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
# rows per slice of a write that the projector process interleaves with live export
# steps (write_some): ~1-2 ms on SQLite, where a whole batch held the export ~10 ms
WRITE_SLICE_ROWS: Final = 256
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
        self.events = 0  # how many events made it (set by SqlProjector._take)
        self.last = 0  # the seq of the last
        self.completed = False  # run_completed is among them

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
        for _ in self.write_slices(conn, None):
            pass

    def write_slices(self, conn: Connection, size: int | None) -> Generator[None, None, None]:
        """Write the batch, pausing (a ``yield``) after each ``size`` rows inserted (None:
        all at once); the caller resumes it until it ends, then commits."""
        if self.started:  # started, not completed: open rows
            rows, build = self.inserts[node_states], self.makers[NodeStateStarted].build
            for index in self.started.values():
                rows[index] = build(rows[index])
            self.started.clear()
        insert = self.rows.insert
        budget = size
        for table, rows in self.inserts.items():
            start, count = 0, len(rows)
            while start < count:
                end = count if budget is None else min(count, start + budget)
                insert(
                    conn,
                    table,
                    self.columns[table],
                    rows[start:end] if start or end < count else rows,
                )
                if budget is not None:
                    budget -= end - start
                    if budget <= 0:
                        yield
                        budget = size
                start = end
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


@dataclass(slots=True)
class _Write:
    """A batch being written: its transaction stays open across :meth:`SqlProjector.write_some`."""

    batch: _Batch
    before: int  # applied_seq when it began
    conn: Connection | None = None
    transaction: sa.engine.RootTransaction | None = None
    slices: Generator[None, None, None] | None = None


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
        self._pending: _Batch | None = None  # rows gathered for the next step's transaction
        self._write: _Write | None = None  # begun, not committed (begin_write)

    @property
    def gathered(self) -> int:
        """Events read and made into rows that the next :meth:`step` writes."""
        return 0 if self._pending is None else self._pending.events

    def gather(self, limit: int) -> int:
        """Read what the journal has now (up to ``limit`` events, and no more than a
        step's batch in all) and make its rows, without writing them: the next
        :meth:`step` writes them with what it reads itself, in its one transaction.

        Beside a live export (the projector process) the tables take in 2,048 events
        a transaction; making their rows all at once held the export back ~10 ms
        (docs/decisions.md, issue 13). Returns the events gathered.
        """
        return self._take(min(limit, self.batch_size - self.gathered))

    def _take(self, room: int) -> int:
        """Read up to ``room`` events and add them to the pending batch; how many."""
        if room <= 0:
            return 0
        if self._reader is None:
            self._reader = self._resync()
        events: list[Event] = self._reader.poll(limit=room)
        if not events:
            return 0
        batch = self._pending
        if batch is None:
            batch = self._pending = _Batch(self.run_id, self._rows)
        add = batch.add
        for event in events:
            add(event)
        batch.events += len(events)
        batch.last = events[-1].seq
        batch.completed = batch.completed or RunCompleted in map(type, events)
        return len(events)

    @property
    def writing(self) -> bool:
        """A write begun by :meth:`begin_write` is not yet committed."""
        return self._write is not None

    def begin_write(self, limit: int | None = None) -> int:
        """Read what the journal has now (with the events gathered, up to ``limit`` in
        all), open the transaction that writes them and move the checkpoint in it; the
        rows go in by :meth:`write_some`. Returns the events it holds (0: nothing new)."""
        if self._write is not None:
            raise RuntimeError("a write is under way")
        self._take((limit or self.batch_size) - self.gathered)
        batch, self._pending = self._pending, None  # (read again after a failed write)
        if batch is None:
            return 0
        assert self._reader is not None
        write = self._write = _Write(batch, self.applied_seq)
        try:
            write.conn = self.database.engine.connect()
            write.transaction = write.conn.begin()
            self._advance_checkpoint(write.conn, batch.last, self._reader.position)
        except BaseException as exc:
            self._abort(exc)  # raises, or (a conflict) re-reads the checkpoint
            return 0
        return batch.events

    def write_some(self, *, whole: bool = False) -> int | None:
        """Insert the next slice of the write under way (``whole``: all of it); None while
        rows remain, else (committed) how far the tables moved (0 after a conflict with
        another projector: the checkpoint is read again)."""
        write = self._write
        if write is None or write.conn is None or write.transaction is None:
            raise RuntimeError("no write under way")
        if write.slices is None:  # (all at once: one executemany per table)
            write.slices = write.batch.write_slices(write.conn, None if whole else WRITE_SLICE_ROWS)
        try:
            for _ in write.slices:
                if not whole:
                    return None
            write.transaction.commit()
        except BaseException as exc:
            return self._abort(exc)
        self._write = None
        self._close_connection(write)
        self.applied_seq = write.batch.last
        self.run_completed = self.run_completed or write.batch.completed
        return write.batch.events

    def step(self, limit: int | None = None) -> int:
        """Apply what the journal has now (up to ``limit`` events) in one transaction
        (or finish the write under way). Returns how far the tables moved (0 when there
        was nothing new)."""
        if self._write is None:
            before = self.applied_seq
            if not self.begin_write(limit):
                return max(self.applied_seq - before, 0)  # (moved by another projector)
        moved = self.write_some(whole=True)
        assert moved is not None
        return moved

    def _abort(self, exc: BaseException) -> int:
        """The write under way failed (``exc``): roll it back and re-read the checkpoint
        (now after a conflict; before the next step after an error, then raised)."""
        write, self._write = self._write, None
        assert write is not None and self._reader is not None
        self._close_connection(write)  # closing rolls back what is not committed
        self._pending = None  # gathered after the batch: read again from the checkpoint
        self._reader.close()
        if isinstance(exc, _Conflict):
            self._reader = self._resync()
            return max(self.applied_seq - write.before, 0)
        self._reader = None  # re-read the checkpoint before the next step
        if isinstance(exc, sa.exc.SQLAlchemyError):
            last = write.batch.last
            where = f"seqs {last - write.batch.events + 1}-{last}"
            raise db_error(exc, f"cannot project {where} of run {self.run_id!r}") from None
        raise exc

    @staticmethod
    def _close_connection(write: _Write) -> None:
        if write.slices is not None:
            write.slices.close()
        if write.conn is not None:
            with contextlib.suppress(Exception):  # (it may be the failure being reported)
                write.conn.close()

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
        """Close the journal reader; the tables and their checkpoint stay (resumable; rows
        gathered and not yet written are read again from the checkpoint)."""
        self._pending = None
        if self._write is not None:  # rolled back: the checkpoint did not move
            write, self._write = self._write, None
            self._close_connection(write)
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
