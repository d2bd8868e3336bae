"""Unit tests for auditjournal.model.canonical (SPEC §2 "Canonical JSON and hashes")."""

from __future__ import annotations

import base64
import collections
import copy
import datetime as dt
import enum
import hashlib
import json
import math
import re
import time
from decimal import Decimal
from typing import Any

import pytest

from auditjournal.errors import AuditJournalError, CanonicalizationError
from auditjournal.model.canonical import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    MAX_VALUE_DEPTH,
    canonical_json,
    format_float,
    stable_hash,
)


def nest(depth: int, leaf: Any = 1) -> Any:
    """``leaf`` wrapped in ``depth`` containers, alternating dict and list."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def reject(value: Any) -> str:
    """Canonicalize ``value``, expect a CanonicalizationError and return its message."""
    with pytest.raises(CanonicalizationError) as info:
        canonical_json(value)
    return str(info.value)


# -- floats ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"),
        (-1.0, "-1"),
        (0.0, "0"),
        (-0.0, "0"),
        (0.1, "0.1"),
        (-0.5, "-0.5"),
        (123.456, "123.456"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (123456789012345680000.0, "123456789012345680000"),
        (1.5e300, "1.5e+300"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1.25e-7, "1.25e-7"),
        (5e-324, "5e-324"),
        (-5e-324, "-5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (float(2**60), "1152921504606847000"),
        (float(2**53), "9007199254740992"),
        (0.000001234, "0.000001234"),
        (1 / 3, "0.3333333333333333"),
    ],
)
def test_format_float_matches_ecmascript(value: float, expected: str) -> None:
    assert format_float(value) == expected
    if not 2**53 <= abs(value) < 1e21:  # those are refused (next test)
        assert canonical_json(value) == expected.encode("ascii")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_format_float_rejects_non_finite(value: float) -> None:
    with pytest.raises(CanonicalizationError, match="not allowed"):
        format_float(value)


def test_floats_inside_containers() -> None:
    assert canonical_json({"b": [1.0, -0.0], "a": 1e21}) == b'{"a":1e+21,"b":[1,0]}'


@pytest.mark.parametrize(
    "value", [1e18, 1e20, -1e20, float(2**53), float(2**60), math.nextafter(1e21, 0)]
)
def test_integral_float_written_as_an_unsafe_integer_is_rejected(value: float) -> None:
    # ECMAScript writes it as an integer literal (1e20 -> 100000000000000000000), which a
    # reader parses as an integer beyond 2**53: a record holding it could not be re-derived
    message = reject({"config": [value]})
    assert repr(value) in message
    assert format_float(value) in message
    assert "2**53" in message
    assert message.endswith("at $['config'][0]")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (float(2**53 - 1), b"9007199254740991"),
        (-float(2**53 - 1), b"-9007199254740991"),
        (1e21, b"1e+21"),
        (-1e21, b"-1e+21"),
        (1.5e300, b"1.5e+300"),
    ],
)
def test_floats_on_either_side_of_the_unsafe_integer_range_are_accepted(
    value: float, text: bytes
) -> None:
    assert canonical_json(value) == text


# -- key order and strings -----------------------------------------------------------


def test_keys_sorted_and_no_whitespace() -> None:
    value = {"b": 1, "a": {"d": [1, 2], "c": None}, "A": True, "": False}
    assert canonical_json(value) == b'{"":false,"A":true,"a":{"c":null,"d":[1,2]},"b":1}'


def test_keys_sorted_by_utf16_code_units_not_code_points() -> None:
    # U+10000 is the surrogate pair D800 DC00, which sorts before FFFF in UTF-16
    # although its code point is larger.
    value = {"\uffff": 1, "\U00010000": 2, "a": 3}
    expected = '{"a":3,"\U00010000":2,"\uffff":1}'.encode()
    assert canonical_json(value) == expected
    assert canonical_json(dict(reversed(value.items()))) == expected


def test_utf16_order_applies_to_nested_objects() -> None:
    value = {"z": {"\uffff": 1, "\U0001f600": 2}, "\U00010000": [{"b": 1, "a": 2}]}
    expected = '{"z":{"\U0001f600":2,"\uffff":1},"\U00010000":[{"a":2,"b":1}]}'.encode()
    assert canonical_json(value) == expected


def test_utf16_order_reaches_objects_inside_tuples() -> None:
    # Regression: with a non-BMP key present, dicts nested in tuples kept insertion order.
    value = {"a": ({"b": 1, "a": 2},), "\U00010000": 1}
    assert canonical_json(value) == '{"a":[{"a":2,"b":1}],"\U00010000":1}'.encode()


def test_tuples_encode_as_arrays() -> None:
    assert canonical_json((1, ("x", None))) == b'[1,["x",null]]'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\x00", b'"\\u0000"'),
        ("\x01\x1f", b'"\\u0001\\u001f"'),
        ("\b\t\n\f\r", b'"\\b\\t\\n\\f\\r"'),
        ("\x0b", b'"\\u000b"'),
        ('"\\', b'"\\"\\\\"'),
        ("/", b'"/"'),
        ("\x7f", b'"\x7f"'),
        ("\u2028\u2029", '"\u2028\u2029"'.encode()),
        ("é€\U0001f600", '"é€\U0001f600"'.encode()),
    ],
)
def test_string_escaping(text: str, expected: bytes) -> None:
    assert canonical_json(text) == expected
    assert json.loads(canonical_json(text)) == text


def test_scalars() -> None:
    assert canonical_json(None) == b"null"
    assert canonical_json(True) == b"true"
    assert canonical_json(False) == b"false"
    assert canonical_json(0) == b"0"
    assert canonical_json(-42) == b"-42"
    assert canonical_json([]) == b"[]"
    assert canonical_json({}) == b"{}"


# -- integer range ----------------------------------------------------------------


@pytest.mark.parametrize("value", [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER])
def test_safe_integer_limits_accepted(value: int) -> None:
    assert MAX_SAFE_INTEGER == 2**53 - 1
    assert canonical_json({"n": value}) == f'{{"n":{value}}}'.encode()


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**64, -(10**30)])
def test_integers_beyond_safe_range_rejected(value: int) -> None:
    message = reject({"a": [0, value]})
    assert str(value) in message
    assert "2**53" in message
    assert message.endswith("at $['a'][1]")


# -- rejections -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (Decimal("NaN"), "NaN"),
        (Decimal("sNaN"), "sNaN"),
        (Decimal("Infinity"), "Infinity"),
        (Decimal("-Infinity"), "-Infinity"),
    ],
)
def test_non_finite_numbers_rejected_with_path(value: Any, needle: str) -> None:
    message = reject({"outer": {"x": [1, value]}})
    assert needle in message
    assert "not allowed" in message
    assert message.endswith("at $['outer']['x'][1]")


def test_non_finite_at_top_level_has_root_path() -> None:
    assert reject(float("nan")).endswith("at $")


def test_rejection_is_an_auditjournal_value_error() -> None:
    with pytest.raises(AuditJournalError):
        canonical_json(float("nan"))
    with pytest.raises(ValueError):
        canonical_json({1, 2})


@pytest.mark.parametrize("value", [{1, 2}, frozenset({"a"}), set()])
def test_sets_rejected(value: Any) -> None:
    message = reject({"s": value})
    assert "sets" in message
    assert message.endswith("at $['s']")


@pytest.mark.parametrize(
    ("key", "type_name"),
    [(1, "int"), (1.5, "float"), (None, "NoneType"), (("t",), "tuple"), (b"k", "bytes")],
)
def test_non_str_keys_rejected(key: Any, type_name: str) -> None:
    message = reject([{"ok": {key: 1}}])
    assert "key" in message
    assert type_name in message
    assert message.endswith("at $[0]['ok']")


def test_list_cycle_rejected() -> None:
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    message = reject({"a": cyclic})
    assert "cycle" in message
    assert message.startswith("value contains a reference cycle at $['a'][1][1]")


def test_dict_cycle_rejected() -> None:
    cyclic: dict[str, Any] = {"x": 1}
    cyclic["self"] = {"inner": cyclic}
    message = reject(cyclic)
    assert "cycle" in message
    assert "at $['self']['inner']['self']" in message


def test_shared_non_cyclic_reference_is_fine() -> None:
    shared = {"a": 1}
    assert canonical_json([shared, shared, {"s": shared}]) == b'[{"a":1},{"a":1},{"s":{"a":1}}]'


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (Opaque(), "Opaque"),
        (object(), "object"),
        (1 + 2j, "complex"),
        (dt.time(12, 0), "time"),
        (range(3), "range"),
    ],
)
def test_unsupported_types_rejected(value: Any, type_name: str) -> None:
    message = reject({"v": [value]})
    assert type_name in message
    assert "no canonical JSON form" in message
    assert message.endswith("at $['v'][0]")


def test_lone_surrogate_in_string_rejected_with_path() -> None:
    message = reject({"a": ["fine", "x\ud800y"]})
    assert "lone surrogate" in message
    assert "at $['a'][1]" in message


def test_lone_surrogate_in_key_rejected_with_path() -> None:
    message = reject({"a": {"\udc00": 1}})
    assert "lone surrogate" in message
    assert "at $['a']['\\udc00']" in message


def test_lone_surrogate_with_non_bmp_keys_rejected() -> None:
    # The UTF-16 sorting path must reject just like the fast path.
    message = reject({"\U00010000": "\ud83d"})
    assert "lone surrogate" in message
    assert "at $['\U00010000']" in message


def test_valid_surrogate_pair_character_accepted() -> None:
    assert canonical_json("\U0001f600") == '"\U0001f600"'.encode()


def test_nesting_up_to_max_depth_accepted() -> None:
    assert MAX_DEPTH == 512
    out = canonical_json(nest(MAX_DEPTH))
    assert json.loads(out) == nest(MAX_DEPTH)
    assert out.count(b"[") + out.count(b"{") == MAX_DEPTH


def test_nesting_deeper_than_max_depth_rejected() -> None:
    message = reject(nest(MAX_DEPTH + 1))
    assert f"nested deeper than {MAX_DEPTH} levels" in message
    assert "cycle" not in message
    assert "at $['k'][0]" in message
    assert len(message) < 300  # the path is abbreviated, not 512 segments long


def test_very_deep_nesting_rejected_without_recursion_error() -> None:
    message = reject(nest(5000))
    assert "nested deeper than" in message


# -- conversions ------------------------------------------------------------------


def test_naive_datetime_taken_as_utc() -> None:
    value = dt.datetime(2024, 1, 2, 3, 4, 5)
    assert canonical_json(value) == b'"2024-01-02T03:04:05Z"'


def test_naive_datetime_with_microseconds() -> None:
    value = dt.datetime(2024, 1, 2, 3, 4, 5, 120)
    assert canonical_json(value) == b'"2024-01-02T03:04:05.000120Z"'


def test_aware_datetime_converted_to_utc() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    value = dt.datetime(2024, 1, 1, 1, 30, tzinfo=plus_two)
    assert canonical_json(value) == b'"2023-12-31T23:30:00Z"'
    minus_five = dt.timezone(dt.timedelta(hours=-5, minutes=-30))
    value = dt.datetime(2024, 6, 30, 20, 0, tzinfo=minus_five)
    assert canonical_json(value) == b'"2024-07-01T01:30:00Z"'


def test_utc_datetime_and_equal_instants_hash_alike() -> None:
    utc = dt.datetime(2024, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    other = utc.astimezone(dt.timezone(dt.timedelta(hours=9)))
    naive = dt.datetime(2024, 3, 4, 5, 6, 7)
    assert canonical_json(utc) == b'"2024-03-04T05:06:07Z"'
    assert stable_hash({"t": utc}) == stable_hash({"t": other}) == stable_hash({"t": naive})


class _NoOffset(dt.tzinfo):
    """A tzinfo that does not know its offset: Python treats such datetimes as naive."""

    def utcoffset(self, d: dt.datetime | None) -> None:
        return None

    def dst(self, d: dt.datetime | None) -> None:
        return None

    def tzname(self, d: dt.datetime | None) -> str:
        return "unknown"


@pytest.mark.skipif(not hasattr(time, "tzset"), reason="needs time.tzset")
def test_datetime_without_offset_is_naive_regardless_of_host_timezone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = dt.datetime(2024, 1, 1, 12, tzinfo=_NoOffset())
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert canonical_json(value) == b'"2024-01-01T12:00:00Z"'
    finally:
        monkeypatch.undo()
        time.tzset()


def test_date_to_iso() -> None:
    assert canonical_json({"d": dt.date(2024, 2, 29)}) == b'{"d":"2024-02-29"}'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("1.10"), b'"1.10"'),
        (Decimal("-0"), b'"-0"'),
        (Decimal("1E+3"), b'"1E+3"'),
        (Decimal("12345678901234567890.123"), b'"12345678901234567890.123"'),
    ],
)
def test_decimal_to_string(value: Decimal, expected: bytes) -> None:
    assert canonical_json(value) == expected


@pytest.mark.parametrize("kind", [bytes, bytearray])
def test_bytes_to_base64_object(kind: type) -> None:
    raw = kind(b"\x00\xffhello\xfe")
    encoded = base64.b64encode(bytes(raw)).decode("ascii")
    assert canonical_json({"b": raw}) == f'{{"b":{{"__bytes__":"{encoded}"}}}}'.encode()
    assert json.loads(canonical_json(raw)) == {"__bytes__": "AP9oZWxsb/4="}


def test_empty_bytes() -> None:
    assert canonical_json(b"") == b'{"__bytes__":""}'


def test_conversions_inside_tuples_and_lists() -> None:
    value = ({"when": dt.date(2020, 1, 1)}, [Decimal("2.5"), b"a"], 0.5)
    assert canonical_json(value) == (b'[{"when":"2020-01-01"},["2.5",{"__bytes__":"YQ=="}],0.5]')


# -- stable_hash ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, 0, "x", [1.0, 2.5], {"a": {"b": [True, None]}}, {"\U00010000": b"\x01"}],
)
def test_stable_hash_is_sha256_of_canonical_json(value: Any) -> None:
    digest = stable_hash(value)
    assert digest == hashlib.sha256(canonical_json(value)).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


def test_stable_hash_known_value() -> None:
    assert stable_hash({"b": 1, "a": [1.0]}) == hashlib.sha256(b'{"a":[1],"b":1}').hexdigest()


def test_stable_hash_ignores_dict_insertion_order() -> None:
    one = {"a": 1, "b": {"x": [1, 2], "y": "z"}, "\uffff": 0, "\U00010000": 1}
    two = {"\U00010000": 1, "b": {"y": "z", "x": [1, 2]}, "\uffff": 0, "a": 1}
    assert canonical_json(one) == canonical_json(two)
    assert stable_hash(one) == stable_hash(two)


def test_stable_hash_differs_for_different_content() -> None:
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
    assert stable_hash([1, 2]) != stable_hash([2, 1])
    assert stable_hash("1") != stable_hash(1)


def test_stable_hash_propagates_rejection() -> None:
    with pytest.raises(CanonicalizationError):
        stable_hash({"x": float("nan")})


# -- no mutation ------------------------------------------------------------------


def test_canonical_json_does_not_mutate_input() -> None:
    inner = [1.0, -0.0, b"\x01", Decimal("1.5")]
    value: dict[str, Any] = {
        "f": 1.0,
        "b": b"bytes",
        "ba": bytearray(b"\x02"),
        "d": dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        "nested": {"list": inner, "tuple": (2.0, b"x")},
        "\U00010000": {"z": 1, "a": 2},
    }
    snapshot = copy.deepcopy(value)
    keys_before = list(value)
    nested_keys_before = list(value["\U00010000"])
    canonical_json(value)
    stable_hash(value)
    assert value == snapshot
    assert list(value) == keys_before
    assert list(value["\U00010000"]) == nested_keys_before
    assert value["nested"]["list"] is inner
    assert type(value["f"]) is float
    assert type(value["b"]) is bytes
    assert type(value["nested"]["tuple"]) is tuple


def test_failed_canonicalization_does_not_mutate_input() -> None:
    value: dict[str, Any] = {"ok": [1.0, b"x"], "bad": float("nan")}
    snapshot = copy.deepcopy(value)
    with pytest.raises(CanonicalizationError):
        canonical_json(value)
    assert list(value) == list(snapshot)
    assert value["ok"] == snapshot["ok"]
    assert type(value["ok"][0]) is float


# -- what the recorder may nest (issue 10, item 2) ----------------------------------------


def test_values_the_recorder_takes_stop_one_level_short_of_a_record() -> None:
    assert MAX_VALUE_DEPTH == MAX_DEPTH - 1  # the export record wraps the value once
    canonical_json(nest(MAX_VALUE_DEPTH), max_depth=MAX_VALUE_DEPTH)
    with pytest.raises(CanonicalizationError) as info:
        canonical_json(nest(MAX_VALUE_DEPTH + 1), max_depth=MAX_VALUE_DEPTH)
    message = str(info.value)
    assert f"nested deeper than {MAX_VALUE_DEPTH} levels" in message
    # ... and the record holding the deepest value is itself within the limit
    canonical_json({"record_type": "row", "source_data": nest(MAX_VALUE_DEPTH)})


# -- subclasses of JSON types (issue 10, item 8) -------------------------------------------


class Colour(enum.StrEnum):
    RED = "red"


class Size(enum.IntEnum):
    BIG = 3


class Mode(str, enum.Enum):  # noqa: UP042 - the pre-3.11 spelling of a StrEnum
    FAST = "fast"


class Shouting(str):
    def __str__(self) -> str:
        return self.upper()


class Backwards(list[Any]):
    def __iter__(self) -> Any:
        return reversed(list.copy(self))


class Money(float):
    pass


class Count(int):
    pass


class Record(dict[str, Any]):
    def items(self) -> Any:  # an override must not change what is recorded
        return [("forged", True)]


def test_subclasses_of_json_types_are_recorded_as_their_base_value() -> None:
    counts = collections.defaultdict(list)
    counts["b"].append(1)
    value = {
        Colour.RED: [Size.BIG, Mode.FAST, Colour.RED],
        "ordered": collections.OrderedDict([("z", 1), ("a", Money(2.5))]),
        "default": counts,
        "counter": collections.Counter("aab"),
        "shout": Shouting("quiet"),
        "list": Backwards([1, 2, 3]),
        "record": Record(x=Count(7), y=Money(3.0)),
    }
    plain = {
        "red": [3, "fast", "red"],
        "ordered": {"z": 1, "a": 2.5},
        "default": {"b": [1]},
        "counter": {"a": 2, "b": 1},
        "shout": "quiet",
        "list": [1, 2, 3],
        "record": {"x": 7, "y": 3},
    }
    assert canonical_json(value) == canonical_json(plain)
    assert stable_hash(value) == stable_hash(plain)


def test_subclass_containers_nest_as_deep_as_plain_ones() -> None:
    value: Any = 1
    for _ in range(MAX_DEPTH):
        value = collections.OrderedDict(k=Backwards([value]))  # two levels per turn
        if nest_depth(value) >= MAX_DEPTH:
            break
    assert nest_depth(value) == MAX_DEPTH
    canonical_json(value)


def nest_depth(value: Any) -> int:
    depth = 0
    while isinstance(value, dict | list):
        value = next(iter(dict.values(value))) if isinstance(value, dict) else value[0]
        depth += 1
    return depth


class Pigeon(enum.Enum):
    HOMING = 1


def test_other_enums_and_named_tuples_are_refused_as_ambiguous() -> None:
    assert ".value or .name" in reject({"bird": Pigeon.HOMING})
    point = collections.namedtuple("Point", "x y")(1, 2)
    assert "pass a list or a dict" in reject([point])


class SameText(str):
    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other


def test_two_keys_that_are_the_same_string_are_refused() -> None:
    message = reject({"a": {SameText("k"): 1, SameText("k"): 2}})
    assert "same string" in message
    assert "at $['a']" in message


def test_a_cycle_through_a_subclass_is_reported_as_a_cycle() -> None:
    looped: Any = Record()
    dict.__setitem__(looped, "me", [looped])
    assert "reference cycle" in reject(looped)
