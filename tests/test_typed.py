"""Typed values from JSON Schemas (SPEC §4 "reconstruction of typed values").

``schema_types`` is checked construct by construct (what each maps to, what is
refused and where), against msgspec's own schemas, and end to end: values
recorded through the real recorder come back from a sealed export with
``load_rows`` as the types their node's schema promised.
"""

from __future__ import annotations

import datetime as dt
import typing
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import pytest

from auditjournal import AuditStore, ExportSettings, UnknownIdError, canonical_json
from auditjournal.demo import run_demo
from auditjournal.errors import ReconstructionError, UnsupportedSchemaError
from auditjournal.evidence.reimport import TypedRow, load_rows
from auditjournal.model.typed import decode_typed, schema_types

UTC = dt.UTC


def roundtrip(value: Any, schema: Any) -> Any:
    """``value`` as the recorder stores it (canonical JSON), decoded with the schema's type."""
    return decode_typed(msgspec.json.decode(canonical_json(value)), schema_types(schema))


def plain(value: Any) -> Any:
    """A typed value as plain data: Structs -> dicts under their JSON names, UNSET dropped."""
    if isinstance(value, msgspec.Struct):
        return {
            f.encode_name: plain(getattr(value, f.name))
            for f in msgspec.structs.fields(value)
            if getattr(value, f.name) is not msgspec.UNSET
        }
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


# -- leaves -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "value", "expected"),
    [
        ({"type": "string"}, "x", "x"),
        ({"type": "integer"}, 7, 7),
        ({"type": "number"}, 2.0, 2.0),  # canonical "2" still comes back a float
        ({"type": "number"}, 0.1, 0.1),
        ({"type": "boolean"}, True, True),
        ({"type": "null"}, None, None),
        (
            {"type": "string", "format": "date-time"},
            dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
            dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        ),
        (
            {"type": "string", "format": "date-time"},
            dt.datetime(2024, 1, 2, 3, 4, 5),  # naive is taken as UTC by canonical JSON
            dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        ),
        ({"type": "string", "format": "date"}, dt.date(2024, 2, 29), dt.date(2024, 2, 29)),
        ({"type": "string", "format": "decimal"}, Decimal("12.50"), Decimal("12.50")),
        ({"anyOf": [{"type": "number"}, {"type": "string"}]}, Decimal("1E+2"), Decimal("1E+2")),
        ({"type": ["string", "number"]}, Decimal("-0.001"), Decimal("-0.001")),
        ({"type": "string", "contentEncoding": "base64"}, b"\x00\xff", b"\x00\xff"),
        (
            {
                "type": "object",
                "properties": {"__bytes__": {"type": "string"}},
                "required": ["__bytes__"],
            },
            b"raw",
            b"raw",
        ),
        ({"type": "string", "format": "uuid"}, str(uuid.UUID(int=5)), uuid.UUID(int=5)),
        ({"type": "string", "format": "email"}, "a@b.c", "a@b.c"),
        ({"enum": ["a", 1, None]}, 1, 1),
        ({"const": "fixed"}, "fixed", "fixed"),
        ({"enum": [True, False]}, False, False),
        ({}, {"any": [1, b"x"]}, {"any": [1, b"x"]}),
        (True, 3, 3),
    ],
)
def test_leaves_round_trip_with_their_type(schema: Any, value: Any, expected: Any) -> None:
    got = roundtrip(value, schema)
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string", "format": "decimal"}, Decimal),
        ({"anyOf": [{"type": "number"}, {"type": "string"}]}, Decimal),
        (
            {"anyOf": [{"type": "number"}, {"type": "string", "pattern": "^-?\\d+(\\.\\d+)?$"}]},
            Decimal,
        ),
        ({"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}]}, Decimal | None),
        ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, int | str),
        ({"type": ["integer", "string"]}, int | str),
        ({"anyOf": [{"type": "number"}, {"type": "string", "format": "date"}]}, float | dt.date),
        ({"type": ["string", "null"]}, str | None),
        ({"type": "string", "nullable": True}, str | None),
        ({"enum": ["a", "b"]}, Literal["a", "b"]),
        ({"type": "string", "enum": ["a"]}, Literal["a"]),
        ({"const": 3}, Literal[3]),
        ({"enum": [True, False]}, bool),
        ({"type": "array", "items": {"type": "integer"}}, list[int]),
        ({"type": "array"}, list[Any]),
        ({"type": "object", "additionalProperties": {"type": "number"}}, dict[str, float]),
        ({"type": "object"}, dict[str, Any]),
        (
            {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "items": False,
                "minItems": 2,
                "maxItems": 2,
            },
            tuple[int, str],
        ),
        (
            {"type": "array", "items": [{"type": "integer"}], "minItems": 1, "maxItems": 1},
            tuple[int],
        ),
        ({"allOf": [{"type": "integer"}]}, int),
        ({"description": "anything"}, Any),
    ],
)
def test_mapping(schema: Any, expected: Any) -> None:
    assert schema_types(schema) == expected


