"""Property tests: the recorder's hot paths, made faster for issue 13 (item 3), give exactly
what the plain code they replaced gave.

The oracles: the secret filter's walk as it was before the speed-up (kept below), the
canonical JSON walk (``canonical._normalize``: the compiled check must pass only what
it returns unchanged) and the Python seal of a journal line (``lines.seal_python``).
The compiled modules are tested whether or not the checkout has built them: a missing
one is built from its C source into a temporary directory (skipped without a compiler).
"""

from __future__ import annotations

import collections
import datetime as _dt
import decimal
import enum
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_roundtrip_properties import events_of

from auditjournal.errors import CanonicalizationError
from auditjournal.journal import lines
from auditjournal.model import canonical, secretfilter
from auditjournal.model.events import EVENT_TYPES, encode_event
from auditjournal.model.secretfilter import SecretFilter, _path

EXAMPLES = settings(max_examples=300, deadline=None)


# -- the secret filter ---------------------------------------------------------------------


def reference_filter(
    flt: SecretFilter, value: Any, extra_fields: tuple[str, ...] = ()
) -> tuple[Any, tuple[str, ...]]:
    """The secret filter's walk before issue 13: a Python loop over every key."""
    extra = frozenset(f.lower().replace("-", "_") for f in extra_fields)
    paths: list[str] = []

    def walk(value: Any, at: tuple[Any, ...], depth: int) -> Any:
        if depth > 200:
            return value
        if type(value) is dict or isinstance(value, dict):
            changed: dict[Any, Any] | None = None
            for key, item in value.items():
                if type(key) is str and flt.is_secret(key, extra):
                    new = flt.fingerprint(item)
                    if new != item:
                        paths.append(_path((*at, key)))
                elif type(item) in (dict, list, tuple) or isinstance(item, dict | list | tuple):
                    new = walk(item, (*at, key), depth + 1)
                else:
                    continue
                if new is not item:
                    if changed is None:
                        changed = dict(value)
                    changed[key] = new
            return value if changed is None else changed
        if isinstance(value, list | tuple):
            items = list(value)
            touched = False
            for i, item in enumerate(value):
                if isinstance(item, dict | list | tuple):
                    new = walk(item, (*at, i), depth + 1)
                    if new is not item:
                        items[i] = new
                        touched = True
            return items if touched else value
        return value

    return walk(value, (), 0), tuple(paths)


class Name(enum.StrEnum):
    TOKEN = "token"
    MODEL = "model"


class Level(enum.IntEnum):
    HIGH = 2


NAMES = ["model", "messages", "content", "api_key", "Api-Key", "password", "max_tokens",
         "db_password", "token_fingerprint", "role", "x", "custom_field"]  # fmt: skip
keys = st.one_of(
    st.sampled_from(NAMES), st.text(max_size=6), st.sampled_from([Name.TOKEN, Name.MODEL]),
    st.integers(-3, 3), st.none(),
)  # fmt: skip
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
    st.just("<redacted>"), st.just(Level.HIGH), st.just(Name.MODEL), st.binary(max_size=4),
)  # fmt: skip


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(keys, children, max_size=5),
        st.dictionaries(keys, children, max_size=3).map(collections.OrderedDict),
    )


values = st.recursive(leaves, _containers, max_leaves=25)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:  # one for all of a test's examples
        yield patch


def _outcome(function: Any, *args: Any) -> Any:
    """What ``function`` returns, or the error it raises (compared by repr)."""
    try:
        return function(*args)
    except Exception as exc:  # the oracle and the new path must agree on it
        return exc


@given(values, st.lists(st.sampled_from(["custom_field", "X", "role"]), max_size=2), st.booleans())
@EXAMPLES
def test_the_secret_filter_filters_as_its_plain_walk_did(
    value: Any, extra: list[str], keyed: bool
) -> None:
    key = b"k" * 32 if keyed else None
    for flt in (SecretFilter(key=key), SecretFilter(["Role"], key=key)):
        for _ in range(2):  # the second time with the names seen the first time cached
            want = _outcome(reference_filter, flt, value, tuple(extra))
            got = _outcome(SecretFilter.filter, flt, value, extra)
            assert repr(got) == repr(want)
            if isinstance(want, Exception):  # a secret's value with no canonical form
                continue
            assert got == want or got[0] is value  # (equal but for NaN in a value kept as is)
            if want[0] is value:  # nothing replaced: the caller's own object back
                assert got[0] is value


