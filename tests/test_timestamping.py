"""RFC 3161 trusted timestamps (auditjournal.proofs.timestamping) against a local TSA.

The TSA is OpenSSL: a throwaway CA and a TSA certificate (extendedKeyUsage
critical timeStamping) are made with ``openssl`` in a temporary directory,
and a small HTTP server on 127.0.0.1 answers each query with ``openssl ts
-reply``. Other paths of the same server misbehave on purpose (refuse, answer
another nonce or digest, fail, send junk, stall). Tokens are also checked
with ``openssl ts -verify``, the command docs/verifying-without-auditjournal.md
gives auditors.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from auditjournal.errors import (
    MissingExtraError,
    SigningKeyError,
    TimestampAuthorityError,
    TimestampError,
    TimestampVerificationError,
)
from auditjournal.proofs.timestamping import read_timestamp, request_timestamp, verify_timestamp

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")

MANIFEST = b'{\n  "merkle_root": "ab",\n  "records": 3\n}\n'
SHA256_OID_DER = bytes.fromhex("0609608648016503040201")

TSA_CONFIG = """
[ tsa ]
default_tsa = tsa_config1
[ tsa_config1 ]
serial = {dir}/tsaserial
crypto_device = builtin
signer_cert = {dir}/tsa.crt
signer_key = {dir}/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = {digests}
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_alg = sha256
[ ca_ext ]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ tsa_ext ]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def openssl(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["openssl", *map(str, args)], cwd=cwd, capture_output=True, check=True, timeout=60
    )


def make_ca(directory: Path, name: str, config: Path) -> None:
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "3", "-subj", f"/CN={name}",
        "-config", config, "-extensions", "ca_ext", cwd=directory,
    )  # fmt: skip


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path  # the CA that issued the TSA certificate
    other_ca: Path  # a CA that did not

    def config(self, digests: str = "sha256, sha384, sha512") -> Path:
        path = self.dir / f"tsa-{digests.replace(', ', '-')}.cnf"
        if not path.exists():
            path.write_text(TSA_CONFIG.format(dir=self.dir, digests=digests))
        return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    pki = Pki(directory, directory / "ca.crt", directory / "other-ca.crt")
    config = pki.config()
    (directory / "tsaserial").write_text("01\n")
    make_ca(directory, "ca", config)
    make_ca(directory, "other-ca", config)
    openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "tsa.key", "-out", "tsa.csr", "-subj", "/CN=test-tsa", cwd=directory,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", "tsa.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "tsa.crt", "-days", "3", "-extfile", config,
        "-extensions", "tsa_ext", cwd=directory,
    )  # fmt: skip
    return pki


def _digest_in(query: bytes) -> tuple[int, bytes]:
    """Where the SHA-256 message imprint sits in a DER TimeStampReq, and its value."""
    at = query.index(b"\x04\x20", query.index(SHA256_OID_DER)) + 2
    return at, query[at : at + 32]


class _Tsa(BaseHTTPRequestHandler):
    pki: Pki

    def do_POST(self) -> None:
        query = self.rfile.read(int(self.headers["Content-Length"]))
        route = self.path.strip("/")
        if route == "http-error":
            self.send_error(500, "TSA on fire")
            return
        if route == "garbage":
            self._send(b"this is not DER")
            return
        if route == "slow":
            time.sleep(2)
        config = self.pki.config("sha512" if route == "reject" else "sha256, sha384, sha512")
        if route == "wrong-imprint":  # the same request (nonce and all) for another digest
            at, _ = _digest_in(query)
            query = query[:at] + hashlib.sha256(b"something else").digest() + query[at + 32 :]
        work = self.pki.dir / f"q-{uuid.uuid4().hex}"
        if route == "wrong-nonce":  # a fresh query for the same digest: another nonce
            _, digest = _digest_in(query)
            openssl(
                "ts", "-query", "-digest", digest.hex(), "-sha256", "-cert",
                "-out", work.with_suffix(".tsq"), cwd=self.pki.dir,
            )  # fmt: skip
        else:
            work.with_suffix(".tsq").write_bytes(query)
        openssl(
            "ts", "-reply", "-config", config, "-queryfile", work.with_suffix(".tsq"),
            "-out", work.with_suffix(".tsr"), cwd=self.pki.dir,
        )  # fmt: skip
        self._send(work.with_suffix(".tsr").read_bytes())

    def _send(self, body: bytes) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up ("slow")
            pass

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def tsa(pki: Pki) -> Iterator[str]:
    handler = type("Tsa", (_Tsa,), {"pki": pki})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def token(tsa: str) -> bytes:
    return request_timestamp(f"{tsa}/tsa", MANIFEST)


