"""The database that holds the audit tables (declared in :mod:`.tables`, re-exported
here).

Tables (every key starts with ``run_id``, because generated ids such as
``row-4`` repeat across runs): ``runs``, ``nodes``, ``edges``, ``rows``,
``tokens``, ``token_parents``, ``token_outcomes``, ``node_states``,
``routing_events``, ``calls``, ``artifacts``; plus ``projection_checkpoints``
(per run: the last applied seq and the journal position after it) and
``schema_version``. Column names are the export record's field names
(:mod:`records`); small JSON values (config, error, ...) are canonical JSON
text in ``*_json`` columns; payloads stay in the payload store and the tables
hold their refs. Indexes serve lineage queries: by run and row, token, state
and node.

No foreign keys: the tables are derived from a journal whose recorder already
rejected unknown ids, and without them a run's rows can be deleted and
rebuilt in any order.

The schema is created on first use; a database holding another schema version
(or tables of the same names without ``schema_version``) is refused with
:class:`SchemaVersionError`. SQLite (the default, ``<root>/landscape.db``) runs
in WAL mode with ``synchronous=NORMAL``.

Thread-safety: a :class:`SqlDatabase` may be shared by threads (SQLAlchemy's
connection pool).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import DatabaseError, SchemaVersionError
from ..journal.base import JournalPosition
from .tables import (
    TABLES,
    artifacts,
    batch_members,
    batch_outputs,
    batches,
    calls,
    checkpoints,
    edges,
    field_resolutions,
    landscape_checkpoints,
    metadata,
    node_states,
    nodes,
    operations,
    preflight_results,
    routing_events,
    rows,
    run_interruptions,
    runs,
    schema_contracts,
    schema_version,
    secret_resolutions,
    token_outcomes,
    token_parents,
    tokens,
    transform_errors,
    validation_errors,
)

__all__ = [
    "SCHEMA_VERSION",
    "TABLES",
    "Checkpoint",
    "SqlDatabase",
    "artifacts",
    "batch_members",
    "batch_outputs",
    "batches",
    "calls",
    "checkpoints",
    "db_error",
    "edges",
    "field_resolutions",
    "landscape_checkpoints",
    "metadata",
    "node_states",
    "nodes",
    "operations",
    "preflight_results",
    "routing_events",
    "rows",
    "run_interruptions",
    "runs",
    "schema_contracts",
    "schema_version",
    "secret_resolutions",
    "token_outcomes",
    "token_parents",
    "tokens",
    "transform_errors",
    "validation_errors",
]

SCHEMA_VERSION: Final = 3
_SCHEMA_NAME: Final = "auditjournal-landscape"

# -- the database ------------------------------------------------------------------------


def db_error(exc: Exception, action: str) -> DatabaseError:
    """One clear line: what we were doing and the driver's first line of complaint."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return DatabaseError(f"{action}: {first}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # the tables are derived data: NORMAL keeps them consistent (the checkpoint
    # rolls back with its rows) and can only lose commits to power loss
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _create_engine(url: str) -> Engine:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:  # its message would repeat the URL, password and all
        raise DatabaseError(
            "cannot parse the database URL (expected dialect+driver://user@host/database)"
        ) from None
    try:
        if parsed.get_backend_name() == "sqlite":
            return sa.create_engine(parsed)
        return sa.create_engine(parsed, pool_pre_ping=True)  # survive database restarts
    except (sa.exc.SQLAlchemyError, ImportError) as exc:
        shown = parsed.render_as_string(hide_password=True)
        raise DatabaseError(f"cannot use database {shown}: {exc}") from None


@dataclass(frozen=True)
class Checkpoint:
    """What a run's tables hold: everything up to ``last_seq``, and where to read on."""

    last_seq: int
    position: JournalPosition


