"""Fuzzing every reader of evidence (issue 10): the manifest, the ``sha256`` listing,
chunk lines, bundles, the export checkpoint and journal lines, with random bytes and
with mutations of real files (bytes flipped, inserted or cut; a JSON value replaced by
another of any shape; a member named twice; deep nesting).

Each reader may answer with a verdict (INVALID), or with a typed error
(:class:`AuditJournalError`), or with the data it read -- never with another
exception, never by hanging: each example runs under a wall-clock alarm. Two
properties are checked beyond "no crash": a reader that accepts a text accepts only
one in which no object names a member twice (Python's json, with every object's
members in view, is the referee), and a damaged checkpoint only ever leads to an
export byte-identical to a clean one.

Bounded in the default suite; ``-m slow`` runs many more examples.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditjournal import AuditStore, ExportSettings, replay_export
from auditjournal.errors import AuditJournalError
from auditjournal.evidence.extract import Selection, extract_bundle, read_bundle, verify_bundle
from auditjournal.evidence.reimport import load_rows
from auditjournal.evidence.verify import verify_export
from auditjournal.export.tail import ExportTail
from auditjournal.journal.files import JournalReader, genesis_chain
from auditjournal.journal.lines import SUFFIX_LEN, read_entry, seal
from shared import Keys, SealedDemo

FAST = 40  # examples per reader in the default suite
DEEP = 1500  # with -m slow
ALARM_SECONDS = 20
MANIFEST = "audit_trail.manifest.json"
LISTING = "audit_trail.sha256"
RUN = "run-fuzz"


@contextlib.contextmanager
def bounded(seconds: float = ALARM_SECONDS) -> Iterator[None]:
    """Fail an example that runs longer than ``seconds`` (a hang), instead of waiting."""

    def expired(signum: int, frame: Any) -> None:
        raise AssertionError(f"the reader did not return within {seconds} s (hangs)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def only_typed_errors(call: Callable[[], Any]) -> Any:
    """``call()``'s result, or None if it raised a typed error; any other exception fails."""
    with bounded():
        try:
            return call()
        except AuditJournalError:
            return None


def names_a_member_twice(data: bytes) -> bool:
    """The referee: does any object in this JSON text name a member twice?"""
    repeated = False

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        repeated = repeated or len({k for k, _ in pairs}) != len(pairs)
        return dict(pairs)

    try:
        json.loads(data.decode("utf-8"), object_pairs_hook=hook)
    except (ValueError, RecursionError):
        return False  # not JSON at all: the readers refuse it for that
    return repeated


# -- inputs ---------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [here]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*here, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*here, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` damaged in one of several ways (or random bytes)."""
    kind = draw(
        st.sampled_from(["bytes", "flip", "insert", "cut", "value", "repeat", "nest", "truncate"])
    )
    data = bytearray(original)
    if kind == "bytes":
        return draw(st.binary(max_size=2000))
    if kind in ("flip", "insert", "cut") and data:
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, max(len(data) - 1, 0)))
            if kind == "flip" and data:
                data[at] ^= draw(st.integers(1, 255))
            elif kind == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            elif data:
                del data[at : at + draw(st.integers(1, 16))]
        return bytes(data)
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if kind == "nest":
        depth = draw(st.sampled_from([10, 600, 5000, 100_000]))
        return b"[" * depth + bytes(data) + b"]" * depth
    try:
        doc = json.loads(original)
    except ValueError:
        return bytes(data)
    if kind == "value":
        path = draw(st.sampled_from(_paths(doc)))
        return json.dumps(_replace(doc, path, draw(JSON_VALUES))).encode()
    # "repeat": name an existing member twice, the copy first, with any value
    text = original.decode()
    keys = [k for p in _paths(doc) for k in p[-1:] if isinstance(k, str)]
    if not keys:
        return bytes(data)
    key = draw(st.sampled_from(keys))
    needle = json.dumps(key) + ":"
    if needle not in text:
        needle = json.dumps(key) + ": "
    if needle not in text:
        return bytes(data)
    copy = needle + json.dumps(draw(JSON_VALUES)) + ","
    return text.replace(needle, copy + needle, 1).encode()


# -- what is fuzzed -------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    export: Path
    public_key: Path
    bundle: bytes
    checkpoint: bytes
    clean_export: dict[str, bytes]
    journal_root: Path

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text("Fixture(...)")


