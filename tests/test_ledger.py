"""The store ledger (issue 16 item 1): entries, signed checkpoints, ``verify-store``."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditjournal import AuditStore, ExportSettings
from auditjournal.cli import cli
from auditjournal.errors import SigningKeyError
from auditjournal.evidence.verify_store import StoreReport, verify_store
from auditjournal.proofs.ledger import LedgerPaths, read_ledger
from auditjournal.proofs.signing import generate_keypair
from auditjournal.sql.csvexport import export_csv


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_keypair(tmp_path / "keys")


@pytest.fixture
def store(tmp_path: Path, keys: tuple[Path, Path]) -> Iterator[AuditStore]:
    with AuditStore.open(tmp_path / "audit", ledger_key=keys[0]) as store:
        yield store


def seal_run(store: AuditStore, rows: int = 2, run_id: str | None = None) -> str:
    kwargs = {} if run_id is None else {"run_id": run_id}
    with store.start_run(config={"n": rows}, export=ExportSettings(), **kwargs) as run:
        src = run.register_node(
            plugin_name="src", node_type="source", plugin_version="1", config={}
        )
        for i in range(rows):
            row = run.create_row(source_node_id=src, row_index=i, data={"i": i})
            token = run.create_token(row_id=row)
            run.record_token_outcome(token_id=token, outcome="completed", sink_name="out")
        return run.run_id


def problems(report: StoreReport) -> list[str]:
    return [c.line() for c in report.checks if not c.ok]


def spec_leaf(line: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + line).digest()


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


# -- what the ledger holds ------------------------------------------------------------


def test_every_seal_appends_an_entry_and_a_spec_signed_checkpoint(
    store: AuditStore, keys: tuple[Path, Path]
) -> None:
    runs = [seal_run(store, rows) for rows in (1, 2, 3)]
    paths = LedgerPaths(store.root)
    lines = paths.entries.read_bytes().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["run_id"] for e in entries] == runs
    for run_id, entry in zip(runs, entries, strict=True):
        manifest = store.export_dir(run_id) / "audit_trail.manifest.json"
        data = manifest.read_bytes()
        assert entry["manifest_sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["merkle_root"] == json.loads(data)["merkle_root"]
        assert entry["sealed_at"] == json.loads(data)["sealed_at"]
        assert entry["path"] == f"runs/{run_id}/export/audit_trail.manifest.json"
    # the checkpoint, from the C2SP definitions
    origin = paths.origin.read_text().strip()
    root = spec_root([spec_leaf(line) for line in lines])
    text = f"{origin}\n3\n{base64.b64encode(root).decode()}\n"
    note = paths.checkpoint.read_bytes()
    assert note.startswith(text.encode() + b"\n\xe2\x80\x94 " + origin.encode() + b" ")
    blob = base64.b64decode(note.split(b" ")[-1])
    private = serialization.load_pem_private_key(keys[0].read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    key_id = hashlib.sha256(origin.encode() + b"\n\x01" + public).digest()[:4]
    assert blob[:4] == key_id
    private.public_key().verify(blob[4:], text.encode())  # raises if wrong
    assert sorted(p.name for p in paths.checkpoints.iterdir()) == [
        f"{n:020d}.checkpoint" for n in (1, 2, 3)
    ]
    report = verify_store(store.root, public_key=keys[1])
    assert report.ok, problems(report)
    assert report.tree_size == 3 and report.tree_root == root.hex() and report.signed


def test_the_same_seal_is_recorded_once(store: AuditStore) -> None:
    run_id = seal_run(store)
    entry = read_ledger(store.root).entries[0]  # type: ignore[union-attr]
    assert store.ledger.append(entry) is False
    # resuming a sealed export (as `project` does) records nothing new
    store.export_projector(run_id, ExportSettings()).close()
    assert read_ledger(store.root).size == 1  # type: ignore[union-attr]


def test_csv_exports_and_replays_are_in_the_ledger(store: AuditStore, tmp_path: Path) -> None:
    run_id = seal_run(store)
    result = export_csv(store, run_id, tmp_path / "csv")
    runner = CliRunner()
    out = runner.invoke(cli, ["replay", str(store.root), run_id, "--out", str(tmp_path / "re")])
    assert out.exit_code == 0, out.output
    state = read_ledger(store.root)
    assert state is not None
    kinds = [(e.kind, e.path) for e in state.entries]
    assert kinds[1] == ("csv", str(result.listing_path.resolve()))
    assert kinds[2] == ("export", str((tmp_path / "re" / "audit_trail.manifest.json").resolve()))
    assert state.entries[1].manifest_sha256 == result.listing_sha256
    assert verify_store(store.root).ok
    with result.listing_path.open("ab") as fh:
        fh.write(b"\n")
    bad = problems(verify_store(store.root))
    assert len(bad) == 1 and "csv" in bad[0] and "replaced or edited" in bad[0]


def test_unsigned_ledger_says_so_and_a_wrong_or_missing_signature_is_invalid(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    with AuditStore.open(tmp_path / "plain") as store:
        seal_run(store)
    report = verify_store(tmp_path / "plain")
    assert report.ok and not report.signed
    assert any("unsigned" in note for note in report.notes)
    assert not verify_store(tmp_path / "plain", public_key=keys[1]).ok  # a key was expected
    with AuditStore.open(tmp_path / "signed", ledger_key=keys[0]) as store:
        seal_run(store)
    other = generate_keypair(tmp_path / "other")
    bad = problems(verify_store(tmp_path / "signed", public_key=other[1]))
    assert bad and all("does not verify" in line or "no trusted key" in line for line in bad)
    with pytest.raises(SigningKeyError):
        AuditStore.open(tmp_path / "x", ledger_key=keys[1])  # a public key cannot sign


# -- what verify-store catches --------------------------------------------------------


def test_a_deleted_run_is_reported(store: AuditStore) -> None:
    keep, gone = seal_run(store), seal_run(store)
    shutil.rmtree(store.run_dir(gone))
    bad = problems(verify_store(store.root))
    assert len(bad) == 1 and gone in bad[0] and "run directory is gone" in bad[0]
    assert keep not in bad[0]


def test_a_replaced_run_is_reported(store: AuditStore, tmp_path: Path) -> None:
    run_id = seal_run(store, rows=2)
    # another store seals a different run under the same id; it is copied over ours
    with AuditStore.open(tmp_path / "elsewhere") as other:
        seal_run(other, rows=5, run_id=run_id)
    shutil.rmtree(store.run_dir(run_id))
    shutil.copytree(other.run_dir(run_id), store.run_dir(run_id))
    bad = problems(verify_store(store.root))
    assert len(bad) == 1 and run_id in bad[0] and "replaced or edited" in bad[0]


def test_an_added_run_is_reported(store: AuditStore, tmp_path: Path) -> None:
    seal_run(store)
    with AuditStore.open(tmp_path / "elsewhere") as other:
        added = seal_run(other)
    shutil.copytree(other.run_dir(added), store.run_dir(added))
    bad = problems(verify_store(store.root))
    assert len(bad) == 1 and added in bad[0] and "not in the ledger" in bad[0]


def test_a_truncated_ledger_is_reported(store: AuditStore) -> None:
    for _ in range(3):
        seal_run(store)
    entries = LedgerPaths(store.root).entries
    data = entries.read_bytes()
    entries.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 1])  # the last entry gone
    bad = problems(verify_store(store.root))
    assert any("ledger/checkpoint:" in line and "only 2" in line for line in bad)
    assert any("not in the ledger" in line for line in bad)  # and its run is unaccounted for
    entries.write_bytes(data[:-10])  # torn in the middle of the last line
    bad = problems(verify_store(store.root))
    assert any(line.startswith("ledger: INVALID") and "partial entry" in line for line in bad)


def test_an_edited_entry_is_reported(store: AuditStore) -> None:
    seal_run(store)
    seal_run(store)
    entries = LedgerPaths(store.root).entries
    lines = entries.read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[0])
    entry["record_count"] += 1
    lines[0] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    entries.write_bytes(b"".join(lines))
    bad = problems(verify_store(store.root))
    assert any("ledger/checkpoint:" in line and "rewritten" in line for line in bad)
    assert any("does not say what the ledger recorded" in line for line in bad)


def test_a_rolled_back_ledger_is_reported_with_since(store: AuditStore, tmp_path: Path) -> None:
    ledger = LedgerPaths(store.root).directory
    seal_run(store)
    gone = seal_run(store)
    shutil.copytree(ledger, tmp_path / "ledger-at-1")
    (tmp_path / "ledger-at-1" / "entries.jsonl").write_bytes(
        b"".join((ledger / "entries.jsonl").read_bytes().splitlines(keepends=True)[:1])
    )
    kept = tmp_path / "auditor.checkpoint"
    shutil.copy(ledger / "checkpoint", kept)  # the auditor keeps the checkpoint of 2 entries
    assert verify_store(store.root, since=kept).ok
    # the operator rolls the whole ledger back to one entry and removes the run
    old = shutil.copytree(ledger, tmp_path / "ledger-at-2")
    shutil.rmtree(ledger)
    shutil.copytree(old, ledger)
    entries = ledger / "entries.jsonl"
    entries.write_bytes(entries.read_bytes().splitlines(keepends=True)[0])
    shutil.copy(ledger / "checkpoints" / f"{1:020d}.checkpoint", ledger / "checkpoint")
    (ledger / "checkpoints" / f"{2:020d}.checkpoint").unlink()
    shutil.rmtree(store.run_dir(gone))
    assert verify_store(store.root).ok  # consistent with itself: only --since can tell
    bad = problems(verify_store(store.root, since=kept))
    assert len(bad) == 1 and "fewer than the 2" in bad[0]
    # ... and re-grows it with another run to the same size
    with AuditStore.open(store.root, ledger_key=store.ledger._key_file) as again:
        seal_run(again)
    assert verify_store(store.root).ok
    bad = problems(verify_store(store.root, since=kept))
    assert len(bad) == 1 and "not an extension" in bad[0]


def test_since_a_checkpoint_of_another_ledger_is_invalid(store: AuditStore, tmp_path: Path) -> None:
    seal_run(store)
    with AuditStore.open(tmp_path / "elsewhere") as other:
        seal_run(other)
    bad = problems(verify_store(store.root, since=LedgerPaths(other.root).checkpoint))
    assert len(bad) == 1 and "not of this ledger" in bad[0]


def test_cli_verify_store(store: AuditStore, keys: tuple[Path, Path], tmp_path: Path) -> None:
    run_id = seal_run(store)
    runner = CliRunner()
    args = ["verify-store", str(store.root), "--public-key", str(keys[1])]
    ok = runner.invoke(cli, args)
    assert ok.exit_code == 0, ok.output
    assert "ledger: valid" in ok.output and "VALID" in ok.output
    shutil.rmtree(store.run_dir(run_id) / "export")
    bad = runner.invoke(cli, [*args, "--json"])
    assert bad.exit_code == 1
    report = json.loads(bad.output)
    assert not report["ok"] and report["tree_size"] == 1
    assert runner.invoke(cli, ["verify-store", str(tmp_path / "nothing")]).exit_code == 2


# -- crash safety ---------------------------------------------------------------------

_CHILD = """
import sys
from pathlib import Path
from auditjournal.proofs.ledger import Ledger, LedgerEntry
ledger = Ledger(Path(sys.argv[1]), Path(sys.argv[2]))
for i in range(100000):
    ledger.append(LedgerEntry(kind="csv", run_id=f"r{i}", path=f"x/{i}",
        manifest_sha256="0" * 64, merkle_root=None, record_count=i, sealed_at=None))
    print(i, flush=True)