def test_msgspec_emits_decimal_as_a_string_with_format_decimal() -> None:
    """The Decimal form we rely on: if msgspec changes it, this fails first."""
    assert msgspec.json.schema(Decimal) == {"type": "string", "format": "decimal"}
    assert msgspec.json.schema(bytes) == {"type": "string", "contentEncoding": "base64"}
    aware = Annotated[dt.datetime, msgspec.Meta(tz=True)]
    assert msgspec.json.schema(aware) == {"type": "string", "format": "date-time"}


def test_constraints_are_checked() -> None:
    schema = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^[A-Z]+$"},
            "n": {"type": "integer", "minimum": 1, "exclusiveMaximum": 10, "multipleOf": 3},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
            "ratio": {"type": "number", "minimum": 0.5},
        },
    }
    t = schema_types(schema)
    assert plain(decode_typed({"code": "AB", "n": 9, "tags": [], "ratio": 0.5}, t))
    for bad in ({"code": "A"}, {"code": "ab"}, {"n": 12}, {"n": 4}, {"tags": ["a"] * 3}):
        with pytest.raises(ReconstructionError):
            decode_typed(bad, t)
    with pytest.raises(ReconstructionError, match="ratio"):
        decode_typed({"ratio": 0.25}, t)
    draft4 = schema_types({"type": "integer", "minimum": 1, "exclusiveMinimum": True})
    assert decode_typed(2, draft4) == 2
    with pytest.raises(ReconstructionError):
        decode_typed(1, draft4)


# -- objects ------------------------------------------------------------------------------

PERSON = {
    "type": "object",
    "title": "Person",
    "properties": {
        "name": {"type": "string"},
        "born": {"type": "string", "format": "date"},
        "spend": {"type": "string", "format": "decimal"},
        "photo": {"type": "string", "contentEncoding": "base64"},
        "nick": {"type": ["string", "null"]},
        "country": {"type": "string", "default": "NL"},
        "first-name": {"type": "string"},
        "class": {"type": "integer"},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "lines": {"type": "array", "items": {}}},
            "required": ["city"],
        },
        "orders": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "at": {"type": "string", "format": "date-time"},
                    "amount": {"anyOf": [{"type": "number"}, {"type": "string"}]},
                },
                "required": ["at", "amount"],
            },
        },
    },
    "required": ["name", "born"],
}


def test_objects_become_structs_with_nested_types() -> None:
    value = {
        "name": "Ada",
        "born": dt.date(1815, 12, 10),
        "spend": Decimal("12.50"),
        "photo": b"\x89PNG",
        "nick": None,
        "first-name": "Augusta",
        "class": 1,
        "address": {"city": "London", "lines": ["1 St James's Square", 2]},
        "orders": [{"at": dt.datetime(2024, 1, 1, tzinfo=UTC), "amount": Decimal("0.10")}],
    }
    got = roundtrip(value, PERSON)
    assert type(got).__name__ == "Person" and isinstance(got, msgspec.Struct)
    assert got.born == dt.date(1815, 12, 10) and type(got.spend) is Decimal
    assert got.photo == b"\x89PNG" and got.nick is None
    assert got.country == "NL", "an absent property gets its schema default"
    assert got.first_name == "Augusta" and got.class_ == 1  # renamed attributes
    assert isinstance(got.address, msgspec.Struct) and got.address.city == "London"
    assert isinstance(got.orders[0], msgspec.Struct)
    assert got.orders[0].amount == Decimal("0.10") and got.orders[0].at.tzinfo is not None
    assert plain(got) == {**value, "country": "NL"}