# -- the compiled fast paths (canonical walk, secret filter) -------------------------------


def _build_compiled(
    where: Path, beside: Any = canonical, name: str = "_canonical_accel", **options: Any
) -> Any:
    """The compiled module ``name``, built from its C source (beside the module
    ``beside``) into ``where`` when the checkout has no build of it (``python setup.py
    build_ext --inplace`` makes one)."""
    from setuptools import Distribution, Extension

    source = Path(beside.__file__).with_name(f"{name}.c")
    ext = Extension(name, sources=[str(source)], **options)
    dist = Distribution({"name": "accel", "ext_modules": [ext]})
    command = dist.get_command_obj("build_ext")
    command.build_lib = str(where / "lib")  # type: ignore[attr-defined]
    command.build_temp = str(where / "tmp")  # type: ignore[attr-defined]
    command.ensure_finalized()
    try:
        command.run()
    except Exception as exc:  # no C compiler here: the pure-Python walk is all there is
        pytest.skip(f"cannot build the compiled check: {exc}")
    built = next((where / "lib").glob(f"{name}*"))
    spec = importlib.util.spec_from_file_location(name, built)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def accel(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The compiled module: the checkout's build, else one made from its C source."""
    if canonical._compiled_normalized is not None:
        return importlib.import_module("auditjournal.model._canonical_accel")
    return _build_compiled(tmp_path_factory.mktemp("accel"))


@pytest.fixture(scope="module")
def compiled(accel: Any) -> Any:
    return accel.plain


class Text(str):
    pass


class Items(list[Any]):
    pass


hostile_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6),
    st.integers(-(2**53) - 2, -(2**53) + 2), st.integers(2**53 - 2, 2**53 + 2),
    st.floats(min_value=-1e-3, max_value=1e-3), st.integers(-3, 3).map(float),
    st.just(Level.HIGH), st.just(Name.MODEL), st.text(max_size=3).map(Text),
    st.binary(max_size=3), st.just(decimal.Decimal("1.5")), st.just(frozenset()),
    st.just(_dt.datetime(2026, 1, 1, tzinfo=_dt.UTC)),
)  # fmt: skip
hostile_keys = st.one_of(st.text(max_size=4), st.just(Name.TOKEN), st.integers(0, 2), st.none())


def _hostile_containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.lists(children, max_size=3).map(Items),
        st.dictionaries(st.text(max_size=4), children, max_size=5),
        st.dictionaries(hostile_keys, children, max_size=3),
        st.dictionaries(st.text(max_size=3), children, max_size=3).map(collections.OrderedDict),
    )


hostile_values = st.recursive(hostile_leaves, _hostile_containers, max_leaves=30)
plain_leaves = st.one_of(
    st.none(), st.booleans(), st.text(max_size=6), st.integers(-(2**53) + 1, 2**53 - 1),
    st.floats(min_value=1e-4, max_value=1e15).filter(lambda f: not f.is_integer()),
)  # fmt: skip
plain_values = st.recursive(
    plain_leaves,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=5),
    max_leaves=30,
)

# plain JSON but for the odd number at an edge of what the check passes
edge_numbers = st.one_of(
    st.floats(), st.floats(min_value=-1e-3, max_value=1e-3), st.integers(-3, 3).map(float),
    st.floats(min_value=1e15, max_value=1e22), st.sampled_from([1e-4, -1e-4, 1e16, 2.0**53]),
    st.integers(-(2**53) - 2, -(2**53) + 2), st.integers(2**53 - 2, 2**53 + 2),
)  # fmt: skip
near_plain = st.recursive(
    st.one_of(plain_leaves, plain_leaves, edge_numbers),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=5),
    max_leaves=20,
)
checked_values = st.one_of(near_plain, hostile_values)
EDGES = [2**53 - 1, 2**53, -(2**53) + 1, -(2**53), 2**64, 1e-4, 9.99e-5, -1e-4, 1e16, 9.9e15,
         2.0**53, 3.0, -0.0, 0.5, float("nan"), float("inf"), True, Text("x"), (1,),
         {1: "x"}, {Name.TOKEN: 1}, {None: 2}, Items(), collections.OrderedDict()]  # fmt: skip


