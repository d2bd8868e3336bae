"""The journal event's JSON Schema, generated from the code (msgspec).

All published schemas (events, export records, manifest, bundle) are collected by
:func:`auditjournal.evidence.schemas.generate_schemas`, which ``tools/gen_schemas.py``
writes to ``schemas/``.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from .events import Event

__all__ = ["dump_schema", "event_schema"]


def dump_schema(schema: dict[str, Any]) -> bytes:
    """A schema file's bytes: sorted keys, two-space indent, UTF-8, final newline."""
    return (json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def event_schema() -> dict[str, Any]:
    """The schema of one journal event (without its ``chain`` member)."""
    events = msgspec.json.schema(Event)
    events["title"] = "auditjournal journal event"
    events["description"] = (
        "One line of a run's journal is one of these objects plus a trailing "
        '"chain" member (sha256 hex of the previous chain value and the event bytes).'
    )
    return events