def visible_files(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in sorted(directory.iterdir()) if not p.name.startswith(".")
    }


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory, sealed_demo: SealedDemo, keys: Keys) -> Fixture:
    base = tmp_path_factory.mktemp("fuzz")
    demo = sealed_demo(4, chunk_size_bytes=4000)
    bundle = extract_bundle(demo.export_dir, Selection(seqs=frozenset({2, 3, 20})))
    # a run whose export is checkpointed halfway, for the checkpoint fuzzing
    root = base / "journal-store"
    with AuditStore.open(root) as store:
        run = store.start_run(run_id=RUN, config={"a": [1, 2]}, export=None, sql=False)
        src = run.register_node(plugin_name="src", node_type="source")
        t = run.register_node(plugin_name="t", node_type="transform")
        for i in range(8):
            row = run.create_row(source_node_id=src, row_index=i, data={"i": i, "s": "x" * 90})
            tok = run.create_token(row_id=row)
            st_ = run.begin_node_state(token_id=tok, node_id=t, step_index=1, input_data={"i": i})
            if i % 3:
                run.complete_node_state(st_, status="completed", output_data={"o": i})
        run.complete()
        clean = base / "clean" / "audit_trail"
        replay_export(
            journal_dir=store.journal_dir(RUN),
            run_id=RUN,
            payloads=store.payloads,
            settings=CHECKPOINT_SETTINGS,
            prefix=clean,
        )
        projector = store.export_projector(RUN, CHECKPOINT_SETTINGS)
        try:
            for _ in range(4):
                projector.step(limit=5)
            projector._write_checkpoint()
            checkpoint = projector.paths.checkpoint.read_bytes()
        finally:
            projector.close()
    return Fixture(
        demo.export_dir,
        keys.public,
        json.dumps(bundle, indent=1).encode(),
        checkpoint,
        visible_files(clean.parent),
        root,
    )


CHECKPOINT_SETTINGS = ExportSettings(chunk_size_bytes=1500)


def fuzz_settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def damaged_copy(fx: Fixture, name: str, data: bytes, into: Path) -> Path:
    export = into / "export"
    shutil.copytree(fx.export, export)
    (export / name).write_bytes(data)
    return export


def export_readers(export: Path, public_key: Path) -> None:
    """verify (a verdict, never an exception), extract, tail and the typed reimport."""
    with bounded():
        report = verify_export(export, public_key=public_key)
    assert report.checks and report.summary()
    only_typed_errors(lambda: extract_bundle(export, Selection(seqs=frozenset({2, 5}))))
    only_typed_errors(lambda: ExportTail(export / "audit_trail").poll())
    only_typed_errors(lambda: list(load_rows(export, "node-1")))