def with_edges(**more: Any) -> Any:
    """The edges of the compiled check as explicit examples, alone and inside containers
    (the suite's Hypothesis profile is derandomized: these are tried on every run)."""

    def add(test: Any) -> Any:
        for edge in EDGES:
            for value in (edge, [edge], {"k": [1, "s", {"e": edge}]}):
                test = example(value=value, **more)(test)
        return test

    return add


@given(value=checked_values, start=st.sampled_from([0, 1, 500, 511, 512]))
@with_edges(start=0)
@EXAMPLES
def test_what_the_compiled_check_passes_the_walk_returns_as_is(
    compiled: Any, value: Any, start: int
) -> None:
    if compiled(value, start):
        assert canonical._normalize(value, start) is value


@given(value=checked_values)
@with_edges()
@EXAMPLES
def test_canonical_json_is_the_same_with_and_without_the_compiled_walk(
    accel: Any, monkeypatch_module: pytest.MonkeyPatch, value: Any
) -> None:
    monkeypatch_module.setattr(canonical, "_normalized", None)
    want = repr(_outcome(canonical.canonical_json, value))
    monkeypatch_module.setattr(canonical, "_normalized", accel.normalized)
    assert repr(_outcome(canonical.canonical_json, value)) == want


@given(value=checked_values, start=st.sampled_from([0, 1, 500, 511, 512]))
@with_edges(start=0)
@EXAMPLES
def test_what_the_compiled_walk_returns_the_walk_returns(
    accel: Any, value: Any, start: int
) -> None:
    """``normalized`` gives the walk's result (the value itself when plain, else an equal
    copy with ints for integral floats, of the same types all the way down) or WALK."""
    got = accel.normalized(value, start)
    if got is accel.WALK:
        return
    want = canonical._normalize(value, start)
    assert _typed(got) == _typed(want)
    assert (got is value) == (want is value)
    if accel.plain(value, start):
        assert got is value


def test_the_compiled_walk_makes_ints_of_integral_floats_and_leaves_the_rest(
    accel: Any,
) -> None:
    row = {"price": 3.0, "qty": [1, -0.0, 2.5, {"total": 9007199254740991.0}], "s": "x"}
    got = accel.normalized(row, 0)
    assert _typed(got) == _typed(
        {"price": 3, "qty": [1, 0, 2.5, {"total": 9007199254740991}], "s": "x"}
    )
    assert row["price"] == 3.0 and type(row["price"]) is float  # the caller's value as it was
    plain = {"a": [1, "b", 2.5]}
    assert accel.normalized(plain, 0) is plain
    for walked in (9007199254740992.0, 1e-5, 1e16 + 1.5, float("nan"), (1,), {1: 2}, [[[]]]):
        assert accel.normalized(walked, 0 if walked != [[[]]] else 511) is accel.WALK
    assert canonical.canonical_json(row) == (
        b'{"price":3,"qty":[1,0,2.5,{"total":9007199254740991}],"s":"x"}'
    )


def _typed(value: Any) -> Any:
    """``value`` with the type of every leaf beside it (3 == 3.0, but not as JSON)."""
    if type(value) is dict:
        return ("dict", sorted((k, _typed(v)) for k, v in value.items()))
    if type(value) is list:
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, repr(value))


@given(plain_values, st.integers(0, 500))
@EXAMPLES
def test_the_compiled_check_passes_plain_json(compiled: Any, value: Any, start: int) -> None:
    assert compiled(value, start)  # else the fast path would never be taken


def test_the_compiled_check_leaves_the_depth_limit_and_cycles_to_the_walk(compiled: Any) -> None:
    def nested(levels: int) -> list[Any]:
        value: list[Any] = []
        for _ in range(levels - 1):
            value = [value]
        return value

    assert compiled(nested(512), 0)
    assert not compiled(nested(513), 0)
    assert compiled(nested(12), 500) and not compiled(nested(13), 500)
    assert not compiled([], 513) and not compiled([], -1) and compiled("x", 512)
    cycle: list[Any] = []
    cycle.append(cycle)
    assert not compiled(cycle, 0)
    with pytest.raises(CanonicalizationError, match="cycle"):
        canonical.canonical_json(cycle)


