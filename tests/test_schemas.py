"""The committed JSON Schemas must match what the code generates."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditjournal.model.events import EVENT_TYPES
from auditjournal.model.schemas import generate_schemas

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


@pytest.mark.parametrize("name", sorted(generate_schemas()))
def test_committed_schema_is_current(name: str) -> None:
    committed = SCHEMAS / name
    assert committed.exists(), f"schemas/{name} missing: run python tools/gen_schemas.py"
    assert committed.read_bytes() == generate_schemas()[name], (
        f"schemas/{name} is stale: run python tools/gen_schemas.py and commit the result"
    )


def test_no_stray_schema_files() -> None:
    assert {p.name for p in SCHEMAS.glob("*.json")} == set(generate_schemas())


def test_event_schema_names_every_event_type() -> None:
    text = generate_schemas()["events.schema.json"].decode()
    for tag in EVENT_TYPES:
        assert f'"{tag}"' in text
