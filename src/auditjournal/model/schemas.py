"""JSON Schemas generated from the code (msgspec), committed under ``schemas/``.

``tools/gen_schemas.py`` writes them; ``tests/test_schemas.py`` fails when the
committed files differ from what the code generates, so a change to an event
(or any other published format) cannot slip by without its schema.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from .events import Event

__all__ = ["generate_schemas"]


def _dump(schema: dict[str, Any]) -> bytes:
    return (json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def generate_schemas() -> dict[str, bytes]:
    """File name -> content of every published schema."""
    events = msgspec.json.schema(Event)
    events["title"] = "auditjournal journal event"
    events["description"] = (
        "One line of a run's journal is one of these objects plus a trailing "
        '"chain" member (sha256 hex of the previous chain value and the event bytes).'
    )
    return {"events.schema.json": _dump(events)}
