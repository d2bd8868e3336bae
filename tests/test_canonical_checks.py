"""Boundaries of canonical.py that its other tests pass over (see tools/mutate.py):
the exact depth limit, the float fast path's edges in every container, keys in
the last Unicode plane, shared references in a too-deep value, memoryview."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import pytest
import rfc8785

from auditjournal.errors import CanonicalizationError
from auditjournal.model import canonical
from auditjournal.model.canonical import MAX_DEPTH, MAX_SAFE_INTEGER, canonical_json, format_float


def nested(kind: str, levels: int) -> Any:
    """``levels`` containers, each holding the next; the innermost is empty."""
    value: Any = {} if kind == "dict" else []
    for _ in range(levels - 1):
        value = {"k": value} if kind == "dict" else [value]
    return value


@pytest.mark.parametrize("kind", ["dict", "list"])
def test_the_depth_limit_is_exact(kind: str) -> None:
    assert canonical_json(nested(kind, MAX_DEPTH)) == rfc8785.dumps(nested(kind, MAX_DEPTH))
    with pytest.raises(CanonicalizationError, match=f"nested deeper than {MAX_DEPTH} levels"):
        canonical_json(nested(kind, MAX_DEPTH + 1))


def test_the_depth_limit_is_512() -> None:
    """The documented figure (docs/formats.md); a change is a format change."""
    assert MAX_DEPTH == 512


def test_a_shared_reference_in_a_too_deep_value_is_not_called_a_cycle() -> None:
    shared = [1, 2]
    value: Any = [shared, shared]
    for _ in range(MAX_DEPTH):
        value = [value, shared]
    with pytest.raises(CanonicalizationError, match="nested deeper than"):
        canonical_json(value)
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    cyclic.append(shared)
    with pytest.raises(CanonicalizationError, match="reference cycle"):
        canonical_json(cyclic)
    inner: dict[str, Any] = {"shared": shared}
    inner["self"] = {"again": inner}
    with pytest.raises(CanonicalizationError, match=r"reference cycle at \$\['self'\]\['again'\]"):
        canonical_json(inner)


FLOATS = [
    1e-4,  # the fast path's lower edge (msgspec and ECMAScript agree)
    1.5e-4,
    9.99e-5,  # just below: ECMAScript writes 0.0000999, msgspec 9.99e-05
    1e-7,  # ECMAScript switches to an exponent below 1e-6
    2.0,  # integral: ECMAScript writes 2, msgspec 2.0
    -0.0,
    123456789.125,
    1e21,  # from here ECMAScript writes an exponent: a reader parses a float again
    1.25e21,
    5e-324,
    -1.7976931348623157e308,
]


@pytest.mark.parametrize("value", FLOATS, ids=repr)
def test_floats_match_rfc8785_at_the_top_level_and_in_every_container(value: float) -> None:
    for wrapped in (value, [value], {"x": value}, (value,), [[value]], {"x": {"y": value}}):
        assert canonical_json(wrapped) == rfc8785.dumps(wrapped), wrapped


@pytest.mark.parametrize("value", [9007199254740992.0, 9007199254740993.0, 1e16, 1.5e16, 9.99e20])
def test_integral_floats_a_reader_would_parse_as_unsafe_integers_are_refused(value: float) -> None:
    """From 2**53 up to 1e21 ECMAScript writes an integer literal beyond the safe range,
    which no reader can take back as the float it was (issue 10 item 2)."""
    for wrapped in (value, [value], {"x": value}, (value,), [[value]], {"x": {"y": value}}):
        with pytest.raises(CanonicalizationError):
            canonical_json(wrapped)


@pytest.mark.parametrize("value", [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER])
def test_integral_floats_at_the_safe_limit_are_integers(value: int) -> None:
    for wrapped in (float(value), [float(value)], {"x": float(value)}):
        assert canonical_json(wrapped) == rfc8785.dumps(wrapped)
    assert canonical_json(float(value)) == str(value).encode()


@pytest.mark.parametrize("value", [MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1])
def test_integers_one_past_the_limit_are_refused_in_every_container(value: int) -> None:
    for wrapped in (value, [value], {"x": value}):
        with pytest.raises(CanonicalizationError, match="beyond"):
            canonical_json(wrapped)


@pytest.mark.parametrize(
    "key",
    ["\U00010000", "\U0005ffff", "\U000fffff", "\U00100000", "\U0010ffff"],
    ids=["plane 1", "plane 5", "plane 15", "plane 16 start", "plane 16 end"],
)
def test_keys_beyond_the_bmp_sort_by_utf16_in_every_plane(key: str) -> None:
    """UTF-16 puts every astral key (surrogates D800..DFFF) before BMP keys from E000."""
    value = {"\uffff": 1, key: 2, "\ue000": 3, "a": 4}
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json([value]) == rfc8785.dumps([value])
    assert canonical_json({"in": value}) == rfc8785.dumps({"in": value})


def test_astral_values_alone_keep_code_point_order() -> None:
    value = {"\uffff": "\U0010ffff", "\ue000": "\U00010000"}
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_every_bytes_like_is_base64(kind: type) -> None:
    data = kind(b"\x00\xffab")
    assert canonical_json(data) == b'{"__bytes__":"AP9hYg=="}'
    assert canonical_json({"b": data}) == b'{"b":{"__bytes__":"AP9hYg=="}}'
    assert canonical_json([data]) == b'[{"__bytes__":"AP9hYg=="}]'


def test_format_float_edges() -> None:
    assert format_float(1e21) == "1e+21"
    assert format_float(1e20) == "100000000000000000000"
    assert format_float(1e-6) == "0.000001"
    assert format_float(1e-7) == "1e-7"
    assert format_float(-1.5e-7) == "-1.5e-7"
    assert format_float(123.456) == "123.456"
    assert format_float(0.5) == "0.5"
    assert format_float(-0.0) == "0"
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(CanonicalizationError):
            format_float(bad)


def test_a_long_path_is_shortened_in_the_message() -> None:
    value: Any = float("nan")
    for i in range(20):
        value = {f"k{i}": value}
    with pytest.raises(CanonicalizationError) as caught:
        canonical_json(value)
    message = str(caught.value)
    assert "...(10 more)..." in message
    assert message.endswith("['k2']['k1']['k0']") or "['k0']" in message
    short: Any = float("nan")
    for _ in range(12):
        short = [short]
    with pytest.raises(CanonicalizationError, match=r"at \$" + r"\[0\]" * 12 + "$"):
        canonical_json(short)


def test_a_lone_surrogate_deep_inside_is_located() -> None:
    value = {"a": [1, {"b": "ok", "c": ["x", "\ud800"]}]}
    with pytest.raises(CanonicalizationError, match=r"at \$\['a'\]\[1\]\['c'\]\[1\]"):
        canonical_json(value)
    keyed = {"a": {"\udfff": 1}}
    with pytest.raises(CanonicalizationError, match=r"at \$\['a'\]\['\\udfff'\]"):
        canonical_json(keyed)


@pytest.mark.parametrize("value", [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 0])
def test_safe_integers_at_the_top_level_are_accepted(value: int) -> None:
    assert canonical_json(value) == str(value).encode()


def test_keys_beyond_the_bmp_inside_a_tuple_sort_by_utf16() -> None:
    inner = {"\U00010000": 1, "\ue000": 2}
    assert canonical_json((inner,)) == rfc8785.dumps([inner])
    assert canonical_json((1, (inner,))) == rfc8785.dumps([1, [inner]])


def test_the_shortened_path_keeps_the_first_six_and_the_last_four_steps() -> None:
    value: Any = float("nan")
    for i in range(20):
        value = {f"k{i}": value}
    with pytest.raises(CanonicalizationError) as caught:
        canonical_json(value)
    steps = [f"['k{i}']" for i in range(19, -1, -1)]
    path = "$" + "".join(steps[:6]) + "...(10 more)..." + "".join(steps[-4:])
    assert str(caught.value).endswith(f" at {path}")


def test_a_value_deeper_than_the_stack_is_too_deep_not_a_cycle() -> None:
    """The cycle search runs out of stack too; running out is not a cycle."""
    with pytest.raises(CanonicalizationError, match=f"nested deeper than {MAX_DEPTH} levels"):
        canonical_json(nested("list", 100_000))


def test_scalars_inside_a_too_deep_value_are_not_a_cycle() -> None:
    value: Any = ["text", 7, 1.5, None, True]
    for _ in range(MAX_DEPTH):
        value = ["s", 3, value]
    with pytest.raises(CanonicalizationError, match="nested deeper than") as caught:
        canonical_json(value)
    assert "cycle" not in str(caught.value)


@pytest.mark.parametrize("compiled", [False, True], ids=["python walk", "compiled check"])
def test_a_caller_already_deep_in_its_stack_gets_a_typed_error(
    compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within the depth limit, but the caller's stack is nearly used up: RecursionError
    inside the walk becomes a CanonicalizationError naming the stack. The optional compiled
    check (``_canonical_accel.c``) recurses in C: on Python 3.12+ that is not counted against
    the recursion limit, so it may pass the value without a Python walk and give the bytes;
    never a bare RecursionError, never other bytes."""
    if not compiled:
        monkeypatch.setattr(canonical, "_normalized", None)
    elif canonical._normalized is None:
        pytest.skip("the optional compiled check is not built (or AUDITJOURNAL_PURE_PYTHON)")
    expected = b"[" * 299 + b"[]" + b"]" * 299
    limit = sys.getrecursionlimit()

    def descend(n: int) -> bytes:
        return canonical_json(nested("list", 300)) if n == 0 else descend(n - 1)

    sys.setrecursionlimit(len(traceback.extract_stack()) + 200)
    result: bytes | None = None
    try:
        result = descend(20)
    except CanonicalizationError as exc:
        assert "too deeply for this thread's stack" in str(exc)
    finally:
        sys.setrecursionlimit(limit)
    if not compiled:
        assert result is None, "the Python walk must run out of stack and say so"
    else:
        assert result in (None, expected)
    assert descend(20) == expected
