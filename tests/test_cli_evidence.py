"""CLI wiring of the auditor's commands (SPEC §5): keygen, verify, extract,
verify-bundle. Behaviour is tested on the library (test_verify, test_extract,
test_signing); here: exit codes (0 / 1 verification failure / 2 usage), the
``--json`` shapes, and that expected failures are one line without a traceback.

Commands go through :func:`auditjournal.cli.main` (the entry point, where errors
become exit codes), and once through ``python -m auditjournal`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from auditjournal.evidence.extract import Selection, extract_bundle
from auditjournal.proofs.signing import HMAC_KEY_ENV
from shared import Cli, CliRun, Keys, SealedDemo


@dataclass(frozen=True)
class Recorded:
    root: Path
    run_id: str
    export: Path
    private_key: Path
    public_key: Path


@pytest.fixture(scope="module")
def recorded(sealed_demo: SealedDemo, keys: Keys) -> Recorded:
    run = sealed_demo(6, chunk_size_bytes=5000)
    return Recorded(run.root, run.run_id, run.export_dir, keys.private, keys.public)


def assert_one_line_error(result: CliRun, code: int, *fragments: str) -> None:
    assert result.code == code, result
    assert "Traceback" not in result.out + result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("auditjournal") and "error: " in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# -- keygen ---------------------------------------------------------------------------------


def test_keygen_writes_a_private_and_a_public_key(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "keys"
    result = cli("keygen", "--out", out)
    assert result.code == 0, result
    private, public = out / "signing_key.pem", out / "signing_key.pub.pem"
    assert result.out.splitlines()[0].startswith(f"private key {private} ")
    assert result.out.splitlines()[1].startswith(f"public key  {public} ")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    public_key = serialization.load_pem_public_key(public.read_bytes())
    assert isinstance(public_key, Ed25519PublicKey)
    private_key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    assert isinstance(private_key, Ed25519PrivateKey)
    public_key.verify(private_key.sign(b"a pair"), b"a pair")  # the two halves belong together
    before = private.read_bytes()
    again = cli("keygen", "--out", out)
    assert_one_line_error(again, 2, "already exists")
    assert private.read_bytes() == before
    assert_one_line_error(cli("keygen"), 2, "--out")


# -- verify ---------------------------------------------------------------------------------


def test_verify_exit_codes(cli: Cli, recorded: Recorded, tmp_path: Path) -> None:
    key = ("--public-key", recorded.public_key)
    journal = ("--journal", recorded.root, recorded.run_id)
    ok = cli("verify", recorded.export, *key, *journal)
    assert ok.code == 0, ok
    assert re.fullmatch(
        r"(\d+)/\1 chunks valid, manifest signature valid, [\d,]+ records: VALID",
        ok.out.splitlines()[-1],
    )
    assert ok.err == ""
    assert cli("verify", recorded.export / "audit_trail.manifest.json").code == 0

    damaged = tmp_path / "export"
    shutil.copytree(recorded.export, damaged)
    chunk = damaged / "audit_trail.001.json"
    chunk.write_bytes(chunk.read_bytes().replace(b'"seq":', b'"seq": ', 1))
    bad = cli("verify", damaged, *key)
    assert bad.code == 1
    assert "audit_trail.001.json: INVALID: " in bad.out
    assert bad.out.splitlines()[-1].endswith(": INVALID")

    assert_one_line_error(cli("verify", tmp_path / "nope"), 2, "does not exist")
    assert_one_line_error(cli("verify", tmp_path), 2, "manifest")
    assert_one_line_error(cli("verify", recorded.export, "--public-key", tmp_path / "no.pem"), 2)
    assert_one_line_error(cli("verify", recorded.export, "--public-key", recorded.private_key), 2)
    assert_one_line_error(cli("verify", recorded.export, "--hmac-key-env", "AJ_UNSET_VAR"), 2)
    assert_one_line_error(cli("verify", recorded.export, "--bogus"), 2, "--bogus")
    # a byte that is not UTF-8 in a chunk: INVALID, not a traceback; extract refuses it
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] = 0xFF
    chunk.write_bytes(bytes(raw))
    bad = cli("verify", damaged, *key)
    assert bad.code == 1 and "Traceback" not in bad.out + bad.err
    assert "audit_trail.001.json: INVALID: " in bad.out
    assert_one_line_error(
        cli("extract", damaged, "--seq", "2", "--out", tmp_path / "b.json"), 1, "run verify"
    )
    assert_one_line_error(cli("verify", recorded.export, "--journal", tmp_path, "r1"), 2)
    assert_one_line_error(
        cli("verify", recorded.export, "--journal", recorded.root, "../escape"), 2, "run id"
    )
    assert_one_line_error(cli("verify"), 2, "EXPORT")


def test_verify_json_shape(cli: Cli, recorded: Recorded, monkeypatch: pytest.MonkeyPatch) -> None:
    result = cli("verify", recorded.export, "--public-key", recorded.public_key, "--json")
    assert result.code == 0
    data = json.loads(result.out)
    assert set(data) == {
        "ok",
        "manifest",
        "run_id",
        "chunk_count",
        "record_count",
        "signature",
        "timestamp",
        "completeness",
        "files",
        "summary",
    }
    assert data["timestamp"] == "absent"
    assert data["completeness"] != "absent"
    manifest = json.loads((recorded.export / "audit_trail.manifest.json").read_text())
    assert data["ok"] is True
    assert data["manifest"] == str(recorded.export / "audit_trail.manifest.json")
    assert data["run_id"] == recorded.run_id
    assert data["chunk_count"] == manifest["chunk_count"]
    assert data["record_count"] == manifest["total_record_count"]
    assert data["signature"] == "valid"
    assert [f["file"] for f in data["files"]] == [
        "audit_trail.manifest.json",
        "audit_trail.sha256",
        *[c["file"] for c in manifest["chunks"]],
    ]
    assert all(set(f) == {"file", "valid", "reason"} and f["valid"] for f in data["files"])
    assert data["summary"].endswith(": VALID")

    # an HMAC key where an Ed25519 signature is: valid JSON, exit 1
    monkeypatch.setenv(HMAC_KEY_ENV, "some-secret")
    result = cli("verify", recorded.export, "--hmac-key-env", HMAC_KEY_ENV, "--json")
    assert result.code == 1
    data = json.loads(result.out)
    assert data["ok"] is False and data["signature"] == "INVALID"
    assert data["files"][0]["valid"] is False and data["files"][0]["reason"].startswith("signature")


# -- extract and verify-bundle ------------------------------------------------------------------


def test_extract_and_verify_bundle(cli: Cli, recorded: Recorded, tmp_path: Path) -> None:
    bundle_path = tmp_path / "row.json"
    row = next(
        r
        for chunk in sorted(recorded.export.glob("audit_trail.*[0-9].json"))
        for r in json.loads(chunk.read_text())
        if r["record_type"] == "row"
    )
    result = cli("extract", recorded.export, "--row", row["row_id"], "--out", bundle_path)
    assert result.code == 0, result
    bundle = json.loads(bundle_path.read_text())
    assert bundle == json.loads(
        json.dumps(extract_bundle(recorded.export, Selection(row_id=row["row_id"])))
    )
    n = len(bundle["records"])
    assert n >= 5
    assert result.out.strip() == f"{n} record(s) with inclusion proofs written to {bundle_path}"

    good = cli("verify-bundle", bundle_path, "--public-key", recorded.public_key)
    assert good.code == 0, good
    assert good.out.splitlines()[0] == "manifest: valid"
    assert good.out.splitlines()[-1] == (f"{n}/{n} records proven, manifest signature valid: VALID")
    as_json = cli("verify-bundle", bundle_path, "--public-key", recorded.public_key, "--json")
    assert as_json.code == 0
    data = json.loads(as_json.out)
    assert set(data) == {"ok", "lines", "summary"}
    assert data["ok"] is True and len(data["lines"]) == n + 1
    assert all(set(line) == {"item", "valid", "reason"} for line in data["lines"])

    bundle["records"][0]["record"]["seq"] += 1
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(bundle))
    bad = cli("verify-bundle", forged, "--public-key", recorded.public_key)
    assert bad.code == 1
    assert sum("INVALID" in line for line in bad.out.splitlines()) == 2  # the record + summary

    # selections by token, node and seq work too
    token = cli(
        "extract", recorded.export, "--token", bundle["records"][1]["record"]["token_id"],
        "--out", tmp_path / "t.json",
    )  # fmt: skip
    assert token.code == 0
    node = cli("extract", recorded.export, "--node", "node-1", "--out", tmp_path / "n.json")
    assert node.code == 0
    seqs = cli("extract", recorded.export, "--seq", "2", "--seq", "3", "--out", tmp_path / "s.json")
    assert seqs.code == 0
    assert [
        i["record"]["seq"] for i in json.loads((tmp_path / "s.json").read_text())["records"]
    ] == [2, 3]

    # nothing found: exit 1; nothing selected, or a bundle that is not JSON: usage errors
    none = cli("extract", recorded.export, "--row", "no-such-row", "--out", tmp_path / "x.json")
    assert none.code == 1
    assert_one_line_error(none, 1, "no record matches", "not written")
    assert not (tmp_path / "x.json").exists()  # no empty bundle (issue 15 item 9)
    assert_one_line_error(cli("extract", recorded.export, "--out", tmp_path / "y.json"), 2, "--row")
    assert not (tmp_path / "y.json").exists()
    assert_one_line_error(cli("extract", recorded.export, "--row", "r"), 2, "--out")
    not_json = tmp_path / "not.json"
    not_json.write_text("{nope")
    assert_one_line_error(cli("verify-bundle", not_json), 2, "not JSON")
    assert_one_line_error(cli("verify-bundle", tmp_path / "missing.json"), 2, "does not exist")
    assert_one_line_error(
        cli("verify-bundle", bundle_path, "--hmac-key-env", "AJ_UNSET_VAR"), 2, "AJ_UNSET_VAR"
    )


@pytest.mark.parametrize("command", ["verify", "keygen", "extract", "verify-bundle"])
def test_every_evidence_command_has_help(cli: Cli, command: str) -> None:
    result = cli(command, "--help")
    assert result.code == 0
    assert result.out.startswith(f"Usage: auditjournal {command} ")


def test_unknown_command_is_a_one_line_usage_error(cli: Cli) -> None:
    assert_one_line_error(cli("frobnicate"), 2, "frobnicate")


def test_python_dash_m_entry_point(recorded: Recorded, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "auditjournal", *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    ok = run("verify", recorded.export, "--public-key", recorded.public_key)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[-1].endswith(": VALID")
    usage = run("verify", tmp_path / "nope")
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr
    assert len(usage.stderr.strip().splitlines()) == 1
    bad_key = run("verify", recorded.export, "--public-key", recorded.private_key)
    assert bad_key.returncode == 2
    assert bad_key.stderr.strip() == (
        f"auditjournal: error: {recorded.private_key} is not a PEM public key"
    )