def test_the_environment_can_leave_the_compiled_check_unused() -> None:
    code = "from auditjournal.model import canonical; print(canonical._normalized is None)"
    env = {**os.environ, canonical.PURE_PYTHON_ENV: "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "True", result.stderr


@given(st.one_of(values, checked_values), st.booleans())
@EXAMPLES
def test_what_the_compiled_check_passes_the_secret_filter_leaves_alone(
    accel: Any, monkeypatch_module: pytest.MonkeyPatch, value: Any, keyed: bool
) -> None:
    flt = SecretFilter(key=b"k" * 32 if keyed else None)
    monkeypatch_module.setattr(secretfilter, "_unfiltered", None)
    first = _outcome(SecretFilter.filter, flt, value)  # the plain walk learns the names
    monkeypatch_module.setattr(secretfilter, "_unfiltered", accel.unfiltered)
    assert repr(_outcome(SecretFilter.filter, flt, value)) == repr(first)
    assert repr(_outcome(SecretFilter.filter, flt, value, ["role"])) == repr(
        _outcome(reference_filter, flt, value, ("role",))
    )
    if accel.unfiltered(value, flt._plain):
        assert reference_filter(flt, value)[0] is value


def test_the_compiled_secret_check_passes_known_names_only(accel: Any) -> None:
    names = {"model", "messages", "content", "n"}
    plain = {"model": "m", "messages": [{"content": "x"}, ("y", 1.5, None)], "n": 3}
    assert accel.unfiltered(plain, names)
    assert not accel.unfiltered({**plain, "api_key": "s"}, names)  # a name not known plain
    assert not accel.unfiltered({"model": [{"other": 1}]}, names)  # ... also deeper down
    assert not accel.unfiltered({"model": collections.OrderedDict()}, names)  # a subclass
    assert not accel.unfiltered({"model": Items([1])}, names)  # (its __iter__ could differ)
    assert not accel.unfiltered({Name.MODEL: 1}, names)  # a str subclass key
    assert not accel.unfiltered({"model": b"x"}, names)
    deep: list[Any] = []
    for _ in range(199):
        deep = [deep]
    assert accel.unfiltered(deep, names) and not accel.unfiltered([deep], names)
    flt = SecretFilter()
    flt.filter(plain)
    assert accel.unfiltered(plain, flt._plain)  # the filter's own names, once seen


# -- the journal line's compiled seal -------------------------------------------------------


@pytest.fixture(scope="module")
def compiled_seal(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if lines._compiled_seal is not None:
        return lines._compiled_seal
    where = tmp_path_factory.mktemp("seal")
    return _build_compiled(where, lines, "_seal_accel", libraries=["crypto"]).seal


@given(
    event=st.sampled_from(sorted(EVENT_TYPES)).flatmap(lambda t: events_of(EVENT_TYPES[t])),
    prev=st.binary(min_size=32, max_size=32),
)
@EXAMPLES
def test_the_compiled_seal_writes_the_python_seals_line(
    compiled_seal: Any, event: Any, prev: bytes
) -> None:
    raw = encode_event(event)
    assert compiled_seal(raw, prev) == lines.seal_python(raw, prev)


@given(raw=st.binary(max_size=700), prev=st.binary(max_size=40))
@example(raw=b"", prev=b"")
@example(raw=b"}", prev=b"\0" * 32)
@EXAMPLES
def test_the_compiled_seal_agrees_on_any_bytes(compiled_seal: Any, raw: bytes, prev: bytes) -> None:
    want = lines.seal_python(raw, prev)
    assert compiled_seal(raw, prev) == want
    assert compiled_seal(bytearray(raw), memoryview(prev)) == want
    assert type(compiled_seal(raw, prev)[0]) is bytes and len(want[1]) == 32


def test_the_compiled_seal_refuses_what_is_not_bytes(compiled_seal: Any) -> None:
    with pytest.raises(TypeError):
        compiled_seal("text", b"")
    with pytest.raises(TypeError):
        compiled_seal(b"{}")


def test_the_journal_seals_with_the_compiled_seal_where_it_is_built() -> None:
    if lines._compiled_seal is None:
        pytest.skip("this checkout has no build of the compiled seal")
    assert lines.seal is lines._compiled_seal
    code = "from auditjournal.journal import lines; print(lines.seal is lines.seal_python)"
    env = {**os.environ, canonical.PURE_PYTHON_ENV: "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "True", result.stderr
