"""Property tests: the compiled chunk scan reads a record's head exactly as msgspec does.

verify's compiled block (``_chunkscan_accel.heads``) reads each record line's head
(record_type, run_id, seq, outcome, status) itself instead of msgspec's decode of
``chunkscan._RecordHead``. It judges only a strict subset of JSON and hands anything
else back (None: the Python loop decodes the block with msgspec). So: whatever it takes,
msgspec takes too, with the same head; and it does take the records our exporter writes
(else the property would hold by never taking anything).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_hotpath_identity import _build_compiled

from auditjournal import AuditStore, ExportSettings, verify_export
from auditjournal.evidence import chunkscan
from auditjournal.model.recordtypes import RECORD_TYPES
from auditjournal.proofs.merkle import leaf_hash

EXAMPLES = settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_TYPES = tuple(RECORD_TYPES)
_RUN = "r-ü"  # not ASCII: the run id is compared as UTF-8 bytes


@pytest.fixture(scope="module")
def scan_accel(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The compiled chunk scan: the checkout's build, else one made from its C source."""
    if chunkscan._compiled_block is not None:
        import auditjournal.evidence._chunkscan_accel as built

        return built
    where = tmp_path_factory.mktemp("chunkscan")
    return _build_compiled(where, chunkscan, "_chunkscan_accel", libraries=["crypto"])


def _compiled_head(accel: Any, record: bytes) -> tuple[Any, ...] | None:
    """What the compiled scan reads from a one-record chunk: (type, seq, outcomes, open)."""
    data = b"[\n" + record + b"\n"
    got = accel.heads(bytearray(data), len(data), 0, _RUN.encode(), _TYPES, 0)
    if got is None:
        return None
    state, leaves, counts, outcomes, open_states, first, last = got
    assert (state, leaves, first, sum(counts)) == (2, leaf_hash(record), last, 1)
    return _TYPES[counts.index(1)], first, outcomes, open_states


def _python_head(record: bytes) -> tuple[Any, ...] | None:
    """The same from chunkscan's Python loop: msgspec's decode, then its checks."""
    try:
        head = chunkscan._HEAD_DECODER.decode(record)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return None
    if head.run_id != _RUN or head.seq < 0:
        return None
    kind = head.record_type
    outcomes = {head.outcome: 1} if kind == "token_outcome" and head.outcome is not None else {}
    return kind, head.seq, outcomes, int(kind == "node_state" and head.status == "open")


