"""Property tests: our canonical JSON agrees byte for byte with the ``rfc8785`` package."""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st

from auditjournal.errors import CanonicalizationError
from auditjournal.model.canonical import MAX_SAFE_INTEGER, canonical_json, format_float, stable_hash

EXAMPLES = settings(max_examples=300, deadline=None)

# Characters that make key order and escaping interesting: controls, DEL, the line
# separators, the top of the BMP (sorts after surrogate pairs in UTF-16) and non-BMP.
SPECIAL_CHARS = [
    "\x00",
    "\x01",
    "\x08",
    "\t",
    "\n",
    "\x1f",
    '"',
    "\\",
    "/",
    "\x7f",
    "\u2028",
    "\u2029",
    "\ue000",
    "\uffff",
    "\U00010000",
    "\U0001f600",
    "\U0010ffff",
    "a",
    "Z",
]
chars = st.characters(exclude_categories=("Cs",)) | st.sampled_from(SPECIAL_CHARS)
texts = st.text(alphabet=chars, max_size=12)
keys = st.text(alphabet=chars, max_size=6)

safe_ints = st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)


def written_as_unsafe_integer(value: float) -> bool:
    """Floats from 2**53 up to 1e21: ECMAScript writes them as integers beyond 2**53."""
    return 2**53 <= abs(value) < 1e21


finite_floats = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        [1.0, -0.0, 0.0, 1e21, 1e-7, 5e-324, 1.7976931348623157e308, 0.1, float(2**53 - 1)]
    )
).filter(lambda f: not written_as_unsafe_integer(f))

float_free_scalars = st.none() | st.booleans() | safe_ints | texts
scalars = float_free_scalars | finite_floats


def json_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5)
        ),
        max_leaves=25,
    )


json_any = json_values(scalars)
json_float_free = json_values(float_free_scalars)


def reorder(value: Any) -> Any:
    """The same JSON value with every object's insertion order reversed."""
    if isinstance(value, dict):
        return {k: reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reorder(item) for item in value]
    return value


@EXAMPLES
@given(json_any)
@example({"\uffff": 1, "\U00010000": 2})
@example({"a": [{"\ue000": 0.1, "\U0001f600": -0.0}], "\U00010000": {"b": 1, "a": 1e21}})
@example(['\x00\x1f\x7f\u2028\u2029/"\\', 5e-324, 1.7976931348623157e308, 1e-7])
@example({"n": [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]})
def test_matches_rfc8785(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@EXAMPLES
@given(json_any)
@example({"a": [1e20 * 10, 2.5e-5, float(2**53 - 1)]})
def test_a_reader_re_derives_the_same_bytes(value: Any) -> None:
    """verify-bundle re-derives a record's bytes from its parsed value: that must give
    the bytes written, floats included (also as json.loads parses them)."""
    out = canonical_json(value)
    assert canonical_json(msgspec.json.decode(out)) == out
    assert canonical_json(json.loads(out)) == out


@EXAMPLES
@given(st.floats(allow_nan=False, allow_infinity=False))
@example(1e20)
@example(float(2**53))
@example(float(2**53 - 1))
@example(1e21)
def test_a_float_is_accepted_exactly_when_a_reader_gets_it_back(value: float) -> None:
    """One rule: accepted iff its JSON text, parsed, is a float or a safe integer."""
    parsed = json.loads(format_float(value))
    readable = type(parsed) is float or abs(parsed) <= MAX_SAFE_INTEGER
    try:
        canonical_json(value)
    except CanonicalizationError:
        assert not readable
    else:
        assert readable


@EXAMPLES
@given(json_float_free)
@example({"\U00010000": ["\x00", "\u2028"], "\uffff": None})
def test_round_trips_through_json_loads(value: Any) -> None:
    assert json.loads(canonical_json(value)) == value


@EXAMPLES
@given(json_any)
def test_independent_of_insertion_order_and_does_not_mutate(value: Any) -> None:
    snapshot = copy.deepcopy(value)
    reordered = reorder(value)
    assert canonical_json(reordered) == canonical_json(value)
    assert stable_hash(reordered) == stable_hash(value)
    assert value == snapshot


@EXAMPLES
@given(st.floats(allow_nan=False, allow_infinity=False))
@example(1.0)
@example(-0.0)
@example(1e21)
@example(1e-7)
@example(5e-324)
@example(1.7976931348623157e308)
@example(float(2**60))
@example(1e20)
@example(123456789012345680000.0)
@example(1e-6)
def test_format_float_matches_rfc8785(value: float) -> None:
    assert format_float(value) == rfc8785.dumps(value).decode("ascii")


@st.composite
def deeply_nested(draw: st.DrawFn) -> Any:
    depth = draw(st.integers(min_value=1, max_value=400))
    # A short pattern of (container kind, key) cycled over the depth keeps generation
    # cheap while still mixing lists and objects with awkward keys.
    pattern = draw(st.lists(st.tuples(st.booleans(), keys), min_size=1, max_size=6))
    value = draw(scalars)
    for level in range(depth):
        is_list, key = pattern[level % len(pattern)]
        if is_list:
            value = [value]
        else:
            sibling = "\U00010000" if level % 3 == 0 else "\uffff"
            value = {sibling: level, key: value}
    return value


@settings(max_examples=100, deadline=None)
@given(deeply_nested())
def test_deep_nesting_matches_rfc8785(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)
