"""Named results and what moved out of the CLI (issue 11 item 5): replay's settings, the
bundle report's lines, the chain value stored in a journal line, one chunk's scan."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditjournal import ExportSettings
from auditjournal.evidence.chunkscan import ChunkScan, scan_chunk
from auditjournal.evidence.extract import BundleCheck, BundleReport
from auditjournal.export.chunks import ChunkLines
from auditjournal.export.manifest import ChunkEntry
from auditjournal.export.replay import RECORDED, replay_settings
from auditjournal.journal.lines import CHAIN_TAIL, seal, stored_chain
from auditjournal.model.events import RowCreated, encode_event

# -- replay_settings ------------------------------------------------------------------------

SIGNED = ExportSettings(
    include_payloads=True, chunk_size_bytes=5000, sign="ed25519", signing_key_file="k.pem"
)


def test_a_replay_keeps_the_recorded_settings_unless_told_otherwise() -> None:
    assert replay_settings(SIGNED) == SIGNED
    assert replay_settings(SIGNED, chunk_size_bytes=RECORDED) == SIGNED


def test_a_replay_can_drop_payloads_rechunk_and_unsign() -> None:
    got = replay_settings(SIGNED, include_payloads=False, chunk_size_bytes=None, sign=False)
    assert got == ExportSettings(include_payloads=False, chunk_size_bytes=None)


def test_payloads_are_never_added_to_a_run_exported_without_them() -> None:
    refs_only = ExportSettings(include_payloads=False)
    assert replay_settings(refs_only, include_payloads=True).include_payloads is False


def test_another_key_file_signs_with_ed25519() -> None:
    hmac = ExportSettings(sign="hmac-sha256")
    got = replay_settings(hmac, signing_key_file="other.pem")
    assert (got.sign, got.signing_key_file) == ("ed25519", "other.pem")
    assert replay_settings(hmac).sign == "hmac-sha256"
    assert replay_settings(SIGNED, signing_key_file="other.pem").signing_key_file == "other.pem"


# -- the bundle report ------------------------------------------------------------------------


def test_the_bundle_report_formats_its_lines_and_json() -> None:
    report = BundleReport(
        [BundleCheck("manifest", True), BundleCheck("row seq 4 (#3)", False, "altered")]
    )
    assert report.text() == [
        "manifest: valid",
        "row seq 4 (#3): INVALID: altered",
        "0/1 records proven, manifest signature absent: INVALID",
    ]
    assert report.as_dict() == {
        "ok": False,
        "lines": [
            {"item": "manifest", "valid": True, "reason": ""},
            {"item": "row seq 4 (#3)", "valid": False, "reason": "altered"},
        ],
        "summary": report.summary(),
    }
    name, ok, reason = report.lines[1]  # still unpacks as before
    assert (name, ok, reason) == ("row seq 4 (#3)", False, "altered")


# -- the chain value stored in a journal line ---------------------------------------------


@given(st.text(max_size=40), st.binary(min_size=32, max_size=32), st.integers(1, 2**40))
def test_stored_chain_reads_the_chain_a_sealed_line_ends_with(
    row_id: str, previous: bytes, seq: int
) -> None:
    event = RowCreated(
        run_id="r",
        seq=seq,
        ts=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        row_id=row_id,
        source_node_id="n",
        row_index=0,
        source_data_hash="0" * 64,
        source_data_ref="0" * 64,
    )
    line, chain = seal(encode_event(event), previous)
    window = b"junk\n" + line + b"next"
    assert stored_chain(window, 4 + len(line)) == chain
    assert line[-CHAIN_TAIL:-3] == chain.hex().encode()


def test_stored_chain_refuses_a_short_line() -> None:
    with pytest.raises(ValueError):
        stored_chain(b'"}\n', 2)


# -- one chunk's scan, by name ----------------------------------------------------------------


def test_a_chunk_scan_names_what_it_found(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    lines = [
        b'{"record_type":"row","run_id":"r","seq":3}',
        b'{"record_type":"row","run_id":"r","seq":5}',
    ]
    data = b"[\n" + lines[0] + b"\n," + lines[1] + b"\n]\n"
    path.write_bytes(data)
    entry = ChunkEntry("c.json", hashlib.sha256(data).hexdigest(), len(data), 2, 3, 5)
    scan = scan_chunk(str(path), entry, "r", 0)
    assert isinstance(scan, ChunkScan)
    assert (scan.problem, scan.count, scan.first, scan.last, scan.size) == ("", 2, 3, 5, len(data))
    wrong = ChunkEntry("c.json", entry.sha256, len(data), 2, 3, 6)
    assert scan_chunk(str(path), wrong, "r", 0).problem == "seq range 3..5, manifest says 3..6"
    os.unlink(path)
    assert scan_chunk(str(path), entry, "r", 0).problem == "missing"


# -- the one chunk-line reader ----------------------------------------------------------------


def _chunk(records: list[bytes]) -> bytes:
    body = b"".join((b"" if i == 0 else b",") + r + b"\n" for i, r in enumerate(records))
    return b"[\n" + body + b"]\n"


def _read(data: bytes, cuts: list[int], strict: bool) -> tuple[list[bytes], ChunkLines]:
    """Feed ``data`` in blocks of whole lines ending near the ``cuts``, as readers do."""
    lines = ChunkLines(strict=strict)
    out: list[bytes] = []
    carry = b""
    for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(data)], strict=True):
        block = carry + data[a:b]
        end = block.rfind(b"\n") + 1
        carry = block[end:]
        view = memoryview(bytearray(block))
        out += [bytes(r) for r in lines.records(view.obj, end, view)]  # type: ignore[arg-type]
        view.release()
    return out, lines


@given(
    st.lists(st.binary(min_size=1, max_size=30).filter(lambda b: b"\n" not in b), max_size=8),
    st.lists(st.integers(0, 400), max_size=6),
)
def test_the_chunk_reader_yields_the_records_whatever_the_blocks(
    records: list[bytes], cuts: list[int]
) -> None:
    records = [b"{" + r + b"}" for r in records]  # never a bare "[" or "]" line
    data = _chunk(records)
    cuts = [c for c in cuts if c <= len(data)]
    for strict in (True, False):
        got, lines = _read(data, cuts, strict)
        assert got == records
        assert lines.closed and not lines.problem and lines.count == len(records)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b'{"a":1}\n]\n', "first line is not '['"),
        (b"]\n", "first line is not '['"),
        (b'[\n{"a":1}\n{"b":2}\n]\n', "record line 2 lacks its leading ','"),
        (b'[\n{"a":1}\n]\n,{"b":2}\n', "content after the closing ']'"),
        (b'[\n{"a":1}\n]\n]\n', "content after the closing ']'"),
    ],
)
def test_the_strict_chunk_reader_says_where_the_layout_breaks(data: bytes, problem: str) -> None:
    _records, lines = _read(data, [], strict=True)
    assert lines.problem == problem


def test_the_lenient_chunk_reader_skips_brackets_and_separators() -> None:
    got, lines = _read(b'{"a":1}\n[\n,{"b":2}\n]\n', [], strict=False)
    assert got == [b'{"a":1}', b'{"b":2}'] and lines.closed and not lines.problem


@given(st.binary(max_size=200))
def test_the_primed_leaf_hasher_gives_the_leaf_hash(data: bytes) -> None:
    from auditjournal.proofs.merkle import leaf_hash, leaf_hasher

    h = leaf_hasher()
    h.update(data)
    assert h.digest() == leaf_hash(data) == hashlib.sha256(b"\x00" + data).digest()
