"""C2SP signed notes (c2sp.org/signed-note) and tlog checkpoints (c2sp.org/tlog-checkpoint).

A signed note is UTF-8 text that ends in a newline, a blank line, then one or
more signature lines ``— <key name> <base64(key id || signature)>`` (an em
dash U+2014 and a space first, a newline last). No ASCII control character
other than newline may appear anywhere. The signature covers the text with
its final newline, not the blank line. With Ed25519 (the only algorithm
here) the key id is the first 4 bytes, big-endian, of
``SHA-256(key name || 0x0A || 0x01 || 32-byte public key)``, and a verifier
key is written ``<name>+<8 hex digits of the key id>+<base64(0x01 || public
key)>``, as ``golang.org/x/mod/sumdb/note`` writes it, so notes made here open
with that package and with every C2SP tool.

A checkpoint is a note whose text is the log's origin, its tree size (ASCII
decimal, no leading zeros), the base64 RFC 6962 root hash, then optional
non-empty extension lines. An unsigned checkpoint (no key configured) is
the text alone, without the blank line: it cannot pass for a signed one.

Parsing is strict, stricter than the Go package where it is lenient: a note
over :data:`MAX_NOTE_BYTES` or with more than :data:`MAX_SIGNATURES`
signature lines, bad UTF-8, a control character, a malformed signature line,
non-canonical base64, or two signatures by the same key (name and key id)
is :class:`MalformedNoteError` (Go skips repeated signatures). Verification
follows the spec: signatures by unknown keys are ignored; a known key's
signature that fails rejects the whole note; a note no known key signed is
rejected. Everything here is pure and thread-safe.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

from ..errors import (
    InvalidNoteSignatureError,
    MalformedCheckpointError,
    MalformedNoteError,
    SigningKeyError,
    UnverifiedNoteError,
)
from .signing import load_ed25519_private_key, load_ed25519_public_key

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "ALG_ED25519",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "Checkpoint",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "SignedNote",
    "ed25519_key_id",
    "open_checkpoint",
    "open_note",
    "parse_checkpoint",
    "parse_note",
    "read_checkpoint",
    "sign_checkpoint",
    "sign_note",
]

ALG_ED25519: Final = 0x01  # the signature type byte of Ed25519 in c2sp.org/signed-note
MAX_NOTE_BYTES: Final = 1 << 20  # the spec asks for a limit; >= 16 post-quantum signatures fit
MAX_SIGNATURES: Final = 100  # as golang.org/x/mod/sumdb/note
MAX_TREE_SIZE: Final = (1 << 64) - 1  # tree sizes are uint64 in every tlog implementation

_DASH: Final = "\u2014 "  # em dash, space: the start of every signature line
_B64: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_TREE_SIZE: Final = re.compile(r"0|[1-9][0-9]*")
_CONTROL: Final = re.compile(r"[\x00-\x09\x0b-\x1f]")


class NoteSignature(msgspec.Struct, frozen=True):
    """One signature line: the key's name, its 32-bit key id and the signature bytes."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        blob = self.key_id.to_bytes(4, "big") + self.signature
        return f"{_DASH}{self.name} {base64.b64encode(blob).decode('ascii')}\n"


class SignedNote(msgspec.Struct, frozen=True):
    """A note's text (with its final newline) and its signatures, in file order."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def encode(self) -> bytes:
        _check_text(self.text)
        if not self.signatures:
            raise MalformedNoteError("a signed note needs at least one signature")
        for sig in self.signatures:
            _check_key_name(sig.name)
            if not 0 <= sig.key_id <= 0xFFFFFFFF or not sig.signature:
                raise MalformedNoteError(f"the signature by {sig.name} has no 32-bit key id")
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode()


class Checkpoint(msgspec.Struct, frozen=True):
    """A log's tree head: origin, tree size, RFC 6962 root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """The note text (c2sp.org/tlog-checkpoint), ending in a newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode("ascii")]
        text = "\n".join([*lines, *self.extensions]) + "\n"
        if _checkpoint_fields(text) != self:  # what cannot be read back is not written either
            raise MalformedCheckpointError("these fields cannot be written as a checkpoint")
        return text


# -- keys ---------------------------------------------------------------------------


