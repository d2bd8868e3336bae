"""Property tests: the recorder's hot paths, made faster for issue 13 (item 3), give exactly
what the plain code they replaced gave.

Each reference below is the straightforward version of a path as it was before the
speed-up, kept here as the oracle: the secret filter's walk (now with C-level scans
for dicts and lists that hold nothing to filter), the payload store's append (now one
buffer write per record) and the journal's line (now encoded into the segment's buffer).
"""

from __future__ import annotations

import collections
import enum
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

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
