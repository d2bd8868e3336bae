"""Hostile evidence (issue 10, items 4-6): forged bundles with repeated members, chunk
names that leave the export, FIFOs, directories, symlinks and deep nesting where the
readers expect files. Each reader must answer with INVALID or a typed error -- one line
on the command line -- never hang, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from auditjournal import AuditStore
from auditjournal.errors import (
    AuditJournalError,
    DuplicateMemberError,
    ExportNotFoundError,
    MalformedEvidenceError,
    UnsafePathError,
)
from auditjournal.evidence.extract import Selection, extract_bundle, read_bundle, verify_bundle
from auditjournal.evidence.reimport import load_rows
from auditjournal.evidence.verify import verify_export
from auditjournal.export.projector import encode_manifest
from auditjournal.export.tail import ExportTail
from auditjournal.proofs.merkle import leaf_hash, merkle_root
from auditjournal.sql.lineage import show_run
from hostile import (
    Signed,
    assert_one_line_error,
    cli_here,
    cli_subprocess,
    within,
)
from shared import Keys, SealedDemo

MANIFEST = "audit_trail.manifest.json"
LISTING = "audit_trail.sha256"
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def signed(sealed_demo: SealedDemo, keys: Keys) -> Signed:
    return Signed.of(sealed_demo(6, chunk_size_bytes=5000), keys.public)


@pytest.fixture(scope="module")
def bundle_text(signed: Signed, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("bundle") / "row.json"
    row = next(
        r["row_id"]
        for chunk in sorted(signed.export.glob("audit_trail.*[0-9].json"))
        for r in json.loads(chunk.read_text())
        if r["record_type"] == "row"
    )
    assert cli_subprocess("extract", signed.export, "--row", row, "--out", out).code == 0
    return out.read_text()


def check(report_checks: list, name: str) -> str:  # type: ignore[type-arg]
    """The reason given for the file ``name`` (which must be INVALID)."""
    found = [c for c in report_checks if c.file == name]
    assert found, [c.file for c in report_checks]
    assert not found[0].ok
    return str(found[0].reason)


# -- item 4: a member named twice ---------------------------------------------------------


def forge_status(text: str) -> str:
    """A completed node state's record that also says it failed, before the real status."""
    marker = '"status": "completed"'
    assert marker in text
    return text.replace(marker, '"status": "failed",\n    ' + marker, 1)


