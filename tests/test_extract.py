"""Bundles (SPEC §5 ``extract``): a subset of a sealed export with Merkle
inclusion proofs against the signed root, checkable on its own.

The run recorded here forks tokens, records calls, routing events and an
artifact *before* their state completes (so they precede the state's record
in the export), and carries floats and non-ASCII text (so re-deriving a
record's canonical bytes from its parsed value is exercised). Expected
selections are computed by filtering the parsed export with our own code.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditjournal import AuditStore, ExportSettings
from auditjournal.errors import AuditJournalError, EmptySelectionError, ExportNotFoundError
from auditjournal.evidence.extract import BUNDLE_FORMAT, Selection, extract_bundle, verify_bundle
from auditjournal.proofs.merkle import inclusion_proof, merkle_root
from shared import Keys

Record = dict[str, Any]


@dataclass(frozen=True)
class Recorded:
    export: Path
    other_export: Path  # another run, same key
    public_key: Path
    records: list[tuple[str, Record]]  # (chunk file, record) in export order


def record_run(store: AuditStore, run_id: str, settings: ExportSettings, rows: int) -> None:
    with store.start_run(export=settings, run_id=run_id, sql=False) as run:
        src = run.register_node(plugin_name="src", node_type="source", node_id="n-src")
        llm = run.register_node(plugin_name="llm", node_type="transform", node_id="n-llm")
        gate = run.register_node(plugin_name="fork", node_type="gate", node_id="n-gate")
        sink = run.register_node(plugin_name="out", node_type="sink", node_id="n-sink")
        run.register_edge(from_node_id=src, to_node_id=llm, label="continue")
        run.register_edge(from_node_id=llm, to_node_id=gate, label="continue")
        branch_edges = {
            b: run.register_edge(from_node_id=gate, to_node_id=sink, label=b, mode="copy")
            for b in ("a", "b")
        }
        run.begin_operation(node_id=src, operation_type="source_load", operation_id="op-warmup")
        run.record_call(operation_id="op-warmup", call_type="http", status="success", request={})
        for i in range(rows):
            data = {"i": i, "text": f"zeile {i}: naïve \u2013 ✓", "score": i / 7}
            row = run.create_row(source_node_id=src, row_index=i, data=data, row_id=f"row-{i}")
            tok = run.create_token(row_id=row, token_id=f"tok-{i}")
            st = run.begin_node_state(token_id=tok, node_id=llm, step_index=1, input_data=data)
            for attempt in range(2):
                run.record_call(
                    state_id=st,
                    call_type="llm",
                    status="success" if attempt else "error",
                    request={"prompt": data["text"], "attempt": attempt},
                    response={"label": "positive", "p": 0.75} if attempt else None,
                    latency_ms=12.5 + attempt,
                )
            run.complete_node_state(st, status="completed", output_data={**data, "p": 0.75})
            g = run.begin_node_state(token_id=tok, node_id=gate, step_index=2, input_data=data)
            for ordinal, (_branch, edge) in enumerate(branch_edges.items()):
                run.record_routing_event(
                    state_id=g, edge_id=edge, mode="copy", reason={"fork": i}, ordinal=ordinal
                )
            run.complete_node_state(g, status="completed", output_data=data, duration_ms=0.25)
            children = [
                run.create_token(
                    row_id=row,
                    parent_token_ids=[tok],
                    branch_name=branch,
                    fork_group_id=f"fg-{i}",
                    token_id=f"tok-{i}{branch}",
                )
                for branch in branch_edges
            ]
            run.record_token_outcome(token_id=tok, outcome="forked")
            for child in children:
                s = run.begin_node_state(
                    token_id=child, node_id=sink, step_index=3, input_data=data
                )
                if child.endswith("b") and i % 2 == 0:
                    run.record_artifact(  # before the sink state completes
                        state_id=s,
                        sink_node_id=sink,
                        artifact_type="file",
                        path_or_uri=f"out-{i}.jsonl",
                        content_hash=hashlib.sha256(str(i).encode()).hexdigest(),
                        size_bytes=10 + i,
                        sink_input=[data],
                    )
                run.complete_node_state(s, status="completed", duration_ms=1.0)
                run.record_token_outcome(token_id=child, outcome="completed", sink_name="out")


def parse_export(export: Path) -> list[tuple[str, Record]]:
    manifest = json.loads((export / "audit_trail.manifest.json").read_text())
    out = []
    for chunk in manifest["chunks"]:
        for record in json.loads((export / chunk["file"]).read_text()):
            out.append((chunk["file"], record))
    assert len(out) == manifest["total_record_count"]
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Recorded:
    base = tmp_path_factory.mktemp("extract")
    private, public = keys
    settings = ExportSettings(chunk_size_bytes=5000, sign="ed25519", signing_key_file=str(private))
    with AuditStore.open(base / "audit") as store:
        record_run(store, "run-x", settings, rows=6)
        record_run(store, "run-y", settings, rows=2)
        export, other = store.export_dir("run-x"), store.export_dir("run-y")
    records = parse_export(export)
    assert len({file for file, _ in records}) >= 3
    return Recorded(export, other, public, records)


# -- what is selected --------------------------------------------------------------------------


def expected(records: list[Record], direct: Callable[[Record], bool]) -> list[Record]:
    """Records matching ``direct``, plus the calls, routing events and artifacts of every
    selected node state (wherever they are in the export)."""
    states = {r["state_id"] for r in records if r["record_type"] == "node_state" and direct(r)}
    return [
        r
        for r in records
        if direct(r) or (r["record_type"] != "node_state" and r.get("state_id") in states)
    ]


def bundle_records(bundle: dict[str, Any]) -> list[Record]:
    return [item["record"] for item in bundle["records"]]


def test_a_row_bundle_holds_everything_about_the_row(recorded: Recorded) -> None:
    records = [r for _, r in recorded.records]
    bundle = extract_bundle(recorded.export, Selection(row_id="row-2"))
    got = bundle_records(bundle)
    assert got == expected(records, lambda r: r.get("row_id") == "row-2")
    kinds = [r["record_type"] for r in got]
    assert sorted(set(kinds)) == [
        "artifact",
        "call",
        "node_state",
        "routing_event",
        "row",
        "token",
        "token_outcome",
    ]
    assert kinds.count("token") == 3  # the row's token and its two forks
    assert kinds.count("token_outcome") == 3
    assert kinds.count("call") == 2
    assert kinds.count("routing_event") == 2
    assert kinds.count("node_state") == 4
    (artifact,) = [r for r in got if r["record_type"] == "artifact"]
    assert artifact["sink_input"] == [{"i": 2, "score": 2 / 7, "text": "zeile 2: naïve \u2013 ✓"}]
    # nothing about other rows, runs or operation-level calls
    assert all(r.get("row_id") in ("row-2", None) for r in got)
    assert all(r["run_id"] == "run-x" for r in got)
    # an odd row has no artifact
    odd = bundle_records(extract_bundle(recorded.export, Selection(row_id="row-3")))
    assert "artifact" not in {r["record_type"] for r in odd}
    assert odd == expected(records, lambda r: r.get("row_id") == "row-3")


def test_a_token_bundle_includes_calls_recorded_before_the_state_record(
    recorded: Recorded,
) -> None:
    records = [r for _, r in recorded.records]
    got = bundle_records(extract_bundle(recorded.export, Selection(token_id="tok-4")))
    assert got == expected(records, lambda r: r.get("token_id") == "tok-4")
    kinds = sorted(r["record_type"] for r in got)
    two = ["node_state", "call", "routing_event"]
    assert kinds == sorted(["token", "token_outcome", *two, *two])
    # the calls come before their state's record in the export
    call_seq = min(r["seq"] for r in got if r["record_type"] == "call")
    assert call_seq < min(r["seq"] for r in got if r["record_type"] == "node_state")
    forked = bundle_records(extract_bundle(recorded.export, Selection(token_id="tok-4b")))
    assert forked == expected(records, lambda r: r.get("token_id") == "tok-4b")
    assert sorted(r["record_type"] for r in forked) == [
        "artifact",
        "node_state",
        "token",
        "token_outcome",
    ]


@pytest.mark.parametrize("node_id", ["n-llm", "n-gate", "n-sink", "n-src"])
def test_a_node_bundle_holds_the_node_and_what_it_processed(
    recorded: Recorded, node_id: str
) -> None:
    records = [r for _, r in recorded.records]
    got = bundle_records(extract_bundle(recorded.export, Selection(node_id=node_id)))
    want = expected(records, lambda r: node_id in (r.get("node_id"), r.get("sink_node_id")))
    assert got == want
    assert got[0] == next(
        r for r in records if r["record_type"] == "node" and r["node_id"] == node_id
    )
    counts = {k: sum(r["record_type"] == k for r in got) for k in {r["record_type"] for r in got}}
    assert (
        counts
        == {
            "n-llm": {"node": 1, "node_state": 6, "call": 12},
            "n-gate": {"node": 1, "node_state": 6, "routing_event": 12},
            "n-sink": {"node": 1, "node_state": 12, "artifact": 3},
            "n-src": {"node": 1, "operation": 1},  # its source load (still open)
        }[node_id]
    )


def test_a_seq_bundle(recorded: Recorded) -> None:
    records = [r for _, r in recorded.records]
    some = [records[3]["seq"], records[len(records) // 2]["seq"], records[-1]["seq"]]
    got = bundle_records(extract_bundle(recorded.export, Selection(seqs=frozenset(some))))
    assert got == expected(records, lambda r: r["seq"] in some)
    assert {r["seq"] for r in got} >= set(some)


def test_bundle_items_point_at_their_place_in_the_export(recorded: Recorded) -> None:
    bundle = extract_bundle(recorded.export, Selection(row_id="row-1", node_id="n-src"))
    manifest = json.loads((recorded.export / "audit_trail.manifest.json").read_text())
    assert bundle["format"] == BUNDLE_FORMAT
    assert bundle["manifest"] == manifest
    assert bundle["tree_size"] == len(recorded.records)
    assert bundle["selection"] == {"node_id": "n-src", "row_id": "row-1"}
    indexes = [item["index"] for item in bundle["records"]]
    assert indexes == sorted(indexes) and len(set(indexes)) == len(indexes)
    for item in bundle["records"]:
        chunk, record = recorded.records[item["index"]]
        assert (item["chunk"], item["record"]) == (chunk, record)
        assert all(len(h) == 64 for h in item["proof"])


def test_extract_refuses_an_empty_selection_or_a_damaged_export(
    recorded: Recorded, tmp_path: Path
) -> None:
    with pytest.raises(EmptySelectionError, match="nothing selected"):
        extract_bundle(recorded.export, Selection())
    broken = tmp_path / "export"
    shutil.copytree(recorded.export, broken, ignore=shutil.ignore_patterns(".*"))
    manifest = json.loads((broken / "audit_trail.manifest.json").read_text())
    (broken / manifest["chunks"][1]["file"]).unlink()
    with pytest.raises(ExportNotFoundError, match="missing"):
        extract_bundle(broken, Selection(row_id="row-1"))
    shutil.copytree(recorded.export, broken, dirs_exist_ok=True)
    chunk = broken / manifest["chunks"][1]["file"]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] = 0xFF  # never UTF-8: a clear error, not a UnicodeDecodeError
    chunk.write_bytes(bytes(data))
    with pytest.raises(AuditJournalError, match="run verify first"):
        extract_bundle(broken, Selection(row_id="row-1"))
    (broken / "audit_trail.manifest.json").write_text('{"chunks": 3}')
    with pytest.raises(AuditJournalError, match="not an export manifest"):
        extract_bundle(broken, Selection(row_id="row-1"))


# -- verifying a bundle ------------------------------------------------------------------------


@pytest.fixture
def bundle(recorded: Recorded) -> dict[str, Any]:
    # through JSON, as an auditor receives it
    return json.loads(json.dumps(extract_bundle(recorded.export, Selection(row_id="row-2"))))


def test_an_untouched_bundle_verifies(recorded: Recorded, bundle: dict[str, Any]) -> None:
    report = verify_bundle(bundle, public_key=recorded.public_key)
    n = len(bundle["records"])
    assert report.ok, report.lines
    assert report.signature == "valid"
    assert report.summary() == f"{n}/{n} records proven, manifest signature valid: VALID"
    assert report.lines[0] == ("manifest", True, "")
    unchecked = verify_bundle(bundle)
    assert unchecked.ok and unchecked.signature == "present but NOT CHECKED (no key given)"


def test_bundle_leaves_are_the_export_lines_rederived(
    recorded: Recorded, bundle: dict[str, Any]
) -> None:
    """A record's bytes in the chunk are its RFC 8785 form: an auditor can re-derive them."""
    lines = [
        line.removeprefix(b",")
        for chunk in bundle["manifest"]["chunks"]
        for line in (recorded.export / chunk["file"]).read_bytes().split(b"\n")[1:-2]
    ]
    assert len(lines) == bundle["tree_size"]
    for item in bundle["records"]:
        assert rfc8785.dumps(item["record"]) == lines[item["index"]]


