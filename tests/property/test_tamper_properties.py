"""SPEC §9: any flipped byte, removed, reordered or appended line, truncation, a
chunk swapped for another run's, or a re-signature in chunks, manifest,
``audit_trail.sha256``, journal or payload packs is reported by ``verify``.

Hypothesis picks the file, the damage and where it goes. ``verify`` runs with
the journal and the public key (the strongest check the CLI offers), as the
library call and as ``auditjournal verify``; both must say INVALID and name
what is damaged. Each example restores the file it damaged.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditjournal import PayloadStore
from auditjournal.cli import main
from auditjournal.evidence.verify import VerifyReport, verify_export
from shared import Keys, SealedDemo

CHUNK_RE = re.compile(r"^audit_trail\.\d{3,}\.json$")
TEXT_TARGETS = ("chunk", "manifest", "listing", "journal")
BINARY_TARGETS = ("pack", "index")


@dataclass(frozen=True)
class Recorded:
    root: Path
    run_id: str
    public_key: Path
    foreign_chunks: list[Path] = field(repr=False)  # chunks of a run in another store
    foreign_lines: list[bytes] = field(repr=False)  # its record lines (valid, wrong run)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how hypothesis shows it
        printer.text(f"Recorded(run_id={self.run_id!r})")

    @property
    def export(self) -> Path:
        return self.root / "runs" / self.run_id / "export"

    def files(self) -> dict[str, list[Path]]:
        export = self.export
        return {
            "chunk": sorted(p for p in export.iterdir() if CHUNK_RE.match(p.name)),
            "manifest": [export / "audit_trail.manifest.json"],
            "listing": [export / "audit_trail.sha256"],
            "journal": sorted((self.root / "runs" / self.run_id / "journal").glob("*.jsonl")),
            "pack": sorted((self.root / "payloads").glob("pack-*.dat")),
            "index": sorted((self.root / "payloads").glob("pack-*.idx")),
        }

    def verify(self) -> VerifyReport:
        payloads = PayloadStore(self.root / "payloads")
        try:
            return verify_export(
                self.export,
                journal=(self.root / "runs" / self.run_id / "journal", payloads),
                public_key=self.public_key,
            )
        finally:
            payloads.close()

    def cli(self) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        argv = ["verify", str(self.export), "--journal", str(self.root), self.run_id]
        argv += ["--public-key", str(self.public_key)]
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
            except SystemExit as exc:
                code = int(exc.code or 0)
        return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def recorded(sealed_demo: SealedDemo, keys: Keys) -> Recorded:
    run = sealed_demo(8, chunk_size_bytes=4000)
    other = sealed_demo(5, chunk_size_bytes=4000)
    foreign = sorted(p for p in other.export_dir.iterdir() if CHUNK_RE.match(p.name))
    lines = [
        line.lstrip(b",")
        for path in foreign
        for line in path.read_bytes().split(b"\n")
        if line not in (b"[", b"]", b"")
    ]
    return Recorded(run.root, run.run_id, keys.public, foreign, lines)


def test_the_untouched_store_is_valid(recorded: Recorded) -> None:
    report = recorded.verify()
    assert report.ok, [c.line() for c in report.checks if not c.ok]
    assert report.signature == "valid"
    code, out, _ = recorded.cli()
    assert code == 0 and "INVALID" not in out
    assert len(recorded.files()["chunk"]) >= 3


# -- damage --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Damaged:
    """Damaged file content; shown by its description only (hypothesis prints draws)."""

    what: str
    data: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"Damaged({self.what!r})"


def lines_of(data: bytes) -> tuple[list[bytes], bytes]:
    """The complete lines (without newline) and what follows the last newline."""
    parts = data.split(b"\n")
    return parts[:-1], parts[-1]


def join(lines: list[bytes], tail: bytes) -> bytes:
    return b"".join(line + b"\n" for line in lines) + tail


@st.composite
def text_damage(draw: st.DrawFn, recorded: Recorded, data: bytes) -> Damaged:
    lines, tail = lines_of(data)
    kind = draw(st.sampled_from(["flip", "delete line", "swap lines", "truncate", "append line"]))
    if kind == "flip":
        pos = draw(st.integers(0, len(data) - 1))
        mask = draw(st.integers(1, 255))
        out = bytearray(data)
        out[pos] ^= mask
        return Damaged(f"flip byte {pos} ^ {mask:#x}", bytes(out))
    if kind == "delete line":
        i = draw(st.integers(0, len(lines) - 1))
        return Damaged(f"delete line {i}", join(lines[:i] + lines[i + 1 :], tail))
    if kind == "swap lines":
        i = draw(st.integers(0, len(lines) - 1))
        j = draw(st.integers(0, len(lines) - 1).filter(lambda j: lines[j] != lines[i]))
        swapped = list(lines)
        swapped[i], swapped[j] = swapped[j], swapped[i]
        return Damaged(f"swap lines {i} and {j}", join(swapped, tail))
    if kind == "truncate":
        size = draw(st.integers(0, len(data) - 1))
        return Damaged(f"truncate to {size} bytes", data[:size])
    line = draw(
        st.one_of(
            st.sampled_from(lines),  # a copy of one of its own lines
            st.sampled_from(recorded.foreign_lines).map(lambda b: b"," + b),
            st.binary(min_size=0, max_size=40).filter(lambda b: b"\n" not in b),
        )
    )
    newline = draw(st.booleans())
    return Damaged(f"append {line[:40]!r}", data + line + (b"\n" if newline else b""))


@st.composite
def binary_damage(draw: st.DrawFn, data: bytes) -> Damaged:
    kind = draw(st.sampled_from(["flip", "truncate", "cut", "swap"]))
    if kind == "flip":
        pos = draw(st.integers(0, len(data) - 1))
        mask = draw(st.integers(1, 255))
        out = bytearray(data)
        out[pos] ^= mask
        return Damaged(f"flip byte {pos} ^ {mask:#x}", bytes(out))
    if kind == "truncate":
        size = draw(st.integers(0, len(data) - 1))
        return Damaged(f"truncate to {size} bytes", data[:size])
    if kind == "cut":
        pos = draw(st.integers(0, len(data) - 1))
        size = draw(st.integers(1, 64))
        return Damaged(f"cut {size} bytes at {pos}", data[:pos] + data[pos + size :])
    size = draw(st.integers(1, 48))
    a = draw(st.integers(0, len(data) - 2 * size))
    b = draw(st.integers(a + size, len(data) - size))
    swapped = data[:a] + data[b : b + size] + data[a + size : b] + data[a : a + size]
    return Damaged(f"swap {size} bytes at {a} and {b}", swapped + data[b + size :])


def check_reported(recorded: Recorded, target: str, path: Path, what: str) -> None:
    report = recorded.verify()
    invalid = [c.line() for c in report.checks if not c.ok]
    assert not report.ok, f"{target} {path.name}: {what} was not detected"
    # what the INVALID lines must name: the file, or for the shared payload store the
    # payload that can no longer be found or whose pack record is damaged
    mention = "payload" if target in BINARY_TARGETS else path.name
    assert any(mention in line for line in invalid), (what, invalid)
    code, out, err = recorded.cli()
    assert code == 1, (what, out, err)
    assert "Traceback" not in out + err
    assert any(line.split(": ", 1)[1].startswith("INVALID") for line in out.splitlines()[:-1])
    assert any("INVALID" in line and mention in line for line in out.splitlines()), out
    assert out.splitlines()[-1].endswith(": INVALID")


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_damage_to_any_file_is_reported(recorded: Recorded, data: st.DataObject) -> None:
    files = recorded.files()
    target = data.draw(st.sampled_from(TEXT_TARGETS + BINARY_TARGETS), label="target")
    path = data.draw(st.sampled_from(files[target]), label="file")
    original = path.read_bytes()
    if target in TEXT_TARGETS:
        damage = data.draw(text_damage(recorded, original), label="damage")
    else:
        damage = data.draw(binary_damage(original), label="damage")
    what, damaged = damage.what, damage.data
    if damaged == original:
        return  # e.g. a line swapped with an identical one: nothing to detect
    path.write_bytes(damaged)
    try:
        check_reported(recorded, target, path, what)
    finally:
        path.write_bytes(original)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_a_chunk_replaced_by_another_runs_valid_chunk_is_reported(
    recorded: Recorded, data: st.DataObject
) -> None:
    chunks = recorded.files()["chunk"]
    victim = data.draw(st.sampled_from(chunks), label="victim")
    foreign = data.draw(st.sampled_from(recorded.foreign_chunks), label="foreign")
    original = victim.read_bytes()
    shutil.copyfile(foreign, victim)
    try:
        check_reported(recorded, "chunk", victim, f"replaced by {foreign.name} of another run")
    finally:
        victim.write_bytes(original)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    member=st.sampled_from(["run_status", "sealed_at", "merkle_root", None]),
    keep_key_id=st.booleans(),
)
def test_a_manifest_resigned_with_another_key_is_reported(
    recorded: Recorded, member: str | None, keep_key_id: bool
) -> None:
    path = recorded.files()["manifest"][0]
    original = path.read_bytes()
    manifest = json.loads(original)
    if member == "merkle_root":
        manifest[member] = hashlib.sha256(b"forged").hexdigest()
    elif member is not None:
        manifest[member] = "forged"
    forger = Ed25519PrivateKey.generate()
    raw = forger.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    body = {k: v for k, v in manifest.items() if k != "signature"}
    manifest["signature"] = {
        "algorithm": "ed25519",
        "key_id": manifest["signature"]["key_id"]
        if keep_key_id
        else hashlib.sha256(raw).hexdigest(),
        "value": forger.sign(rfc8785.dumps(body)).hex(),
    }
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    try:
        check_reported(recorded, "manifest", path, f"re-signed, {member} changed")
        report = recorded.verify()
        assert report.signature == "INVALID"
    finally:
        path.write_bytes(original)
