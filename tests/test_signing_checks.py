"""Checks of signing.py that no end-to-end test isolates (see tools/mutate.py): the
algorithm the manifest names must be the one the key is for, and a signer is only
made for a known algorithm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from auditjournal.errors import SignatureError, SigningKeyError
from auditjournal.proofs.signing import (
    HMAC_KEY_ENV,
    HmacSigner,
    check_signature,
    generate_keypair,
    load_signer,
    sign_manifest,
)
from faults import small_filesystem

MANIFEST: dict[str, Any] = {"format": "auditjournal-export/1", "run_id": "r1", "chunks": []}


def relabel(manifest: dict[str, Any], algorithm: str) -> dict[str, Any]:
    return {**manifest, "signature": {**manifest["signature"], "algorithm": algorithm}}


def test_an_hmac_signature_labelled_with_another_algorithm_is_refused() -> None:
    signed = sign_manifest(MANIFEST, HmacSigner(b"k" * 32))
    assert check_signature(signed, hmac_key=b"k" * 32) == "valid"
    for label in ("ed25519", "hmac-sha512", None):
        with pytest.raises(SignatureError, match=f"signed with {label!r}, not hmac-sha256"):
            check_signature(relabel(signed, label), hmac_key=b"k" * 32)  # type: ignore[arg-type]


def test_an_ed25519_signature_labelled_with_another_algorithm_is_refused(tmp_path: Path) -> None:
    private, public = generate_keypair(tmp_path)
    signed = sign_manifest(MANIFEST, load_signer("ed25519", str(private)))  # type: ignore[arg-type]
    assert check_signature(signed, public_key_file=public) == "valid"
    for label in ("hmac-sha256", "Ed25519"):
        with pytest.raises(SignatureError, match=f"signed with {label!r}, not ed25519"):
            check_signature(relabel(signed, label), public_key_file=public)


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "00",
        {"algorithm": "ed25519", "key_id": "0" * 64},
        {"algorithm": "ed25519", "value": "00"},
    ],
)
def test_a_missing_or_malformed_signature_member_is_refused(signature: Any) -> None:
    manifest = {**MANIFEST} if signature is None else {**MANIFEST, "signature": signature}
    with pytest.raises(SignatureError):
        check_signature(manifest, hmac_key=b"k")


@pytest.mark.parametrize("drop", ["value", "key_id"])
@pytest.mark.parametrize("replacement", [None, 5, ["x"]])
def test_a_signature_member_of_the_wrong_type_is_malformed(drop: str, replacement: Any) -> None:
    """Everything else right (the key's id, the algorithm), one member not a string."""
    signed = sign_manifest(MANIFEST, HmacSigner(b"k"))
    signed["signature"][drop] = replacement
    with pytest.raises(SignatureError, match="signature member is malformed"):
        check_signature(signed, hmac_key=b"k")


def test_without_a_key_the_signature_is_reported_not_checked() -> None:
    assert check_signature(MANIFEST) == "absent"
    signed = sign_manifest(MANIFEST, HmacSigner(b"k"))
    assert check_signature(signed) == "present but NOT CHECKED (no key given)"


def test_signers_are_made_for_known_algorithms_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_signer(None, None) is None
    with pytest.raises(SigningKeyError, match="unknown signing algorithm 'rsa'"):
        load_signer("rsa", str(tmp_path / "k.pem"))
    monkeypatch.delenv(HMAC_KEY_ENV, raising=False)
    with pytest.raises(SigningKeyError, match=HMAC_KEY_ENV):
        load_signer("hmac-sha256", None)
    monkeypatch.setenv(HMAC_KEY_ENV, "")
    with pytest.raises(SigningKeyError, match=HMAC_KEY_ENV):
        load_signer("hmac-sha256", None)
    monkeypatch.setenv(HMAC_KEY_ENV, "secret")
    signer = load_signer("hmac-sha256", None)
    assert signer is not None and signer.algorithm == "hmac-sha256"
    with pytest.raises(SigningKeyError, match="needs signing_key_file"):
        load_signer("ed25519", None)
    with pytest.raises(SigningKeyError, match="does not exist"):
        load_signer("ed25519", str(tmp_path / "absent.pem"))


def test_key_files_of_the_wrong_kind_are_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

    ec = generate_private_key(SECP256R1())
    ec_private = tmp_path / "ec.pem"
    ec_private.write_bytes(
        ec.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ec_public = tmp_path / "ec.pub.pem"
    ec_public.write_bytes(
        ec.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(SigningKeyError, match="not an Ed25519 one"):
        load_signer("ed25519", str(ec_private))
    private, _ = generate_keypair(tmp_path / "ed")
    signed = sign_manifest(MANIFEST, load_signer("ed25519", str(private)))  # type: ignore[arg-type]
    with pytest.raises(SigningKeyError, match="is not an Ed25519 public key"):
        check_signature(signed, public_key_file=ec_public)
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(SigningKeyError, match="is not a PEM public key"):
        check_signature(signed, public_key_file=tmp_path / "junk.pem")
    with pytest.raises(SigningKeyError, match="is not an unencrypted PEM PKCS#8 private key"):
        load_signer("ed25519", str(tmp_path / "junk.pem"))
    with pytest.raises(SigningKeyError, match="does not exist"):
        check_signature(signed, public_key_file=tmp_path / "absent.pem")


def test_keygen_does_not_overwrite_a_key(tmp_path: Path) -> None:
    private, public = generate_keypair(tmp_path)
    before = private.read_bytes(), public.read_bytes()
    with pytest.raises(SigningKeyError, match="already exists"):
        generate_keypair(tmp_path)
    assert (private.read_bytes(), public.read_bytes()) == before
    assert private.stat().st_mode & 0o777 == 0o600


def test_keygen_over_a_key_on_a_full_disk_says_the_key_exists(tmp_path: Path) -> None:
    """The existing key is looked for before anything is written: on a full disk the
    caller hears that a key is there (its real problem), not that the disk is full."""
    with small_filesystem(tmp_path / "fs", size="1m") as fs:
        private, public = generate_keypair(fs.path / "keys")
        before = private.read_bytes(), public.read_bytes()
        fs.fill()
        try:
            with pytest.raises(SigningKeyError, match="already exists"):
                generate_keypair(fs.path / "keys")
        finally:
            fs.free()
        assert (private.read_bytes(), public.read_bytes()) == before
        assert sorted(p.name for p in (fs.path / "keys").iterdir()) == [
            "signing_key.pem",
            "signing_key.pub.pem",
        ]
