"""Signing and checking the export manifest (HMAC-SHA256 or Ed25519).

The signature covers the RFC 8785 canonical JSON of the manifest without its
``signature`` member; ``signature`` = ``{"algorithm", "key_id", "value"}``
with ``value`` in hex. ``key_id`` is the SHA-256 fingerprint of the Ed25519
public key (its 32 raw bytes) or of the HMAC key.

Key material never appears in output, logs or error messages, and every
comparison of secrets or MACs is constant-time (:func:`hmac.compare_digest`).
An Ed25519 signature can be checked with standard tools alone
(see docs/verifying-without-auditjournal.md).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..errors import SignatureError, SigningKeyError
from ..fs.storage import fsync_dir, storage_error
from ..model.canonical import canonical_json

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "HMAC_KEY_ENV",
    "Ed25519Signer",
    "HmacSigner",
    "ManifestSigner",
    "check_signature",
    "generate_keypair",
    "load_ed25519_private_key",
    "load_ed25519_public_key",
    "load_signer",
    "signed_bytes",
]

HMAC_KEY_ENV: Final = "AUDITJOURNAL_SIGNING_KEY"


def signed_bytes(manifest: dict[str, Any]) -> bytes:
    """What the signature covers: canonical JSON of the manifest minus ``signature``."""
    return canonical_json({k: v for k, v in manifest.items() if k != "signature"})


class ManifestSigner(Protocol):
    @property
    def algorithm(self) -> str: ...

    @property
    def key_id(self) -> str: ...

    def sign(self, data: bytes) -> str: ...


@dataclass(frozen=True, repr=False)
class HmacSigner:
    """HMAC-SHA256 with a shared secret (``repr`` never shows it)."""

    _key: bytes
    algorithm: str = "hmac-sha256"

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self._key).hexdigest()

    def sign(self, data: bytes) -> str:
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"HmacSigner(key_id={self.key_id[:16]}...)"


class Ed25519Signer:
    """Ed25519 with a private key from a PEM (PKCS#8) file."""

    algorithm = "ed25519"

    def __init__(self, key_file: Path) -> None:
        key = load_ed25519_private_key(key_file)
        self._key = key
        self.key_id = _ed25519_key_id(key.public_key())

    def sign(self, data: bytes) -> str:
        return self._key.sign(data).hex()

    def __repr__(self) -> str:
        return f"Ed25519Signer(key_id={self.key_id[:16]}...)"


def load_ed25519_private_key(key_file: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in an unencrypted PEM (PKCS#8) file, or SigningKeyError."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except FileNotFoundError:
        raise SigningKeyError(f"signing key file {key_file} does not exist") from None
    except (ValueError, TypeError):
        raise SigningKeyError(f"{key_file} is not an unencrypted PEM PKCS#8 private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{key_file} holds a private key, but not an Ed25519 one")
    return key


def load_ed25519_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in a PEM (SubjectPublicKeyInfo) file, or SigningKeyError."""
    key: Ed25519PublicKey = _load_public_key(path)
    return key


def _ed25519_key_id(public_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_signer(algorithm: str | None, key_file: str | None) -> ManifestSigner | None:
    """The signer export settings ask for; fails early (before a run) if the key is missing."""
    if algorithm is None:
        return None
    if algorithm == "hmac-sha256":
        secret = os.environ.get(HMAC_KEY_ENV)
        if not secret:
            raise SigningKeyError(f"sign='hmac-sha256' needs the key in ${HMAC_KEY_ENV}")
        return HmacSigner(secret.encode())
    if algorithm == "ed25519":
        if not key_file:
            raise SigningKeyError("sign='ed25519' needs signing_key_file")
        return Ed25519Signer(Path(key_file))
    raise SigningKeyError(f"unknown signing algorithm {algorithm!r}")


def sign_manifest(manifest: dict[str, Any], signer: ManifestSigner) -> dict[str, Any]:
    """The manifest with its ``signature`` member added."""
    value = signer.sign(signed_bytes(manifest))
    return {
        **manifest,
        "signature": {"algorithm": signer.algorithm, "key_id": signer.key_id, "value": value},
    }


NOT_CHECKED: Final = "present but NOT CHECKED (no key given)"
"""What a signed manifest's signature is without a key: said loudly, it proves nothing."""


def check_signature(
    manifest: dict[str, Any],
    *,
    public_key_file: Path | None = None,
    hmac_key: bytes | None = None,
) -> str:
    """``"valid"`` or raise :class:`SignatureError` (``"absent"`` if unsigned and no key
    given; :data:`NOT_CHECKED` if signed and no key given)."""
    signature = manifest.get("signature")
    if public_key_file is None and hmac_key is None:
        return "absent" if signature is None else NOT_CHECKED
    if not isinstance(signature, dict):
        raise SignatureError("the manifest is not signed")
    algorithm = signature.get("algorithm")
    value = signature.get("value")
    key_id = signature.get("key_id")
    if not isinstance(value, str) or not isinstance(key_id, str):
        raise SignatureError("signature member is malformed")
    data = signed_bytes(manifest)
    if hmac_key is not None:
        if algorithm != "hmac-sha256":
            raise SignatureError(f"manifest is signed with {algorithm!r}, not hmac-sha256")
        expected = HmacSigner(hmac_key)
        if not hmac.compare_digest(expected.key_id, key_id):
            raise SignatureError("signed with a different HMAC key (key_id differs)")
        if not hmac.compare_digest(expected.sign(data), value.lower()):
            raise SignatureError("HMAC does not match the manifest")
        return "valid"
    assert public_key_file is not None
    if algorithm != "ed25519":
        raise SignatureError(f"manifest is signed with {algorithm!r}, not ed25519")
    public_key = _load_public_key(public_key_file)
    if not hmac.compare_digest(_ed25519_key_id(public_key), key_id):
        raise SignatureError("signed with a different Ed25519 key (key_id differs)")
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(bytes.fromhex(value), data)
    except (InvalidSignature, ValueError):
        raise SignatureError("Ed25519 signature does not match the manifest") from None
    return "valid"


def _load_public_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise SigningKeyError(f"public key file {path} does not exist") from None
    except (ValueError, TypeError):
        raise SigningKeyError(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} is not an Ed25519 public key")
    return key


def generate_keypair(out_dir: Path) -> tuple[Path, Path]:
    """Write ``signing_key.pem`` (PKCS#8, mode 0600) and ``signing_key.pub.pem``.

    Each is written to a temporary file in ``out_dir`` and fsynced, then linked
    to its name (which never replaces a file that appeared meanwhile), then the
    directory is fsynced: a failure (a full disk) leaves neither key file, and
    no empty one. A non-empty key file already there is never overwritten
    (:class:`SigningKeyError`); an empty one (what a failed write of an older
    version left) is replaced.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, f"cannot create {out_dir}") from exc
    private, public = out_dir / "signing_key.pem", out_dir / "signing_key.pub.pem"
    for path in (private, public):
        if not _replaceable(path):
            raise SigningKeyError(f"{path} already exists; not overwriting a key")
    key = Ed25519PrivateKey.generate()
    contents = (
        (
            private,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            0o600,
        ),
        (
            public,
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            0o644,
        ),
    )
    temps: list[Path] = []
    placed: list[Path] = []
    try:
        for path, data, mode in contents:
            temps.append(_write_temp(path, data, mode))
        for temp, (path, _, _) in zip(temps, contents, strict=True):
            _place(temp, path)
            placed.append(path)
        fsync_dir(out_dir)
    except BaseException as exc:
        for path in placed:  # one key without the other is no key pair
            path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise storage_error(exc, f"cannot write the key pair in {out_dir}") from exc
        raise  # a key file that appeared meanwhile (SigningKeyError), an interrupt
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
    return private, public


def _replaceable(path: Path) -> bool:
    """True if nothing is at ``path``, or an empty regular file (no key to lose)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return True
    return stat.S_ISREG(info.st_mode) and info.st_size == 0


def _write_temp(path: Path, data: bytes, mode: int) -> Path:
    """``data`` in a new temporary file beside ``path`` (created with ``mode``), fsynced."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temp = Path(name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def _place(temp: Path, path: Path) -> None:
    """Give ``temp`` the name ``path``: a link, which fails if a file appeared there
    meanwhile; that file is replaced only if it is empty."""
    try:
        os.link(temp, path)
    except FileExistsError:
        if not _replaceable(path):
            raise SigningKeyError(f"{path} already exists; not overwriting a key") from None
        os.replace(temp, path)
