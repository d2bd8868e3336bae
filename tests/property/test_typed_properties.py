"""Property tests: generated JSON Schemas with matching values survive the recorder's encoding.

Hypothesis builds a schema and, alongside it, a strategy for values valid under
it (typed the way a pipeline would hold them: Decimal, datetime, date, bytes,
tuples). A value is canonical-JSON-encoded exactly as the recorder stores
payloads, decoded, and converted with ``schema_types``: the typed result must be
the same value, type for type. The same schemas with an unsupported keyword
planted anywhere must be refused with the JSON path of that place.
"""

from __future__ import annotations

import datetime as dt
import keyword
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditjournal.errors import UnsupportedSchemaError
from auditjournal.model.canonical import MAX_SAFE_INTEGER, canonical_json
from auditjournal.model.typed import decode_typed, schema_types

EXAMPLES = settings(max_examples=150, deadline=None)

Pair = tuple[Any, st.SearchStrategy[Any]]  # (schema, strategy of values valid under it)

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
# msgspec Struct fields cannot be named with '"', '\\' or control characters (refused: tested)
names = (
    st.text(
        st.characters(exclude_categories=("Cs", "Cc"), exclude_characters='"\\'),
        min_size=1,
        max_size=8,
    )
    | st.sampled_from([*keyword.kwlist[:5], "a-b", "a_b", "1x", "__init__", "x/y~z", "class"])
).filter(lambda n: n != "__bytes__")  # {"__bytes__": ...} is how canonical JSON writes bytes
safe_ints = st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)
aware = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=offsets
)
decimals = st.decimals(allow_nan=False, allow_infinity=False)
# floats from 2**53 up to 1e21 are refused: their JSON text is an integer beyond 2**53
json_floats = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda f: not 2**53 <= abs(f) < 1e21
)

LEAVES: list[Pair] = [
    ({"type": "string"}, texts),
    ({"type": "integer"}, safe_ints),
    ({"type": "number"}, json_floats),
    ({"type": "boolean"}, st.booleans()),
    ({"type": "null"}, st.none()),
    ({"type": "string", "format": "date-time"}, aware),
    ({"type": "string", "format": "date"}, st.dates()),
    ({"type": "string", "format": "decimal"}, decimals),
    ({"anyOf": [{"type": "number"}, {"type": "string"}]}, decimals),
    ({"type": "string", "contentEncoding": "base64"}, st.binary(max_size=12)),
    (
        {"type": "object", "properties": {"__bytes__": {"type": "string"}}},
        st.binary(max_size=12),
    ),
    ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, safe_ints | texts),
    ({"type": ["boolean", "string", "null"]}, st.booleans() | texts | st.none()),
]


@st.composite
def enums(draw: st.DrawFn) -> Pair:
    values = draw(st.lists(texts | safe_ints | st.none(), min_size=1, max_size=4, unique=True))
    if len(values) == 1 and draw(st.booleans()):
        return {"const": values[0]}, st.just(values[0])
    return {"enum": values}, st.sampled_from(values)


def leaves() -> st.SearchStrategy[Pair]:
    return st.sampled_from(LEAVES) | enums()


def containers(children: st.SearchStrategy[Pair]) -> st.SearchStrategy[Pair]:
    arrays = children.map(lambda p: ({"type": "array", "items": p[0]}, st.lists(p[1], max_size=3)))
    maps = children.map(
        lambda p: (
            {"type": "object", "additionalProperties": p[0]},
            st.dictionaries(names, p[1], max_size=3),
        )
    )
    optionals = children.map(lambda p: ({"anyOf": [p[0], {"type": "null"}]}, st.none() | p[1]))
    tuples = st.lists(children, min_size=1, max_size=3).map(
        lambda ps: (
            {
                "type": "array",
                "prefixItems": [p[0] for p in ps],
                "items": False,
                "minItems": len(ps),
                "maxItems": len(ps),
            },
            st.tuples(*(p[1] for p in ps)),
        )
    )
    objects = st.dictionaries(names, st.tuples(children, st.booleans()), max_size=4).map(objects_of)
    return arrays | maps | optionals | tuples | objects


def objects_of(props: dict[str, tuple[Pair, bool]]) -> Pair:
    schema = {
        "type": "object",
        "properties": {name: pair[0] for name, (pair, _) in props.items()},
        "required": [name for name, (_, required) in props.items() if required],
    }
    values = st.fixed_dictionaries(
        {name: pair[1] for name, (pair, required) in props.items() if required},
        optional={name: pair[1] for name, (pair, required) in props.items() if not required},
    )
    return schema, values


