"""Signed manifests (SPEC §4 ``sign``, §9 "keys never appear; checks are constant-time").

Signatures are checked here with code that is not ours: ``cryptography``'s
Ed25519 and the standard library's ``hmac`` over bytes rebuilt with
``rfc8785``, and ``openssl pkeyutl`` when it is installed.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import inspect
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import auditjournal.proofs.signing as signing
from auditjournal import ExportSettings
from auditjournal.demo import DemoResult, run_demo
from auditjournal.errors import DiskFullError, SigningKeyError, StorageError
from auditjournal.evidence.verify import verify_export
from auditjournal.proofs.signing import HMAC_KEY_ENV, generate_keypair, load_signer
from faults import small_filesystem
from shared import SealedDemo, run_cli

SECRET = "hmac-test-secret-7f3a9c1e-never-print-me"
OTHER_SECRET = "another-secret-for-forgeries-55d2"


# -- helpers -------------------------------------------------------------------------------


def load_manifest(export_dir: Path) -> dict[str, Any]:
    return json.loads((export_dir / "audit_trail.manifest.json").read_text())


def signed_part(manifest: dict[str, Any]) -> bytes:
    """What the signature covers, rebuilt with the reference RFC 8785 library."""
    return rfc8785.dumps({k: v for k, v in manifest.items() if k != "signature"})


def write_manifest(export_dir: Path, manifest: dict[str, Any]) -> None:
    """The manifest in the exporter's layout (sorted keys, indent 2, final newline)."""
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    path = export_dir / "audit_trail.manifest.json"
    path.write_text(text)
    # and the listing's line for it, as a forger would (only the signature is to tell)
    listing = export_dir / "audit_trail.sha256"
    lines = listing.read_text().splitlines(keepends=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    listing.write_text("".join(lines[:-1]) + f"{digest}  {path.name}\n")


def raw_public(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def write_public_pem(key: Ed25519PrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def copy_export(result: DemoResult, to: Path) -> Path:
    shutil.copytree(result.export_dir, to, ignore=shutil.ignore_patterns(".*"))
    return to


# -- recorded runs (one per module: recording is the slow part) ------------------------------


@pytest.fixture(scope="module")
def ed_run(sealed_demo: SealedDemo) -> DemoResult:
    """Signed with conftest's ``keys``."""
    return sealed_demo(10, chunk_size_bytes=6000)


@pytest.fixture(scope="module")
def hmac_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoResult]:
    root = tmp_path_factory.mktemp("hmac") / "audit"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(HMAC_KEY_ENV, SECRET)
        result = run_demo(root, rows=10, export=ExportSettings(sign="hmac-sha256"))
    assert result.report.ok
    yield result


# -- Ed25519 -------------------------------------------------------------------------------


def test_ed25519_signature_object_checks_with_cryptography(
    ed_run: DemoResult, keys: tuple[Path, Path]
) -> None:
    manifest = load_manifest(ed_run.export_dir)
    signature = manifest["signature"]
    assert set(signature) == {"algorithm", "key_id", "value"}
    assert signature["algorithm"] == "ed25519"
    public = serialization.load_pem_public_key(keys[1].read_bytes())
    private = serialization.load_pem_private_key(keys[0].read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    assert raw_public(private.public_key()) == raw_public(public)
    assert signature["key_id"] == hashlib.sha256(raw_public(public)).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{128}", signature["value"])

    data = signed_part(manifest)
    # the manifest is plain JSON (ASCII keys, no floats), so compact sorted JSON is the same
    # bytes: what docs/verifying-without-auditjournal.md does with ``jq -cjS``
    body = {k: v for k, v in manifest.items() if k != "signature"}
    assert data == json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    public.verify(bytes.fromhex(signature["value"]), data)  # type: ignore[union-attr]
    with pytest.raises(InvalidSignature):
        public.verify(bytes.fromhex(signature["value"]), data.replace(b'"completed"', b'"failed"'))  # type: ignore[union-attr]

    report = verify_export(ed_run.export_dir, public_key=keys[1])
    assert report.ok and report.signature == "valid"
    assert verify_export(ed_run.export_dir).signature == "present but NOT CHECKED (no key given)"


def test_openssl_verifies_the_ed25519_signature(
    ed_run: DemoResult, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    usage = subprocess.run([openssl, "pkeyutl", "-help"], capture_output=True, text=True)
    if "-rawin" not in usage.stdout + usage.stderr:
        pytest.skip("this openssl has no pkeyutl -rawin (needs OpenSSL 3)")
    manifest = load_manifest(ed_run.export_dir)
    data, sig = tmp_path / "manifest.bin", tmp_path / "manifest.sig"
    data.write_bytes(signed_part(manifest))
    sig.write_bytes(bytes.fromhex(manifest["signature"]["value"]))
    command = [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", str(keys[1]), "-rawin"]
    good = subprocess.run([*command, "-in", str(data), "-sigfile", str(sig)], capture_output=True)
    assert good.returncode == 0, good.stderr
    assert b"Signature Verified Successfully" in good.stdout
    data.write_bytes(signed_part({**manifest, "run_status": "failed"}))
    bad = subprocess.run([*command, "-in", str(data), "-sigfile", str(sig)], capture_output=True)
    assert bad.returncode != 0
    # key_id = SHA-256 of the raw 32-byte public key, as openssl sees the key
    der = subprocess.run(
        [openssl, "pkey", "-pubin", "-in", str(keys[1]), "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout
    assert hashlib.sha256(der[-32:]).hexdigest() == manifest["signature"]["key_id"]


def test_ed25519_resigned_with_another_key_is_invalid(
    ed_run: DemoResult, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    export = copy_export(ed_run, tmp_path / "export")
    manifest = load_manifest(export)
    forger = Ed25519PrivateKey.generate()
    forged = {k: v for k, v in manifest.items() if k != "signature"}
    forged["run_status"] = "completed (reviewed)"
    forged["signature"] = {
        "algorithm": "ed25519",
        "key_id": hashlib.sha256(raw_public(forger.public_key())).hexdigest(),
        "value": forger.sign(signed_part(forged)).hex(),
    }
    write_manifest(export, forged)
    report = verify_export(export, public_key=keys[1])
    assert not report.ok
    assert report.signature == "INVALID"
    manifest_line = report.checks[0]
    assert manifest_line.file == "audit_trail.manifest.json" and not manifest_line.ok
    assert "different Ed25519 key" in manifest_line.reason
    # the forgery is well-formed: the forger's own public key accepts it
    forger_pem = write_public_pem(forger, tmp_path / "forger.pub.pem")
    assert verify_export(export, public_key=forger_pem).signature == "valid"

    # the right key_id with a signature made by another key
    forged["signature"]["key_id"] = manifest["signature"]["key_id"]
    write_manifest(export, forged)
    report = verify_export(export, public_key=keys[1])
    assert report.signature == "INVALID" and not report.ok
    assert "does not match" in report.checks[0].reason


def test_altered_signature_or_signed_member_is_invalid(
    ed_run: DemoResult, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    export = copy_export(ed_run, tmp_path / "export")
    original = load_manifest(export)
    value = original["signature"]["value"]
    flipped = ("1" if value[10] != "1" else "2").join((value[:10], value[11:]))
    write_manifest(export, {**original, "signature": {**original["signature"], "value": flipped}})
    assert verify_export(export, public_key=keys[1]).signature == "INVALID"
    write_manifest(export, {**original, "sealed_at": "2000-01-01T00:00:00Z"})
    report = verify_export(export, public_key=keys[1])
    assert report.signature == "INVALID" and not report.ok
    write_manifest(export, {**original, "signature": {**original["signature"], "value": "zz"}})
    assert verify_export(export, public_key=keys[1]).signature == "INVALID"
    # unsigned, but a key is given: the auditor expected a signature
    write_manifest(export, {k: v for k, v in original.items() if k != "signature"})
    report = verify_export(export, public_key=keys[1])
    assert report.signature == "INVALID"
    assert "not signed" in report.checks[0].reason
    unchecked = verify_export(export)
    assert unchecked.ok and unchecked.signature == "absent"
    write_manifest(export, original)
    assert verify_export(export, public_key=keys[1]).ok


# -- HMAC ------------------------------------------------------------------------------------


def test_hmac_signature_object_checks_with_the_standard_library(hmac_run: DemoResult) -> None:
    manifest = load_manifest(hmac_run.export_dir)
    signature = manifest["signature"]
    assert set(signature) == {"algorithm", "key_id", "value"}
    assert signature["algorithm"] == "hmac-sha256"
    assert signature["key_id"] == hashlib.sha256(SECRET.encode()).hexdigest()
    expected = hmac.new(SECRET.encode(), signed_part(manifest), hashlib.sha256).hexdigest()
    assert signature["value"] == expected

    report = verify_export(hmac_run.export_dir, hmac_key=SECRET.encode())
    assert report.ok and report.signature == "valid"
    wrong = verify_export(hmac_run.export_dir, hmac_key=OTHER_SECRET.encode())
    assert not wrong.ok and wrong.signature == "INVALID"
    assert "different HMAC key" in wrong.checks[0].reason


def test_hmac_resigned_with_another_secret_is_invalid(
    hmac_run: DemoResult, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    export = copy_export(hmac_run, tmp_path / "export")
    manifest = load_manifest(export)
    forged = {k: v for k, v in manifest.items() if k != "signature"}
    forged["run_status"] = "failed"
    for key_id in (
        hashlib.sha256(OTHER_SECRET.encode()).hexdigest(),
        manifest["signature"]["key_id"],
    ):
        forged["signature"] = {
            "algorithm": "hmac-sha256",
            "key_id": key_id,
            "value": hmac.new(OTHER_SECRET.encode(), signed_part(forged), "sha256").hexdigest(),
        }
        write_manifest(export, forged)
        report = verify_export(export, hmac_key=SECRET.encode())
        assert not report.ok and report.signature == "INVALID"
    forged["signature"]["key_id"] = hashlib.sha256(OTHER_SECRET.encode()).hexdigest()
    write_manifest(export, forged)
    assert verify_export(export, hmac_key=OTHER_SECRET.encode()).signature == "valid"
    # an HMAC manifest checked as Ed25519 (or the other way round) is not valid either
    assert verify_export(export, public_key=keys[1]).signature == "INVALID"


# -- constant-time comparisons ---------------------------------------------------------------


def test_signature_checks_compare_with_compare_digest_only() -> None:
    tree = ast.parse(textwrap.dedent(inspect.getsource(signing.check_signature)))
    secret_names = {"value", "key_id", "expected", "data", "signature"}
    compare_digest_calls = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "hmac.compare_digest":
            compare_digest_calls += 1
        if isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
        ):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            calls = [ast.unparse(n) for n in ast.walk(node) if isinstance(n, ast.Call)]
            assert not names & secret_names, ast.unparse(node)
            assert not any("sign" in c or "key_id" in c for c in calls), ast.unparse(node)
    # key ids of both algorithms and the MAC itself
    assert compare_digest_calls >= 3


def test_hmac_check_goes_through_compare_digest(
    hmac_run: DemoResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = load_manifest(hmac_run.export_dir)
    seen: list[tuple[Any, Any]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return original(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", spy)
    assert signing.check_signature(manifest, hmac_key=SECRET.encode()) == "valid"
    assert any(manifest["signature"]["value"] in pair for pair in seen)
    assert any(manifest["signature"]["key_id"] in pair for pair in seen)


# -- key material never leaks ----------------------------------------------------------------


def test_signers_and_their_errors_do_not_show_keys(
    monkeypatch: pytest.MonkeyPatch, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    monkeypatch.delenv(HMAC_KEY_ENV, raising=False)
    with pytest.raises(SigningKeyError, match=HMAC_KEY_ENV):
        load_signer("hmac-sha256", None)
    monkeypatch.setenv(HMAC_KEY_ENV, SECRET)
    signer = load_signer("hmac-sha256", None)
    assert signer is not None
    assert SECRET not in repr(signer) and SECRET not in str(signer)
    ed = load_signer("ed25519", str(keys[0]))
    pem = keys[0].read_text()
    assert ed is not None and pem not in repr(ed)
    # a private key handed over as the *public* key: the error must not echo it
    with pytest.raises(SigningKeyError) as info:
        signing.check_signature(
            {"signature": {"algorithm": "ed25519", "value": "00", "key_id": "00"}},
            public_key_file=keys[0],
        )
    assert "PRIVATE KEY" not in str(info.value) and pem.splitlines()[1] not in str(info.value)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot-a-key-" + SECRET + "\n")
    with pytest.raises(SigningKeyError) as info:
        load_signer("ed25519", str(garbage))
    assert SECRET not in str(info.value)


def secret_needles(private_pem: Path) -> dict[str, bytes]:
    key = serialization.load_pem_private_key(private_pem.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    seed = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    body = "".join(private_pem.read_text().splitlines()[1:-1])
    return {
        "hmac secret": SECRET.encode(),
        "hmac secret (hex)": SECRET.encode().hex().encode(),
        "hmac secret (base64)": base64.b64encode(SECRET.encode()),
        "private PEM body": body.encode(),
        "private PEM body (start)": body[:24].encode(),
        "private seed": seed,
        "private seed (hex)": seed.hex().encode(),
        "private seed (base64)": base64.b64encode(seed).rstrip(b"="),
    }


def test_keys_never_appear_in_cli_output_exports_or_journals(
    ed_run: DemoResult,
    hmac_run: DemoResult,
    keys: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(HMAC_KEY_ENV, SECRET)
    monkeypatch.setenv("WRONG_KEY", OTHER_SECRET)
    outputs: list[tuple[list[str], int, str, str]] = []

    def cli(*args: str | Path) -> int:
        argv = [str(a) for a in args]
        code, out, err = run_cli(capsys, *argv)
        outputs.append((argv, code, out, err))
        return code

    h, e = hmac_run, ed_run
    assert cli("demo", "--root", tmp_path / "demo", "--rows", "4") == 0
    for run in (h, e):
        journal = ("--journal", run.root, run.run_id)
        key = ("--hmac-key-env", HMAC_KEY_ENV) if run is h else ("--public-key", keys[1])
        assert cli("verify", run.export_dir, *journal, *key) == 0
        assert cli("verify", run.export_dir, *journal, *key, "--json") == 0
        assert cli("replay", run.root, run.run_id, "--out", tmp_path / f"replay-{run.run_id}") == 0
        replayed = tmp_path / f"replay-{run.run_id}"
        assert cli("verify", replayed, *key) == 0
        bundle = tmp_path / f"bundle-{run.run_id}.json"
        assert cli("extract", run.export_dir, "--seq", "5", "--out", bundle) == 0
        assert cli("verify-bundle", bundle, *key) == 0
    assert cli("verify", h.export_dir, "--hmac-key-env", "WRONG_KEY") == 1
    assert cli("verify", e.export_dir, "--public-key", keys[0]) == 2  # a private key file
    assert cli("verify", h.export_dir, "--public-key", keys[1], "--json") == 1
    assert cli("keygen", "--out", keys[0].parent) == 2  # refuses to overwrite

    needles = secret_needles(keys[0])
    for argv, _code, out, err in outputs:
        for label, needle in needles.items():
            assert needle.decode("latin-1") not in out + err, (label, argv)
    for record in caplog.records:
        for label, needle in needles.items():
            assert needle.decode("latin-1") not in record.getMessage(), label
    for directory in (h.root, e.root, tmp_path):
        for path in directory.rglob("*"):
            if not path.is_file() or path == keys[0]:
                continue
            content = path.read_bytes()
            for label, needle in needles.items():
                assert needle not in content, (label, path)


# -- keygen on a full disk (issue 10, item 7) -----------------------------------------------


def _keygen(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditjournal", "keygen", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_keygen_on_a_full_disk_leaves_nothing_and_can_run_again(tmp_path: Path) -> None:
    """On a real full filesystem keygen fails with one line and leaves no key file (no
    empty one either, and no temporary file); once there is space it simply works."""
    with small_filesystem(tmp_path / "fs", size="1m") as fs:
        out = fs.path / "keys"
        out.mkdir()
        fs.fill()
        failed = _keygen(out)
        assert failed.returncode == 1, failed.stderr
        assert "No space left on device" in failed.stderr
        assert "Traceback" not in failed.stderr and len(failed.stderr.splitlines()) == 1
        assert sorted(p.name for p in out.iterdir()) == []
        fs.free()
        done = _keygen(out)
        assert done.returncode == 0, done.stderr
        private, public = out / "signing_key.pem", out / "signing_key.pub.pem"
        assert sorted(p.name for p in out.iterdir()) == [private.name, public.name]
        assert private.stat().st_mode & 0o777 == 0o600
        key = serialization.load_pem_private_key(private.read_bytes(), password=None)
        assert isinstance(key, Ed25519PrivateKey)
        loaded = serialization.load_pem_public_key(public.read_bytes())
        assert loaded.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        ) == key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )


def test_keygen_replaces_an_empty_key_file_but_never_a_real_one(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    out.mkdir()
    (out / "signing_key.pub.pem").write_bytes(b"")  # what a failed older keygen left
    private, public = generate_keypair(out)
    assert public.stat().st_size > 0 and private.stat().st_size > 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(SigningKeyError, match="already exists"):
        generate_keypair(out)
    (out / "signing_key.pem").unlink()  # a real public key alone is still a key
    with pytest.raises(SigningKeyError, match="already exists"):
        generate_keypair(out)
    assert (out / "signing_key.pub.pem").read_bytes() == before["signing_key.pub.pem"]
    assert [p.name for p in out.iterdir()] == ["signing_key.pub.pem"]


def test_keygen_failures_in_process_leave_no_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each way writing the pair can fail leaves neither key file nor a temporary one."""
    import errno

    out = tmp_path / "keys"
    out.mkdir()

    def broken_dir_fsync(path: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(signing, "fsync_dir", broken_dir_fsync)  # both keys placed first
    with pytest.raises(StorageError, match="cannot write the key pair"):
        generate_keypair(out)
    assert list(out.iterdir()) == []
    monkeypatch.undo()

    real_write_temp = signing._write_temp

    def racing_write_temp(path: Path, data: bytes, mode: int) -> Path:
        temp = real_write_temp(path, data, mode)
        if path.name == "signing_key.pub.pem":  # another keygen gets there first
            path.write_bytes(b"their public key\n")
        return temp

    monkeypatch.setattr(signing, "_write_temp", racing_write_temp)
    with pytest.raises(SigningKeyError, match="already exists"):
        generate_keypair(out)
    assert [p.name for p in out.iterdir()] == ["signing_key.pub.pem"]  # theirs, untouched
    assert (out / "signing_key.pub.pem").read_bytes() == b"their public key\n"
    monkeypatch.undo()

    with pytest.raises(StorageError, match="cannot create"):
        generate_keypair(out / "signing_key.pub.pem" / "sub")  # a file where a dir must be


def test_keygen_on_a_full_disk_in_process(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "fs", size="1m") as fs:
        out = fs.path / "keys"
        out.mkdir()
        fs.fill()
        with pytest.raises(DiskFullError):
            generate_keypair(out)
        assert list(out.iterdir()) == []
        fs.free()
        generate_keypair(out)


def test_keygen_fsyncs_both_keys_with_their_bytes_and_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync, real_dir = os.fsync, signing.fsync_dir
    synced_sizes: list[int] = []
    synced_dirs: list[Path] = []

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            synced_sizes.append(info.st_size)  # what is in the file, not in a buffer
        real_fsync(fd)

    def fsync_dir(path: Path) -> None:
        synced_dirs.append(path)
        real_dir(path)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(signing, "fsync_dir", fsync_dir)
    private, public = generate_keypair(tmp_path / "keys")
    monkeypatch.undo()
    assert sorted(synced_sizes) == sorted([private.stat().st_size, public.stat().st_size])
    assert synced_dirs == [tmp_path / "keys"]
    assert private.stat().st_mode & 0o777 == 0o600
    assert public.stat().st_mode & 0o777 == 0o644


def test_keygen_never_replaces_what_is_not_an_empty_regular_file(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    out.mkdir()
    os.mkfifo(out / "signing_key.pub.pem")  # empty, but not a file we left
    with pytest.raises(SigningKeyError, match="already exists"):
        generate_keypair(out)
    assert [p.name for p in out.iterdir()] == ["signing_key.pub.pem"]