def test_absent_optional_properties_stay_unset_not_null() -> None:
    got = roundtrip({"name": "x", "born": dt.date(2000, 1, 1)}, PERSON)
    assert got.nick is msgspec.UNSET and got.address is msgspec.UNSET
    assert roundtrip({"name": "x", "born": dt.date(2000, 1, 1), "nick": None}, PERSON).nick is None


def test_required_and_unknown_properties_are_errors() -> None:
    t = schema_types(PERSON)
    with pytest.raises(ReconstructionError, match="born"):
        decode_typed({"name": "x"}, t)
    with pytest.raises(ReconstructionError, match="unknown field `extra`"):
        decode_typed({"name": "x", "born": "2000-01-01", "extra": 1}, t)
    with pytest.raises(ReconstructionError, match=r"\$\.orders\[0\]\.at"):
        decode_typed({"name": "x", "born": "2000-01-01", "orders": [{"at": 1, "amount": 1}]}, t)


class Leaf(msgspec.Struct, tag="leaf"):
    value: Decimal


class Branch(msgspec.Struct, tag="branch"):
    children: list[Leaf | Branch]
    label: str | None = None


def test_recursive_refs_and_tagged_unions_from_msgspec() -> None:
    schema = msgspec.json.schema(Branch)
    tree = Branch([Leaf(Decimal("1.5")), Branch([Leaf(Decimal("-2"))], label="x")])
    data = msgspec.to_builtins(tree, builtin_types=(Decimal,))
    got = roundtrip(data, schema)
    assert type(got).__name__ == "Branch"
    inner = got.children[1]
    assert type(inner).__name__ == "Branch" and inner.label == "x"
    assert inner.children[0].value == Decimal("-2")
    assert type(got.children[0]).__name__ == "Leaf"


def test_recursion_through_a_ref() -> None:
    schema = {
        "$ref": "#/$defs/Node",
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
                },
                "required": ["name"],
            }
        },
    }
    value = {"name": "a", "next": {"name": "b", "next": {"name": "c", "next": None}}}
    got = roundtrip(value, schema)
    assert got.next.next.name == "c" and type(got.next) is type(got)
    assert plain(got) == value


class Sub(msgspec.Struct):
    when: Annotated[dt.datetime, msgspec.Meta(tz=True)]
    raw: bytes


class Thing(msgspec.Struct):
    id: int
    price: Decimal
    day: dt.date
    subs: list[Sub]
    kind: Literal["a", "b"] = "a"
    pair: tuple[int, str] = (0, "")
    extra: dict[str, float] = {}
    maybe: int | None = None


def test_a_struct_schema_from_msgspec_round_trips() -> None:
    thing = Thing(
        id=1,
        price=Decimal("9.99"),
        day=dt.date(2024, 6, 1),
        subs=[Sub(dt.datetime(2024, 6, 1, 12, tzinfo=UTC), b"\x01\x02")],
        pair=(5, "five"),
        extra={"k": 0.5},
    )
    data = msgspec.to_builtins(thing, builtin_types=(Decimal, dt.datetime, dt.date, bytes))
    got = roundtrip(data, msgspec.json.schema(Thing))
    assert msgspec.structs.asdict(got)["subs"][0].raw == b"\x01\x02"
    assert (got.id, got.price, got.day, got.kind, got.pair, got.extra, got.maybe) == (
        1,
        Decimal("9.99"),
        dt.date(2024, 6, 1),
        "a",
        (5, "five"),
        {"k": 0.5},
        None,
    )
    assert got.subs[0].when == dt.datetime(2024, 6, 1, 12, tzinfo=UTC)


def test_bytes_objects_come_back_inside_open_values() -> None:
    schema = {"type": "object", "additionalProperties": True}
    assert roundtrip({"blob": b"\x00", "list": [b"\x01"]}, schema) == {
        "blob": b"\x00",
        "list": [b"\x01"],
    }


