"""C2SP signed notes and tlog checkpoints (auditjournal.proofs.signednote).

The key id and the signature line are computed here from the C2SP
definitions with nothing but hashlib, base64 and cryptography's Ed25519, and
compared byte for byte with what the module writes. The ``PeterNeumann`` /
``EnochRoot`` keys and notes are the published examples of
golang.org/x/mod/sumdb/note (its package documentation and tests): the note
signed here must be byte-identical to Go's, and Go's notes must open here.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from auditjournal.errors import (
    InvalidNoteSignatureError,
    MalformedCheckpointError,
    MalformedNoteError,
    SignatureError,
    SigningKeyError,
    UnverifiedNoteError,
)
from auditjournal.proofs.signednote import (
    MAX_NOTE_BYTES,
    Checkpoint,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    SignedNote,
    ed25519_key_id,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    parse_note,
    read_checkpoint,
    sign_checkpoint,
    sign_note,
)
from auditjournal.proofs.signing import generate_keypair

# golang.org/x/mod/sumdb/note: package documentation and note_test.go.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgK"
    "vqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOT"
    "GwnWLox33WWd1RvMc+QQ=\n"
)
# c2sp.org/tlog-checkpoint's example (its key is not published: syntax only).
SPEC_CHECKPOINT = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7"
    "u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
).encode()

ROOT = hashlib.sha256(b"some tree").digest()


def fresh_key() -> tuple[Ed25519PrivateKey, bytes]:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return key, public


# -- the C2SP definitions, computed independently -----------------------------------


def spec_key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\x0a" + b"\x01" + public).digest()[:4]


def spec_signed_note(text: str, name: str, key: Ed25519PrivateKey, public: bytes) -> bytes:
    signature = key.sign(text.encode())  # over the text with its final newline
    blob = base64.b64encode(spec_key_id(name, public) + signature).decode()
    return (text + "\n" + "\u2014 " + name + " " + blob + "\n").encode("utf-8")


def test_key_id_and_signed_checkpoint_follow_the_spec() -> None:
    key, public = fresh_key()
    name = "audit.example/store-1"
    signer = NoteSigner(name, key)
    assert signer.key_id.to_bytes(4, "big") == spec_key_id(name, public)
    assert ed25519_key_id(name, public) == int.from_bytes(spec_key_id(name, public), "big")
    encoded_key = base64.b64encode(b"\x01" + public).decode()
    vkey = f"{name}+{spec_key_id(name, public).hex()}+{encoded_key}"
    assert signer.verifier.verifier_key == vkey

    checkpoint = Checkpoint(name, 1234, ROOT)
    text = f"{name}\n1234\n{base64.b64encode(ROOT).decode()}\n"
    assert checkpoint.text() == text
    note = sign_checkpoint(checkpoint, signer)
    assert note == spec_signed_note(text, name, key, public)  # Ed25519 is deterministic
    assert note.split(b"\n")[4].startswith(b"\xe2\x80\x94 ")  # the em dash, UTF-8
    assert open_checkpoint(note, [NoteVerifier.from_verifier_key(vkey)]) == checkpoint


def test_go_note_package_vectors() -> None:
    peter = NoteSigner.from_signer_key(PETER_SKEY)
    assert peter.name == "PeterNeumann" and peter.key_id == 0xC74F20A3
    assert peter.verifier.verifier_key == PETER_VKEY
    assert sign_note(TEXT, peter) == (TEXT + "\n" + PETER_SIG).encode()

    peter_v = NoteVerifier.from_verifier_key(PETER_VKEY)
    enoch_v = NoteVerifier.from_verifier_key(ENOCH_VKEY)
    assert enoch_v.key_id == 0xAF0CFE78
    both = (TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()
    note, verified = open_note(both, [peter_v])
    assert note.text == TEXT
    assert [(s.name, s.key_id) for s in verified] == [("PeterNeumann", 0xC74F20A3)]
    assert len(note.signatures) == 2  # Enoch's is kept, unverified
    _, verified = open_note(both, [peter_v, enoch_v])
    assert [s.name for s in verified] == ["PeterNeumann", "EnochRoot"]
    with pytest.raises(UnverifiedNoteError):
        open_note(both, [])
    broken = (TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]).encode()
    with pytest.raises(InvalidNoteSignatureError, match="PeterNeumann\\+c74f20a3"):
        open_note(broken, [peter_v])


def test_mangled_verifier_keys_are_refused() -> None:
    NoteVerifier.from_verifier_key(PETER_VKEY)
    for i in range(len(PETER_VKEY)):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                with pytest.raises(SigningKeyError):
                    NoteVerifier.from_verifier_key(PETER_VKEY[i:j])
    for i, c in enumerate(PETER_VKEY):
        mangled = PETER_VKEY[:i] + chr(ord(c) + 1) + PETER_VKEY[i + 1 :]
        with pytest.raises(SigningKeyError):
            NoteVerifier.from_verifier_key(mangled)
    # a wrong-length key and an unknown algorithm, each with a matching key id (Go's cases)
    for bad in (
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ):
        with pytest.raises(SigningKeyError):
            NoteVerifier.from_verifier_key(bad)


def test_mangled_signer_keys_are_refused() -> None:
    for i, c in enumerate(PETER_SKEY):
        mangled = PETER_SKEY[:i] + chr(ord(c) + 1) + PETER_SKEY[i + 1 :]
        with pytest.raises(SigningKeyError):
            NoteSigner.from_signer_key(mangled)
    with pytest.raises(SigningKeyError):
        NoteSigner.from_signer_key(PETER_SKEY[:-4])


def test_pem_keys_from_the_manifest_signing_setup(tmp_path: Path) -> None:
    private, public = generate_keypair(tmp_path)
    signer = NoteSigner.from_pem_file("audit.example/x", private)
    verifier = NoteVerifier.from_pem_file("audit.example/x", public)
    assert verifier.verifier_key == signer.verifier.verifier_key
    checkpoint = Checkpoint("audit.example/x", 0, hashlib.sha256(b"").digest())
    assert open_checkpoint(sign_checkpoint(checkpoint, signer), [verifier]) == checkpoint
    assert "PRIVATE" not in repr(signer) and repr(signer).startswith("NoteSigner(audit.example/x+")
    with pytest.raises(SigningKeyError):
        NoteSigner.from_pem_file("x", tmp_path / "missing.pem")
    with pytest.raises(SigningKeyError):
        NoteVerifier.from_pem_file("x", private)  # a private key is not a public key


# -- verification rules ---------------------------------------------------------------


def test_a_known_key_that_fails_rejects_the_note_even_if_another_verifies() -> None:
    key_a = Ed25519PrivateKey.generate()
    key_b = Ed25519PrivateKey.generate()
    a, b = NoteSigner("a.example", key_a), NoteSigner("b.example", key_b)
    note = sign_note("hello\n", a, b)
    good = parse_note(note)
    forged_b = NoteSignature("b.example", b.key_id, bytes(64))
    forged = SignedNote(good.text, (good.signatures[0], forged_b)).encode()
    open_note(forged, [a.verifier])  # b unknown: ignored
    with pytest.raises(InvalidNoteSignatureError):
        open_note(forged, [a.verifier, b.verifier])


def test_same_name_other_key_is_ignored_not_trusted() -> None:
    key, _ = fresh_key()
    other, _ = fresh_key()
    note = sign_note("x\n", NoteSigner("log.example", key))
    impostor = NoteSigner("log.example", other).verifier  # same name, other key id
    with pytest.raises(UnverifiedNoteError):
        open_note(note, [impostor])


def test_changed_text_fails_with_the_signing_key() -> None:
    key, _ = fresh_key()
    signer = NoteSigner("log.example", key)
    checkpoint = Checkpoint("log.example", 10, ROOT)
    note = sign_checkpoint(checkpoint, signer)
    tampered = note.replace(b"\n10\n", b"\n11\n", 1)
    assert read_checkpoint(tampered)[0].size == 11  # still well-formed...
    with pytest.raises(InvalidNoteSignatureError):  # ...but not what was signed
        open_checkpoint(tampered, [signer.verifier])


def test_ambiguous_trusted_keys_are_refused() -> None:
    class Collide(NoteVerifier):
        """Another key claiming PeterNeumann's key id (possible: ids are 32 bits)."""

    _, public = fresh_key()
    impostor = Collide("PeterNeumann", public)
    impostor.key_id = 0xC74F20A3
    note = (TEXT + "\n" + PETER_SIG).encode()
    with pytest.raises(SigningKeyError, match="two trusted keys"):
        open_note(note, [NoteVerifier.from_verifier_key(PETER_VKEY), impostor])
    peter = NoteVerifier.from_verifier_key(PETER_VKEY)
    open_note(note, [peter, NoteVerifier.from_verifier_key(PETER_VKEY)])  # the same key twice


