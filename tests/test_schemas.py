"""The committed JSON Schemas match what the code generates, and real outputs (a sealed
export's manifest and records, an extracted bundle) validate against them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema.protocols
import jsonschema.validators
import msgspec
import pytest

from auditjournal import AuditStore, ExportSettings, run_demo
from auditjournal.evidence.extract import Bundle, Selection, extract_bundle, write_bundle
from auditjournal.evidence.schemas import generate_schemas, schema_file_of_record
from auditjournal.export.chunks import iter_chunk_records
from auditjournal.export.manifest import ExportPaths
from auditjournal.model.events import EVENT_TYPES
from auditjournal.model.recordtypes import (
    CONDITIONAL_FIELDS,
    LANDSCAPE_RECORD_TYPES,
    PAYLOAD_FIELDS,
    RECORD_CLASSES,
    RECORD_TYPES,
    REF_FIELDS,
    AnyRecord,
    record_columns,
    required_columns,
)
from auditjournal.proofs.signing import generate_keypair
from auditjournal.sql.csvexport import COLUMNS
from landscape_run import at, record_landscape

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


# -- real outputs against the schemas (jsonschema) and the record declarations --------------


def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _records(export: Path) -> list[tuple[bytes, dict[str, Any]]]:
    manifest = json.loads(ExportPaths(export / "audit_trail").manifest.read_text())
    return [
        (line, json.loads(line))
        for chunk in manifest["chunks"]
        for line in iter_chunk_records(export / chunk["file"])
    ]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A signed demo export with payloads, one without, a failed run (open states) and a
    run of the whole Landscape model (issue 14: every new record type, conditional keys,
    hash-only payloads, secrets filtered)."""
    base = tmp_path_factory.mktemp("schemas")
    private, _public = generate_keypair(base / "keys")
    signed = ExportSettings(chunk_size_bytes=20_000, sign="ed25519", signing_key_file=str(private))
    out = {"payloads": run_demo(base / "a", rows=30, export=signed).export_dir}
    out["refs"] = run_demo(
        base / "b", rows=10, export=ExportSettings(include_payloads=False)
    ).export_dir
    with AuditStore.open(base / "c") as store, store.start_run(sql=False) as run:
        node = run.register_node(plugin_name="p", node_type="transform")
        row = run.create_row(source_node_id=node, row_index=0, data={"x": 1})
        token = run.create_token(row_id=row)
        run.begin_node_state(token_id=token, node_id=node, step_index=0, input_data={"x": 1})
        run.complete(status="failed", error={"why": "test"})
    out["open"] = store.export_dir(run.run_id)
    with AuditStore.open(base / "d") as store, store.start_run(sql=False) as run:
        ids = record_landscape(run)
        node = run.register_node(
            plugin_name="llm",
            node_type="transform",
            payload_policy="hash_only",
            config={"api_key": "sk-secret"},
            schema_hash="s" * 64,
            sequence_in_pipeline=2,
        )
        state = run.begin_node_state(
            token_id=ids["tokens"][0],
            node_id=node,
            step_index=2,
            input_data={"x": 1},
            context_before={"k": 1},
        )
        run.record_call(
            state_id=state,
            call_type="http",
            status="success",
            request={"headers": {"Authorization": "Bearer x"}},
            response={"ok": True},
        )
        run.complete_node_state(
            state, status="completed", output_data={"x": 2}, context_after={"k": 2}
        )
        run.complete(reproducibility_grade="attributable_only", occurred_at=at(9))
    out["landscape"] = store.export_dir(run.run_id)
    return out


def test_the_demo_and_landscape_exports_hold_every_record_type(
    exports: dict[str, Path],
) -> None:
    classic = set(RECORD_TYPES) - set(LANDSCAPE_RECORD_TYPES)
    assert {r["record_type"] for _, r in _records(exports["payloads"])} == classic
    assert {r["record_type"] for _, r in _records(exports["landscape"])} >= set(
        LANDSCAPE_RECORD_TYPES
    )
    assert "open" in {r.get("status") for _, r in _records(exports["open"])}


