"""``verify`` (SPEC §5) and the tamper matrix of SPEC §9.

A signed run is recorded once; each test tampers with a copy of its store
(chunks, manifest, ``audit_trail.sha256``, journal segment, payload pack and
index) and expects ``verify_export(...).ok`` to be False and the CLI to exit 1
with an ``INVALID`` line naming the damaged file. Expected values (record
counts, chunk files) are computed here by parsing the files with ``json``.
Random positions are covered by tests/property/test_tamper_properties.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditjournal import PayloadStore
from auditjournal.evidence.verify import VerifyReport, verify_export
from auditjournal.proofs.merkle import MerkleBuilder, leaf_hash
from shared import Keys, SealedDemo, run_cli

MANIFEST = "audit_trail.manifest.json"
LISTING = "audit_trail.sha256"
CHUNK_RE = re.compile(r"^audit_trail\.\d{3,}\.json$")


@dataclass(frozen=True)
class Recorded:
    root: Path
    run_id: str  # the main run
    other_run_id: str  # a second run in the same store
    public_key: Path
    big_root: Path  # a store with one run of more than 1,000 records
    big_run_id: str


@pytest.fixture(scope="module")
def recorded(sealed_demo: SealedDemo, keys: Keys) -> Recorded:
    main_run = sealed_demo(25, chunk_size_bytes=12_000)
    other = sealed_demo(6, chunk_size_bytes=12_000, root=main_run.root)
    big = sealed_demo(110, chunk_size_bytes=40_000)
    return Recorded(main_run.root, main_run.run_id, other.run_id, keys.public, big.root, big.run_id)


@dataclass(frozen=True)
class Store:
    """A private copy of the recorded store for one test."""

    root: Path
    run_id: str
    other_run_id: str
    public_key: Path

    def export(self, run_id: str | None = None) -> Path:
        return self.root / "runs" / (run_id or self.run_id) / "export"

    def journal(self, run_id: str | None = None) -> Path:
        return self.root / "runs" / (run_id or self.run_id) / "journal"

    def chunks(self, run_id: str | None = None) -> list[Path]:
        return sorted(p for p in self.export(run_id).iterdir() if CHUNK_RE.match(p.name))

    def segment(self) -> Path:
        (segment,) = sorted(self.journal().glob("*.jsonl"))
        return segment

    def verify(
        self, *, journal: bool = True, key: bool = True, run_id: str | None = None
    ) -> VerifyReport:
        payloads = PayloadStore(self.root / "payloads")
        try:
            return verify_export(
                self.export(run_id),
                journal=(self.journal(run_id), payloads) if journal else None,
                public_key=self.public_key if key else None,
            )
        finally:
            payloads.close()

    def cli_args(self, run_id: str | None = None) -> list[str]:
        return [
            "verify",
            str(self.export(run_id)),
            "--journal",
            str(self.root),
            run_id or self.run_id,
            "--public-key",
            str(self.public_key),
        ]


@pytest.fixture
def store(recorded: Recorded, tmp_path: Path) -> Store:
    root = tmp_path / "audit"
    shutil.copytree(recorded.root, root, ignore=shutil.ignore_patterns("landscape.db*"))
    return Store(root, recorded.run_id, recorded.other_run_id, recorded.public_key)


@pytest.fixture
def big_store(recorded: Recorded) -> Store:
    """Read only: the untampered tests do not change it."""
    return Store(recorded.big_root, recorded.big_run_id, "", recorded.public_key)


def parse_chunk(path: Path) -> list[dict[str, Any]]:
    """Our own reading of a chunk: a JSON array, one record per line."""
    records = json.loads(path.read_text())
    assert len(records) == path.read_text().count("\n") - 2
    return records


def invalid_lines(report: VerifyReport) -> list[str]:
    return [c.line() for c in report.checks if not c.ok]


# -- the untampered export ---------------------------------------------------------------------


def test_untampered_export_is_valid_line_by_line(
    big_store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    store = big_store
    chunks = store.chunks()
    assert len(chunks) >= 3
    records = [r for path in chunks for r in parse_chunk(path)]
    assert len(records) > 1000  # the summary groups thousands
    manifest = json.loads((store.export() / MANIFEST).read_text())
    assert [c["file"] for c in manifest["chunks"]] == [p.name for p in chunks]

    report = store.verify()
    assert report.ok, invalid_lines(report)
    assert report.record_count == len(records)
    assert report.chunk_count == len(chunks)
    assert report.signature == "valid"
    expected_files = [
        MANIFEST,
        LISTING,
        *[p.name for p in chunks],
        f"journal of run {store.run_id}",
        f"payloads of run {store.run_id}",
    ]
    assert [c.file for c in report.checks] == expected_files
    summary = (
        f"{len(chunks)}/{len(chunks)} chunks valid, manifest signature valid, "
        f"{len(records):,} records: VALID"
    )
    assert "," in f"{len(records):,}"
    assert report.summary() == summary

    code, out, err = run_cli(capsys, *store.cli_args())
    assert code == 0, err
    assert out.splitlines() == [f"{name}: valid" for name in expected_files] + [summary]

    code, out, _ = run_cli(capsys, *store.cli_args(), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["ok"] is True
    assert data["run_id"] == store.run_id
    assert data["record_count"] == len(records)
    assert data["chunk_count"] == len(chunks)
    assert data["signature"] == "valid"
    assert data["summary"] == summary
    assert data["files"] == [{"file": f, "valid": True, "reason": ""} for f in expected_files]


def test_manifest_path_works_like_its_directory(store: Store) -> None:
    by_dir = verify_export(store.export())
    by_file = verify_export(store.export() / MANIFEST)
    assert by_dir.ok and by_file.ok
    assert [c.line() for c in by_dir.checks] == [c.line() for c in by_file.checks]
    assert by_dir.signature == "present but NOT CHECKED (no key given)"


def test_standard_tools_agree_with_the_listing(store: Store) -> None:
    """``sha256sum -c`` works with no tool of ours (SPEC §4)."""
    for line in (store.export() / LISTING).read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((store.export() / name).read_bytes()).hexdigest() == digest


# -- the tamper matrix -------------------------------------------------------------------------


def flip(data: bytes, where: float) -> bytes:
    pos = min(int(len(data) * where), len(data) - 1)
    out = bytearray(data)
    out[pos] ^= 0x04 if out[pos] != 0x20 else 0x29  # spaces become tabs: still valid JSON
    return bytes(out)


def invalid_utf8(data: bytes) -> bytes:
    """A byte that is never UTF-8 (0xff), in the middle of a record or entry."""
    out = bytearray(data)
    out[len(data) // 2] = 0xFF
    return bytes(out)


def lines_of(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def delete_line(data: bytes) -> bytes:
    lines = lines_of(data)
    del lines[len(lines) // 2]
    return b"".join(line + b"\n" for line in lines)


def delete_last_line(data: bytes) -> bytes:
    return b"".join(line + b"\n" for line in lines_of(data)[:-1])


def swap_lines(data: bytes) -> bytes:
    lines = lines_of(data)
    i = len(lines) // 2
    j = next(j for j in range(i + 1, len(lines)) if lines[j] != lines[i])
    lines[i], lines[j] = lines[j], lines[i]
    return b"".join(line + b"\n" for line in lines)


def truncate(data: bytes) -> bytes:
    """Cut about a third off; never exactly after a newline, or a journal would merely
    lose whole entries (another damage, found another way) rather than end mid-entry."""
    cut = len(data) * 2 // 3
    if data[cut - 1 : cut] == b"\n":
        cut -= 1
    return data[:cut]


def truncate_last_byte(data: bytes) -> bytes:
    return data[:-1]


def append_line(data: bytes) -> bytes:
    return data + b'{"record_type":"row","run_id":"x","seq":1}\n'


def cut_bytes(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + data[middle + 8 :]


def swap_blocks(data: bytes) -> bytes:
    a, b = len(data) // 4, len(data) // 2
    return data[:a] + data[b : b + 16] + data[a + 16 : b] + data[a : a + 16] + data[b + 16 :]


TEXT_OPS: dict[str, Callable[[bytes], bytes]] = {
    "flip start": lambda d: flip(d, 0.0),
    "flip middle": lambda d: flip(d, 0.5),
    "flip end": lambda d: flip(d, 1.0),
    "invalid utf-8": invalid_utf8,
    "delete line": delete_line,
    "delete last line": delete_last_line,
    "swap lines": swap_lines,
    "truncate": truncate,
    "truncate last byte": truncate_last_byte,
    "empty": lambda d: b"",
    "append line": append_line,
}
BINARY_OPS: dict[str, Callable[[bytes], bytes]] = {
    "flip start": lambda d: flip(d, 0.0),
    "flip quarter": lambda d: flip(d, 0.25),
    "flip middle": lambda d: flip(d, 0.5),
    "flip end": lambda d: flip(d, 1.0),
    "cut bytes": cut_bytes,
    "swap blocks": swap_blocks,
    "truncate": truncate,
    "truncate last byte": truncate_last_byte,
}


def target_path(store: Store, target: str) -> Path:
    return {
        "chunk": lambda: store.chunks()[1],
        "last chunk": lambda: store.chunks()[-1],
        "manifest": lambda: store.export() / MANIFEST,
        "listing": lambda: store.export() / LISTING,
        "journal": store.segment,
        "pack": lambda: store.root / "payloads" / "pack-000001.dat",
        "index": lambda: store.root / "payloads" / "pack-000001.idx",
    }[target]()


def expected_mention(store: Store, target: str, path: Path) -> str:
    """What an INVALID line must name for this target."""
    if target in ("pack", "index"):
        # a payload that cannot be found (index) or whose pack record is damaged
        return "payload"
    return path.name


def reporting_line(store: Store, target: str, path: Path) -> str:
    """How the INVALID line about the damaged file starts."""
    if target in ("pack", "index"):
        return "payloads of run "
    if target == "journal":
        return "journal of run "
    return f"{path.name}: INVALID: "


_CHAIN = r"bad entry at offset \d+: chain hash does not match"
_DAMAGED_RECORD = r"the record of payload [0-9a-f]{64} at offset \d+ is damaged"
# The reason each damage must be reported with (a regex on the damaged file's line): the
# check that catches it, not merely the file's name. Where the damaged byte may land on
# syntax or on content, both reasons are named.
REASONS: dict[tuple[str, str], str] = {
    **{
        (target, op): reason
        for target in ("chunk", "last chunk")
        for op, reason in {
            "flip start": r"first line is not '\['",
            "flip middle": r"sha256 does not match the manifest|line \d+ is not a record",
            "flip end": "file does not end with a newline",
            "invalid utf-8": r"sha256 does not match the manifest|line \d+ is not a record",
            "delete line": r"\d+ bytes, manifest says \d+",
            "delete last line": r"no closing '\]'",
            "swap lines": r"line \d+: seq \d+ goes backwards",
            "truncate": "file does not end with a newline",
            "truncate last byte": "file does not end with a newline",
            "empty": r"no closing '\]'",
            "append line": r"content after the closing '\]'",
        }.items()
    },
    ("manifest", "flip start"): "malformed manifest",
    # (where the middle falls depends on the manifest's members: a value, or indentation)
    ("manifest", "flip middle"): "signature: Ed25519 signature does not match the manifest"
    "|not byte for byte the layout the exporter writes",
    ("manifest", "flip end"): "malformed manifest",
    ("manifest", "invalid utf-8"): "malformed manifest",
    ("manifest", "delete line"): "malformed manifest",
    ("manifest", "delete last line"): "malformed manifest",
    ("manifest", "swap lines"): "malformed manifest",
    ("manifest", "truncate"): "malformed manifest",
    ("manifest", "truncate last byte"): "not byte for byte the layout the exporter writes",
    ("manifest", "empty"): "malformed manifest",
    ("manifest", "append line"): "malformed manifest",
    **{
        ("listing", op): "does not list exactly the manifest's chunks and hashes" for op in TEXT_OPS
    },
    ("journal", "flip start"): "bad entry at offset 0: chain hash does not match",
    ("journal", "flip middle"): _CHAIN,
    ("journal", "flip end"): r"ends with an incomplete entry at offset \d+",
    ("journal", "invalid utf-8"): _CHAIN,
    ("journal", "delete line"): _CHAIN,
    ("journal", "delete last line"): "no export_sealed entry for this run's live export",
    ("journal", "swap lines"): _CHAIN,
    ("journal", "truncate"): r"ends with an incomplete entry at offset \d+",
    ("journal", "truncate last byte"): r"ends with an incomplete entry at offset \d+",
    ("journal", "empty"): "the journal has no run_completed event",
    ("journal", "append line"): r"bad entry at offset \d+: entry is not a chained journal line",
    **{
        ("pack", op): _DAMAGED_RECORD
        for op in ("flip start", "flip quarter", "flip middle", "flip end", "cut bytes")
    },
    ("pack", "swap blocks"): _DAMAGED_RECORD,
    ("pack", "truncate"): "no payload with ref [0-9a-f]{64}",
    ("pack", "truncate last byte"): r"pack-000001\.idx: entry \d+ points at offset",
    **{
        ("index", op): (
            "no payload with ref [0-9a-f]{64}|does not match the record header in its pack"
        )
        for op in ("flip start", "flip quarter", "flip middle", "cut bytes", "swap blocks")
    },
    ("index", "flip end"): r"pack-000001\.idx: entry \d+ points at offset",
    ("index", "truncate"): "no payload with ref [0-9a-f]{64}",
    ("index", "truncate last byte"): "is not a whole number of entries",
}


MATRIX = [
    (target, op)
    for target in ("chunk", "last chunk", "manifest", "listing", "journal")
    for op in TEXT_OPS
] + [(target, op) for target in ("pack", "index") for op in BINARY_OPS]


def test_every_damage_has_its_expected_reason() -> None:
    assert sorted(REASONS) == sorted(MATRIX)


@pytest.mark.parametrize(("target", "op"), MATRIX, ids=[f"{t}-{o}" for t, o in MATRIX])
def test_tampering_is_reported_naming_the_file(
    store: Store, target: str, op: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = target_path(store, target)
    original = path.read_bytes()
    tampered = (TEXT_OPS | BINARY_OPS)[op](original)
    assert tampered != original
    path.write_bytes(tampered)

    run_id = store.run_id
    if target in ("pack", "index"):
        # the payload store is shared: the damage belongs to whichever run refers to the
        # damaged payload (the end of the pack holds the second run's new payloads)
        reports = {rid: store.verify(run_id=rid) for rid in (store.run_id, store.other_run_id)}
        failing = [rid for rid, r in reports.items() if not r.ok]
        assert failing, f"{target}/{op} not detected"
        run_id = failing[0]
    report = store.verify(run_id=run_id)
    assert not report.ok, f"{target}/{op} not detected"
    mention = expected_mention(store, target, path)
    assert any(mention in line for line in invalid_lines(report)), invalid_lines(report)
    start = reporting_line(store, target, path)
    (line,) = [line for line in invalid_lines(report) if line.startswith(start)]
    assert re.search(REASONS[target, op], line), line
    assert report.summary().endswith(": INVALID")

    code, out, err = run_cli(capsys, *store.cli_args(run_id))
    assert code == 1, (out, err)
    assert "Traceback" not in out + err
    assert any("INVALID" in line and mention in line for line in out.splitlines()), out
    assert out.splitlines()[-1].endswith(": INVALID")

    path.write_bytes(original)
    assert store.verify(run_id=run_id).ok


@pytest.mark.parametrize("target", ["chunk", "manifest", "listing"])
def test_export_tampering_is_found_without_journal_or_key(store: Store, target: str) -> None:
    """The export checks on their own (what an auditor without our store runs)."""
    path = target_path(store, target)
    original = path.read_bytes()
    for op in ("flip middle", "delete line", "swap lines", "truncate", "append line"):
        path.write_bytes(TEXT_OPS[op](original))
        report = store.verify(journal=False, key=False)
        assert not report.ok, f"{target}/{op}"
        # an unsigned manifest edited in a chunk's entry: verify cannot tell which side
        # lies and reports the chunk as disagreeing with "the manifest"
        mention = "manifest" if target == "manifest" else path.name
        # without the key the manifest's own signature is not checked: a digit flipped in a
        # chunk entry shows as that chunk disagreeing with the manifest
        unsigned = {
            ("manifest", "flip middle"): r"seq range \d+\.\.\d+, manifest says"
            "|not byte for byte the layout the exporter writes"
        }
        expected = unsigned.get((target, op), REASONS[target, op])
        assert any(
            mention in line and re.search(expected, line) for line in invalid_lines(report)
        ), invalid_lines(report)
    path.write_bytes(original)
    assert store.verify(journal=False, key=False).ok


def test_chunk_from_another_run_is_invalid(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = store.chunks()[1]
    foreign = store.chunks(store.other_run_id)[0]
    shutil.copyfile(foreign, victim)
    report = store.verify(journal=False, key=False)
    assert not report.ok
    (line,) = [c for c in report.checks if c.file == victim.name]
    assert not line.ok and "another run" in line.reason
    code, out, _ = run_cli(capsys, *store.cli_args())
    assert code == 1
    assert f"{victim.name}: INVALID" in out


def test_whole_chunk_swap_with_listing_and_manifest_updated_is_caught_by_merkle_root(
    store: Store,
) -> None:
    """A forger who also fixes the chunk's hash, size and counts, but not the root."""
    victim = store.chunks()[1]
    foreign = store.chunks(store.other_run_id)[0]
    data = foreign.read_bytes().replace(
        store.other_run_id.encode(), store.run_id.encode()
    )  # same length: run ids share their format
    victim.write_bytes(data)
    records = parse_chunk(victim)
    manifest_path = store.export() / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    entry = next(c for c in manifest["chunks"] if c["file"] == victim.name)
    entry.update(
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        record_count=len(records),
        first_seq=records[0]["seq"],
        last_seq=records[-1]["seq"],
    )
    manifest["total_record_count"] = sum(c["record_count"] for c in manifest["chunks"])
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (store.export() / LISTING).write_text(
        "".join(f"{c['sha256']}  {c['file']}\n" for c in manifest["chunks"])
        + f"{hashlib.sha256(manifest_path.read_bytes()).hexdigest()}  {MANIFEST}\n"
    )
    report = store.verify(journal=False, key=False)
    # the foreign records' seqs start lower than the chunk before ends, and the records
    # are not the ones the root was computed over: two independent checks, each must fire
    # (the Merkle root alone is pinned in test_verify_checks.py)
    before = parse_chunk(store.chunks()[0])[-1]["seq"]
    bad = {c.file: c.reason for c in report.checks if not c.ok}
    # (the foreign records also break the completeness certificate: a third check)
    assert bad.pop(MANIFEST).startswith(
        "Merkle root does not match the records; completeness certificate does not match"
    )
    assert bad == {
        victim.name: f"first seq {records[0]['seq']} goes backwards (the chunk before ends at "
        f"{before})",
    }