# -- strict syntax ----------------------------------------------------------------------

GOOD = (TEXT + "\n" + PETER_SIG).encode()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (TEXT.encode(), "no blank line"),
        ((TEXT + "\n").encode(), "end in a newline"),
        ((TEXT + "\n" + PETER_SIG[:-1]).encode(), "end in a newline"),
        (b"\x01" + GOOD, "control character"),
        (b"\xff" + GOOD, "UTF-8"),
        (GOOD.replace(b"\n", b"\r\n", 1), "control character"),
        (GOOD.replace(b"qfqd", b"qf\tqd"), "control character"),
        ((TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name")).encode(), "base64"),
        ((TEXT + "\n" + PETER_SIG + "Unexpected line.\n").encode(), "em dash"),
        ((TEXT + "\n" + PETER_SIG.replace("\u2014", "-")).encode(), "em dash"),
        ((TEXT + "\n" + PETER_SIG.replace("\u2014 ", "\u2014")).encode(), "em dash"),
        ((TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Peter+Neumann")).encode(), "'\\+'"),
        ((TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Peter\u00a0N")).encode(), "space"),
        ((TEXT + "\n" + PETER_SIG.replace(" x08go", "  x08go")).encode(), "base64"),
        ((TEXT + "\n" + PETER_SIG.replace("AM=", "AN=")).encode(), "canonical"),
        ((TEXT + "\n" + PETER_SIG.replace("AM=", "AM")).encode(), "not base64"),
        ((TEXT + "\n" + "\u2014 PeterNeumann AAAA\n").encode(), "no signature"),
        ((TEXT + "\n" + PETER_SIG + PETER_SIG).encode(), "two signatures"),
        ((TEXT + "\n" + PETER_SIG * 101).encode(), "over 100"),
        (b"x" * (MAX_NOTE_BYTES - 5) + b"\n\n" + PETER_SIG.encode(), "over"),
    ],
)
def test_malformed_notes_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(MalformedNoteError, match=why):
        parse_note(data)
    with pytest.raises(MalformedNoteError):
        open_note(data, [NoteVerifier.from_verifier_key(PETER_VKEY)])


def test_the_text_may_hold_blank_lines_the_last_one_separates() -> None:
    key, _ = fresh_key()
    signer = NoteSigner("poet.example", key)
    text = "Ognuno sta solo sul cuor della terra\n\ned \u00e8 subito sera.\n"
    note, verified = open_note(sign_note(text, signer), [signer.verifier])
    assert note.text == text and len(verified) == 1


@pytest.mark.parametrize(
    "text", ["no newline", "tab\there\n", "cr\r\n", "nul\x00\n"], ids=["nl", "tab", "cr", "nul"]
)
def test_unsignable_texts(text: str) -> None:
    key, _ = fresh_key()
    with pytest.raises(MalformedNoteError):
        sign_note(text, NoteSigner("a.example", key))


def test_notes_with_impossible_signatures_are_not_encoded() -> None:
    for sig in (
        NoteSignature("a", 1 << 32, b"s"),
        NoteSignature("a", 1, b""),
        NoteSignature("a b", 1, b"s"),
    ):
        with pytest.raises(MalformedNoteError):
            SignedNote("x\n", (sig,)).encode()
    with pytest.raises(MalformedNoteError):
        SignedNote("x\n", ()).encode()


def test_signing_needs_a_signer_and_distinct_keys() -> None:
    key, _ = fresh_key()
    signer = NoteSigner("a.example", key)
    with pytest.raises(MalformedNoteError, match="at least one"):
        sign_note("x\n")
    with pytest.raises(MalformedNoteError, match="two signatures"):
        sign_note("x\n", signer, signer)
    with pytest.raises(MalformedNoteError, match="over"):
        sign_note("y" * MAX_NOTE_BYTES + "\n", signer)
    for bad_name in ("", "a b", "a+b", "tab\tname"):
        with pytest.raises(SigningKeyError):
            NoteSigner(bad_name, key)


# -- checkpoints ------------------------------------------------------------------------


def test_the_spec_example_checkpoint_reads() -> None:
    checkpoint, note = read_checkpoint(SPEC_CHECKPOINT)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.extensions == ()
    assert note is not None and note.signatures[0].name == "example.com/behind-the-sofa"
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(SPEC_CHECKPOINT, [NoteVerifier.from_verifier_key(PETER_VKEY)])


def test_unsigned_checkpoints_read_as_unsigned_and_never_open() -> None:
    checkpoint = Checkpoint("log.example", 3, ROOT, ("ext one", "ext two"))
    text = checkpoint.text()
    assert text.endswith("\next one\next two\n")
    assert read_checkpoint(text.encode()) == (checkpoint, None)
    with pytest.raises(MalformedNoteError):
        open_checkpoint(text.encode(), [NoteVerifier.from_verifier_key(PETER_VKEY)])


B64_ROOT = base64.b64encode(ROOT).decode()
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# the same 32 bytes, with one of the two unused low bits of the last digit set
NONCANONICAL_ROOT = B64_ROOT[:-2] + _ALPHABET[_ALPHABET.index(B64_ROOT[-2]) | 1] + "="


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (f"log\n5\n{B64_ROOT}", "newline"),
        ("log\n5\n", "origin, tree size and root"),
        (f"\n5\n{B64_ROOT}\n", "empty"),
        (f"log\n5\n{B64_ROOT}\n\n", "empty"),
        (f"log\n05\n{B64_ROOT}\n", "tree size"),
        (f"log\n+5\n{B64_ROOT}\n", "tree size"),
        (f"log\n 5\n{B64_ROOT}\n", "tree size"),
        (f"log\n5_0\n{B64_ROOT}\n", "tree size"),
        (f"log\n\u0665\n{B64_ROOT}\n", "tree size"),  # an Arabic-Indic five
        (f"log\n-1\n{B64_ROOT}\n", "tree size"),
        (f"log\n{1 << 64}\n{B64_ROOT}\n", "tree size"),
        ("log\n5\nAAAA\n", "not 32"),
        (f"log\n5\n{B64_ROOT[:-2]}\n", "base64"),
        (f"log\n5\n{NONCANONICAL_ROOT}\n", "canonical"),
        (f"log\n5\n{B64_ROOT} \n", "base64"),
        (f"log\n5\n{B64_ROOT}\nbad\x07ext\n", "control"),
    ],
)
def test_malformed_checkpoints_are_refused(text: str, why: str) -> None:
    with pytest.raises(MalformedCheckpointError, match=why):
        parse_checkpoint(text)
    with pytest.raises(MalformedNoteError):  # a trailing blank line makes it a bad note
        read_checkpoint(text.encode())


def test_a_signed_note_that_is_not_a_checkpoint_does_not_open_as_one() -> None:
    key, _ = fresh_key()
    signer = NoteSigner("log.example", key)
    with pytest.raises(MalformedCheckpointError):
        open_checkpoint(sign_note("just a note\n", signer), [signer.verifier])


@pytest.mark.parametrize(
    "checkpoint",
    [
        Checkpoint("two\nlines", 1, ROOT),
        Checkpoint("", 1, ROOT),
        Checkpoint("log", -1, ROOT),
        Checkpoint("log", 1 << 64, ROOT),
        Checkpoint("log", 1, ROOT[:31]),
        Checkpoint("log", 1, ROOT, ("",)),
        Checkpoint("log", 1, ROOT, ("a\nb",)),
    ],
)
def test_checkpoints_that_cannot_be_read_back_are_not_written(checkpoint: Checkpoint) -> None:
    with pytest.raises(MalformedCheckpointError):
        checkpoint.text()


_LINE = st.text(
    st.characters(blacklist_categories=("Cs",), min_codepoint=0x20), min_size=1, max_size=20
)


@settings(max_examples=100, deadline=None)
@given(
    origin=_LINE,
    size=st.integers(0, (1 << 64) - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(_LINE, max_size=3),
)
def test_checkpoints_round_trip_through_signed_notes(
    origin: str, size: int, root: bytes, extensions: list[str]
) -> None:
    checkpoint = Checkpoint(origin, size, root, tuple(extensions))
    signer = _SIGNER
    note = sign_checkpoint(checkpoint, signer)
    assert open_checkpoint(note, [signer.verifier]) == checkpoint
    assert read_checkpoint(checkpoint.text().encode()) == (checkpoint, None)


_SIGNER = NoteSigner("prop.example", Ed25519PrivateKey.generate())


def test_errors_are_typed() -> None:
    assert issubclass(UnverifiedNoteError, SignatureError)
    assert issubclass(InvalidNoteSignatureError, SignatureError)
    assert issubclass(MalformedCheckpointError, MalformedNoteError)
    assert issubclass(MalformedNoteError, ValueError)