@pytest.mark.parametrize("kind", ["payloads", "refs", "open", "landscape"])
def test_manifests_and_records_validate_against_their_schemas(
    exports: dict[str, Path], kind: str
) -> None:
    manifest = json.loads(ExportPaths(exports[kind] / "audit_trail").manifest.read_text())
    _validator("manifest.schema.json").validate(manifest)
    assert ("signature" in manifest) == (kind == "payloads")
    validators = {t: _validator(schema_file_of_record(t)) for t in RECORD_TYPES}
    for _line, record in _records(exports[kind]):
        validators[record["record_type"]].validate(record)


def test_a_record_with_a_member_not_declared_fails_its_schema(exports: dict[str, Path]) -> None:
    _line, record = _records(exports["payloads"])[0]
    validator = _validator(schema_file_of_record(record["record_type"]))
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**record, "undeclared": 1})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({k: v for k, v in record.items() if k != "seq"})


@pytest.mark.parametrize("kind", ["payloads", "refs", "open", "landscape"])
def test_every_record_made_is_exactly_its_declaration(exports: dict[str, Path], kind: str) -> None:
    """The record maker builds dicts on its hot path: each must have the declared fields,
    no more and no fewer (payload fields exactly when payloads are included; conditional
    keys only with a value: decoding rejects a ``null`` one)."""
    seen: set[str] = set()
    for line, record in _records(exports[kind]):
        rtype = record["record_type"]
        typed = msgspec.json.decode(line, type=AnyRecord)  # types and required fields
        assert type(typed) is RECORD_CLASSES[rtype]
        required = set(required_columns(rtype))
        if kind != "refs":
            required |= {name for name, _ in PAYLOAD_FIELDS.get(rtype, ())}
        conditional = set(record) - required
        assert required <= set(record), rtype
        assert conditional <= set(CONDITIONAL_FIELDS[rtype]), (rtype, conditional)
        seen |= {f"{rtype}.{name}" for name in conditional}
    if kind != "landscape":
        assert not seen  # runs using none of issue 14's keys have none of them
    else:  # the declarations' conditional keys really occur
        for key in [
            "run.reproducibility_grade",
            "run.secret_resolutions",
            "run.appended_at",
            "node.payload_policy",
            "node.redacted",
            "node.schema_hash",
            "node_state.input_data_retained",
            "node_state.context_after",
            "call.redacted",
            "token.step_in_pipeline",
            "token_outcome.batch_id",
            "token_outcome.expected_branches",
            "operation.appended_at",
        ]:
            assert key in seen, key


def test_the_csv_columns_lineage_payloads_and_ref_fields_come_from_the_declarations() -> None:
    from auditjournal.sql import lineage

    assert {t: record_columns(t) for t in RECORD_TYPES} == COLUMNS
    assert COLUMNS["row"][-2:] == ("source_data_retained", "appended_at")  # no payload columns
    assert "source_data" not in COLUMNS["row"]
    assert CONDITIONAL_FIELDS["edge"] == ("appended_at",)
    assert PAYLOAD_FIELDS["checkpoint"] == (
        ("aggregation_state", "aggregation_state_ref"),
        ("coalesce_state", "coalesce_state_ref"),
    )
    assert PAYLOAD_FIELDS["call"] == (("request", "request_ref"), ("response", "response_ref"))
    assert set(REF_FIELDS) == {ref for pairs in PAYLOAD_FIELDS.values() for _, ref in pairs}
    assert lineage._RUN_RECORD_COLUMNS[:3] == ("started_seq", "started_at", "config_json")
    # refs in events carry the same names (verify checks the payloads events name)
    event_fields = {f for cls in EVENT_TYPES.values() for f in cls.__struct_fields__}
    assert set(REF_FIELDS) <= event_fields


def test_an_extracted_bundle_validates_against_its_schema(
    exports: dict[str, Path], tmp_path: Path
) -> None:
    export = exports["payloads"]
    row_id = next(r["row_id"] for _, r in _records(export) if r["record_type"] == "row")
    out = tmp_path / "bundle.json"
    write_bundle(extract_bundle(export, Selection(row_id=row_id)), out)
    bundle = json.loads(out.read_text())
    _validator("bundle.schema.json").validate(bundle)
    assert len(bundle["records"]) > 3
    msgspec.json.decode(out.read_bytes(), type=Bundle)  # and decodes as the declared type
    bundle["records"][0]["record"]["undeclared"] = True
    with pytest.raises(jsonschema.ValidationError):
        _validator("bundle.schema.json").validate(bundle)
