"""Imported by the fork server before it forks any projector process
(:data:`~auditjournal.fs.processes.SERVER_PRELOAD`): what every projector process with the
default SQL tables (SQLite) would otherwise build for itself after the fork, while the
recorder's ``start_run`` waits for it -- SQLite's DBAPI module and SQLAlchemy's dialect
for it, and the generated row builders (:func:`.rowbuild.row_makers`), some 20-40 ms per
process. Forked workers inherit them built.

Importing this module has that side effect and no other; nothing else imports it.
"""

from __future__ import annotations

import sqlalchemy as sa

from .rowbuild import row_makers

__all__: list[str] = []


def _preload() -> None:
    """Build them; if that fails (a Python without ``sqlite3``, ...) the fork server goes on
    without them: each projector process then builds its own, or reports why it cannot."""
    try:
        engine = sa.create_engine("sqlite://")  # connects to nothing until used: never here
        try:
            row_makers(engine.dialect)
        finally:
            engine.dispose()
    except Exception:  # never the fork server's end: only a head start was lost
        return


_preload()
