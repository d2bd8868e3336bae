"""Reading a Landscape database, read-only: its tables, and one run's rows per table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..errors import NotALandscapeDatabaseError
from .schema import TABLES, THROUGH

__all__ = ["Reader", "database_url"]


def database_url(db: str) -> str:
    if "://" in db:
        return db
    path = Path(db)
    if not path.is_file():
        raise NotALandscapeDatabaseError(f"no such database file: {db}")
    return f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"


class Reader:
    """The database, read-only: which tables and columns it has, a run's rows per table."""

    def __init__(self, db: str) -> None:
        try:
            self.engine = sa.create_engine(database_url(db))
            with self.engine.connect() as conn:
                inspector = sa.inspect(conn)
                missing = [t for t in TABLES if not inspector.has_table(t)]
                if missing:
                    raise NotALandscapeDatabaseError(
                        f"{db} is not a Landscape database (no {', '.join(missing)} tables)"
                    )
                self.tables = {t: sa.Table(t, sa.MetaData(), autoload_with=conn) for t in TABLES}
        except sa.exc.SQLAlchemyError as exc:
            first = (str(getattr(exc, "orig", exc)).splitlines() or ["?"])[0]
            raise NotALandscapeDatabaseError(f"cannot read {db}: {first}") from None
        self.sqlite = self.engine.dialect.name == "sqlite"

    def run_ids(self) -> list[str]:
        runs = self.tables["runs"]
        with self.engine.connect() as conn:
            return [
                r[0] for r in conn.execute(sa.select(runs.c.run_id).order_by(runs.c.started_at))
            ]

    def rows(self, run_id: str) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for name in TABLES:
                table = self.tables[name]
                order = sa.literal_column("rowid") if self.sqlite else next(iter(table.primary_key))
                if name == "calls":  # through states and operations: read below
                    continue
                if name in THROUGH:
                    parent, column, key = THROUGH[name]
                    ids = {r[key] for r in out[parent]}
                    query = sa.select(table).where(table.c[column].in_(sorted(ids)))
                else:
                    query = sa.select(table).where(table.c.run_id == run_id)
                out[name] = [dict(r._mapping) for r in conn.execute(query.order_by(order))]
            calls = self.tables["calls"]
            states = {r["state_id"] for r in out["node_states"]}
            operations = {r["operation_id"] for r in out["operations"]}
            query = sa.select(calls).where(
                sa.or_(
                    calls.c.state_id.in_(sorted(states)),
                    calls.c.operation_id.in_(sorted(operations)),
                )
            )
            out["calls"] = [
                dict(r._mapping) for r in conn.execute(query.order_by(calls.c.created_at))
            ]
        return out

    def close(self) -> None:
        self.engine.dispose()
