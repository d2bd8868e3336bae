"""The completeness certificate (issue 16 item 4): totals in the signed manifest,
re-derived by verify, which names the rows whose tokens are not accounted for."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from auditjournal import AuditStore, ExportSettings
from auditjournal.evidence.verify import verify_export
from auditjournal.export.replay import replay_export
from auditjournal.model.completeness import certificate, count_record
from auditjournal.proofs.signing import generate_keypair


def spec_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + spec_root(leaves[:k]) + spec_root(leaves[k:])).digest()


def record_run(store: AuditStore, *, finish: bool = True, settings: ExportSettings) -> str:
    """Rows 0..4: row 1 forks into two children; row 3 is buffered then consumed in a batch."""
    with store.start_run(config={}, export=settings) as run:
        src = run.register_node(plugin_name="s", node_type="source", plugin_version="1", config={})
        t = run.register_node(plugin_name="t", node_type="transform", plugin_version="1", config={})
        for i in range(5):
            row = run.create_row(source_node_id=src, row_index=i, data={"i": i}, row_id=f"row-{i}")
            token = run.create_token(row_id=row, token_id=f"tok-{i}")
            if i == 1:
                run.record_token_outcome(token_id=token, outcome="forked")
                for branch in ("a", "b"):
                    child = run.create_token(
                        row_id=row, parent_token_ids=[token], branch_name=branch
                    )
                    run.record_token_outcome(token_id=child, outcome="completed", sink_name="o")
            elif i == 3:
                run.record_token_outcome(token_id=token, outcome="buffered")
                run.record_token_outcome(token_id=token, outcome="consumed_in_batch")
            elif i == 4 and not finish:
                run.begin_node_state(token_id=token, node_id=t, step_index=1, input_data={})
                raise_interrupt()
            else:
                run.record_token_outcome(token_id=token, outcome="completed", sink_name="o")
    return run.run_id


class _Interrupted(Exception):
    pass


def raise_interrupt() -> None:
    raise _Interrupted


def test_the_manifest_carries_the_totals_and_verify_agrees(tmp_path: Path) -> None:
    keys = generate_keypair(tmp_path / "keys")
    settings = ExportSettings(sign="ed25519", signing_key_file=str(keys[0]))
    with AuditStore.open(tmp_path / "a") as store:
        run_id = record_run(store, settings=settings)
        export = store.export_dir(run_id)
    manifest = json.loads((export / "audit_trail.manifest.json").read_bytes())
    assert manifest["completeness"] == {
        "rows": 5,
        "tokens": 7,
        "outcomes": {"buffered": 1, "completed": 5, "consumed_in_batch": 1, "forked": 1},
        "terminal_outcomes": 7,
        "unfinished_tokens": 0,
        "validation_errors": 0,
        "open_states": 0,
    }
    report = verify_export(export, public_key=keys[1])
    assert report.ok and report.signature == "valid", [c.line() for c in report.checks]


def test_an_unfinished_run_says_exactly_what_is_open(tmp_path: Path) -> None:
    with AuditStore.open(tmp_path / "a") as store:
        with pytest.raises(_Interrupted):
            record_run(store, finish=False, settings=ExportSettings())
        (run_id,) = store.run_ids()
        export = store.export_dir(run_id)
    manifest = json.loads((export / "audit_trail.manifest.json").read_bytes())
    assert manifest["run_status"] == "failed"
    assert manifest["completeness"]["unfinished_tokens"] == 1
    assert manifest["completeness"]["open_states"] == 1
    assert verify_export(export).ok  # not finished, and said so: valid


def _records(export: Path) -> list[bytes]:
    lines = []
    for chunk in sorted(export.glob("audit_trail.[0-9]*.json")):
        for line in chunk.read_bytes().split(b"\n"):
            if line not in (b"[", b"]", b""):
                lines.append(line[1:] if line.startswith(b",") else line)
    return lines


def _reseal(export: Path, lines: list[bytes]) -> None:
    """An operator without the signing key rewrites the records and re-seals around them
    (keeping the manifest's other members, the certificate included)."""
    for chunk in export.glob("audit_trail.[0-9]*.json"):
        chunk.unlink()
    body = b"[\n" + lines[0] + b"\n" + b"".join(b"," + line + b"\n" for line in lines[1:]) + b"]\n"
    (export / "audit_trail.json").write_bytes(body)
    path = export / "audit_trail.manifest.json"
    manifest = json.loads(path.read_bytes())
    seqs = [json.loads(line)["seq"] for line in lines]
    digest = hashlib.sha256(body).hexdigest()
    manifest.update(
        chunks=[
            {
                "file": "audit_trail.json",
                "sha256": digest,
                "bytes": len(body),
                "record_count": len(lines),
                "first_seq": seqs[0],
                "last_seq": seqs[-1],
            }
        ],
        chunk_count=1,
        chunk_size_bytes=None,
        total_record_count=len(lines),
        merkle_root=spec_root([hashlib.sha256(b"\x00" + x).digest() for x in lines]).hex(),
    )
    manifest.pop("signature", None)
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    path.write_bytes(data)
    (export / "audit_trail.sha256").write_text(  # the chunks, then the manifest
        f"{digest}  audit_trail.json\n{hashlib.sha256(data).hexdigest()}  {path.name}\n"
    )


def _sealed(tmp_path: Path) -> Path:
    with AuditStore.open(tmp_path / "a") as store:
        run_id = record_run(store, settings=ExportSettings())
        return store.export_dir(run_id)


def _problems(export: Path) -> str:
    report = verify_export(export)
    assert not report.ok
    return " | ".join(c.reason for c in report.checks if not c.ok)


def test_a_dropped_outcome_record_is_invalid_naming_the_row(tmp_path: Path) -> None:
    export = _sealed(tmp_path)
    lines = _records(export)
    dropped = next(i for i, x in enumerate(lines) if b'"token_outcome"' in x and b'"tok-2"' in x)
    del lines[dropped]
    _reseal(export, lines)
    problems = _problems(export)
    assert "completed: manifest" in problems or "outcomes: manifest" in problems
    assert "row row-2: token tok-2 reaches no terminal outcome" in problems


def test_a_duplicated_outcome_is_invalid_naming_the_row(tmp_path: Path) -> None:
    export = _sealed(tmp_path)
    lines = _records(export)
    at = next(i for i, x in enumerate(lines) if b'"token_outcome"' in x and b'"tok-0"' in x)
    copy = json.loads(lines[at])
    copy["outcome_id"] = "forged"
    lines.insert(at + 1, json.dumps(copy, sort_keys=True, separators=(",", ":")).encode())
    _reseal(export, lines)
    problems = _problems(export)
    assert "row row-0: token tok-0 has 2 terminal outcomes (completed, completed)" in problems


def test_an_unaccounted_token_is_invalid_naming_the_row(tmp_path: Path) -> None:
    """A token record the signed counts do not account for (injected after sealing)."""
    export = _sealed(tmp_path)
    lines = _records(export)
    at = next(i for i, x in enumerate(lines) if b'"record_type":"token"' in x)
    token = json.loads(lines[at])
    token.update(token_id="tok-injected", row_id="row-4")
    lines.insert(at + 1, json.dumps(token, sort_keys=True, separators=(",", ":")).encode())
    _reseal(export, lines)
    problems = _problems(export)
    assert "tokens: manifest 7, records 8" in problems
    assert "row row-4: token tok-injected reaches no terminal outcome" in problems


def test_tokens_the_pipeline_left_unfinished_are_stated_not_hidden(tmp_path: Path) -> None:
    """A completed run whose pipeline never recorded a token's outcome: the signed
    certificate says so and verify reports it (the export is what was recorded)."""
    with AuditStore.open(tmp_path / "a") as store:
        with store.start_run(config={}, export=ExportSettings()) as run:
            src = run.register_node(
                plugin_name="s", node_type="source", plugin_version="1", config={}
            )
            row = run.create_row(source_node_id=src, row_index=0, data={}, row_id="row-x")
            run.create_token(row_id=row, token_id="tok-x")
        export = store.export_dir(run.run_id)
    report = verify_export(export)
    assert report.ok
    assert report.completeness == (
        "1 token(s) without a terminal outcome, 0 node state(s) open (run completed)"
    )
    assert "1 token(s) without a terminal outcome" in report.summary()


def test_parallel_replay_gives_the_same_certificate(tmp_path: Path) -> None:
    with AuditStore.open(tmp_path / "a") as store:
        settings = ExportSettings()
        with store.start_run(config={}, export=settings) as run:
            src = run.register_node(
                plugin_name="s", node_type="source", plugin_version="1", config={}
            )
            for i in range(300):
                row = run.create_row(source_node_id=src, row_index=i, data={"t": "x" * 200})
                token = run.create_token(row_id=row)
                if i % 7:
                    run.record_token_outcome(token_id=token, outcome="completed", sink_name="o")
                else:
                    run.record_token_outcome(token_id=token, outcome="quarantined")
        live = store.export_dir(run.run_id) / "audit_trail.manifest.json"
        out = tmp_path / "replay"
        out.mkdir()
        replay_export(
            journal_dir=store.journal_dir(run.run_id),
            run_id=run.run_id,
            payloads=store.payloads,
            settings=settings,
            prefix=out / "audit_trail",
            workers=2,
            range_bytes=8192,
        )
        assert (out / "audit_trail.manifest.json").read_bytes() == live.read_bytes()
        assert json.loads(live.read_bytes())["completeness"]["outcomes"] == {
            "completed": 257,
            "quarantined": 43,
        }


def test_tally_keys_and_certificate_are_pure_sums() -> None:
    tally: dict[str, int] = {}
    for record in [
        ("row", None, None),
        ("node_state", None, "open"),
        ("node_state", None, "completed"),
        ("token_outcome", "buffered", None),
        ("run", None, "open"),
    ]:
        count_record(tally, *record)
    assert tally == {
        "row": 1,
        "node_state": 2,
        "open_states": 1,
        "token_outcome": 1,
        "outcome.buffered": 1,
        "run": 1,
    }
    assert certificate({"token": 3, "outcome.buffered": 2, "outcome.failed": 1}) == {
        "rows": 0,
        "tokens": 3,
        "outcomes": {"buffered": 2, "failed": 1},
        "terminal_outcomes": 1,
        "unfinished_tokens": 2,
        "validation_errors": 0,
        "open_states": 0,
    }