def one_record_line(report: Any, index: int) -> tuple[str, bool, str]:
    return report.lines[1 + index]


def test_an_altered_record_fails(recorded: Recorded, bundle: dict[str, Any]) -> None:
    for path in (("status",), ("input_data", "text"), ("seq",)):
        forged = copy.deepcopy(bundle)
        item = next(i for i in forged["records"] if i["record"]["record_type"] == "node_state")
        target = item["record"]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = 999 if path[-1] == "seq" else "forged"
        report = verify_bundle(forged, public_key=recorded.public_key)
        assert not report.ok
        bad = [line for line in report.lines if not line[1]]
        assert len(bad) == 1
        assert "does not lead to the manifest's Merkle root" in bad[0][2]
    # a float written differently is a different record too
    forged = copy.deepcopy(bundle)
    call = next(i for i in forged["records"] if i["record"]["record_type"] == "call")
    call["record"]["latency_ms"] = call["record"]["latency_ms"] + 1e-9
    assert not verify_bundle(forged, public_key=recorded.public_key).ok


def test_a_wrong_leaf_index_fails(recorded: Recorded, bundle: dict[str, Any]) -> None:
    for shift in (-1, 1, 2):
        forged = copy.deepcopy(bundle)
        forged["records"][1]["index"] += shift
        report = verify_bundle(forged, public_key=recorded.public_key)
        assert not report.ok
        assert not one_record_line(report, 1)[1]
    forged = copy.deepcopy(bundle)
    forged["records"][0]["index"] = forged["tree_size"]
    assert "proof malformed" in one_record_line(verify_bundle(forged), 0)[2]
    forged["records"][0]["index"] = "3"
    assert "index missing" in one_record_line(verify_bundle(forged), 0)[2]