# -- the round trip -----------------------------------------------------------------


def test_a_token_over_the_manifest_verifies(pki: Pki, tsa: str, token: bytes) -> None:
    info = verify_timestamp(token, MANIFEST, pki.ca)
    assert info.digest == hashlib.sha256(MANIFEST).hexdigest()
    assert abs(info.gen_time - datetime.now(UTC)) < timedelta(minutes=5)
    assert info.tsa_name == "CN=test-tsa"
    assert info.policy == "1.2.3.4.1"
    assert info.nonce is not None and info.serial_number > 0
    assert read_timestamp(token) == info
    # checked at the request too, when the CA is known then
    again = request_timestamp(f"{tsa}/tsa", MANIFEST, ca_file=pki.ca)
    assert verify_timestamp(again, MANIFEST, pki.ca).serial_number != info.serial_number


def test_openssl_ts_verify_accepts_the_stored_token(pki: Pki, token: bytes, tmp_path: Path) -> None:
    (tmp_path / "audit_trail.manifest.json").write_bytes(MANIFEST)
    (tmp_path / "audit_trail.manifest.tsr").write_bytes(token)
    for what in (
        ["-data", "audit_trail.manifest.json"],
        ["-digest", hashlib.sha256(MANIFEST).hexdigest()],
    ):
        command = ["openssl", "ts", "-verify", "-in", "audit_trail.manifest.tsr", *what]
        ok = subprocess.run([*command, "-CAfile", str(pki.ca)], cwd=tmp_path, capture_output=True)
        assert ok.returncode == 0 and b"Verification: OK" in ok.stdout, ok.stderr
        bad = subprocess.run(
            [*command, "-CAfile", str(pki.other_ca)], cwd=tmp_path, capture_output=True
        )
        assert bad.returncode != 0


# -- a TSA that fails ---------------------------------------------------------------


def test_a_tsa_that_is_down() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TimestampAuthorityError, match="cannot be reached"):
        request_timestamp(f"http://127.0.0.1:{port}/tsa", MANIFEST, timeout=5)


@pytest.mark.parametrize(
    ("route", "why"),
    [
        ("http-error", "HTTP 500"),
        ("garbage", "no RFC 3161 response"),
        ("reject", "status is rejection \\(Message digest algorithm is not supported"),
        ("wrong-nonce", "another nonce"),
        ("wrong-imprint", "stamps SHA-256 .*not this data's"),
    ],
)
def test_a_tsa_that_misbehaves(tsa: str, route: str, why: str) -> None:
    with pytest.raises(TimestampAuthorityError, match=why):
        request_timestamp(f"{tsa}/{route}", MANIFEST)


def test_a_tsa_that_stalls(tsa: str) -> None:
    # the TSA answers after 2 s; a client that waited would get a token, not this error
    with pytest.raises(TimestampAuthorityError, match=r"did not answer in 0\.5 s"):
        request_timestamp(f"{tsa}/slow", MANIFEST, timeout=0.5)


@pytest.mark.parametrize("url", ["file:///etc/hostname", "ftp://127.0.0.1/tsa", "127.0.0.1/tsa"])
def test_only_http_urls(url: str) -> None:
    with pytest.raises(TimestampAuthorityError, match="not an http"):
        request_timestamp(url, MANIFEST)


def test_a_tsa_whose_ca_is_not_trusted_fails_the_request(pki: Pki, tsa: str) -> None:
    with pytest.raises(TimestampAuthorityError, match="does not verify"):
        request_timestamp(f"{tsa}/tsa", MANIFEST, ca_file=pki.other_ca)


# -- a stored token that does not hold ------------------------------------------------


def test_a_token_signed_under_another_ca(pki: Pki, token: bytes) -> None:
    with pytest.raises(TimestampVerificationError, match="does not verify against"):
        verify_timestamp(token, MANIFEST, pki.other_ca)


