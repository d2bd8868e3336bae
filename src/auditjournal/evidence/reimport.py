"""Typed reimport: an export's payloads decoded back into the types their nodes registered.

``load_rows(export, node_id)`` finds the node's registered ``output_schema``
(and ``input_schema``) in a sealed export and decodes that node's payloads
with the msgspec types :func:`auditjournal.model.typed.schema_types` builds, so
Decimal, datetime and bytes come back as such.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec

from ..errors import MalformedEvidenceError, ReconstructionError, UnknownIdError
from ..export.chunks import iter_chunk_records
from ..export.manifest import read_manifest
from ..fs.safeio import decode_strict, plain_name
from ..model.typed import camel_name, decode_typed, schema_types
from .verify import find_manifest

__all__ = ["TypedRow", "load_rows"]


@dataclass(frozen=True)
class TypedRow:
    """One payload of a node, as the type of the schema the node registered.

    ``record_type`` is ``row`` (a source's rows: ``state_id`` and ``status`` are None) or
    ``node_state``. ``output`` is ``source_data``/``output_data`` typed (None when the state
    has no output); ``input`` is ``input_data`` typed when the node registered an
    ``input_schema``, else None.
    """

    record_type: str
    seq: int
    row_id: str
    state_id: str | None
    status: str | None
    output: Any
    input: Any = None


class _Head(msgspec.Struct):
    record_type: str
    node_id: str | None = None
    source_node_id: str | None = None


_HEAD: Final = msgspec.json.Decoder(_Head)


class _Ids(msgspec.Struct):
    """What a typed row takes from its record besides the payloads."""

    seq: int
    row_id: str
    state_id: str | None = None
    status: str | None = None


def load_rows(export: Path | str, node_id: str) -> Iterator[TypedRow]:
    """The typed payloads of ``node_id`` in a sealed export (its directory or manifest).

    In export order. Schema problems (and a missing node or schema) are raised by this
    call; a payload that does not fit raises :class:`ReconstructionError` naming its record
    while iterating. It reads the export as it is: ``verify`` it to know it is intact.
    """
    manifest_path = find_manifest(Path(export))
    try:
        _raw, manifest = read_manifest(manifest_path)
    except FileNotFoundError:
        raise ReconstructionError(f"{manifest_path} is missing") from None
    except MalformedEvidenceError as exc:
        raise ReconstructionError(f"{manifest_path} is not an export manifest: {exc}") from None
    if not manifest.include_payloads:
        raise ReconstructionError(
            f"{manifest_path}: the export has no payloads (include_payloads=False); "
            "replay the run with payloads to reconstruct values"
        )
    chunks = [manifest_path.parent / plain_name(c.file, "chunk file") for c in manifest.chunks]
    node = _node_record(chunks, node_id)
    if node.get("output_schema") is None:
        raise ReconstructionError(f"node {node_id!r} registered no output_schema")
    name = camel_name(str(node.get("plugin_name"))) or "Node"
    output_type = schema_types(node["output_schema"], name=f"{name}Output")
    source = node.get("node_type") == "source"
    input_schema = None if source else node.get("input_schema")
    input_type = None if input_schema is None else schema_types(input_schema, name=f"{name}Input")
    return _typed_rows(chunks, node_id, source, output_type, input_type)


def _records(chunks: list[Path]) -> Iterator[bytes]:
    for path in chunks:
        try:
            yield from iter_chunk_records(path)
        except FileNotFoundError:
            raise ReconstructionError(f"{path}, listed in the manifest, is missing") from None


def _head(line: bytes) -> _Head:
    try:
        return _HEAD.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise MalformedEvidenceError(f"a chunk line is not a record: {exc}") from None


def _record(line: bytes) -> dict[str, Any]:
    """A record whose values are returned: no member named twice (which one would count?)."""
    value = decode_strict(line, "record line")
    if not isinstance(value, dict):
        raise ReconstructionError(f"a chunk line is not a record: {line[:80]!r}")
    return value


def _node_record(chunks: list[Path], node_id: str) -> dict[str, Any]:
    for line in _records(chunks):
        head = _head(line)
        if head.record_type == "node" and head.node_id == node_id:
            return _record(line)
    raise UnknownIdError(f"the export has no node {node_id!r}")


def _typed_rows(
    chunks: list[Path], node_id: str, source: bool, output_type: Any, input_type: Any
) -> Iterator[TypedRow]:
    kind, out_field = ("row", "source_data") if source else ("node_state", "output_data")
    for line in _records(chunks):
        head = _head(line)
        if head.record_type != kind or (head.source_node_id if source else head.node_id) != node_id:
            continue
        r = _record(line)
        try:
            ids = msgspec.convert(r, _Ids)
        except msgspec.ValidationError as exc:
            raise MalformedEvidenceError(f"a {kind} record is malformed: {exc}") from None
        where = f"{kind} seq {ids.seq} (row {ids.row_id})"
        yield TypedRow(
            record_type=kind,
            seq=ids.seq,
            row_id=ids.row_id,
            state_id=ids.state_id,
            status=ids.status,
            output=_typed_field(r, out_field, output_type, where),
            input=None if input_type is None else _typed_field(r, "input_data", input_type, where),
        )


def _typed_field(record: dict[str, Any], field: str, type_: Any, where: str) -> Any:
    if record.get(f"{field}_ref") is None:  # no payload: a failed or open state
        return None
    if field not in record:
        raise ReconstructionError(f"{where}: {field}_ref is set but {field} is missing")
    try:
        return decode_typed(record[field], type_)
    except ReconstructionError as exc:
        raise ReconstructionError(f"{where}: {field} does not fit the schema: {exc}") from None