def ed25519_key_id(name: str, public_key: bytes) -> int:
    """The recommended key id: SHA-256(name || 0x0A || 0x01 || key)[:4], big-endian."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


class NoteVerifier:
    """Checks signatures by one Ed25519 key known under one name."""

    __slots__ = ("_key", "key_id", "name", "public_key")

    def __init__(self, name: str, public_key: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        _check_key_name(name, SigningKeyError)
        if len(public_key) != 32:
            raise SigningKeyError(f"an Ed25519 public key has 32 bytes, not {len(public_key)}")
        self.name = name
        self.public_key = bytes(public_key)
        self.key_id = ed25519_key_id(name, self.public_key)
        self._key = Ed25519PublicKey.from_public_bytes(self.public_key)

    @classmethod
    def from_verifier_key(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<hex key id>+<base64(0x01 || public key)>``."""
        parts = vkey.split("+", 2)
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-fA-F]{8}", parts[1]):
            raise SigningKeyError("a verifier key reads <name>+<8 hex digits>+<base64 key>")
        name, hex_id, encoded = parts
        key = _b64decode(encoded, SigningKeyError, "verifier key")
        if len(key) != 33 or key[0] != ALG_ED25519:
            raise SigningKeyError("the verifier key is not an Ed25519 key (0x01 and 32 bytes)")
        verifier = cls(name, key[1:])
        if verifier.key_id != int(hex_id, 16):
            raise SigningKeyError(f"the verifier key's id {hex_id} does not match its key")
        return verifier

    @classmethod
    def from_pem_file(cls, name: str, path: Path) -> NoteVerifier:
        """The verifier for ``name`` with the Ed25519 public key in a PEM file."""
        from cryptography.hazmat.primitives import serialization

        key = load_ed25519_public_key(path)
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(name, raw)

    @property
    def verifier_key(self) -> str:
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id:08x}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"NoteVerifier({self.name}+{self.key_id:08x})"


class NoteSigner:
    """Signs note texts with one Ed25519 private key under one name (``repr`` hides the key)."""

    __slots__ = ("_key", "verifier")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        from cryptography.hazmat.primitives import serialization

        public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.verifier = NoteVerifier(name, public)
        self._key = private_key

    @classmethod
    def from_pem_file(cls, name: str, key_file: Path) -> NoteSigner:
        """The store's signing key (unencrypted PEM PKCS#8, as for manifests) under ``name``."""
        return cls(name, load_ed25519_private_key(key_file))

    @classmethod
    def from_signer_key(cls, skey: str) -> NoteSigner:
        """Parse Go's ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>``."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise SigningKeyError("a signer key reads PRIVATE+KEY+<name>+<hex id>+<base64 key>")
        _, _, name, hex_id, encoded = parts
        seed = _b64decode(encoded, SigningKeyError, "signer key")
        if not re.fullmatch(r"[0-9a-fA-F]{8}", hex_id) or len(seed) != 33 or seed[0] != 1:
            raise SigningKeyError("the signer key is not an Ed25519 key (0x01 and a 32-byte seed)")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(seed[1:]))
        if signer.key_id != int(hex_id, 16):
            raise SigningKeyError(f"the signer key's id {hex_id} does not match its key")
        return signer

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def key_id(self) -> int:
        return self.verifier.key_id

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"NoteSigner({self.name}+{self.key_id:08x})"


# -- notes --------------------------------------------------------------------------


def sign_note(text: str, *signers: NoteSigner) -> bytes:
    """The signed note of ``text`` (which must end in a newline) by each signer, in order."""
    if not signers:
        raise MalformedNoteError("a signed note needs at least one signer")
    _check_text(text)
    message = text.encode()
    signatures = tuple(NoteSignature(s.name, s.key_id, s.sign(message)) for s in signers)
    note = SignedNote(text, signatures)
    _check_distinct(signatures)
    data = note.encode()
    if len(data) > MAX_NOTE_BYTES:
        raise MalformedNoteError(f"the note would be {len(data)} bytes, over {MAX_NOTE_BYTES}")
    return data


def parse_note(data: bytes) -> SignedNote:
    """Split a signed note into text and signatures, checking only its syntax."""
    if len(data) > MAX_NOTE_BYTES:
        raise MalformedNoteError(f"the note is {len(data)} bytes, over {MAX_NOTE_BYTES}")
    try:
        whole = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedNoteError(f"the note is not valid UTF-8 (byte {exc.start})") from None
    _check_controls(whole, MalformedNoteError)
    split = whole.rfind("\n\n")  # the text may hold blank lines; the last one separates
    if split < 0:
        raise MalformedNoteError("no blank line separates the text from signatures")
    text, block = whole[: split + 1], whole[split + 2 :]
    if not block.endswith("\n"):
        raise MalformedNoteError("the signature block must end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"{len(lines)} signature lines, over {MAX_SIGNATURES}")
    signatures = tuple(_parse_signature_line(line, n) for n, line in enumerate(lines, 1))
    _check_distinct(signatures)
    return SignedNote(text, signatures)


def open_note(
    data: bytes, verifiers: Sequence[NoteVerifier]
) -> tuple[SignedNote, tuple[NoteSignature, ...]]:
    """Parse a note and check it against trusted keys: the note and the signatures
    that verified. Signatures by other keys are ignored; a trusted key's failed
    signature is :class:`InvalidNoteSignatureError`; none at all verified is
    :class:`UnverifiedNoteError`."""
    note = parse_note(data)
    known: dict[tuple[str, int], NoteVerifier] = {}
    for verifier in verifiers:
        key = (verifier.name, verifier.key_id)
        if key in known and known[key].public_key != verifier.public_key:
            raise SigningKeyError(f"two trusted keys are both {key[0]}+{key[1]:08x}")
        known[key] = verifier
    message = note.text.encode()
    verified: list[NoteSignature] = []
    for sig in note.signatures:
        trusted = known.get((sig.name, sig.key_id))
        if trusted is None:
            continue
        if not trusted.verify(message, sig.signature):
            raise InvalidNoteSignatureError(
                f"the signature by {sig.name}+{sig.key_id:08x} does not verify"
            )
        verified.append(sig)
    if not verified:
        names = ", ".join(f"{s.name}+{s.key_id:08x}" for s in note.signatures)
        raise UnverifiedNoteError(f"no trusted key signed the note (signed by {names})")
    return note, tuple(verified)


# -- checkpoints --------------------------------------------------------------------


def sign_checkpoint(checkpoint: Checkpoint, *signers: NoteSigner) -> bytes:
    """The checkpoint as a signed note."""
    return sign_note(checkpoint.text(), *signers)


def parse_checkpoint(text: str) -> Checkpoint:
    """Read a checkpoint's note text (strict: see the module docstring)."""
    return _checkpoint_fields(text)