"""


def test_kill_9_while_appending_leaves_a_ledger_the_next_writer_completes(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    root = tmp_path / "root"
    (root / "runs").mkdir(parents=True)
    acknowledged = -1
    for trial in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(root), str(keys[0])],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        first = child.stdout.readline()  # it has started appending
        assert first
        time.sleep(0.01 * (trial % 3))
        os.kill(child.pid, signal.SIGKILL)
        rest = child.stdout.read()
        child.wait()
        printed = [int(x) for x in (first + rest).split()]
        acknowledged = max(printed)
        # every acknowledged entry is there, once; at most one more (written, not printed)
        with AuditStore.open(root, ledger_key=keys[0]):
            pass  # opening the store re-signs a checkpoint the kill kept from being written
        state = read_ledger(root)
        assert state is not None and state.torn_bytes == 0
        counts = [e.record_count for e in state.entries]
        assert counts[: acknowledged + 1] == list(range(acknowledged + 1))
        assert len(counts) - (acknowledged + 1) <= 1
        report = verify_store(root, public_key=keys[1])
        ledger_checks = [line for line in problems(report) if line.startswith("ledger")]
        assert not ledger_checks  # (the entries name runs this test never made)
        assert report.tree_root == bytes(spec_root(state.leaves)).hex()
        LedgerPaths(root).entries.write_bytes(b"")  # the next trial starts afresh
        shutil.rmtree(LedgerPaths(root).checkpoints)
        LedgerPaths(root).checkpoint.unlink()


def test_a_torn_last_line_is_cut_by_the_next_append(store: AuditStore) -> None:
    seal_run(store)
    entries = LedgerPaths(store.root).entries
    good = entries.read_bytes()
    with entries.open("ab") as fh:
        fh.write(b'{"kind":"exp')
    assert read_ledger(store.root).torn_bytes == 12  # type: ignore[union-attr]
    seal_run(store)
    data = entries.read_bytes()
    assert data.startswith(good) and data.count(b"\n") == 2
    assert verify_store(store.root).ok


def test_opening_a_store_with_a_whole_ledger_writes_nothing(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    with AuditStore.open(tmp_path / "a", ledger_key=keys[0]) as store:
        seal_run(store)
    paths = LedgerPaths(tmp_path / "a")
    paths.lock.unlink()
    before = {p: p.stat().st_mtime_ns for p in paths.directory.rglob("*")}
    with AuditStore.open(tmp_path / "a", ledger_key=keys[0]):
        pass
    assert not paths.lock.exists()  # not even the lock was taken
    assert {p: p.stat().st_mtime_ns for p in paths.directory.rglob("*")} == before
    paths.entries.write_bytes(b"not json\n")  # a damaged ledger does not stop the store
    with AuditStore.open(tmp_path / "a", ledger_key=keys[0]):
        pass
    assert not verify_store(tmp_path / "a").ok
