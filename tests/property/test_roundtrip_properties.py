"""Property tests: events survive encode/decode, payloads survive the store, refs deduplicate."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditjournal.model.canonical import MAX_SAFE_INTEGER, canonical_json
from auditjournal.model.events import EVENT_TYPES, BaseEvent, decode_event, encode_event
from auditjournal.payloads.store import PayloadStore

EXAMPLES = settings(max_examples=40, deadline=None)

chars = st.characters(exclude_categories=("Cs",))
texts = st.text(alphabet=chars, max_size=16)
safe_ints = st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
# floats from 2**53 up to 1e21 are refused: their JSON text is an integer beyond 2**53
json_floats = finite_floats.filter(lambda f: not 2**53 <= abs(f) < 1e21)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | safe_ints | json_floats | texts,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=5),
    max_leaves=20,
)
json_objects = st.dictionaries(texts, json_values, max_size=5)


# -- events ---------------------------------------------------------------------------------


def strategy_for(t: msgspec.inspect.Type) -> st.SearchStrategy[Any]:
    """A strategy for values of one msgspec field type (what the event schemas use)."""
    i = msgspec.inspect
    if isinstance(t, i.StrType):
        return texts
    if isinstance(t, i.BoolType):
        return st.booleans()
    if isinstance(t, i.IntType):
        return st.integers(min_value=-(2**63), max_value=2**64 - 1)
    if isinstance(t, i.FloatType):
        return finite_floats
    if isinstance(t, i.NoneType):
        return st.none()
    if isinstance(t, i.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, i.UnionType):
        return st.one_of([strategy_for(member) for member in t.types])
    if isinstance(t, i.DateTimeType):
        return st.datetimes(timezones=st.just(dt.UTC))
    if isinstance(t, i.DictType):
        return st.dictionaries(strategy_for(t.key_type), strategy_for(t.value_type), max_size=4)
    if isinstance(t, i.VarTupleType):
        return st.lists(strategy_for(t.item_type), max_size=4).map(tuple)
    if isinstance(t, i.ListType):
        return st.lists(strategy_for(t.item_type), max_size=4)
    if isinstance(t, i.AnyType):
        return json_values
    if isinstance(t, i.StructType):
        return structs_of(t.cls)
    raise NotImplementedError(f"no strategy for field type {t!r}: extend strategy_for")


def structs_of(cls: type[Any]) -> st.SearchStrategy[Any]:
    """Instances of ``cls``, every field drawn from its type; optional ones sometimes left out."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    required = {f.name: strategy_for(f.type) for f in info.fields if f.required}
    optional = {f.name: strategy_for(f.type) for f in info.fields if not f.required}
    return st.fixed_dictionaries(required, optional=optional).map(lambda kw: cls(**kw))


def events_of(cls: type[BaseEvent]) -> st.SearchStrategy[BaseEvent]:
    return structs_of(cls)


@pytest.mark.parametrize("tag", sorted(EVENT_TYPES))
@EXAMPLES
@given(data=st.data())
def test_event_round_trip(tag: str, data: st.DataObject) -> None:
    cls = EVENT_TYPES[tag]
    event = data.draw(events_of(cls))
    encoded = encode_event(event)
    decoded = decode_event(encoded)
    assert type(decoded) is cls
    assert decoded == event
    assert encode_event(decoded) == encoded  # byte-stable: replays write identical lines
    as_json = msgspec.json.decode(encoded)
    assert as_json["type"] == tag
    assert as_json["run_id"] == event.run_id and as_json["seq"] == event.seq
    # A journal line is the event's object with one more member; decoding ignores it.
    line = encoded[:-1] + b',"chain":"' + b"0" * 64 + b'"}\n'
    assert decode_event(line) == event


@EXAMPLES
@given(event=st.sampled_from(sorted(EVENT_TYPES)).flatmap(lambda t: events_of(EVENT_TYPES[t])))
def test_decoding_rejects_a_wrong_tag(event: BaseEvent) -> None:
    as_json = msgspec.json.decode(encode_event(event))
    as_json["type"] = "no_such_event"
    with pytest.raises(msgspec.ValidationError):
        decode_event(msgspec.json.encode(as_json))


# -- payloads -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayloadStore]:
    s = PayloadStore(tmp_path_factory.mktemp("payload-props"), pack_bytes=64 << 10)
    yield s
    s.close()


def pack_bytes(store: PayloadStore) -> int:
    return sum(p.stat().st_size for p in Path(store.directory).glob("pack-*.dat"))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=json_values)
def test_payload_round_trip_and_dedup(store: PayloadStore, value: Any) -> None:
    data = canonical_json(value)
    ref = store.put(value)
    assert ref == hashlib.sha256(data).hexdigest()
    assert store.get(ref) == data
    assert msgspec.json.decode(store.get(ref)) == msgspec.json.decode(data)
    store.flush(fsync=False)
    size, count = pack_bytes(store), len(list(store.refs()))
    assert store.put(value) == ref
    assert store.put_canonical(data) == ref
    store.flush(fsync=False)
    assert pack_bytes(store) == size
    assert len(list(store.refs())) == count
    assert store.get(ref) == data


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=json_objects, data=st.data())
def test_key_order_does_not_change_the_ref(
    store: PayloadStore, value: dict[str, Any], data: st.DataObject
) -> None:
    shuffled_keys = data.draw(st.permutations(list(value)))
    reordered = {k: value[k] for k in shuffled_keys}
    assert store.put(reordered) == store.put(value)
    assert store.get(store.put(value)) == canonical_json(value)
