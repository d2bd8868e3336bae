"""Every published format's JSON Schema, generated from its one declaration (msgspec).

``tools/gen_schemas.py`` writes them to ``schemas/``; ``tests/test_schemas.py`` fails
when the committed files differ from what the code generates (so a changed format
cannot slip by without its schema) and validates real outputs against them:

* ``events.schema.json`` -- a journal event (:mod:`auditjournal.model.events`);
* ``record.<record_type>.schema.json`` -- an export record
  (:mod:`auditjournal.model.recordtypes`), one per record type;
* ``manifest.schema.json`` -- a sealed export's manifest (:mod:`auditjournal.export.manifest`);
* ``bundle.schema.json`` -- an ``extract`` bundle (:mod:`auditjournal.evidence.extract`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..export.manifest import MANIFEST_FORMAT, Manifest
from ..model.recordtypes import RECORD_CLASSES
from ..model.schemas import dump_schema, event_schema
from .extract import BUNDLE_FORMAT, Bundle

__all__ = ["generate_schemas", "schema_file_of_record"]


def schema_file_of_record(record_type: str) -> str:
    return f"record.{record_type}.schema.json"


def _titled(schema: dict[str, Any], title: str, description: str) -> dict[str, Any]:
    schema["title"] = title
    schema["description"] = description
    return schema


def generate_schemas() -> dict[str, bytes]:
    """File name -> content of every published schema."""
    out = {"events.schema.json": dump_schema(event_schema())}
    for kind, cls in RECORD_CLASSES.items():
        schema = _titled(
            msgspec.json.schema(cls),
            f"auditjournal export record: {kind}",
            f'One line of an export chunk whose "record_type" is "{kind}" (RFC 8785 '
            "canonical JSON; payload members only in exports with include_payloads).",
        )
        out[schema_file_of_record(kind)] = dump_schema(schema)
    out["manifest.schema.json"] = dump_schema(
        _titled(
            msgspec.json.schema(Manifest),
            "auditjournal export manifest",
            f'The sealed export\'s manifest ("format": "{MANIFEST_FORMAT}"), written last; '
            '"signature" only when the export is signed.',
        )
    )
    out["bundle.schema.json"] = dump_schema(
        _titled(
            msgspec.json.schema(Bundle),
            "auditjournal extract bundle",
            f'Records of one export with RFC 6962 inclusion proofs ("format": "{BUNDLE_FORMAT}").',
        )
    )
    return out