class SqlDatabase:
    """An engine on the audit tables, with the schema created (or checked) on first use."""

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.engine = engine or _create_engine(url)
        self.url = self.engine.url.render_as_string(hide_password=True)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.ensure_schema()

    def ensure_schema(self) -> None:
        """Create the tables if the database has none of them; else check the version."""
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":  # serialize concurrent creators
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(72657301)"))
                    self._create_or_check(conn)
                return
            except SchemaVersionError:
                raise
            except sa.exc.SQLAlchemyError as exc:
                if attempt:  # a concurrent creator may have won the race: check once more
                    raise db_error(exc, f"cannot prepare the audit tables in {self.url}") from None

    def _create_or_check(self, conn: Connection) -> None:
        inspector = sa.inspect(conn)
        if inspector.has_table(schema_version.name):
            found = conn.execute(
                sa.select(schema_version.c.version).where(schema_version.c.name == _SCHEMA_NAME)
            ).scalar()
            if found in (1, 2):  # every change since is additive: upgrade in place
                self._upgrade(conn, inspector)
                return
            if found != SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.url} holds audit tables of schema version {found}; this auditjournal "
                    f"uses version {SCHEMA_VERSION} (use another database, or drop the tables "
                    "and rebuild them with `auditjournal replay --db`)"
                )
            return
        if conn.dialect.name == "sqlite":  # one query, not one per table (a new connection
            present = set(inspector.get_table_names())  # has no temporary tables)
            clashing = sorted(t.name for t in metadata.sorted_tables if t.name in present)
        else:
            clashing = sorted(t.name for t in metadata.sorted_tables if inspector.has_table(t.name))
        if clashing:
            raise SchemaVersionError(
                f"{self.url} has tables {', '.join(clashing)} but no schema_version: "
                "not an auditjournal database"
            )
        # none of them is there (just checked): no second look per table; a concurrent
        # creator makes a CREATE fail, and ensure_schema's second attempt then checks
        metadata.create_all(conn, checkfirst=False)
        conn.execute(schema_version.insert(), {"name": _SCHEMA_NAME, "version": SCHEMA_VERSION})

    def _upgrade(self, conn: Connection, inspector: sa.Inspector) -> None:
        """Version 1 or 2 -> 3: the new tables, and the new (nullable) columns of the old
        ones (2: the rest of the Landscape model; 3: ``run_interruptions`` and
        ``artifacts.idempotency_key``). Rows projected before stay right (their events
        have none of the new values), except that a run interrupted and resumed before
        the upgrade has no ``run_interruptions`` rows until it is replayed
        (``auditjournal replay --db``)."""
        for table in TABLES:
            if not inspector.has_table(table.name):
                continue
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    kind = column.type.compile(dialect=conn.dialect)
                    conn.execute(
                        sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")
                    )
        metadata.create_all(conn, checkfirst=True)
        conn.execute(
            sa.update(schema_version)
            .where(schema_version.c.name == _SCHEMA_NAME)
            .values(version=SCHEMA_VERSION)
        )

    def checkpoint(self, run_id: str, conn: Connection | None = None) -> Checkpoint | None:
        """The run's checkpoint, or None if nothing of it was projected."""
        query = sa.select(checkpoints).where(checkpoints.c.run_id == run_id)
        try:
            if conn is not None:
                row = conn.execute(query).first()
            else:
                with self.engine.connect() as own:
                    row = own.execute(query).first()
        except sa.exc.SQLAlchemyError as exc:
            raise db_error(exc, f"cannot read the checkpoint of run {run_id!r}") from None
        if row is None:
            return None
        position = JournalPosition(
            row.last_seq + 1, row.segment_first_seq, row.segment_offset, bytes.fromhex(row.chain)
        )
        return Checkpoint(row.last_seq, position)

    def delete_run(self, run_id: str) -> None:
        """Remove everything projected of the run (rows and checkpoint, in one transaction)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.delete(checkpoints).where(checkpoints.c.run_id == run_id))
                for table in reversed(TABLES):
                    conn.execute(sa.delete(table).where(table.c.run_id == run_id))
        except sa.exc.SQLAlchemyError as exc:
            raise db_error(exc, f"cannot delete the tables of run {run_id!r}") from None

    @property
    def dialect(self) -> str:
        """The SQLAlchemy dialect name: ``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def close(self) -> None:
        """Close the database's connections (the pool); the tables stay as they are."""
        self.engine.dispose()