pairs = st.recursive(leaves(), containers, max_leaves=10)


@st.composite
def schemas_and_values(draw: st.DrawFn) -> tuple[Any, Any]:
    schema, values = draw(pairs)
    schema = msgspec.json.decode(msgspec.json.encode(schema))  # unshare the leaf schemas
    if draw(st.booleans()):  # the same schema behind a $ref, as msgspec writes its own
        schema = {"$ref": "#/$defs/Top", "$defs": {"Top": schema}}
    return schema, draw(values)


def plain(value: Any) -> Any:
    """Structs -> dicts under their JSON names (UNSET dropped); everything else as it is."""
    if isinstance(value, msgspec.Struct):
        return {
            f.encode_name: plain(getattr(value, f.name))
            for f in msgspec.structs.fields(value)
            if getattr(value, f.name) is not msgspec.UNSET
        }
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def same(a: Any, b: Any) -> bool:
    """Equal *and* of the same type at every level (1 is not 1.0, "1.0" is not Decimal)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Decimal):
        return str(a) == str(b)  # the exact digits and exponent, not just the number
    if isinstance(a, dt.datetime):
        return a == b and b.utcoffset() == dt.timedelta(0)
    return bool(a == b)


def expected(value: Any) -> Any:
    """What comes back: floats stay floats, datetimes come back in UTC, the rest as given."""
    if isinstance(value, dict):
        return {k: expected(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expected(v) for v in value]
    if isinstance(value, tuple):
        return tuple(expected(v) for v in value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    if isinstance(value, float) and value == 0:
        return 0.0  # canonical JSON writes -0.0 as 0
    return value


@EXAMPLES
@given(schemas_and_values())
def test_generated_schemas_round_trip_values(case: tuple[Any, Any]) -> None:
    schema, value = case
    typed = schema_types(schema)
    stored = msgspec.json.decode(canonical_json(value))  # what the export inlines
    got = decode_typed(stored, typed)
    assert same(plain(got), expected(value)), (schema, value, got)


@EXAMPLES
@given(schemas_and_values())
def test_the_type_is_stable_for_the_same_schema(case: tuple[Any, Any]) -> None:
    schema, value = case
    stored = msgspec.json.decode(canonical_json(value))
    first = plain(decode_typed(stored, schema_types(schema)))
    second = plain(decode_typed(stored, schema_types(schema)))
    assert same(first, second)


# -- refusals carry the path --------------------------------------------------------------


def schema_places(schema: Any, path: str = "#") -> list[tuple[str, dict[str, Any]]]:
    """Every subschema the compiler must visit, with its JSON pointer."""

    def escape(part: str) -> str:
        return part.replace("~", "~0").replace("/", "~1")

    if not isinstance(schema, dict):
        return []
    found = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        found += schema_places(sub, f"{path}/properties/{escape(name)}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += schema_places(schema[key], f"{path}/{key}")
    for key in ("prefixItems", "anyOf"):
        for index, sub in enumerate(schema.get(key, [])):
            found += schema_places(sub, f"{path}/{key}/{index}")
    for name, sub in schema.get("$defs", {}).items():
        found += schema_places(sub, f"#/$defs/{escape(name)}")
    return [(p, s) for p, s in found if "$defs" not in s or p != "#"]


@EXAMPLES
@given(
    schemas_and_values(),
    st.sampled_from(["not", "if", "patternProperties", "dependentRequired", "unevaluatedItems"]),
    st.data(),
)
def test_an_unsupported_keyword_anywhere_is_refused_with_its_path(
    case: tuple[Any, Any], word: str, data: st.DataObject
) -> None:
    schema, _ = case
    places = schema_places(schema)
    path, place = data.draw(st.sampled_from(places))
    place[word] = {}
    with pytest.raises(UnsupportedSchemaError) as info:
        schema_types(schema)
    assert f"(schema at {path}/{word})" in str(info.value)


@EXAMPLES
@given(
    st.recursive(
        st.fixed_dictionaries({"name": texts}),
        lambda kids: st.fixed_dictionaries({"name": texts}, optional={"kids": st.lists(kids)}),
        max_leaves=12,
    )
)
def test_recursive_schemas_round_trip_trees(tree: dict[str, Any]) -> None:
    schema = {
        "$ref": "#/$defs/Tree",
        "$defs": {
            "Tree": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/Tree"}},
                },
                "required": ["name"],
            }
        },
    }
    got = decode_typed(msgspec.json.decode(canonical_json(tree)), schema_types(schema))
    assert same(plain(got), tree)
