"""Our own reading of an export (SPEC §4), shared by the export tests.

Everything the auditor relies on is re-derived here with our own code (``json``,
``hashlib``, ``rfc8785``) instead of the package's helpers, so a bug in the
package cannot vouch for itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import rfc8785

from auditjournal import (
    AuditStore,
    ExportSettings,
)

PREFIX = "audit_trail"
CHUNK_RE = re.compile(r"^audit_trail\.(\d{3,})\.json$")
PAYLOAD_FIELDS = {
    "row": ("source_data",),
    "node_state": ("input_data", "output_data"),
    "routing_event": ("reason",),
    "call": ("request", "response"),
    "artifact": ("sink_input",),
}
ALL_PAYLOAD_FIELDS = {name for names in PAYLOAD_FIELDS.values() for name in names}


def ref_of(value: Any) -> str:
    """The ref of a plain-JSON payload, computed with the reference RFC 8785 library."""
    return hashlib.sha256(rfc8785.dumps(value)).hexdigest()


def roundtrip(value: Any) -> Any:
    return json.loads(json.dumps(value))


def ts_of(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def chunk_paths(directory: Path) -> list[Path]:
    """Numbered chunk files of the default prefix, in numeric order."""
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := CHUNK_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def record_lines(data: bytes) -> list[bytes]:
    """The record bytes of a chunk's lines (leading ',' and line end stripped), format-checked."""
    assert data.endswith(b"\n"), "every line of a chunk ends with a newline"
    lines = data[:-1].split(b"\n")
    assert lines[0] == b"[", f"first line is {lines[0][:40]!r}, not '['"
    records = []
    body = lines[1:-1] if lines[-1] == b"]" else lines[1:]
    for index, line in enumerate(body):
        if index == 0:
            assert not line.startswith(b","), "the first record line has no leading ','"
            records.append(line)
        else:
            assert line.startswith(b","), f"record line {index + 1} lacks its leading ','"
            records.append(line[1:])
    return records


def read_sealed_chunk(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data.endswith(b"\n]\n"), f"{path.name} is not closed with ']'"
    records = record_lines(data)
    assert records, f"{path.name} holds no record"
    json.loads(data)  # the whole chunk is one valid JSON array
    for raw in records:
        assert raw == rfc8785.dumps(json.loads(raw)), f"record is not canonical: {raw[:80]!r}"
    return records


def export_records(directory: Path) -> list[tuple[bytes, dict[str, Any]]]:
    """Every record of a sealed export, in export order: (line bytes, parsed)."""
    manifest = json.loads((directory / f"{PREFIX}.manifest.json").read_bytes())
    out = []
    for chunk in manifest["chunks"]:
        out += [(raw, json.loads(raw)) for raw in read_sealed_chunk(directory / chunk["file"])]
    return out


def export_files(directory: Path) -> dict[str, bytes]:
    """The auditor's files: chunks, manifest and sha256 listing (not checkpoints or locks)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name.startswith(PREFIX + ".")
    }


def assert_same_files(got: Path, want: Path) -> None:
    a, b = export_files(got), export_files(want)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], f"{name} differs between {got} and {want}"


def journal_lines(store: AuditStore, run_id: str) -> list[dict[str, Any]]:
    """The raw journal lines (with their ``chain`` member), parsed with json."""
    lines = []
    for segment in sorted(store.journal_dir(run_id).glob("*.jsonl")):
        lines += [json.loads(line) for line in segment.read_bytes().splitlines()]
    return lines


def journal_bytes(store: AuditStore, run_id: str) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(store.journal_dir(run_id).glob("*.jsonl")))


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 Merkle Tree Hash, written out recursively."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def check_manifest(directory: Path, store: AuditStore, rid: str, settings_: ExportSettings) -> Any:
    manifest_bytes = (directory / "audit_trail.manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    files = sorted(
        (p for p in directory.iterdir() if CHUNK_RE.match(p.name) or p.name == "audit_trail.json"),
        key=lambda p: int(CHUNK_RE.match(p.name).group(1)) if CHUNK_RE.match(p.name) else -1,
    )
    chunks = []
    leaves: list[bytes] = []
    for path in files:
        data = path.read_bytes()
        records = read_sealed_chunk(path)
        seqs = [json.loads(r)["seq"] for r in records]
        chunks.append(
            {
                "file": path.name,
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
                "record_count": len(records),
                "first_seq": seqs[0],
                "last_seq": seqs[-1],
            }
        )
        leaves += records
    lines = journal_lines(store, rid)
    completed = [line for line in lines if line["type"] == "run_completed"]
    assert len(completed) == 1
    head = completed[0]
    assert manifest["format"] == "auditjournal-export/1"
    assert manifest["run_id"] == rid
    assert manifest["run_status"] == head["status"]
    assert manifest["chunks"] == chunks
    assert manifest["chunk_count"] == len(chunks)
    assert manifest["total_record_count"] == len(leaves)
    assert manifest["include_payloads"] is settings_.include_payloads
    assert manifest["chunk_size_bytes"] == settings_.chunk_size_bytes
    assert manifest["journal_head"] == {"seq": head["seq"], "chain": head["chain"]}
    assert manifest["merkle_root"] == mth(leaves).hex()
    assert ts_of(manifest["sealed_at"]) == ts_of(head["ts"])
    assert manifest_bytes.endswith(b"\n")
    listing = (directory / "audit_trail.sha256").read_text()
    # every chunk, then the manifest (issue 15: `sha256sum -c` covers it too)
    manifest_line = f"{hashlib.sha256(manifest_bytes).hexdigest()}  audit_trail.manifest.json\n"
    assert listing == "".join(f"{c['sha256']}  {c['file']}\n" for c in chunks) + manifest_line
    return manifest