def check_manifest(fx: Fixture, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        export = damaged_copy(fx, MANIFEST, data, Path(tmp))
        export_readers(export, fx.public_key)
        with bounded():
            report = verify_export(export, public_key=fx.public_key)
        if names_a_member_twice(data):
            assert not report.ok, "a manifest naming a member twice was VALID"


def check_listing(fx: Fixture, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        export = damaged_copy(fx, LISTING, data, Path(tmp))
        with bounded():
            report = verify_export(export, public_key=fx.public_key)
        original = (fx.export / LISTING).read_bytes()
        assert report.ok == (data == original)


def check_chunk(fx: Fixture, name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        export = damaged_copy(fx, name, data, Path(tmp))
        export_readers(export, fx.public_key)
        with bounded():
            report = verify_export(export, public_key=fx.public_key)
        assert report.ok == (data == (fx.export / name).read_bytes())


def check_bundle(fx: Fixture, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bundle.json"
        path.write_bytes(data)
        bundle = only_typed_errors(lambda: read_bundle(path))
        if bundle is None:
            return
        assert not names_a_member_twice(data), "read_bundle accepted a member named twice"
        with bounded():
            report = verify_bundle(bundle, public_key=fx.public_key)  # a verdict, never raises
        assert report.summary()


def check_checkpoint(fx: Fixture, data: bytes, *, exact: bool) -> None:
    """The projector resumes or rebuilds and seals, writing nothing outside its export;
    with ``exact`` (damage the checksum catches) the export is byte-identical to a clean
    one. A checkpoint rewritten on purpose, checksum and all, with plausible values is
    trusted (docs/decisions.md): whoever can write it can write the chunks too."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        shutil.copytree(fx.journal_root, root)
        with AuditStore.open(root) as store:
            # the checkpoint the fixture's projector wrote halfway, damaged
            checkpoint = store.run_dir(RUN) / "export.state" / "audit_trail.checkpoint.json"
            checkpoint.write_bytes(data)
            with bounded():
                projector = store.export_projector(RUN, CHECKPOINT_SETTINGS)
                try:
                    assert projector.run(follow=False) is not None
                finally:
                    projector.close()
            if exact:
                assert visible_files(store.export_dir(RUN)) == fx.clean_export
            assert {p.name for p in Path(tmp).iterdir()} == {"store"}


def check_journal_segment(fx: Fixture, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        shutil.copytree(fx.journal_root, root)
        (segment,) = (root / "runs" / RUN / "journal").glob("*.jsonl")
        segment.write_bytes(data)
        events = only_typed_errors(lambda: list(JournalReader(segment.parent, RUN)))
        if events is not None:
            assert all(e.run_id == RUN for e in events)
            assert [e.seq for e in events] == list(range(1, len(events) + 1))


def check_rechained_line(fx: Fixture, index: int, event_bytes: bytes) -> None:
    """A forger's line: any event JSON, re-chained so the chain checks."""
    (segment,) = (fx.journal_root / "runs" / RUN / "journal").glob("*.jsonl")
    lines = segment.read_bytes().splitlines(keepends=True)
    chain = genesis_chain(RUN)
    for line in lines[:index]:
        _, chain = read_entry(line, chain, bytearray())
    if not event_bytes.endswith(b"}") or b"\n" in event_bytes:
        event_bytes = event_bytes.replace(b"\n", b" ") + b"}"
    line, _ = seal(event_bytes, chain)
    with bounded():
        try:
            event, _ = read_entry(line, chain, bytearray())
        except ValueError:
            return
    assert not names_a_member_twice(line), "a journal line naming a member twice was read"
    assert msgspec.json.decode(line[:-SUFFIX_LEN] + b"}") is not None
    assert event.run_id is not None


# -- the tests: bounded here, deeper under -m slow --------------------------------------------


def manifest_inputs(fx: Fixture) -> st.SearchStrategy[bytes]:
    return mutated((fx.export / MANIFEST).read_bytes())


@pytest.mark.parametrize("examples", [FAST, pytest.param(DEEP, marks=pytest.mark.slow)])
def test_fuzz_manifest(fx: Fixture, examples: int) -> None:
    @fuzz_settings(examples)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        check_manifest(fx, data.draw(manifest_inputs(fx)))

    run()


@pytest.mark.parametrize("examples", [FAST, pytest.param(DEEP, marks=pytest.mark.slow)])
def test_fuzz_listing(fx: Fixture, examples: int) -> None:
    @fuzz_settings(examples)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        check_listing(fx, data.draw(mutated((fx.export / LISTING).read_bytes())))

    run()


@pytest.mark.parametrize("examples", [FAST, pytest.param(DEEP, marks=pytest.mark.slow)])
def test_fuzz_chunk_lines(fx: Fixture, examples: int) -> None:
    chunks = sorted(p.name for p in fx.export.glob("audit_trail.*[0-9].json"))

    @fuzz_settings(examples)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(chunks))
        lines = (fx.export / name).read_bytes().splitlines(keepends=True)
        at = data.draw(st.integers(1, len(lines) - 2))  # a record line
        head = b"," if lines[at].startswith(b",") else b""
        record = lines[at][len(head) : -1]
        lines[at] = head + data.draw(mutated(record)).replace(b"\n", b"") + b"\n"
        check_chunk(fx, name, b"".join(lines))

    run()


@pytest.mark.parametrize("examples", [FAST, pytest.param(DEEP, marks=pytest.mark.slow)])
def test_fuzz_bundle(fx: Fixture, examples: int) -> None:
    @fuzz_settings(examples)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        check_bundle(fx, data.draw(mutated(fx.bundle)))

    run()


def sealed(body: bytes) -> bytes:
    """A checkpoint text with a checksum that holds over exactly these bytes (a forger's)."""
    digest = hashlib.sha256(body).hexdigest().encode()
    return body[:-1] + b',"checksum":"' + digest + b'"}'


@pytest.mark.parametrize("examples", [FAST // 2, pytest.param(DEEP // 3, marks=pytest.mark.slow)])
def test_fuzz_export_checkpoint(fx: Fixture, examples: int) -> None:
    """Damage as it comes (the checksum no longer holds), and damage with the checksum
    made to hold again, so that the shape and value checks decide."""
    checksum = len(b',"checksum":"') + 64 + len(b'"}')
    body = fx.checkpoint[:-checksum] + b"}"
    assert sealed(body) == fx.checkpoint

    @fuzz_settings(examples)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        if data.draw(st.booleans()):
            # the checksum fails (rebuild) or nothing changed (resume): a clean export either way
            check_checkpoint(fx, data.draw(mutated(fx.checkpoint)), exact=True)
        else:
            damaged = data.draw(mutated(body))
            if damaged.endswith(b"}"):
                check_checkpoint(fx, sealed(damaged), exact=False)
            else:
                check_checkpoint(fx, damaged, exact=True)

    run()


@pytest.mark.parametrize("examples", [FAST, pytest.param(DEEP, marks=pytest.mark.slow)])
def test_fuzz_journal_segment(fx: Fixture, examples: int) -> None:
    (segment,) = (fx.journal_root / "runs" / RUN / "journal").glob("*.jsonl")
    original = segment.read_bytes()

    @fuzz_settings(examples)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        check_journal_segment(fx, data.draw(mutated(original)))

    run()


@pytest.mark.parametrize("examples", [FAST, pytest.param(DEEP, marks=pytest.mark.slow)])
def test_fuzz_rechained_journal_line(fx: Fixture, examples: int) -> None:
    (segment,) = (fx.journal_root / "runs" / RUN / "journal").glob("*.jsonl")
    lines = segment.read_bytes().splitlines(keepends=True)

    @fuzz_settings(examples)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(lines) - 1))
        event = lines[index][:-SUFFIX_LEN] + b"}"
        check_rechained_line(fx, index, data.draw(mutated(event)))

    run()