def test_a_bad_default_is_refused_with_its_path() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "default": "x"}}}
    with pytest.raises(UnsupportedSchemaError, match="#/properties/n/default"):
        schema_types(schema)


# -- refused, with the path ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ({"not": {"type": "string"}}, "#/not"),
        ({"type": "object", "properties": {"a": {"if": {}}}}, "#/properties/a/if"),
        ({"type": "object", "patternProperties": {"^x": {}}}, "#/patternProperties"),
        ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "#/uniqueItems"),
        ({"$ref": "https://example.com/s.json"}, "#/$ref"),
        ({"$ref": "#/$defs/missing"}, "#/$ref"),
        ({"$ref": "#anchor"}, "#/$ref"),
        ({"type": "strin"}, "#/type"),
        (
            {"type": "object", "properties": {"a/b": {"frobnicate": 1}}},
            "#/properties/a~1b/frobnicate",
        ),
        (
            {"anyOf": [{"type": "object", "properties": {"a": {}}}, {"type": "object"}]},
            "#/anyOf",
        ),
        ({"anyOf": [{"type": "string"}, {"type": "string", "format": "date"}]}, "#/anyOf"),
        (
            {
                "$ref": "#/$defs/L",
                "$defs": {"L": {"type": "array", "items": {"$ref": "#/$defs/L"}}},
            },
            "#/$defs/L/items/$ref",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {}},
                "additionalProperties": {"type": "integer"},
            },
            "#/additionalProperties",
        ),
        (
            {"type": "array", "prefixItems": [{"type": "integer"}], "minItems": 1},
            "#/prefixItems",
        ),
        ({"enum": [1.5]}, "#/enum"),
        ({"enum": [True]}, "#/enum"),
        ({"type": "string", "enum": [1]}, "#/enum"),
        (
            {"type": "object", "properties": {"a": {"$id": "x", "type": "string"}}},
            "#/properties/a/$id",
        ),
        ({"type": "object", "properties": {"a": False}}, "#/properties/a"),
        ({"type": "object", "required": ["a"]}, "#/required"),
        ({"type": "object", "properties": {}, "required": ["a"]}, "#/required"),
        ({"allOf": [{"type": "string"}, {"minLength": 1}]}, "#/allOf"),
        ({"type": "string", "contentEncoding": "base32"}, "#/contentEncoding"),
        ({"type": "string", "format": "date", "maxLength": 3}, "#"),
        ({"minLength": 1, "minimum": 1}, "#"),
        ({"type": "string", "anyOf": [{"minLength": 1}]}, "#/type"),
        ({"type": "integer", "multipleOf": 0.5}, "#/multipleOf"),
        ({"type": "object", "properties": {'say "hi"': {}}}, '#/properties/say "hi"'),
    ],
)
def test_unsupported_constructs_name_their_path(schema: Any, path: str) -> None:
    with pytest.raises(UnsupportedSchemaError) as info:
        schema_types(schema)
    assert f"(schema at {path})" in str(info.value)


def test_unsupported_is_also_a_value_error() -> None:
    with pytest.raises(ValueError):
        schema_types({"not": {}})


# -- load_rows: a sealed export, end to end -----------------------------------------------

ROW_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "price": {"type": "string", "format": "decimal"},
        "at": {"type": "string", "format": "date-time"},
        "blob": {"type": "string", "contentEncoding": "base64"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {
            "type": "object",
            "properties": {"source": {"type": "string"}, "score": {"type": "number"}},
            "required": ["source"],
        },
    },
    "required": ["id", "price", "at"],
}
ENRICHED = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "total": {"type": "string", "format": "decimal"}},
    "required": ["id", "total"],
}


def source_row(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "price": Decimal(f"{i}.10"),
        "at": dt.datetime(2024, 1, 1, i, tzinfo=UTC),
        "blob": bytes([i, 255]),
        "tags": ["a"] * i,
        "meta": {"source": "feed", "score": i / 4},
    }