def test_a_proof_from_another_export_fails(recorded: Recorded, bundle: dict[str, Any]) -> None:
    other = extract_bundle(recorded.other_export, Selection(row_id="row-1"))
    forged = copy.deepcopy(bundle)
    for mine, theirs in zip(forged["records"], other["records"], strict=False):
        mine["proof"] = theirs["proof"]
    report = verify_bundle(forged, public_key=recorded.public_key)
    assert not report.ok
    assert sum(not ok for _, ok, _ in report.lines) >= min(len(other["records"]), 2)
    # a proof from the same export for another leaf
    forged = copy.deepcopy(bundle)
    forged["records"][0]["proof"] = forged["records"][1]["proof"]
    assert not one_record_line(verify_bundle(forged), 0)[1]
    # a sibling hash altered, a level removed or added
    for change in (
        lambda p: [p[0][:-1] + ("0" if p[0][-1] != "0" else "1"), *p[1:]],
        lambda p: p[:-1],
        lambda p: [*p, p[0]],
        lambda p: ["xyz", *p[1:]],
    ):
        forged = copy.deepcopy(bundle)
        forged["records"][2]["proof"] = change(forged["records"][2]["proof"])
        assert not one_record_line(verify_bundle(forged), 2)[1]


def test_a_manifest_from_another_run_fails(recorded: Recorded, bundle: dict[str, Any]) -> None:
    other = json.loads((recorded.other_export / "audit_trail.manifest.json").read_text())
    forged = copy.deepcopy(bundle)
    forged["manifest"] = other
    report = verify_bundle(forged, public_key=recorded.public_key)
    assert report.signature == "valid"  # same key: the manifest itself is genuine
    assert not report.ok
    assert all("another run" in reason for _, ok, reason in report.lines[1:] if not ok)
    assert not any(ok for _, ok, _ in report.lines[1:])
    # even with the run id and the tree size made to match, the root does not
    forged["manifest"] = {**other, "run_id": "run-x", "total_record_count": bundle["tree_size"]}
    report = verify_bundle(forged)
    assert not report.ok
    assert not any(ok for _, ok, _ in report.lines[1:])


