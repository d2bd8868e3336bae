"""Live checkpoints (issue 16 item 2): signed tree heads while the export is written,
listed in the manifest, checked by verify, prove-/verify-consistency and tail --verify."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from auditjournal import AuditStore, ExportSettings
from auditjournal.cli import cli
from auditjournal.errors import ConsistencyProofError, ExportInvalidError
from auditjournal.evidence.consistency import prove_consistency, verify_consistency_file
from auditjournal.evidence.verify import verify_export
from auditjournal.export.chunks import ChunkWriter
from auditjournal.export.replay import replay_export
from auditjournal.export.tail import ExportTail
from auditjournal.proofs.signing import generate_keypair

EVERY = 7


def spec_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 MTH, recursively, written from the RFC."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + spec_root(leaves[:k]) + spec_root(leaves[k:])).digest()


def record_lines(export: Path) -> list[bytes]:
    lines: list[bytes] = []
    for chunk in sorted(export.glob("audit_trail.[0-9]*.json")):
        for line in chunk.read_bytes().split(b"\n"):
            if line not in (b"[", b"]", b""):
                lines.append(line[1:] if line.startswith(b",") else line)
    return lines


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_keypair(tmp_path / "keys")


def sealed(tmp_path: Path, keys: tuple[Path, Path], rows: int = 12) -> tuple[AuditStore, str]:
    settings = ExportSettings(
        checkpoint_every_records=EVERY,
        chunk_size_bytes=2000,
        sign="ed25519",
        signing_key_file=str(keys[0]),
    )
    store = AuditStore.open(tmp_path / "audit")
    with store.start_run(config={}, export=settings) as run:
        src = run.register_node(plugin_name="s", node_type="source", plugin_version="1", config={})
        for i in range(rows):
            row = run.create_row(source_node_id=src, row_index=i, data={"i": i, "t": "x" * 50})
            token = run.create_token(row_id=row)
            run.record_token_outcome(token_id=token, outcome="completed", sink_name="out")
    return store, run.run_id


def test_checkpoints_every_n_records_are_spec_signed_notes_listed_in_the_manifest(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    store, run_id = sealed(tmp_path, keys)
    export = store.export_dir(run_id)
    manifest = json.loads((export / "audit_trail.manifest.json").read_bytes())
    leaves = [hashlib.sha256(b"\x00" + line).digest() for line in record_lines(export)]
    n = len(leaves)
    sizes = list(range(EVERY, n + 1, EVERY))
    assert len(sizes) >= 4
    assert manifest["checkpoints"] == [
        {"tree_size": s, "root": spec_root(leaves[:s]).hex()} for s in sizes
    ]
    private = serialization.load_pem_private_key(keys[0].read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    origin = f"auditjournal.export/{run_id}"
    key_id = hashlib.sha256(origin.encode() + b"\n\x01" + public).digest()[:4]
    files = sorted((export / "audit_trail.checkpoints").iterdir())
    assert [f.name for f in files] == [f"{s:020d}.checkpoint" for s in sizes]
    for size, path in zip(sizes, files, strict=True):
        text = f"{origin}\n{size}\n{base64.b64encode(spec_root(leaves[:size])).decode()}\n"
        signature = private.sign(text.encode())  # Ed25519 is deterministic
        blob = base64.b64encode(key_id + signature).decode()
        assert path.read_bytes() == f"{text}\n\u2014 {origin} {blob}\n".encode()
    report = verify_export(export, public_key=keys[1])
    assert report.ok, [c.line() for c in report.checks]
    store.close()


def test_replay_writes_the_same_checkpoints_and_manifest(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    store, run_id = sealed(tmp_path, keys, rows=40)
    live = store.export_dir(run_id)
    settings = ExportSettings(
        checkpoint_every_records=EVERY,
        chunk_size_bytes=2000,
        sign="ed25519",
        signing_key_file=str(keys[0]),
    )
    for workers in (1, 2):
        out = tmp_path / f"replay{workers}"
        out.mkdir()
        replay_export(
            journal_dir=store.journal_dir(run_id),
            run_id=run_id,
            payloads=store.payloads,
            settings=settings,
            prefix=out / "audit_trail",
            workers=workers,
            range_bytes=4096,
        )
        for name in ("audit_trail.manifest.json",):
            assert (out / name).read_bytes() == (live / name).read_bytes()
        ours = {p.name: p.read_bytes() for p in (out / "audit_trail.checkpoints").iterdir()}
        theirs = {p.name: p.read_bytes() for p in (live / "audit_trail.checkpoints").iterdir()}
        assert ours == theirs
    verified = verify_export(live, journal=(store.journal_dir(run_id), store.payloads))
    assert verified.ok, [c.line() for c in verified.checks]
    store.close()


def _reseal(export: Path, lines: list[bytes]) -> None:
    """An operator rewrites the records and re-seals the export (unsigned, one file)."""
    for chunk in export.glob("audit_trail.[0-9]*.json"):
        chunk.unlink()
    body = b"[\n" + lines[0] + b"\n" + b"".join(b"," + line + b"\n" for line in lines[1:]) + b"]\n"
    (export / "audit_trail.json").write_bytes(body)
    path = export / "audit_trail.manifest.json"
    manifest = json.loads(path.read_bytes())
    del manifest["signature"]
    seqs = [json.loads(line)["seq"] for line in lines]
    digest = hashlib.sha256(body).hexdigest()
    manifest["chunks"] = [
        {
            "file": "audit_trail.json",
            "sha256": digest,
            "bytes": len(body),
            "record_count": len(lines),
            "first_seq": min(seqs),
            "last_seq": max(seqs),
        }
    ]
    manifest["chunk_count"] = 1
    manifest["chunk_size_bytes"] = None
    leaves = [hashlib.sha256(b"\x00" + line).digest() for line in lines]
    manifest["merkle_root"] = spec_root(leaves).hex()
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    path.write_bytes(data)
    (export / "audit_trail.sha256").write_text(  # the chunks, then the manifest
        f"{digest}  audit_trail.json\n{hashlib.sha256(data).hexdigest()}  {path.name}\n"
    )


@pytest.mark.parametrize("how", ["tampered", "reordered"])
def test_a_record_changed_before_a_checkpoint_is_caught_everywhere(
    tmp_path: Path, keys: tuple[Path, Path], how: str
) -> None:
    store, run_id = sealed(tmp_path, keys)
    export = store.export_dir(run_id)
    kept = tmp_path / "kept.checkpoint"  # an observer kept the second checkpoint
    kept.write_bytes(
        (export / "audit_trail.checkpoints" / f"{2 * EVERY:020d}.checkpoint").read_bytes()
    )
    honest = tmp_path / "honest.json"
    runner = CliRunner()
    out = runner.invoke(
        cli, ["prove-consistency", str(export), "--from", str(kept), "--out", str(honest)]
    )
    assert out.exit_code == 0, out.output
    ok = runner.invoke(cli, ["verify-consistency", str(honest), "--public-key", str(keys[1])])
    assert ok.exit_code == 0 and "consistent" in ok.output, ok.output
    lines = record_lines(export)
    if how == "tampered":
        record = json.loads(lines[3])
        record["row_index"] = 99 if "row_index" in record else record.get("seq")
        lines[3] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    else:
        # swapped, with their seqs swapped back so the seq order still holds
        a, b = json.loads(lines[2]), json.loads(lines[3])
        a["seq"], b["seq"] = b["seq"], a["seq"]
        lines[2] = json.dumps(b, sort_keys=True, separators=(",", ":")).encode()
        lines[3] = json.dumps(a, sort_keys=True, separators=(",", ":")).encode()
    _reseal(export, lines)
    report = verify_export(export)
    bad = [c.line() for c in report.checks if not c.ok]
    assert len(bad) == 1 and "not a prefix of the sealed tree" in bad[0], bad
    with pytest.raises(ConsistencyProofError, match="not those of the checkpoint"):
        prove_consistency(export, kept)
    # the honest proof with the new (re-sealed) manifest does not verify
    forged = json.loads(honest.read_text())
    forged["manifest"] = (export / "audit_trail.manifest.json").read_text()
    forged_path = tmp_path / "forged.json"
    forged_path.write_text(json.dumps(forged))
    result = verify_consistency_file(forged_path)
    assert not result.ok and "does not lead to the root" in result.problems[0]
    failed = runner.invoke(cli, ["verify-consistency", str(forged_path)])
    assert failed.exit_code == 1 and failed.output.startswith("note:")
    with pytest.raises(ExportInvalidError, match="do not have the checkpoint's"):
        list(ExportTail(export / "audit_trail", verify=True).follow(timeout=5))
    store.close()


def test_tail_verify_checks_every_checkpoint(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    store, run_id = sealed(tmp_path, keys)
    tail = ExportTail(store.export_dir(run_id) / "audit_trail", verify=True, public_key=keys[1])
    records = list(tail.follow(timeout=5))
    assert tail.sealed and len(records) == tail.seen
    assert tail.checkpoints_verified == tail.seen // EVERY
    runner = CliRunner()
    out = runner.invoke(
        cli, ["tail", str(store.root), run_id, "--verify", "--public-key", str(keys[1])]
    )
    assert out.exit_code == 0 and "live checkpoint(s) verified" in out.output
    other = generate_keypair(tmp_path / "other")
    bad = runner.invoke(
        cli, ["tail", str(store.root), run_id, "--verify", "--public-key", str(other[1])]
    )
    assert bad.exit_code == 1
    store.close()


def test_tail_verify_goes_with_latest_and_from_end_not_with_journal(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    store, run_id = sealed(tmp_path, keys)
    root = str(store.root)
    store.close()
    runner = CliRunner()
    out = runner.invoke(cli, ["tail", root, "--latest", "--verify", "--public-key", str(keys[1])])
    assert out.exit_code == 0, out.output
    assert f"following run {run_id}" in out.output and "live checkpoint(s) verified" in out.output
    end = runner.invoke(cli, ["tail", root, run_id, "--verify", "--from-end", "--json"])
    assert end.exit_code == 0, end.output
    assert "0 of 0 records shown; export sealed" in end.output
    assert f"{36 // EVERY} live checkpoint(s) verified, the last at 35 records" in end.output
    bad = runner.invoke(cli, ["tail", root, run_id, "--verify", "--journal"])
    assert bad.exit_code == 2 and "--verify" in bad.output, bad.output


def _live_copy(export: Path, target: Path, records: int) -> list[tuple[Path, bytes]]:
    """``target``: the export as it was after ``records`` records (a chunk cut mid-line,
    the checkpoints of those records, no manifest); returns the rest, to write later."""
    target.mkdir()
    (target / "audit_trail.checkpoints").mkdir()
    rest: list[tuple[Path, bytes]] = []
    seen = 0
    for chunk in sorted(export.glob("audit_trail.[0-9]*.json")):
        data = chunk.read_bytes()
        lines = data.split(b"\n")
        inside = sum(line not in (b"[", b"]", b"") for line in lines)
        if seen + inside <= records:
            (target / chunk.name).write_bytes(data)
        else:
            keep = records - seen if seen < records else -1
            if keep >= 0:  # this chunk's first `keep` records and half of the next line
                upto = lines[: keep + 1]
                head = b"\n".join(upto) + b"\n" + lines[keep + 1][:10]
                (target / chunk.name).write_bytes(head)
                rest.append((target / chunk.name, data[len(head) :]))
            else:
                rest.append((target / chunk.name, data))
        seen += inside
    for path in sorted((export / "audit_trail.checkpoints").iterdir()):
        later = int(path.stem) > records
        if later:
            rest.append((target / "audit_trail.checkpoints" / path.name, path.read_bytes()))
        else:
            (target / "audit_trail.checkpoints" / path.name).write_bytes(path.read_bytes())
    manifest = export / "audit_trail.manifest.json"
    rest.append((target / manifest.name, manifest.read_bytes()))
    return rest


def _write_rest(rest: list[tuple[Path, bytes]]) -> None:
    for path, data in rest:
        with path.open("ab") as fh:
            fh.write(data)


@pytest.mark.parametrize("tampered", ["none", "before the start", "after the start"])
def test_tail_verify_from_end_checks_the_records_that_follow(
    tmp_path: Path, keys: tuple[Path, Path], tampered: str
) -> None:
    store, run_id = sealed(tmp_path, keys, rows=20)
    export = store.export_dir(run_id)
    store.close()
    lines = record_lines(export)
    start = 25  # records written when the tail starts: checkpoints at 7, 14, 21 exist
    if tampered != "none":  # a record's bytes changed in its chunk (same record, spaced)
        line = lines[10 if tampered == "before the start" else 40]
        (chunk,) = [c for c in export.glob("audit_trail.[0-9]*.json") if line in c.read_bytes()]
        spaced = json.dumps(json.loads(line), separators=(", ", ": ")).encode()
        chunk.write_bytes(chunk.read_bytes().replace(line, spaced))
    rest = _live_copy(export, tmp_path / "live", start)
    prefix = tmp_path / "live" / "audit_trail"
    if tampered == "before the start":
        with pytest.raises(ExportInvalidError, match="do not have the checkpoint's"):
            ExportTail(prefix, from_end=True, verify=True, public_key=keys[1])
        return
    tail = ExportTail(prefix, from_end=True, verify=True, public_key=keys[1])
    assert (tail.seen, tail.checkpoints_verified, tail.verified_size) == (0, 3, 21)
    assert tail.poll() == []
    _write_rest(rest)
    if tampered == "after the start":
        with pytest.raises(ExportInvalidError, match="do not have the checkpoint's"):
            list(tail.follow(timeout=5))
        return
    records = list(tail.follow(timeout=5))
    assert tail.sealed and [r["seq"] for r in records] == [
        json.loads(line)["seq"] for line in lines[start:]
    ]
    assert tail.checkpoints_verified == len(lines) // EVERY
    assert tail.verified_size == len(lines) // EVERY * EVERY


def test_prove_consistency_refuses_an_unwritable_out_before_any_work(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    store, run_id = sealed(tmp_path, keys)
    export = store.export_dir(run_id)
    store.close()
    kept = export / "audit_trail.checkpoints" / f"{EVERY:020d}.checkpoint"
    out = tmp_path / "no" / "such" / "proof.json"
    bad = CliRunner().invoke(
        cli, ["prove-consistency", str(export), "--from", str(kept), "--out", str(out)]
    )
    assert bad.exit_code == 2 and "Traceback" not in bad.output, bad.output
    assert not out.parent.exists()


def test_a_proof_with_a_wrong_key_or_from_another_run_fails(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    store, run_id = sealed(tmp_path, keys)
    export = store.export_dir(run_id)
    kept = export / "audit_trail.checkpoints" / f"{EVERY:020d}.checkpoint"
    proof = tmp_path / "proof.json"
    proof.write_text(json.dumps(prove_consistency(export, kept)))
    assert verify_consistency_file(proof, keys[1]).ok
    other = generate_keypair(tmp_path / "other")
    assert not verify_consistency_file(proof, other[1]).ok
    data = json.loads(proof.read_text())
    data["proof"] = data["proof"][:-1]
    proof.write_text(json.dumps(data))
    assert not verify_consistency_file(proof).ok
    store.close()


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 70),
    every=st.integers(1, 9),
    cuts=st.lists(st.integers(0, 70), max_size=6),
)
def test_tree_heads_are_the_spec_roots_however_records_are_batched(
    n: int, every: int, cuts: list[int]
) -> None:
    records = [b'{"n":%d}' % i for i in range(n)]
    leaves = [hashlib.sha256(b"\x00" + r).digest() for r in records]
    with tempfile.TemporaryDirectory() as tmp:
        one = ChunkWriter(Path(tmp) / "a" / "audit_trail", None, every)
        (Path(tmp) / "a").mkdir()
        for i, record in enumerate(records):
            one.add(i + 1, record)
        batched = ChunkWriter(Path(tmp) / "b" / "audit_trail", None, every)
        (Path(tmp) / "b").mkdir()
        bounds = sorted({0, n, *(c for c in cuts if c <= n)})
        for lo, hi in itertools.pairwise(bounds):
            part = records[lo:hi]
            lines = b"".join(b"," + r + b"\n" for r in part)
            batched.add_lines(
                lines, [len(r) for r in part], list(range(lo + 1, hi + 1)), b"".join(leaves[lo:hi])
            )
        expected = [(s, spec_root(leaves[:s])) for s in range(every, n + 1, every)]
        assert one.tree_heads == expected
        assert batched.tree_heads == expected
        one.close()
        batched.close()


def test_each_checkpoint_is_an_export_checkpoint_event_before_export_sealed(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    from auditjournal.model.events import ExportCheckpoint, ExportSealed

    store, run_id = sealed(tmp_path, keys)
    events = list(store.read_journal(run_id))
    manifest = json.loads((store.export_dir(run_id) / "audit_trail.manifest.json").read_bytes())
    checkpoints = [e for e in events if isinstance(e, ExportCheckpoint)]
    assert [{"tree_size": e.tree_size, "root": e.root} for e in checkpoints] == manifest[
        "checkpoints"
    ]
    for event in checkpoints:
        assert Path(event.export_path).is_file()
    assert isinstance(events[-1], ExportSealed)
    assert events.index(checkpoints[-1]) == len(events) - 2
    store.close()


def test_project_records_the_checkpoints_of_a_run_it_seals(tmp_path: Path) -> None:
    from auditjournal.model.events import ExportCheckpoint
    from auditjournal.projection.service import ProjectionService

    store = AuditStore.open(tmp_path / "audit")
    settings = ExportSettings(checkpoint_every_records=5)
    with store.start_run(config={}, export=None) as run:
        src = run.register_node(plugin_name="s", node_type="source", plugin_version="1", config={})
        for i in range(12):
            run.create_row(source_node_id=src, row_index=i, data={"i": i})
    run_id = run.run_id
    assert ProjectionService(store, settings=settings, sql=False).run(follow=False) == 1
    events = [e for e in store.read_journal(run_id) if isinstance(e, ExportCheckpoint)]
    assert [e.tree_size for e in events] == [5, 10]
    ProjectionService(store, settings=settings, sql=False).run(follow=False)  # once only
    again = [e for e in store.read_journal(run_id) if isinstance(e, ExportCheckpoint)]
    assert again == events
    store.close()
