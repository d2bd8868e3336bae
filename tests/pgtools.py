"""A PostgreSQL database of its own for each test (never a mock).

``AUDITJOURNAL_TEST_DATABASE_URL`` names the server (``.ci/run`` exports it, e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each test gets a fresh
database ``aj_<random>`` on it, dropped afterwards (``WITH (FORCE)``: a killed
writer's connection does not keep it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

PG_ENV = "AUDITJOURNAL_TEST_DATABASE_URL"


def server_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL journal tests need {PG_ENV} (a server to create databases on)")
    return url


def create_database(base: str) -> tuple[str, str]:
    """A fresh database on the server of ``base``: (its URL, its name)."""
    name = f"aj_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(sa.make_url(base), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    url = sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    return url, name


def drop_database(base: str, name: str) -> None:
    admin = sa.create_engine(sa.make_url(base), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a database of this test's own (dropped after it)."""
    base = server_url()
    url, name = create_database(base)
    try:
        yield url
    finally:
        drop_database(base, name)