def recompute_everything(store: Store, edit: Callable[[dict[str, Any]], None]) -> None:
    """A forger rewrites one record and every hash above it; drops the signature."""
    export = store.export()
    manifest = json.loads((export / MANIFEST).read_text())
    manifest.pop("signature")
    builder = MerkleBuilder()
    for entry in manifest["chunks"]:
        path = export / entry["file"]
        lines = path.read_bytes().split(b"\n")[:-1]
        out = [lines[0]]
        for i, line in enumerate(lines[1:-1]):
            prefix = b"," if i else b""
            body = line[len(prefix) :]
            if entry is manifest["chunks"][1] and i == 2:
                record = json.loads(body)
                edit(record)
                body = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
            out.append(prefix + body)
            builder.add(leaf_hash(body))
        data = b"".join(line + b"\n" for line in [*out, lines[-1]])
        path.write_bytes(data)
        entry.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    manifest["merkle_root"] = builder.root().hex()
    (export / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (export / LISTING).write_text(
        "".join(f"{c['sha256']}  {c['file']}\n" for c in manifest["chunks"])
        + f"{hashlib.sha256((export / MANIFEST).read_bytes()).hexdigest()}  {MANIFEST}\n"
    )


def test_consistent_forgery_needs_the_signature_or_the_journal_to_be_caught(
    store: Store,
) -> None:
    def edit(record: dict[str, Any]) -> None:
        record["seq"] = record["seq"]  # keep the seq order
        record["record_type"] = record["record_type"]
        record["forged"] = True

    recompute_everything(store, edit)
    # Without a key or a journal an unsigned manifest is only as good as the channel it
    # came through: every hash in it is consistent again.
    assert store.verify(journal=False, key=False).ok
    with_key = store.verify(journal=False, key=True)
    assert not with_key.ok and with_key.signature == "INVALID"
    with_journal = store.verify(journal=True, key=False)
    assert not with_journal.ok
    (line,) = [c for c in with_journal.checks if c.file.startswith("journal of run")]
    assert not line.ok
    # the journal's export_sealed entry names the sealed manifest's sha256; the fresh
    # projection (what catches a forged copy elsewhere) is pinned in test_verify_checks.py
    assert line.reason == (
        f"{store.segment()}: the export_sealed entry has another manifest sha256 than this one"
    )


def test_resigned_with_another_key_is_invalid_in_the_cli(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    path = store.export() / MANIFEST
    manifest = json.loads(path.read_text())
    other = Ed25519PrivateKey.generate()
    body = {k: v for k, v in manifest.items() if k != "signature"}
    raw = other.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    manifest["signature"] = {
        "algorithm": "ed25519",
        "key_id": hashlib.sha256(raw).hexdigest(),
        "value": other.sign(rfc8785.dumps(body)).hex(),
    }
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    report = store.verify()
    assert not report.ok and report.signature == "INVALID"
    code, out, _ = run_cli(capsys, *store.cli_args())
    assert code == 1
    assert re.search(r"^audit_trail\.manifest\.json: INVALID: signature: ", out, re.M)
    assert "manifest signature INVALID" in out.splitlines()[-1]


def test_missing_and_unlisted_files(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    chunk = store.chunks()[2]
    data = chunk.read_bytes()
    chunk.unlink()
    report = store.verify(journal=False, key=False)
    assert f"{chunk.name}: INVALID: missing" in invalid_lines(report)
    chunk.write_bytes(data)

    extra = store.export() / "audit_trail.999.json"
    extra.write_bytes(store.chunks()[0].read_bytes())
    report = store.verify(journal=False, key=False)
    assert invalid_lines(report) == [
        "audit_trail.999.json: INVALID: chunk file not listed in manifest"
    ]
    extra.unlink()

    (store.export() / LISTING).unlink()
    report = store.verify(journal=False, key=False)
    assert invalid_lines(report) == [f"{LISTING}: INVALID: missing"]

    (store.export() / MANIFEST).unlink()
    code, _, err = run_cli(capsys, "verify", store.export())
    assert code == 2
    assert err.strip() == (
        f"auditjournal: error: {store.export()} holds no *.manifest.json (is the export sealed?)"
    )


def test_journal_of_another_run_or_no_journal_is_invalid(store: Store) -> None:
    payloads = PayloadStore(store.root / "payloads")
    try:
        foreign = verify_export(
            store.export(), journal=(store.journal(store.other_run_id), payloads)
        )
        missing = verify_export(store.export(), journal=(store.root / "nope", payloads))
    finally:
        payloads.close()
    for report in (foreign, missing):
        assert not report.ok
        (line,) = [c for c in report.checks if c.file.startswith("journal of run")]
        assert not line.ok