def record_typed_run(store: AuditStore, export: ExportSettings | None = None) -> dict[str, str]:
    with store.start_run(export=export or ExportSettings()) as run:
        src = run.register_node(plugin_name="feed", node_type="source", output_schema=ROW_SCHEMA)
        enrich = run.register_node(
            plugin_name="price-total",
            node_type="transform",
            input_schema=ROW_SCHEMA,
            output_schema=ENRICHED,
        )
        bare = run.register_node(plugin_name="bare", node_type="transform")
        for i in range(4):
            data = source_row(i)
            row = run.create_row(source_node_id=src, row_index=i, data=data)
            token = run.create_token(row_id=row)
            st = run.begin_node_state(token_id=token, node_id=enrich, step_index=1, input_data=data)
            if i == 3:
                run.complete_node_state(st, status="failed", error={"why": "test"})
                continue
            run.complete_node_state(
                st, status="completed", output_data={"id": i, "total": data["price"] * 2}
            )
    return {"run": run.run_id, "source": src, "enrich": enrich, "bare": bare}


def test_load_rows_of_a_source(store: AuditStore) -> None:
    ids = record_typed_run(store)
    rows = list(load_rows(store.export_dir(ids["run"]), ids["source"]))
    assert [r.record_type for r in rows] == ["row"] * 4
    assert all(isinstance(r, TypedRow) and r.state_id is None and r.input is None for r in rows)
    for i, r in enumerate(rows):
        assert type(r.output).__name__ == "FeedOutput"
        assert plain(r.output) == source_row(i)
        assert type(r.output.price) is Decimal and type(r.output.blob) is bytes
        assert r.output.at.tzinfo is not None and type(r.output.meta.score) is float


def test_load_rows_of_a_transform_with_input_schema(store: AuditStore) -> None:
    ids = record_typed_run(store)
    manifest = store.export_dir(ids["run"]) / "audit_trail.manifest.json"
    rows = list(load_rows(manifest, ids["enrich"]))
    assert [r.status for r in rows] == ["completed", "completed", "completed", "failed"]
    for i, r in enumerate(rows):
        assert r.record_type == "node_state" and r.state_id
        assert plain(r.input) == source_row(i)
        if i < 3:
            assert r.output.total == Decimal(f"{i}.10") * 2 and type(r.output).__name__ == (
                "PriceTotalOutput"
            )
        else:
            assert r.output is None, "a failed state has no output"


def test_load_rows_refusals(store: AuditStore, tmp_path: Path) -> None:
    ids = record_typed_run(store)
    export = store.export_dir(ids["run"])
    with pytest.raises(UnknownIdError, match="no node 'nope'"):
        load_rows(export, "nope")
    with pytest.raises(ReconstructionError, match="no output_schema"):
        load_rows(export, ids["bare"])
    lean = record_typed_run(
        store, ExportSettings(include_payloads=False, path_prefix=str(tmp_path / "lean" / "a"))
    )
    with pytest.raises(ReconstructionError, match="no payloads"):
        load_rows(tmp_path / "lean", lean["source"])


def test_a_payload_that_does_not_fit_names_its_record(store: AuditStore) -> None:
    with store.start_run() as run:
        src = run.register_node(plugin_name="s", node_type="source", output_schema=ENRICHED)
        run.create_row(source_node_id=src, row_index=0, data={"id": 1, "total": "1"})
        run.create_row(source_node_id=src, row_index=1, data={"id": "two", "total": "2"})
    rows = load_rows(store.export_dir(run.run_id), src)
    assert next(rows).output.total == Decimal("1")
    with pytest.raises(ReconstructionError, match=r"row seq \d+ .*source_data.*\$\.id"):
        next(rows)


def test_the_demo_source_rows_come_back_typed(tmp_path: Path) -> None:
    demo = run_demo(tmp_path / "audit", rows=12)
    with AuditStore.open(tmp_path / "audit") as store:
        source = next(
            e.node_id
            for e in store.read_journal(demo.run_id)
            if getattr(e, "node_type", None) == "source"
        )
    rows = list(load_rows(demo.export_dir, source))
    assert len(rows) == 12
    assert all(type(r.output.signup_date) is dt.date for r in rows)
    assert all(isinstance(r.output.customer_id, str) for r in rows)


def test_union_types_are_plain_typing_unions() -> None:
    t = schema_types({"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]})
    assert typing.get_origin(t) is typing.Union and set(typing.get_args(t)) == {
        int,
        str,
        type(None),
    }