def test_a_bad_signature_fails(recorded: Recorded, bundle: dict[str, Any]) -> None:
    forged = copy.deepcopy(bundle)
    forged["manifest"]["run_status"] = "failed"
    report = verify_bundle(forged, public_key=recorded.public_key)
    assert not report.ok and report.signature == "INVALID"
    assert report.lines[0][0] == "manifest" and not report.lines[0][1]
    assert all(ok for _, ok, _ in report.lines[1:])  # the proofs themselves still hold

    # a forger alters a record, rebuilds the whole tree and signs with their own key
    forged = copy.deepcopy(bundle)
    forger = Ed25519PrivateKey.generate()
    forged["records"][0]["record"]["source_data"]["text"] = "forged"
    leaves = []
    by_index = {item["index"]: item["record"] for item in forged["records"]}
    for index, (_, record) in enumerate(recorded.records):
        leaves.append(hashlib.sha256(b"\x00" + rfc8785.dumps(by_index.get(index, record))).digest())
    forged["manifest"]["merkle_root"] = merkle_root(leaves).hex()
    for item in forged["records"]:
        item["proof"] = [h.hex() for h in inclusion_proof(leaves, item["index"])]
    body = {k: v for k, v in forged["manifest"].items() if k != "signature"}
    raw = forger.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    forged["manifest"]["signature"] = {
        "algorithm": "ed25519",
        "key_id": hashlib.sha256(raw).hexdigest(),
        "value": forger.sign(rfc8785.dumps(body)).hex(),
    }
    assert all(ok for _, ok, _ in verify_bundle(forged).lines[1:])  # consistent forgery
    report = verify_bundle(forged, public_key=recorded.public_key)
    assert not report.ok and report.signature == "INVALID"


