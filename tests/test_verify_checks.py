"""One crafted export per ``verify`` check, consistent in everything else.

The tamper matrix (test_verify.py) damages files the way accidents do, so an
earlier check usually fires first and a later one is never what fails. Here a
forger re-hashes what a single check does not cover: the chunks are rewritten
with their sha256, size, counts and seq range listed anew, the Merkle root is
recomputed, the listing and the manifest are rewritten in the exporter's
layout. Each test breaks exactly one thing and expects exactly that reason
(tools/mutate.py shows every check here is needed: drop it and a test fails).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from auditjournal import AuditStore, ExportSettings, PayloadStore
from auditjournal.evidence.verify import FileCheck, VerifyReport, verify_export
from auditjournal.export.projector import encode_manifest
from auditjournal.export.replay import replay_export
from auditjournal.journal.files import JournalReader
from auditjournal.proofs.merkle import MerkleBuilder, leaf_hash
from shared import SealedDemo

MANIFEST = "audit_trail.manifest.json"
LISTING = "audit_trail.sha256"


@dataclass(frozen=True)
class Recorded:
    root: Path
    run_id: str
    other_root: Path
    other_run_id: str


@pytest.fixture(scope="module")
def recorded(sealed_demo: SealedDemo) -> Recorded:
    run = sealed_demo(3, chunk_size_bytes=6_000, signed=False)
    other = sealed_demo(2, chunk_size_bytes=6_000, signed=False)
    return Recorded(run.root, run.run_id, other.root, other.run_id)


def chunk_bytes(records: list[bytes]) -> bytes:
    """A chunk as the exporter writes it (SPEC section 4)."""
    lines = [(b"," if i else b"") + record + b"\n" for i, record in enumerate(records)]
    return b"[\n" + b"".join(lines) + b"]\n"


def record_lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")[1:-2]
    return [line[1:] if i else line for i, line in enumerate(lines)]


def seq_of(record: bytes) -> int:
    try:
        return int(json.loads(record)["seq"])
    except (ValueError, KeyError, TypeError):
        return 0  # not a record: the chunk fails on it anyway


@dataclass
class Export:
    """A private copy of the recorded store whose export a test forges."""

    root: Path
    run_id: str
    dir: Path
    manifest: dict[str, Any]
    records: list[list[bytes]]  # each chunk's record lines, without separators

    @classmethod
    def load(cls, root: Path, run_id: str, directory: Path) -> Export:
        manifest = json.loads((directory / MANIFEST).read_bytes())
        records = [record_lines((directory / c["file"]).read_bytes()) for c in manifest["chunks"]]
        return cls(root, run_id, directory, manifest, records)

    @property
    def journal(self) -> Path:
        return self.root / "runs" / self.run_id / "journal"

    def seal(
        self,
        *,
        layout: Callable[[int, list[bytes]], bytes] = lambda _i, records: chunk_bytes(records),
        edit: Callable[[dict[str, Any]], None] = lambda _m: None,
        leaves: list[bytes] | None = None,
    ) -> None:
        """Write every chunk (``layout`` makes its bytes) and everything that lists them,
        consistently; then ``edit`` the manifest before it is written."""
        builder = MerkleBuilder()
        for leaf in leaves if leaves is not None else [r for rs in self.records for r in rs]:
            builder.add(leaf_hash(leaf))
        for i, (entry, records) in enumerate(
            zip(self.manifest["chunks"], self.records, strict=True)
        ):
            data = layout(i, records)
            (self.dir / entry["file"]).write_bytes(data)
            seqs = [seq_of(r) for r in records]
            entry.update(
                sha256=hashlib.sha256(data).hexdigest(),
                bytes=len(data),
                record_count=len(records),
                first_seq=seqs[0],
                last_seq=seqs[-1],
            )
        self.manifest["chunk_count"] = len(self.manifest["chunks"])
        self.manifest["total_record_count"] = sum(len(r) for r in self.records)
        self.manifest["merkle_root"] = builder.root().hex()
        edit(self.manifest)
        self.write_manifest()

    def write_manifest(self, raw: bytes | None = None) -> None:
        (self.dir / MANIFEST).write_bytes(
            raw if raw is not None else encode_manifest(self.manifest)
        )
        listing = "".join(f"{c['sha256']}  {c['file']}\n" for c in self.manifest["chunks"])
        digest = hashlib.sha256((self.dir / MANIFEST).read_bytes()).hexdigest()
        (self.dir / LISTING).write_text(f"{listing}{digest}  {MANIFEST}\n")

    def verify(self, *, journal: bool = False) -> VerifyReport:
        payloads = PayloadStore(self.root / "payloads")
        try:
            return verify_export(self.dir, journal=(self.journal, payloads) if journal else None)
        finally:
            payloads.close()


@pytest.fixture
def export(recorded: Recorded, tmp_path: Path) -> Export:
    root = tmp_path / "audit"
    shutil.copytree(recorded.root, root, ignore=shutil.ignore_patterns("landscape.db*"))
    forged = Export.load(root, recorded.run_id, root / "runs" / recorded.run_id / "export")
    assert len(forged.records) >= 4 and all(len(r) >= 3 for r in forged.records[:-1])
    return forged


def relist_manifest(manifest: Path) -> None:
    """Make the listing's last line (the manifest's sha256) name the manifest as it is now."""
    listing = manifest.parent / LISTING
    lines = listing.read_text().splitlines(keepends=True)
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
    listing.write_text("".join(lines[:-1]) + f"{digest}  {manifest.name}\n")


def failures(report: VerifyReport) -> list[FileCheck]:
    return [c for c in report.checks if not c.ok]


def only_failure(report: VerifyReport) -> FileCheck:
    """The single INVALID file of a report (a forgery that only one check catches)."""
    bad = failures(report)
    assert len(bad) == 1, [c.line() for c in bad]
    assert not report.ok and report.summary().endswith(": INVALID")
    return bad[0]


def manifest_reason(report: VerifyReport) -> str:
    check = only_failure(report)
    assert check.file == MANIFEST
    return check.reason


def chunk_reason(
    report: VerifyReport, index: int, export: Export, counted: int | None = None
) -> str:
    """The reason the chunk is INVALID; no other chunk may be. (A chunk whose scan stops
    early holds fewer records than listed, so the manifest's totals fail too.) With
    ``counted``: the scan of that chunk stopped after so many records."""
    name = export.manifest["chunks"][index]["file"]
    bad = {c.file: c.reason for c in failures(report)}
    assert set(bad) - {MANIFEST} == {name}, bad
    if counted is not None:
        others = sum(len(r) for i, r in enumerate(export.records) if i != index)
        assert report.record_count == others + counted
    return bad[name]


def test_a_consistent_rewrite_is_valid(export: Export) -> None:
    """The forging helper itself: rewriting everything consistently keeps it VALID
    (so each test below fails only because of what it breaks)."""
    before = (export.dir / MANIFEST).read_bytes()
    export.seal()
    assert (export.dir / MANIFEST).read_bytes() == before
    report = export.verify()
    assert report.ok, [c.line() for c in report.checks]
    assert report.record_count == sum(len(r) for r in export.records)


# -- the five forgeries an unsigned export would otherwise pass ---------------------------------


def test_an_edited_record_with_the_old_merkle_root(export: Export) -> None:
    leaves = [r for rs in export.records for r in rs]
    record = json.loads(export.records[1][1])
    record["forged"] = True
    export.records[1][1] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    export.seal(leaves=leaves)  # every chunk hash is right, the root is the old one
    assert manifest_reason(export.verify()) == "Merkle root does not match the records"


def test_a_total_record_count_that_is_not_the_chunks_sum(export: Export) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["total_record_count"] += 1

    export.seal(edit=edit)
    total = sum(len(r) for r in export.records)
    assert manifest_reason(export.verify()) == (
        f"total_record_count {total + 1} but chunks hold {total}"
    )


def test_a_manifest_of_another_format(export: Export) -> None:
    export.seal(edit=lambda m: m.update(format="auditjournal-export/2"))
    assert manifest_reason(export.verify()) == (
        "malformed manifest: unknown format 'auditjournal-export/2'"
    )


@pytest.mark.parametrize("delta", [-1, 1])
def test_a_chunk_count_that_is_not_the_listed_chunks(export: Export, delta: int) -> None:
    export.seal(edit=lambda m: m.update(chunk_count=m["chunk_count"] + delta))
    n = len(export.records)
    assert manifest_reason(export.verify()) == (
        f"malformed manifest: chunk_count {n + delta} but {n} chunks listed"
    )


def test_a_record_line_without_its_leading_comma(export: Export) -> None:
    def layout(i: int, records: list[bytes]) -> bytes:
        data = chunk_bytes(records)
        return data.replace(b"\n," + records[2], b"\n" + records[2]) if i == 1 else data

    export.seal(layout=layout)
    assert chunk_reason(export.verify(), 1, export, counted=2) == (
        "record line 3 lacks its leading ','"
    )


# -- the manifest's own fields -----------------------------------------------------------------


@pytest.mark.parametrize(
    "edit",
    [
        {"merkle_tree": "rfc6962-sha512"},
        {"merkle_root": "AB" * 32},
        {"merkle_root": "ab" * 31},
    ],
    ids=["tree algorithm", "root upper case", "root too short"],
)
def test_merkle_tree_and_root_must_be_well_formed(export: Export, edit: dict[str, str]) -> None:
    export.seal(edit=lambda m: m.update(edit))
    assert (
        manifest_reason(export.verify()) == "malformed manifest: merkle_tree/merkle_root malformed"
    )


@pytest.mark.parametrize("digest", ["AB" * 32, "ab" * 31 + "a", "ab" * 32 + "a"])
def test_a_chunk_sha256_must_be_64_lowercase_hex(export: Export, digest: str) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["chunks"][2]["sha256"] = digest

    export.seal(edit=edit)
    name = export.manifest["chunks"][2]["file"]
    assert manifest_reason(export.verify()) == f"malformed manifest: chunk {name}: sha256 malformed"


def move_chunk(export: Export, index: int, new_name: str) -> None:
    entry = export.manifest["chunks"][index]
    target = export.dir / new_name
    target.parent.mkdir(exist_ok=True)
    (export.dir / entry["file"]).rename(target)
    entry["file"] = new_name


@pytest.mark.parametrize("new_name", ["sub/audit_trail.001.json", ".audit_trail.001.json"])
def test_chunk_names_must_be_plain_visible_file_names(export: Export, new_name: str) -> None:
    """Read from elsewhere (a subdirectory, a hidden file), the export would escape
    the listing's ``sha256sum -c`` and the check for unlisted chunk files."""
    move_chunk(export, 1, new_name)
    export.seal()
    assert manifest_reason(export.verify()) == (
        f"chunk file {new_name!r} is not a plain file name (refused)"
    )


def test_chunk_names_must_not_repeat(export: Export) -> None:
    export.manifest["chunks"].insert(1, dict(export.manifest["chunks"][0]))
    export.records.insert(1, list(export.records[0]))
    export.seal()
    assert manifest_reason(export.verify()) == (
        "malformed manifest: chunk file names are duplicated"
    )


def test_the_manifest_must_be_in_the_exporters_layout(export: Export) -> None:
    export.seal()
    compact = json.dumps(export.manifest, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    export.write_manifest(compact)
    assert manifest_reason(export.verify()) == (
        "not byte for byte the layout the exporter writes (edited?)"
    )


def test_a_count_edited_in_the_manifest_stops_the_root_recomputation(export: Export) -> None:
    """A chunk whose record count differs shifts every later leaf: the root cannot be
    recomputed, and both the chunk and the manifest say why."""

    def edit(m: dict[str, Any]) -> None:
        m["chunks"][1]["record_count"] += 1
        m["total_record_count"] += 1

    export.seal(edit=edit)
    report = export.verify()
    bad = {c.file: c.reason for c in failures(report)}
    n = len(export.records[1])
    total = sum(len(r) for r in export.records)
    assert bad == {
        export.manifest["chunks"][1]["file"]: f"{n} records, manifest says {n + 1}",
        MANIFEST: (
            f"total_record_count {total + 1} but chunks hold {total}; "
            "Merkle root not recomputed: chunk record counts differ from the manifest"
        ),
    }


def test_a_count_edited_in_the_last_chunk_alone(export: Export) -> None:
    """The last chunk's count is wrong, every earlier one right: the root still cannot be
    trusted (the count is what the leaf offsets come from)."""

    def edit(m: dict[str, Any]) -> None:
        m["chunks"][-1]["record_count"] -= 1

    export.seal(edit=edit)
    bad = {c.file: c.reason for c in failures(export.verify())}
    assert bad[MANIFEST].endswith(
        "Merkle root not recomputed: chunk record counts differ from the manifest"
    )


# -- one chunk's own checks -------------------------------------------------------------------


def test_a_chunk_listed_with_the_wrong_size(export: Export) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["chunks"][1]["bytes"] += 1

    export.seal(edit=edit)
    size = export.manifest["chunks"][1]["bytes"] - 1
    assert chunk_reason(export.verify(), 1, export) == f"{size} bytes, manifest says {size + 1}"


def test_a_chunk_listed_with_another_sha256(export: Export) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["chunks"][1]["sha256"] = hashlib.sha256(b"something else").hexdigest()

    export.seal(edit=edit)
    assert chunk_reason(export.verify(), 1, export) == "sha256 does not match the manifest"


@pytest.mark.parametrize(("field", "delta"), [("first_seq", -1), ("last_seq", 1)])
def test_a_chunk_listed_with_another_seq_range(export: Export, field: str, delta: int) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["chunks"][1][field] += delta

    export.seal(edit=edit)
    first, last = seq_of(export.records[1][0]), seq_of(export.records[1][-1])
    listed = (first + delta, last) if field == "first_seq" else (first, last + delta)
    assert chunk_reason(export.verify(), 1, export) == (
        f"seq range {first}..{last}, manifest says {listed[0]}..{listed[1]}"
    )


def test_seq_going_backwards_within_a_chunk(export: Export) -> None:
    records = export.records[1]
    records[1], records[2] = records[2], records[1]  # first and last seq stay the same
    export.seal()
    seq = json.loads(records[2])["seq"]
    assert chunk_reason(export.verify(), 1, export, counted=2) == (
        f"line 4: seq {seq} goes backwards"
    )


def test_seq_going_backwards_across_chunks(export: Export) -> None:
    chunks = export.manifest["chunks"]
    chunks[1], chunks[2] = chunks[2], chunks[1]
    export.records[1], export.records[2] = export.records[2], export.records[1]
    export.seal()
    first = json.loads(export.records[2][0])["seq"]
    ends = json.loads(export.records[1][-1])["seq"]
    assert chunk_reason(export.verify(), 2, export) == (
        f"first seq {first} goes backwards (the chunk before ends at {ends})"
    )


def test_equal_seqs_are_not_backwards(export: Export) -> None:
    """Several records can complete at one event (the same seq), also across chunks."""
    first = json.loads(export.records[2][0])
    first["seq"] = json.loads(export.records[1][-1])["seq"]
    export.records[2][0] = json.dumps(first, sort_keys=True, separators=(",", ":")).encode()
    second = json.loads(export.records[2][1])
    second["seq"] = first["seq"]
    export.records[2][1] = json.dumps(second, sort_keys=True, separators=(",", ":")).encode()
    export.seal()
    report = export.verify()
    assert report.ok, [c.line() for c in failures(report)]


@pytest.mark.parametrize(
    ("layout", "reason"),
    [
        (lambda d: b"[ \n" + d[2:], "first line is not '['"),
        (lambda d: b"{\n" + d[2:], "first line is not '['"),
        (lambda d: d + b"]\n", "content after the closing ']'"),
        (lambda d: d[:-2] + b"]\n[\n]\n", "content after the closing ']'"),
        (lambda d: d[:-1], "file does not end with a newline"),
        (lambda d: d[:-2], "no closing ']' (chunk not sealed or truncated)"),
    ],
    ids=["bracket and space", "brace", "second bracket", "second array", "no newline", "open"],
)
def test_chunk_layout(export: Export, layout: Callable[[bytes], bytes], reason: str) -> None:
    export.seal(
        layout=lambda i, records: layout(chunk_bytes(records)) if i == 1 else chunk_bytes(records)
    )
    assert chunk_reason(export.verify(), 1, export) == reason


def test_a_chunk_of_only_brackets(export: Export) -> None:
    """An empty array is a closed chunk of no records; its count must be listed as 0."""
    export.seal(layout=lambda i, records: b"[\n]\n" if i == 1 else chunk_bytes(records))
    reason = chunk_reason(export.verify(), 1, export)
    assert reason == f"0 records, manifest says {len(export.records[1])}"


def rewrite(record: bytes, **changes: Any) -> bytes:
    value = json.loads(record)
    value.update(changes)
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "changes",
    [{"record_type": "bogus"}, {"run_id": "run-20260101T000000Z-00000000"}],
    ids=["unknown type", "another run"],
)
def test_a_record_of_an_unknown_type_or_another_run(
    export: Export, changes: dict[str, str]
) -> None:
    export.records[1][1] = rewrite(export.records[1][1], **changes)
    export.seal()
    assert chunk_reason(export.verify(), 1, export, counted=1) == (
        "line 3: unknown record type or another run's record"
    )


@pytest.mark.parametrize(
    "line",
    [b'{"record_type":"row","run_id":"x"}', b"[1,2]", b'{"record_type":"row"'],
    ids=["no seq", "not an object", "not JSON"],
)
def test_a_line_that_is_not_a_record(export: Export, line: bytes) -> None:
    export.records[1].insert(1, line)
    export.seal(leaves=[r for rs in export.records for r in rs])

    reason = chunk_reason(export.verify(), 1, export, counted=1)
    assert reason.startswith("line 3 is not a record: ")


def test_a_missing_chunk_file(export: Export) -> None:
    export.seal()
    (export.dir / export.manifest["chunks"][1]["file"]).unlink()
    report = export.verify()
    assert chunk_reason(report, 1, export) == "missing"


def test_a_chunk_that_is_a_directory_is_missing(export: Export) -> None:
    export.seal()
    path = export.dir / export.manifest["chunks"][1]["file"]
    path.unlink()
    path.mkdir()
    assert chunk_reason(export.verify(), 1, export) == (
        f"{path}: chunk is a directory (refused: only regular files are read)"
    )


def test_a_chunk_larger_than_the_read_block(
    export: Export, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines split across read blocks, and a line longer than a block, are read whole."""
    import auditjournal.evidence.chunkscan as verify_module

    monkeypatch.setattr(verify_module, "_BLOCK", 97)
    export.seal()
    report = export.verify()
    assert report.ok, [c.line() for c in failures(report)]
    assert report.record_count == sum(len(r) for r in export.records)
    # and a check still fires from a later block
    export.records[1][-1] = rewrite(export.records[1][-1], record_type="bogus")
    export.seal()
    n = len(export.records[1]) + 1
    assert chunk_reason(export.verify(), 1, export) == (
        f"line {n}: unknown record type or another run's record"
    )


def test_unlisted_chunk_files_of_the_prefix(export: Export) -> None:
    export.seal()
    shutil.copyfile(
        export.dir / export.manifest["chunks"][0]["file"], export.dir / "audit_trail.x.json"
    )
    (export.dir / "other.json").write_text("[]\n")  # not of this prefix: not ours to judge
    check = only_failure(export.verify())
    assert (check.file, check.reason) == ("audit_trail.x.json", "chunk file not listed in manifest")


def test_a_listing_that_differs(export: Export) -> None:
    export.seal()
    listing = export.dir / LISTING
    listing.write_text(listing.read_text().replace("  ", " *", 1))  # binary mode marker
    check = only_failure(export.verify())
    assert (check.file, check.reason) == (
        LISTING,
        "does not list exactly the manifest's chunks and hashes",
    )


def test_a_malformed_manifest_stops_at_one_line(export: Export) -> None:
    export.seal()
    export.write_manifest(b'{"format": "auditjournal-export/1"}\n')
    report = export.verify()
    check = only_failure(report)
    assert check.file == MANIFEST and check.reason.startswith("malformed manifest: ")
    assert [c.file for c in report.checks] == [MANIFEST]
    assert (report.chunk_count, report.record_count, report.run_id) == (0, 0, "")
    assert report.summary() == "0/0 chunks valid, manifest signature absent, 0 records: INVALID"


def test_the_summary_counts_valid_chunks_only(export: Export) -> None:
    export.seal(
        layout=lambda i, records: chunk_bytes(records)[:-1] if i == 2 else chunk_bytes(records)
    )
    report = export.verify()
    n = len(export.records)
    assert report.summary().startswith(f"{n - 1}/{n} chunks valid, manifest signature absent, ")
    assert report.summary().endswith(": INVALID")


def test_find_manifest_says_what_is_wrong(export: Export, tmp_path: Path) -> None:
    from auditjournal.errors import ExportNotFoundError
    from auditjournal.evidence.verify import find_manifest

    with pytest.raises(ExportNotFoundError, match="does not exist"):
        find_manifest(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportNotFoundError, match=r"holds no \*\.manifest\.json"):
        find_manifest(tmp_path / "empty")
    shutil.copyfile(export.dir / MANIFEST, export.dir / "other.manifest.json")
    with pytest.raises(ExportNotFoundError, match="holds several manifests; name one"):
        find_manifest(export.dir)
    assert find_manifest(export.dir / MANIFEST) == export.dir / MANIFEST


def test_a_chunk_out_of_order_with_a_problem_of_its_own_reports_its_own(export: Export) -> None:
    chunks = export.manifest["chunks"]
    chunks[1], chunks[2] = chunks[2], chunks[1]
    export.records[1], export.records[2] = export.records[2], export.records[1]

    def edit(m: dict[str, Any]) -> None:
        m["chunks"][2]["bytes"] += 1

    export.seal(edit=edit)
    size = export.manifest["chunks"][2]["bytes"] - 1
    assert chunk_reason(export.verify(), 2, export) == f"{size} bytes, manifest says {size + 1}"


def test_a_bad_signature_is_the_reason_given_before_other_manifest_problems(
    export: Export,
) -> None:
    from auditjournal.proofs.signing import HmacSigner, sign_manifest

    leaves = [r for rs in export.records for r in rs]
    export.records[1][1] = rewrite(export.records[1][1], forged=True)

    def edit(m: dict[str, Any]) -> None:
        m.update(sign_manifest(m, HmacSigner(b"another key")))

    export.seal(leaves=leaves, edit=edit)
    report = verify_export(export.dir, hmac_key=b"the key")
    check = only_failure(report)
    assert check.file == MANIFEST and report.signature == "INVALID"
    assert check.reason == "signature: signed with a different HMAC key (key_id differs)"


def test_a_scan_stops_at_the_first_problem_across_read_blocks(
    export: Export, monkeypatch: pytest.MonkeyPatch
) -> None:
    import auditjournal.evidence.chunkscan as verify_module

    monkeypatch.setattr(verify_module, "_BLOCK", 97)
    export.records[1][1] = rewrite(export.records[1][1], record_type="bogus")
    export.records[1][-1] = rewrite(export.records[1][-1], run_id="run-20260101T000000Z-00000000")
    export.seal()
    assert chunk_reason(export.verify(), 1, export, counted=1) == (
        "line 3: unknown record type or another run's record"
    )


@pytest.mark.parametrize(
    ("layout", "reason", "counted"),
    [
        (lambda d: b"\n" + d, "first line is not '['", 0),
        (lambda d: b"x\n" + d, "first line is not '['", 0),
        (lambda d: d[:-2] + b"] \n", "record line {n} lacks its leading ','", None),
        (lambda d: d[:-2] + b"x\n", "record line {n} lacks its leading ','", None),
        (lambda d: d[:-2] + b"]]\n", "record line {n} lacks its leading ','", None),
    ],
    ids=["empty first line", "junk before the array", "bracket space", "one byte", "two brackets"],
)
def test_only_a_line_of_exactly_a_bracket_opens_or_closes(
    export: Export, layout: Callable[[bytes], bytes], reason: str, counted: int | None
) -> None:
    export.seal(
        layout=lambda i, records: layout(chunk_bytes(records)) if i == 1 else chunk_bytes(records)
    )
    n = len(export.records[1]) + 1
    expected_count = n - 1 if counted is None else counted
    assert chunk_reason(export.verify(), 1, export, counted=expected_count) == reason.format(n=n)


# -- with the journal ------------------------------------------------------------------------


def journal_check(report: VerifyReport) -> FileCheck:
    (check,) = [c for c in report.checks if c.file.startswith("journal of run")]
    return check


def test_with_the_journal_an_untouched_export_is_valid(export: Export) -> None:
    report = export.verify(journal=True)
    assert report.ok, [c.line() for c in failures(report)]
    assert [c.file for c in report.checks][-2:] == [
        f"journal of run {export.run_id}",
        f"payloads of run {export.run_id}",
    ]


def test_verifying_with_the_journal_leaves_nothing_in_the_temp_dir(
    export: Export, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fresh projection's state directory (lock, checkpoint) is made beside its
    export directory: it must be inside the temporary directory, not beside it."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    assert export.verify(journal=True).ok
    assert list(temp.iterdir()) == []


def test_a_manifest_other_than_the_sealed_one(export: Export) -> None:
    """An unchecked signature member changes nothing the fresh projection compares, so
    only the journal's export_sealed entry (the sealed manifest's sha256) catches it."""
    export.seal(
        edit=lambda m: m.update(
            signature={"algorithm": "ed25519", "key_id": "0" * 64, "value": "00"}
        )
    )
    assert export.verify().ok  # no key: the signature is present, not checked
    check = only_failure(export.verify(journal=True))
    assert check.file == f"journal of run {export.run_id}"
    assert check.reason.endswith(
        ": the export_sealed entry has another manifest sha256 than this one"
    )


@pytest.fixture
def elsewhere(export: Export, tmp_path: Path) -> Export:
    """A replay of the run to another place: no export_sealed entry speaks for it."""
    payloads = PayloadStore(export.root / "payloads")
    try:
        replay_export(
            journal_dir=export.journal,
            run_id=export.run_id,
            payloads=payloads,
            settings=ExportSettings(chunk_size_bytes=6_000),
            prefix=tmp_path / "copy" / "audit_trail",
        )
    finally:
        payloads.close()
    return Export.load(export.root, export.run_id, tmp_path / "copy")


def test_a_forged_copy_elsewhere_differs_from_the_fresh_projection(elsewhere: Export) -> None:
    """Away from the live export's place there is no export_sealed entry to compare;
    the fresh projection of the journal is what catches a consistent forgery."""
    assert elsewhere.verify(journal=True).ok
    elsewhere.records[1][1] = rewrite(elsewhere.records[1][1], forged=True)
    elsewhere.seal()
    assert elsewhere.verify().ok  # consistent: only the journal can tell
    check = only_failure(elsewhere.verify(journal=True))
    assert check.file == f"journal of run {elsewhere.run_id}"
    assert check.reason == "fresh projection differs in chunks, merkle_root"


def test_a_copy_elsewhere_with_other_settings_differs(elsewhere: Export) -> None:
    elsewhere.seal(edit=lambda m: m.update(include_payloads=False))
    check = only_failure(elsewhere.verify(journal=True))
    assert check.reason.startswith("fresh projection differs in ")
    assert "include_payloads" not in check.reason  # projected with the manifest's settings


def journal_lines(export: Export) -> tuple[Path, list[bytes]]:
    (segment,) = sorted(export.journal.glob("*.jsonl"))
    return segment, segment.read_bytes().splitlines(keepends=True)


def test_a_journal_without_its_export_sealed_entry(export: Export) -> None:
    segment, lines = journal_lines(export)
    assert b'"type":"export_sealed"' in lines[-1]
    segment.write_bytes(b"".join(lines[:-1]))
    check = only_failure(export.verify(journal=True))
    assert check.reason == (
        f"{segment}: no export_sealed entry for this run's live export (last entry removed?)"
    )


def test_a_journal_ending_in_an_incomplete_entry(export: Export) -> None:
    segment, lines = journal_lines(export)
    segment.write_bytes(b"".join(lines) + lines[-1][:40])
    check = only_failure(export.verify(journal=True))
    size = sum(len(line) for line in lines)
    assert check.reason == (
        f"{segment}: ends with an incomplete entry at offset {size} (truncated or edited)"
    )


def test_a_journal_without_run_completed(export: Export, elsewhere: Export) -> None:
    """Cut before run_completed (chain intact): for the live export its export_sealed
    entry is gone too; for a copy elsewhere there is nothing to project, said so."""
    segment, lines = journal_lines(export)
    assert b'"type":"run_completed"' in lines[-2]
    segment.write_bytes(b"".join(lines[:-2]))
    check = only_failure(elsewhere.verify(journal=True))
    assert check.reason == f"{segment}: the journal has no run_completed event"
    check = only_failure(export.verify(journal=True))
    assert check.reason.endswith(
        ": no export_sealed entry for this run's live export (last entry removed?)"
    )


def test_an_empty_journal_directory(export: Export) -> None:
    shutil.rmtree(export.journal)
    export.journal.mkdir()
    check = only_failure(export.verify(journal=True))
    assert check.reason == f"{export.journal}: the journal has no run_completed event"


REF_FIELDS = [
    "source_data_ref",
    "input_data_ref",
    "output_data_ref",
    "reason_ref",
    "request_ref",
    "response_ref",
    "sink_input_ref",
]


@pytest.fixture(scope="module")
def distinct(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run whose every payload field holds content no other field holds."""
    root = tmp_path_factory.mktemp("distinct") / "audit"
    with AuditStore.open(root) as store:
        with store.start_run(config={}, export=ExportSettings()) as run:
            src = run.register_node(plugin_name="src", node_type="source")
            sink = run.register_node(plugin_name="sink", node_type="sink")
            edge = run.register_edge(from_node_id=src, to_node_id=sink, label="continue")
            row = run.create_row(source_node_id=src, row_index=0, data={"source": 1})
            token = run.create_token(row_id=row)
            state = run.begin_node_state(
                token_id=token, node_id=sink, step_index=1, input_data={"input": 2}
            )
            run.record_call(
                state_id=state,
                call_type="http",
                status="success",
                request={"request": 3},
                response={"response": 4},
            )
            run.record_routing_event(state_id=state, edge_id=edge, reason={"reason": 5})
            run.record_artifact(
                state_id=state,
                sink_node_id=sink,
                artifact_type="file",
                path_or_uri="out.csv",
                content_hash="0" * 64,
                size_bytes=1,
                sink_input={"sink input": 6},
            )
            run.complete_node_state(state, status="completed", output_data={"output": 7})
            run.record_token_outcome(token_id=token, outcome="completed", sink_name="sink")
        return root, run.run_id


def refs_of(journal: Path, run_id: str) -> list[tuple[str, str]]:
    reader = JournalReader(journal, run_id)
    try:
        return [
            (name, ref)
            for event in reader
            for name in REF_FIELDS
            if (ref := getattr(event, name, None)) is not None
        ]
    finally:
        reader.close()


def verify_with_payloads_left_out(
    root: Path, run_id: str, left_out: set[str], tmp_path: Path
) -> FileCheck:
    """Verify against a copy of the payload store that lacks ``left_out``."""
    journal = root / "runs" / run_id / "journal"
    original = PayloadStore(root / "payloads")
    partial = PayloadStore(tmp_path / "partial")
    try:
        for _, ref in refs_of(journal, run_id):
            if ref not in left_out:
                partial.put_canonical(original.get(ref))
        partial.flush(fsync=False)
        report = verify_export(root / "runs" / run_id / "export", journal=(journal, partial))
    finally:
        original.close()
        partial.close()
    (check,) = [c for c in report.checks if c.file == f"payloads of run {run_id}"]
    return check


@pytest.mark.parametrize("field", REF_FIELDS)
def test_every_payload_ref_of_the_journal_is_checked(
    distinct: tuple[Path, str], tmp_path: Path, field: str
) -> None:
    root, run_id = distinct
    refs = refs_of(root / "runs" / run_id / "journal", run_id)
    assert sorted({name for name, _ in refs}) == sorted(REF_FIELDS)
    (missing,) = {ref for name, ref in refs if name == field}
    assert [name for name, ref in refs if ref == missing] == [field]  # in no other field
    check = verify_with_payloads_left_out(root, run_id, {missing}, tmp_path)
    assert not check.ok and missing in check.reason, check


def test_the_first_missing_payload_is_the_one_named(
    distinct: tuple[Path, str], tmp_path: Path
) -> None:
    root, run_id = distinct
    refs = [ref for _, ref in refs_of(root / "runs" / run_id / "journal", run_id)]
    check = verify_with_payloads_left_out(root, run_id, {refs[1], refs[-1]}, tmp_path)
    assert not check.ok and refs[1] in check.reason and refs[-1] not in check.reason


def test_a_damaged_pack_index_fails_the_payload_check(export: Export) -> None:
    (index,) = sorted((export.root / "payloads").glob("pack-*.idx"))
    index.write_bytes(index.read_bytes() + b"\0" * 5)
    check = only_failure(export.verify(journal=True))
    assert check.file == f"payloads of run {export.run_id}"
    assert "is not a whole number of entries" in check.reason


# -- which export the journal's export_sealed entry speaks for ------------------------------------


def record_small_run(root: Path, export: ExportSettings | None) -> str:
    with AuditStore.open(root) as store:
        with store.start_run(config={}, export=export, sql=False) as run:
            src = run.register_node(plugin_name="src", node_type="source")
            for i in range(20):
                run.create_row(source_node_id=src, row_index=i, data={"i": i, "t": "x" * 50})
        return run.run_id


def replay_to(root: Path, run_id: str, prefix: Path, chunk_size: int) -> None:
    payloads = PayloadStore(root / "payloads")
    try:
        replay_export(
            journal_dir=root / "runs" / run_id / "journal",
            run_id=run_id,
            payloads=payloads,
            settings=ExportSettings(chunk_size_bytes=chunk_size),
            prefix=prefix,
        )
    finally:
        payloads.close()


def verify_with_journal(root: Path, run_id: str, export: Path) -> VerifyReport:
    payloads = PayloadStore(root / "payloads")
    try:
        return verify_export(export, journal=(root / "runs" / run_id / "journal", payloads))
    finally:
        payloads.close()


def test_a_live_export_at_its_own_prefix_is_held_to_its_export_sealed_entry(
    tmp_path: Path,
) -> None:
    root = tmp_path / "audit"
    prefix = tmp_path / "elsewhere" / "audit_trail"
    run_id = record_small_run(root, ExportSettings(chunk_size_bytes=2_000, path_prefix=str(prefix)))
    assert verify_with_journal(root, run_id, prefix.parent).ok
    manifest = prefix.parent / MANIFEST
    value = json.loads(manifest.read_bytes())
    value["signature"] = {"algorithm": "ed25519", "key_id": "0" * 64, "value": "00"}
    manifest.write_bytes(encode_manifest(value))
    relist_manifest(manifest)  # a forger updates the listing too
    check = only_failure(verify_with_journal(root, run_id, prefix.parent))
    assert check.reason.endswith(
        ": the export_sealed entry has another manifest sha256 than this one"
    )


def test_a_run_without_a_live_export_exported_later_needs_no_export_sealed(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    run_id = record_small_run(root, None)
    export = root / "runs" / run_id / "export"
    replay_to(root, run_id, export / "audit_trail", 2_000)
    report = verify_with_journal(root, run_id, export)
    assert report.ok, [c.line() for c in failures(report)]


def test_a_replay_elsewhere_with_other_settings_is_not_the_live_export(tmp_path: Path) -> None:
    """The live export is gone; a replay elsewhere with other chunk sizes has another
    manifest than export_sealed names, and rightly so: it is not that export."""
    root = tmp_path / "audit"
    run_id = record_small_run(root, ExportSettings(chunk_size_bytes=2_000))
    shutil.rmtree(root / "runs" / run_id / "export")
    copy = tmp_path / "copy"
    replay_to(root, run_id, copy / "audit_trail", 3_000)
    report = verify_with_journal(root, run_id, copy)
    assert report.ok, [c.line() for c in failures(report)]


def test_an_export_sealed_recorded_later_speaks_for_the_export(tmp_path: Path) -> None:
    """A run recorded without a live export, exported and sealed afterwards (as
    ``project`` does): its export_sealed entry binds that export all the same."""
    from auditjournal.model.events import ExportSealed

    root = tmp_path / "audit"
    run_id = record_small_run(root, None)
    export = root / "runs" / run_id / "export"
    replay_to(root, run_id, export / "audit_trail", 2_000)
    manifest = export / MANIFEST
    with AuditStore.open(root) as store:
        assert store.append_export_event(
            run_id,
            ExportSealed(
                run_id=run_id,
                ts=store.now(),
                manifest_sha256=hashlib.sha256(manifest.read_bytes()).hexdigest(),
                chunk_count=0,
                record_count=0,
                export_path=str(manifest),
                merkle_root="",
            ),
        )
    assert verify_with_journal(root, run_id, export).ok
    value = json.loads(manifest.read_bytes())
    value["signature"] = {"algorithm": "ed25519", "key_id": "0" * 64, "value": "00"}
    manifest.write_bytes(encode_manifest(value))
    relist_manifest(manifest)  # a forger updates the listing too
    check = only_failure(verify_with_journal(root, run_id, export))
    assert check.reason.endswith(
        ": the export_sealed entry has another manifest sha256 than this one"
    )


@pytest.mark.parametrize("kind", ["dangling link", "directory"])
def test_a_manifest_that_is_not_a_regular_file_is_reported_not_read(
    tmp_path: Path, kind: str
) -> None:
    manifest = tmp_path / MANIFEST
    if kind == "directory":
        manifest.mkdir()
    else:
        manifest.symlink_to(tmp_path / "nowhere.json")
    report = verify_export(tmp_path)
    (check,) = report.checks
    assert (check.file, check.ok) == (MANIFEST, False)
    assert "refused: only regular files are read" in check.reason
    assert (report.ok, report.record_count, report.chunk_count) == (False, 0, 0)


def test_a_manifest_gone_before_it_is_read_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found, then removed before it is read (another process): reported, never VALID."""
    import auditjournal.evidence.verify as verify_module

    gone = tmp_path / MANIFEST
    monkeypatch.setattr(verify_module, "find_manifest", lambda export: gone)
    report = verify_export(tmp_path)
    assert [c.line() for c in report.checks] == [f"{MANIFEST}: INVALID: missing"]
    assert (report.ok, report.record_count) == (False, 0)


def test_a_listing_that_is_not_a_regular_file_is_reported_not_read(export: Export) -> None:
    listing = export.dir / LISTING
    listing.unlink()
    listing.mkdir()
    check = only_failure(export.verify())
    assert check.file == LISTING
    assert "listing is a directory (refused: only regular files are read)" in check.reason