def test_a_bundle_record_naming_a_member_twice_is_refused(
    signed: Signed, bundle_text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forged = tmp_path / "forged.json"
    forged.write_text(forge_status(bundle_text))
    # what makes it a forgery: a last-wins reading proves the record, a first-wins one
    # reads "failed"
    last_wins = json.loads(forged.read_text())
    assert verify_bundle(last_wins, public_key=signed.public_key).ok
    with pytest.raises(DuplicateMemberError, match="'status' twice"):
        read_bundle(forged)
    result = cli_here(capsys, "verify-bundle", forged, "--public-key", signed.public_key)
    assert_one_line_error(result, 1, "'status' twice")
    assert "VALID" not in result.out


def test_a_bundle_manifest_naming_a_member_twice_is_refused(
    signed: Signed, bundle_text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = json.loads(bundle_text)
    status = bundle["manifest"]["run_status"]
    text = json.dumps(bundle, indent=1)
    marker = f'"run_status": "{status}"'
    forged = tmp_path / "forged.json"
    forged.write_text(text.replace(marker, f'"run_status": "failed", {marker}', 1))
    with pytest.raises(DuplicateMemberError, match="'run_status' twice"):
        read_bundle(forged)
    result = cli_here(capsys, "verify-bundle", forged, "--public-key", signed.public_key)
    assert_one_line_error(result, 1, "'run_status' twice")


def test_a_repeat_deep_inside_a_payload_of_a_bundle_is_refused(
    bundle_text: str, tmp_path: Path
) -> None:
    bundle = json.loads(bundle_text)
    text = json.dumps(bundle)
    marker = '"source_data": {'
    assert marker in text
    forged = tmp_path / "forged.json"
    forged.write_text(text.replace(marker, marker + '"x": 1, "x": 2, ', 1))
    with pytest.raises(DuplicateMemberError, match="'x' twice"):
        read_bundle(forged)


def test_verify_names_a_repeated_manifest_member(signed: Signed, tmp_path: Path) -> None:
    export = signed.copy(tmp_path / "export")
    manifest = export / MANIFEST
    text = manifest.read_text()
    marker = '"run_status": "'
    manifest.write_text(text.replace(marker, '"run_status": "failed",\n  ' + marker, 1))
    report = verify_export(export, public_key=signed.public_key)
    assert not report.ok
    assert "'run_status' twice" in check(report.checks, MANIFEST)


def test_extract_refuses_a_chunk_record_naming_a_member_twice(
    signed: Signed, tmp_path: Path
) -> None:
    export = signed.copy(tmp_path / "export")
    chunk = export / "audit_trail.001.json"
    data = chunk.read_bytes()
    chunk.write_bytes(data.replace(b'{"', b'{"aaa":1,"aaa":2,"', 1))
    with pytest.raises(DuplicateMemberError, match="'aaa' twice"):
        extract_bundle(export, Selection(seqs=frozenset({2})))


def test_extract_refuses_a_record_that_is_not_canonical(signed: Signed, tmp_path: Path) -> None:
    export = signed.copy(tmp_path / "export")
    chunk = export / "audit_trail.001.json"
    data = chunk.read_bytes()
    chunk.write_bytes(data.replace(b'{"', b'{"zzz":1,"', 1))  # members out of order
    with pytest.raises(MalformedEvidenceError, match="not the canonical JSON"):
        extract_bundle(export, Selection(seqs=frozenset({2})))


# -- item 5: a chunk name that leaves the export ----------------------------------------------


def test_extract_refuses_a_chunk_name_leaving_the_export(
    signed: Signed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = signed.copy(tmp_path / "export")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_bytes((export / "audit_trail.000.json").read_bytes())
    manifest = json.loads((export / MANIFEST).read_text())
    manifest["chunks"][0]["file"] = "../outside/secret.json"
    (export / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UnsafePathError, match="not a plain file name"):
        extract_bundle(export, Selection(seqs=frozenset({2})))
    result = cli_here(capsys, "extract", export, "--seq", "2", "--out", tmp_path / "b.json")
    assert_one_line_error(result, 1, "../outside/secret.json")
    assert not (tmp_path / "b.json").exists()
    report = verify_export(export)
    assert "not a plain file name" in check(report.checks, MANIFEST)


# -- item 6: FIFOs, directories, symlinks, deep nesting ----------------------------------------


def fifo_in_place_of(path: Path) -> Path:
    path.unlink()
    os.mkfifo(path)
    return path


def test_verify_does_not_hang_on_a_fifo_listing(
    signed: Signed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = signed.copy(tmp_path / "export")
    fifo = fifo_in_place_of(export / LISTING)
    report = within(20, lambda: verify_export(export), fifos=(fifo,))
    assert "is a FIFO" in check(report.checks, LISTING)
    result = cli_subprocess("verify", export)
    assert result.code == 1 and "Traceback" not in result.text
    assert f"{LISTING}: INVALID: " in result.out and "FIFO" in result.out


def test_verify_does_not_hang_on_a_fifo_manifest(signed: Signed, tmp_path: Path) -> None:
    export = signed.copy(tmp_path / "export")
    fifo = fifo_in_place_of(export / MANIFEST)
    report = within(20, lambda: verify_export(export), fifos=(fifo,))
    assert "is a FIFO" in check(report.checks, MANIFEST)
    result = cli_subprocess("verify", export)
    assert result.code == 1 and "Traceback" not in result.text
    assert f"{MANIFEST}: INVALID: " in result.out


def test_verify_does_not_read_a_manifest_linked_to_dev_zero(signed: Signed, tmp_path: Path) -> None:
    export = signed.copy(tmp_path / "export")
    (export / MANIFEST).unlink()
    (export / MANIFEST).symlink_to("/dev/zero")
    report = within(20, lambda: verify_export(export))
    assert "symbolic link" in check(report.checks, MANIFEST)
    result = cli_subprocess("verify", export)
    assert result.code == 1 and "Traceback" not in result.text


def test_extract_does_not_hang_on_a_fifo_chunk(
    signed: Signed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = signed.copy(tmp_path / "export")
    fifo = fifo_in_place_of(export / "audit_trail.000.json")
    with pytest.raises(UnsafePathError, match="FIFO"):
        within(20, lambda: extract_bundle(export, Selection(seqs={2})), fifos=(fifo,))
    result = cli_subprocess("extract", export, "--seq", "2", "--out", tmp_path / "b.json")
    assert_one_line_error(result, 1, "FIFO")
    report = within(20, lambda: verify_export(export), fifos=(fifo,))
    assert "is a FIFO" in check(report.checks, "audit_trail.000.json")


def test_a_manifest_nested_100k_deep(
    signed: Signed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = signed.copy(tmp_path / "export")
    (export / MANIFEST).write_text(DEEP)
    with pytest.raises(MalformedEvidenceError):
        extract_bundle(export, Selection(seqs={2}))
    result = cli_here(capsys, "extract", export, "--seq", "2", "--out", tmp_path / "b.json")
    assert_one_line_error(result, 1, "not an export manifest")
    assert "malformed manifest" in check(verify_export(export).checks, MANIFEST)
    # nested objects too (no member is known, so typed decoding stops at once)
    (export / MANIFEST).write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(MalformedEvidenceError):
        extract_bundle(export, Selection(seqs={2}))


def test_a_bundle_nested_100k_deep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    with pytest.raises(MalformedEvidenceError, match="nested too deeply"):
        read_bundle(deep)
    assert_one_line_error(cli_here(capsys, "verify-bundle", deep), 2, "nested too deeply")
    # deep inside an object the bundle format allows anything in: the same
    deep.write_text('{"records": [{"record": ' + DEEP + "}]}")
    with pytest.raises(MalformedEvidenceError, match="nested too deeply"):
        read_bundle(deep)


def test_a_chunk_that_is_a_directory(
    signed: Signed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = signed.copy(tmp_path / "export")
    chunk = export / "audit_trail.000.json"
    chunk.unlink()
    chunk.mkdir()
    with pytest.raises(UnsafePathError, match="is a directory"):
        extract_bundle(export, Selection(seqs={2}))
    result = cli_here(capsys, "extract", export, "--seq", "2", "--out", tmp_path / "b.json")
    assert_one_line_error(result, 1, "is a directory")
    assert "is a directory" in check(verify_export(export).checks, chunk.name)


def test_a_listing_that_is_a_directory(
    signed: Signed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = signed.copy(tmp_path / "export")
    (export / LISTING).unlink()
    (export / LISTING).mkdir()
    assert "is a directory" in check(verify_export(export).checks, LISTING)
    result = cli_here(capsys, "verify", export)
    assert result.code == 1 and "Traceback" not in result.text
    assert f"{LISTING}: INVALID: " in result.out


def test_a_dangling_manifest_symlink(
    signed: Signed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = signed.copy(tmp_path / "export")
    (export / MANIFEST).unlink()
    (export / MANIFEST).symlink_to(tmp_path / "nowhere.json")
    assert "symbolic link" in check(verify_export(export).checks, MANIFEST)
    result = cli_here(capsys, "verify", export)
    assert result.code == 1 and "Traceback" not in result.text
    with pytest.raises(UnsafePathError, match="symbolic link"):
        extract_bundle(export, Selection(seqs={2}))
    result = cli_here(capsys, "extract", export, "--seq", "2", "--out", tmp_path / "b.json")
    assert_one_line_error(result, 1, "symbolic link")


def test_a_chunk_linked_to_a_good_copy_elsewhere_is_not_followed(
    signed: Signed, tmp_path: Path
) -> None:
    export = signed.copy(tmp_path / "export")
    chunk = export / "audit_trail.000.json"
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(chunk.read_bytes())
    chunk.unlink()
    chunk.symlink_to(elsewhere)
    assert "symbolic link" in check(verify_export(export).checks, chunk.name)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        extract_bundle(export, Selection(seqs={2}))


def test_a_missing_chunk_is_still_reported_as_missing(signed: Signed, tmp_path: Path) -> None:
    export = signed.copy(tmp_path / "export")
    (export / "audit_trail.000.json").unlink()
    assert check(verify_export(export).checks, "audit_trail.000.json") == "missing"
    with pytest.raises(ExportNotFoundError, match="missing"):
        extract_bundle(export, Selection(seqs={2}))


def test_a_bundle_that_is_a_fifo_or_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "bundle.json"
    os.mkfifo(fifo)
    with pytest.raises(UnsafePathError, match="FIFO"):
        within(20, lambda: read_bundle(fifo), fifos=(fifo,))
    result = cli_subprocess("verify-bundle", fifo)
    assert result.code in (1, 2) and "Traceback" not in result.text, result
    with pytest.raises(AuditJournalError):
        read_bundle(tmp_path)


# -- the other readers of an export: tail and the typed reimport ------------------------------


def test_tail_refuses_a_record_naming_a_member_twice(signed: Signed, tmp_path: Path) -> None:
    export = signed.copy(tmp_path / "export")
    chunk = export / "audit_trail.000.json"
    chunk.write_bytes(chunk.read_bytes().replace(b'{"', b'{"aaa":1,"aaa":2,"', 1))
    tail = ExportTail(export / "audit_trail")
    with pytest.raises(AuditJournalError, match="'aaa' twice"):
        tail.poll()


def test_tail_does_not_hang_on_a_fifo_chunk_or_manifest(signed: Signed, tmp_path: Path) -> None:
    export = signed.copy(tmp_path / "export")
    fifo = fifo_in_place_of(export / "audit_trail.000.json")
    with pytest.raises(UnsafePathError, match="FIFO"):
        within(20, lambda: ExportTail(export / "audit_trail").poll(), fifos=(fifo,))
    export = signed.copy(tmp_path / "export2")
    fifo = fifo_in_place_of(export / MANIFEST)
    with pytest.raises(UnsafePathError, match="FIFO"):
        within(20, lambda: list(ExportTail(export / "audit_trail")), fifos=(fifo,))


def test_typed_reimport_refuses_a_record_naming_a_member_twice(
    signed: Signed, tmp_path: Path
) -> None:
    export = signed.copy(tmp_path / "export")
    node = next(
        r
        for chunk in sorted(export.glob("audit_trail.*[0-9].json"))
        for r in json.loads(chunk.read_text())
        if r["record_type"] == "node" and r["node_type"] == "source"
    )
    for chunk in sorted(export.glob("audit_trail.*[0-9].json")):
        lines = chunk.read_bytes().split(b"\n")
        rows = [i for i, line in enumerate(lines) if b'"record_type":"row"' in line]
        if rows:
            lines[rows[0]] = lines[rows[0]].replace(
                b'"created_at":', b'"aaa":1,"aaa":2,"created_at":'
            )
            chunk.write_bytes(b"\n".join(lines))
            break
    with pytest.raises(DuplicateMemberError, match="'aaa' twice"):
        list(load_rows(export, node["node_id"]))


def test_show_does_not_hang_on_a_fifo_manifest(
    tmp_path: Path, sealed_demo: SealedDemo, keys: Keys
) -> None:
    # show reads the manifest at the path the run recorded
    own = Signed.of(sealed_demo(6, chunk_size_bytes=5000), keys.public)
    fifo = fifo_in_place_of(own.export / MANIFEST)
    with AuditStore.open(own.root) as store:
        shown = within(30, lambda: show_run(store, own.run_id), fifos=(fifo,))
    assert shown["export"]["state"] == "sealed, manifest missing"  # a FIFO is not a manifest
    # linked to a copy elsewhere: not followed, and said so
    fifo.unlink()
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(b"{}")
    fifo.symlink_to(elsewhere)
    with AuditStore.open(own.root) as store:
        shown = show_run(store, own.run_id)
    assert shown["export"]["state"].startswith("sealed, manifest unreadable"), shown["export"]


def test_a_repeat_in_a_chunk_record_is_caught_by_the_signature_or_the_journal(
    tmp_path: Path, sealed_demo: SealedDemo, keys: Keys
) -> None:
    """verify's chunk scan hashes record lines without parsing their values
    (docs/decisions.md): a repeated member changes the bytes the signature binds,
    and an unsigned export re-forged around it consistently is caught with --journal."""
    own = Signed.of(sealed_demo(6, chunk_size_bytes=5000), keys.public)
    chunk = own.export / "audit_trail.001.json"
    lines = chunk.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"record_type":', b'"record_type":"run","record_type":', 1)
    chunk.write_bytes(b"\n".join(lines))
    report = verify_export(own.export, public_key=own.public_key)
    assert "bytes, manifest says" in check(report.checks, chunk.name)
    assert not report.ok and report.signature == "valid"

    # unsigned: re-forge sha256s, sizes, Merkle root, listing and manifest around the repeat
    manifest = json.loads((own.export / MANIFEST).read_text())
    del manifest["signature"]
    leaves = []
    for entry in manifest["chunks"]:
        data = (own.export / entry["file"]).read_bytes()
        entry["sha256"] = hashlib.sha256(data).hexdigest()
        entry["bytes"] = len(data)
        for line in data.split(b"\n")[1:-2]:
            leaves.append(leaf_hash(line[1:] if line.startswith(b",") else line))
    manifest["merkle_root"] = merkle_root(leaves).hex()
    (own.export / MANIFEST).write_bytes(encode_manifest(manifest))
    (own.export / LISTING).write_text(
        "".join(f"{c['sha256']}  {c['file']}\n" for c in manifest["chunks"])
        + f"{hashlib.sha256((own.export / MANIFEST).read_bytes()).hexdigest()}  {MANIFEST}\n"
    )
    assert verify_export(own.export).ok  # internal consistency is all an unsigned export shows
    with AuditStore.open(own.root) as store:
        report = verify_export(own.export, journal=(store.journal_dir(own.run_id), store.payloads))
    assert not report.ok
    with pytest.raises(DuplicateMemberError):
        extract_bundle(own.export, Selection(seqs=frozenset({2})))


def test_a_manifest_number_canonical_json_refuses_is_invalid_not_an_error(
    signed: Signed, bundle_text: str, tmp_path: Path
) -> None:
    """Found by fuzzing: the signature is checked on the manifest's canonical JSON, which
    refuses integers beyond 2**53 - 1; that is an INVALID signature, not an exception."""
    export = signed.copy(tmp_path / "export")
    manifest = json.loads((export / MANIFEST).read_text())
    manifest["total_record_count"] = 2**53
    (export / MANIFEST).write_bytes(encode_manifest(manifest))
    report = verify_export(export, public_key=signed.public_key)
    assert report.signature == "INVALID"
    assert "2**53" in check(report.checks, MANIFEST)
    bundle = json.loads(bundle_text)
    bundle["manifest"]["chunk_count"] = 2**53
    result = verify_bundle(bundle, public_key=signed.public_key)
    assert not result.ok and result.signature == "INVALID"


def test_typed_reimport_of_a_record_missing_its_ids_is_a_typed_error(
    signed: Signed, tmp_path: Path
) -> None:
    """Found by fuzzing: a row record without ``row_id`` was a KeyError."""
    export = signed.copy(tmp_path / "export")
    node = next(
        r
        for chunk in sorted(export.glob("audit_trail.*[0-9].json"))
        for r in json.loads(chunk.read_text())
        if r["record_type"] == "node" and r["node_type"] == "source"
    )
    for chunk in sorted(export.glob("audit_trail.*[0-9].json")):
        lines = chunk.read_bytes().split(b"\n")
        rows = [i for i, line in enumerate(lines) if b'"record_type":"row"' in line]
        if rows:
            lines[rows[0]] = lines[rows[0]].replace(b'"row_id":', b'"ow_id":')
            chunk.write_bytes(b"\n".join(lines))
            break
    with pytest.raises(AuditJournalError, match="row_id"):
        list(load_rows(export, node["node_id"]))