def open_checkpoint(data: bytes, verifiers: Sequence[NoteVerifier]) -> Checkpoint:
    """A signed checkpoint that at least one trusted key signed (see :func:`open_note`)."""
    note, _ = open_note(data, verifiers)
    return parse_checkpoint(note.text)


def read_checkpoint(data: bytes) -> tuple[Checkpoint, SignedNote | None]:
    """Read a checkpoint file without checking signatures: the checkpoint and its
    note, or ``None`` for an unsigned checkpoint (the text alone)."""
    if b"\n\n" in data:
        note = parse_note(data)
        return parse_checkpoint(note.text), note
    if len(data) > MAX_NOTE_BYTES:
        raise MalformedCheckpointError(f"the checkpoint is {len(data)} bytes, over the limit")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedCheckpointError(f"not valid UTF-8 (byte {exc.start})") from None
    return parse_checkpoint(text), None


# -- strictness ---------------------------------------------------------------------


def _checkpoint_fields(text: str) -> Checkpoint:
    _check_controls(text, MalformedCheckpointError)
    if not text.endswith("\n"):
        raise MalformedCheckpointError("a checkpoint's text ends in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpointError("a checkpoint has origin, tree size and root hash lines")
    if any(not line for line in lines):
        raise MalformedCheckpointError("a checkpoint's lines must not be empty")
    origin, size_line, root_line, *extensions = lines
    if not _TREE_SIZE.fullmatch(size_line) or int(size_line) > MAX_TREE_SIZE:
        raise MalformedCheckpointError(f"tree size {size_line[:30]!r} is not a decimal uint64")
    root = _b64decode(root_line, MalformedCheckpointError, "root hash")
    if len(root) != 32:
        raise MalformedCheckpointError(f"the root hash has {len(root)} bytes, not 32")
    return Checkpoint(origin, int(size_line), root, tuple(extensions))


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    if not line.startswith(_DASH):
        raise MalformedNoteError(f"signature line {number} does not start with an em dash")
    name, _, encoded = line[len(_DASH) :].partition(" ")
    _check_key_name(name)
    blob = _b64decode(encoded, MalformedNoteError, f"signature line {number}")
    if len(blob) < 5:
        raise MalformedNoteError(f"signature line {number} holds no signature")
    return NoteSignature(name, int.from_bytes(blob[:4], "big"), blob[4:])


def _check_distinct(signatures: Sequence[NoteSignature]) -> None:
    seen: set[tuple[str, int]] = set()
    for sig in signatures:
        key = (sig.name, sig.key_id)
        if key in seen:
            raise MalformedNoteError(f"two signatures by {sig.name}+{sig.key_id:08x}")
        seen.add(key)


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise MalformedNoteError("a note's text must end in a newline")
    _check_controls(text, MalformedNoteError)


def _check_controls(text: str, error: type[Exception]) -> None:
    found = _CONTROL.search(text)
    if found:
        raise error(f"control character {found.group()!r} at character {found.start()}")


def _check_key_name(name: str, error: type[Exception] = MalformedNoteError) -> None:
    if not name or "+" in name or any(c.isspace() for c in name):
        raise error(f"key name {name[:60]!r} is empty or holds a space or '+'")
    _check_controls(name, error)


def _b64decode(text: str, error: type[Exception], what: str) -> bytes:
    """Standard base64 (RFC 4648 §4), canonical only: one text for one value."""
    if not _B64.fullmatch(text) or len(text) % 4:
        raise error(f"the {what} is not base64")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise error(f"the {what} is not base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise error(f"the {what} is not canonical base64")
    return raw