def test_a_token_for_other_data(pki: Pki, token: bytes) -> None:
    with pytest.raises(TimestampVerificationError, match="not this data's"):
        verify_timestamp(token, MANIFEST + b" ", pki.ca)


def test_a_token_with_an_edited_time(pki: Pki, token: bytes) -> None:
    gen_time = read_timestamp(token).gen_time
    stamped = gen_time.strftime("%Y%m%d%H%M%S").encode()
    assert token.count(stamped) == 1
    # one second back, as a time (not stamped - 1: at second 00 that made second 99)
    earlier = (gen_time - timedelta(seconds=1)).strftime("%Y%m%d%H%M%S").encode()
    edited = token.replace(stamped, earlier)
    assert read_timestamp(edited).gen_time == read_timestamp(token).gen_time - timedelta(seconds=1)
    with pytest.raises(TimestampVerificationError):
        verify_timestamp(edited, MANIFEST, pki.ca)


def test_a_damaged_or_refused_token(pki: Pki, tsa: str, token: bytes) -> None:
    with pytest.raises(TimestampVerificationError, match="not a DER TimeStampResp"):
        verify_timestamp(token[:-10], MANIFEST, pki.ca)
    with pytest.raises(TimestampVerificationError, match="not a DER TimeStampResp"):
        read_timestamp(b"")
    query = (pki.dir / "refused.tsq").resolve()
    openssl("ts", "-query", "-data", "/dev/null", "-sha256", "-out", query, cwd=pki.dir)
    openssl(
        "ts", "-reply", "-config", pki.config("sha512"), "-queryfile", query,
        "-out", query.with_suffix(".tsr"), cwd=pki.dir,
    )  # fmt: skip
    refused = query.with_suffix(".tsr").read_bytes()
    with pytest.raises(TimestampVerificationError, match="status is rejection"):
        verify_timestamp(refused, b"", pki.ca)


def test_a_token_over_the_same_bytes_as_another_digest_kind(pki: Pki) -> None:
    """A SHA3-256 imprint holding our SHA-256 value: the bytes match, the claim does not."""
    query = (pki.dir / "sha3.tsq").resolve()
    openssl(
        "ts", "-query", "-digest", hashlib.sha256(MANIFEST).hexdigest(), "-sha3-256",
        "-cert", "-out", query, cwd=pki.dir,
    )  # fmt: skip
    openssl(
        "ts", "-reply", "-config", pki.config("sha256, sha3-256"), "-queryfile", query,
        "-out", query.with_suffix(".tsr"), cwd=pki.dir,
    )  # fmt: skip
    with pytest.raises(TimestampVerificationError, match="another kind"):
        verify_timestamp(query.with_suffix(".tsr").read_bytes(), MANIFEST, pki.ca)


def test_ca_file_problems_are_key_errors(pki: Pki, token: bytes, tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="does not exist"):
        verify_timestamp(token, MANIFEST, tmp_path / "nope.pem")
    (tmp_path / "empty.pem").write_text("no certificates here\n")
    with pytest.raises(SigningKeyError, match="no PEM certificate"):
        verify_timestamp(token, MANIFEST, tmp_path / "empty.pem")
    both = tmp_path / "both.pem"  # a bundle with the right CA (twice) among others
    both.write_bytes(pki.other_ca.read_bytes() + pki.ca.read_bytes() + pki.ca.read_bytes())
    verify_timestamp(token, MANIFEST, both)


def test_without_the_extra(monkeypatch: pytest.MonkeyPatch, pki: Pki, token: bytes) -> None:
    monkeypatch.setitem(sys.modules, "rfc3161_client", None)  # import fails as if absent
    with pytest.raises(MissingExtraError, match=r"auditjournal\[timestamp\]"):
        verify_timestamp(token, MANIFEST, pki.ca)
    with pytest.raises(MissingExtraError):
        request_timestamp("http://127.0.0.1:9/tsa", MANIFEST)


def test_errors_are_typed() -> None:
    assert issubclass(TimestampAuthorityError, TimestampError)
    assert issubclass(TimestampVerificationError, TimestampError)