def test_a_bundle_with_a_wrong_tree_size_or_format_fails(
    recorded: Recorded, bundle: dict[str, Any]
) -> None:
    forged = copy.deepcopy(bundle)
    forged["tree_size"] += 1
    report = verify_bundle(forged, public_key=recorded.public_key)
    assert not report.ok
    assert report.lines[0] == (
        "manifest",
        False,
        "tree_size differs from the manifest's total_record_count",
    )
    assert not verify_bundle({**bundle, "format": "something-else/1"}).ok
    assert not verify_bundle({**bundle, "manifest": None}).ok


def test_malformed_bundles_are_invalid_not_errors(
    recorded: Recorded, bundle: dict[str, Any]
) -> None:
    """A bundle comes from outside: any shape gives a verdict, never an exception."""
    item = bundle["records"][0]
    shapes: list[Any] = [
        [],
        {**bundle, "records": {"0": item}},
        {**bundle, "records": ["not an item"]},
        {**bundle, "records": [{**item, "proof": [1, 2]}]},
        {**bundle, "records": [{**item, "proof": "abcd"}]},
        {**bundle, "records": [{**item, "record": "text"}]},
        {**bundle, "tree_size": "many"},
        {**bundle, "tree_size": True},
        {**bundle, "manifest": {**bundle["manifest"], "merkle_root": 7}},
    ]
    for shape in shapes:
        report = verify_bundle(shape, public_key=recorded.public_key)
        assert not report.ok, shape if not isinstance(shape, dict) else list(shape)


def test_an_empty_selection_is_its_own_error(recorded: Recorded) -> None:
    from auditjournal import EmptySelectionError as Exported

    with pytest.raises(Exported) as caught:
        extract_bundle(recorded.export, Selection())
    assert type(caught.value) is EmptySelectionError
    assert isinstance(caught.value, ValueError)