_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_plain_text = st.text(
    st.characters(exclude_categories=("Cs", "Cc"), exclude_characters='"\\'), max_size=12
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_head = st.fixed_dictionaries(
    {},
    optional={
        "record_type": st.sampled_from([*_TYPES, "nope", ""]) | _json,
        "run_id": st.sampled_from([_RUN, "r", "r-\\u00fc"]) | _json,
        "seq": st.integers(-3, 2**64) | st.sampled_from([1.0, 0.5, True]) | _json,
        "outcome": st.sampled_from(["completed", "failed", "é", None]) | _json,
        "status": st.sampled_from(["open", "completed", None, "Open"]) | _json,
    },
)
_valid_head = st.fixed_dictionaries(
    {
        "record_type": st.sampled_from(_TYPES),
        "run_id": st.just(_RUN),
        "seq": st.integers(0, 10**18 - 1),
    },
    optional={
        "outcome": st.sampled_from(["completed", "failed", "é", None]),
        "status": st.sampled_from(["open", "completed", None]),
    },
)
_SPELLINGS = (
    (b"", b""),  # as encoded
    (b'"record_type"', b'"record_\\u0074ype"'),  # a head member's name escaped
    (b'"seq":', b'"seq":-'),  # a negative seq
    (b'"seq":', b'"seq":0'),  # a leading zero
    (b'"seq":1', b'"seq":1.0'),  # a float
    (b'"seq":1', b'"seq":1e2'),
    (b'"open"', b'"\\u006fpen"'),  # a value escaped
    (b":", b": "),  # whitespace
    (b"}", b"} "),
    (b"{", b"{\n"),
    (b'"r-', b'"r-\\u00fc'),
    (b"\xc3\xbc", b"\xc3"),  # a cut UTF-8 sequence
    (b"\xc3\xbc", b"\xed\xa0\x80"),  # a surrogate in UTF-8
    (b"\xc3\xbc", b"\\ud800"),  # an escaped lone surrogate
    (b'"', b'"\x01'),  # a control character
    (b"}", b"}}"),  # something after the object
    (b"null", b"nul"),
    (b"true", b"True"),
    (b",", b",,"),
    (b"[", b"[" * 70),  # deep nesting
)
_INSERTS = tuple(  # a member of another kind put in before record_type
    (b'"record_type"', b'"x":' + value + b',"record_type"')
    for value in (
        b'"\\ud800"',  # a lone surrogate, escaped
        b'"\\udc00\\ud800"',  # a pair the wrong way round
        b'"\\ud83d\\ude00"',  # a pair
        b'"\\u0000\\"\\/"',
        b'"\xff"',  # not UTF-8
        b'"\x7f"',
        b"01",
        b"-0",
        b"1e999",
        b"-1.5E-7",
        b"1" * 65,  # a number longer than the compiled scan judges
        b"[]",
        b"{}",
        b'{"":[{}]}',
    )
)


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """A record as msgspec encodes it (head members valid or not, any other members), then
    maybe spelt otherwise at one place (escapes, whitespace, bad UTF-8, ...)."""
    # mostly names and a head the compiled scan takes, so that the spelling decides
    names = st.one_of(_plain_text, _plain_text, _text)
    head = st.one_of(_valid_head, _valid_head, _valid_head, _head)
    members = draw(st.dictionaries(names, _json, max_size=4)) | draw(head)
    record = msgspec.json.encode(members)
    old, new = draw(st.sampled_from(_SPELLINGS) | st.sampled_from(_INSERTS))
    if old and old in record:
        at = draw(st.integers(0, record.count(old) - 1))
        parts = record.split(old)
        record = old.join(parts[: at + 1]) + new + old.join(parts[at + 1 :])
    return record


@given(record=records())
@example(record=b'{"record_type":"row","run_id":"r-\xc3\xbc","seq":1}')
@example(record=b'{"record_type":"row","run_id":"r-\xc3\xbc","seq":1,"seq":2}')
@example(record=b'{"record_type":"row","run_id":"r-\xc3\xbc","seq":123456789012345678901}')
@example(record=b'{"record_type":"row","run_id":"r-\xc3\xbc","seq":1,"x":1e999}')
@example(record=b'{"record_type":"row","run_id":"r-\xc3\xbc","seq":1,"x":"\\ud83d\\ude00"}')
@example(record=b'{"record_type":"token_outcome","run_id":"r-\xc3\xbc","seq":1,"outcome":"\xc3"}')
@example(record=b'{"a":{"b":[1,{"c":null}]},"record_type":"run","run_id":"r-\xc3\xbc","seq":0}')
@example(record=b'{"a":"\x01","record_type":"run","run_id":"r-\xc3\xbc","seq":0}')
@EXAMPLES
def test_what_the_compiled_scan_takes_msgspec_reads_alike(scan_accel: Any, record: bytes) -> None:
    compiled = _compiled_head(scan_accel, record)
    if compiled is not None:
        assert compiled == _python_head(record)


@given(
    kind=st.sampled_from(_TYPES),
    seq=st.integers(0, 10**18 - 1),
    outcome=_plain_text | st.none(),
    status=st.sampled_from(["open", "completed"]) | st.none(),
    rest=st.dictionaries(_plain_text, _json, max_size=4),  # (our records' names are plain)
)
@EXAMPLES
def test_the_compiled_scan_takes_our_records(
    scan_accel: Any, kind: str, seq: int, outcome: str | None, status: str | None, rest: Any
) -> None:
    """Records as the exporter encodes them (msgspec, no whitespace), member names and head
    values without characters JSON escapes: taken, whatever the values hold (unicode,
    escapes, big ints, floats, null, empty containers)."""
    head = {"record_type": kind, "run_id": _RUN, "seq": seq, "outcome": outcome}
    record = msgspec.json.encode(rest | head | {"status": status})
    if any(len(n) > 64 for n in _numbers(rest)):
        return  # a number longer than the compiled scan judges
    assert _compiled_head(scan_accel, record) == _python_head(record) is not None


def _numbers(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [msgspec.json.encode(value).decode()]
    return []


def test_a_real_export_is_verified_without_the_python_loop(
    tmp_path: Path, scan_accel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every block of an export the library writes is taken by the compiled scan."""
    with AuditStore.open(tmp_path / "audit") as store:
        with store.start_run(export=ExportSettings(chunk_size_bytes=4_000), sql=False) as run:
            src = run.register_node(plugin_name="csv", node_type="source")
            for i in range(60):
                data = {"i": i, "t": 'é"\\\n' * i, "f": i / 7, "big": 2**53 - 1 - i, "n": None}
                row = run.create_row(source_node_id=src, row_index=i, data=data)
                token = run.create_token(row_id=row)
                run.record_token_outcome(token_id=token, outcome="completed")
        export = store.export_dir(run.run_id)
    monkeypatch.setattr(chunkscan, "_compiled_block", scan_accel.heads)
    monkeypatch.setattr(chunkscan, "_compiled_subtrees", scan_accel.subtrees)
    monkeypatch.setattr(chunkscan._Scan, "python_block", None)  # taking a block would fail
    report = verify_export(export)
    assert report.ok, [c.line() for c in report.checks if not c.ok]
    assert report.record_count == 1 + 3 * 60 + 1