# -- wired into sealing and verify (issue 16 item 3) --------------------------------


def _seal_with(root: Path, settings: Any) -> tuple[Any, str]:
    from auditjournal import AuditStore

    store = AuditStore.open(root)
    with store.start_run(config={}, export=settings) as run:
        run.register_node(plugin_name="s", node_type="source", plugin_version="1", config={})
    return store, run.run_id


def test_sealing_stores_a_token_that_verify_and_openssl_accept(
    pki: Pki, tsa: str, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from auditjournal import ExportSettings
    from auditjournal.cli import cli
    from auditjournal.evidence.verify import verify_export

    store, run_id = _seal_with(tmp_path / "a", ExportSettings(timestamp_url=f"{tsa}/tsa"))
    export = store.export_dir(run_id)
    manifest = (export / "audit_trail.manifest.json").read_bytes()
    token = (export / "audit_trail.manifest.tsr").read_bytes()
    assert verify_timestamp(token, manifest, pki.ca).digest == hashlib.sha256(manifest).hexdigest()
    report = verify_export(export, tsa_ca=pki.ca)
    assert report.ok and report.timestamp.startswith("valid"), [c.line() for c in report.checks]
    assert verify_export(export).timestamp.startswith("present")
    assert not verify_export(export, tsa_ca=pki.other_ca).ok
    ok = subprocess.run(
        ["openssl", "ts", "-verify", "-in", "audit_trail.manifest.tsr", "-data",
         "audit_trail.manifest.json", "-CAfile", str(pki.ca)],
        cwd=export, capture_output=True,
    )  # fmt: skip
    assert ok.returncode == 0 and b"Verification: OK" in ok.stdout
    runner = CliRunner()
    out = runner.invoke(cli, ["verify", str(export), "--tsa-ca", str(pki.ca)])
    assert out.exit_code == 0 and "timestamp valid" in out.output, out.output
    # a token over other bytes (the manifest edited, or the token swapped) is INVALID
    (export / "audit_trail.manifest.tsr").write_bytes(
        request_timestamp(f"{tsa}/tsa", manifest + b" ")
    )
    bad = verify_export(export)
    assert not bad.ok and any("another digest" in c.reason for c in bad.checks)
    (export / "audit_trail.manifest.tsr").unlink()
    missing = runner.invoke(cli, ["verify", str(export), "--tsa-ca", str(pki.ca)])
    assert missing.exit_code == 1 and "audit_trail.manifest.tsr: INVALID: missing" in missing.output
    store.close()


def test_a_failing_tsa_fails_the_seal_or_is_said_when_not_required(
    tsa: str, tmp_path: Path
) -> None:
    from auditjournal import ExportSettings
    from auditjournal.errors import ExportError
    from auditjournal.model.events import ExportFailed

    url = f"{tsa}/http-error"
    from auditjournal import AuditStore

    with AuditStore.open(tmp_path / "a") as store:
        with (
            pytest.raises(ExportError, match="no trusted timestamp"),
            store.start_run(config={}, export=ExportSettings(timestamp_url=url)),
        ):
            pass
        (run_id,) = store.run_ids()
        events = list(store.read_journal(run_id))
        assert isinstance(events[-1], ExportFailed) and "timestamp" in events[-1].error
        assert not (store.export_dir(run_id) / "audit_trail.manifest.json").exists()
    from auditjournal import AuditStore as Store

    with (
        Store.open(tmp_path / "b") as store,
        store.start_run(
            config={}, export=ExportSettings(timestamp_url=url, timestamp_required=False)
        ) as run,
    ):
        pass
    assert run.export_result is not None
    assert run.export_result.timestamp.startswith("none: ")
    export = store.export_dir(run.run_id)
    assert (export / "audit_trail.manifest.json").exists()
    assert not (export / "audit_trail.manifest.tsr").exists()


def test_verify_does_not_load_the_http_client_at_start() -> None:
    """The HTTP client (http.client, ssl's users, email) is loaded only to ask a TSA:
    ``auditjournal verify`` starts ~10 ms sooner without it (issue 16's verify cost)."""
    code = (
        "import sys, auditjournal.cli, auditjournal.evidence.verify; "
        "print(sorted(m for m in ('http.client', 'urllib.request') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
