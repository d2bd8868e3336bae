"""Gather a report's data from a sealed export: verify it, read its records once.

The export is verified with :func:`auditjournal.evidence.verify.verify_export` (the
same checks as ``auditjournal verify``) and its verdict goes into the page.
Then the chunks listed in the manifest are read in order, once: every record
is summarized (:mod:`.summarize`), and when the chunks hold at most
``embed_limit_bytes`` the record lines themselves are kept for the page's
row browser. A tampered or missing chunk does not stop the report: it is
shown INVALID, and whatever can be read is summarized.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from .. import __version__
from ..evidence.verify import VerifyReport, find_manifest, verify_export
from ..export.chunks import iter_chunk_records
from .layout import NODE_HEIGHT, NODE_WIDTH, layout
from .model import (
    DEFAULT_EMBED_LIMIT_BYTES,
    REPORT_FORMAT,
    FileVerdict,
    Graph,
    GraphEdge,
    GraphNode,
    RecordsInfo,
    ReportData,
    RunInfo,
    Timeline,
    TimelineLane,
    Verification,
)
from .summarize import BIN_COUNT, Summary, parse_ts, summarize

__all__ = ["Gathered", "gather"]


@dataclass(frozen=True)
class Gathered:
    """The page's data and, when embedded, the record lines in export order."""

    data: ReportData
    lines: list[bytes] | None
    verify: VerifyReport


def _iso(ts: _dt.datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(_dt.UTC).isoformat().replace("+00:00", "Z")


def _chunk_paths(directory: Path, manifest: Any) -> list[Path]:
    """The chunk files the manifest lists that exist, in manifest order."""
    try:
        names = [str(c["file"]) for c in manifest["chunks"]]
    except (TypeError, KeyError):
        return []
    paths = []
    for name in names:
        path = directory / name
        # verify reports odd names; the report reads only plain files beside the manifest
        if "/" not in name and not name.startswith(".") and path.is_file():
            paths.append(path)
    return paths


def gather(
    export: Path,
    *,
    public_key: Path | None = None,
    hmac_key: bytes | None = None,
    embed_limit_bytes: int = DEFAULT_EMBED_LIMIT_BYTES,
    progress: Callable[[int], None] | None = None,
    now: _dt.datetime | None = None,
) -> Gathered:
    """Verify ``export`` (directory or manifest) and gather everything the page shows."""
    manifest_path = find_manifest(Path(export))
    report = verify_export(
        manifest_path, public_key=public_key, hmac_key=hmac_key, progress=progress
    )
    checked_at = _iso(now or _dt.datetime.now(_dt.UTC))
    raw = manifest_path.read_bytes()
    try:
        manifest: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        manifest = None
    if not isinstance(manifest, dict):
        manifest = {}
    paths = _chunk_paths(manifest_path.parent, manifest)
    export_bytes = sum(p.stat().st_size for p in paths)
    embedded = export_bytes <= embed_limit_bytes
    kept: list[bytes] | None = [] if embedded else None

    def lines() -> Iterator[bytes]:
        for path in paths:
            for line in iter_chunk_records(path):
                if kept is not None:
                    kept.append(line)
                yield line
            if progress is not None:
                progress(path.stat().st_size)

    sealed = parse_ts(manifest.get("sealed_at"))
    summary = summarize(lines(), end=sealed)
    data = ReportData(
        format=REPORT_FORMAT,
        generator=f"auditjournal {__version__}",
        generated_at=checked_at or "",
        export_dir=str(manifest_path.parent.resolve()),
        manifest_file=manifest_path.name,
        manifest_sha256=hashlib.sha256(raw).hexdigest(),
        manifest=manifest,
        run=_run_info(summary, manifest),
        verification=_verification(report, checked_at or ""),
        counts=dict(summary.counts),
        states_by_status=dict(summary.states_by_status),
        calls_by_status=dict(summary.calls_by_status),
        outcomes=dict(summary.outcomes),
        outcomes_by_sink=dict(summary.outcomes_by_sink),
        graph=_graph(summary),
        timeline=_timeline(summary),
        records=_records_info(embedded, embed_limit_bytes, export_bytes, summary),
        unreadable_lines=summary.unreadable_lines,
    )
    return Gathered(data, kept, report)


def _verification(report: VerifyReport, checked_at: str) -> Verification:
    return Verification(
        ok=report.ok,
        summary=report.summary(),
        signature=report.signature,
        record_count=report.record_count,
        chunk_count=report.chunk_count,
        files=[FileVerdict(c.file, c.ok, c.reason) for c in report.checks],
        checked_at=checked_at,
    )


def _run_info(summary: Summary, manifest: dict[str, Any]) -> RunInfo:
    run = summary.run or {}
    return RunInfo(
        run_id=str(run.get("run_id") or manifest.get("run_id") or ""),
        status=str(run.get("status") or manifest.get("run_status") or "unknown"),
        started_at=run.get("started_at"),
        completed_at=run.get("completed_at"),
        sealed_at=manifest.get("sealed_at"),
        config=run.get("config"),
        error=run.get("error"),
    )


def _graph(summary: Summary) -> Graph:
    node_ids = list(summary.nodes)
    edges = list(summary.edges.values())
    shape = layout(node_ids, [(e.from_node_id, e.to_node_id) for e in edges])
    nodes = [
        GraphNode(
            node_id=n.node_id,
            plugin_name=n.plugin_name,
            plugin_version=n.plugin_version,
            node_type=n.node_type,
            determinism=n.determinism,
            layer=shape.layer[n.node_id],
            x=shape.position[n.node_id][0],
            y=shape.position[n.node_id][1],
            states=dict(n.states),
        )
        for n in summary.nodes.values()
    ]
    drawn = [
        GraphEdge(
            edge_id=e.edge_id,
            from_node_id=e.from_node_id,
            to_node_id=e.to_node_id,
            label=e.label,
            mode=e.mode,
            tokens=e.tokens,
            routing_events=e.routing_events,
            path=s.path,
            label_x=s.label_x,
            label_y=s.label_y,
        )
        for e, s in zip(edges, shape.edges, strict=True)
    ]
    return Graph(
        nodes=nodes,
        edges=drawn,
        width=shape.width,
        height=shape.height,
        node_width=NODE_WIDTH,
        node_height=NODE_HEIGHT,
        unattributed=summary.unattributed,
    )


def _timeline(summary: Summary) -> Timeline:
    lanes = [
        TimelineLane(
            node_id=n.node_id,
            first_started=_iso(n.first_started),
            last_ended=_iso(n.last_ended),
            bins=n.bins,
        )
        for n in summary.nodes.values()
        if n.states
    ]
    return Timeline(_iso(summary.start), _iso(summary.end), BIN_COUNT, lanes)


def _records_info(embedded: bool, limit: int, size: int, summary: Summary) -> RecordsInfo:
    count = sum(summary.counts.values())
    if embedded:
        return RecordsInfo(True, limit, size, count)
    note = (
        f"The export's chunks hold {size:,} bytes, more than the {limit:,} bytes this report "
        "embeds, so the row browser and the in-page check of embedded records are left out. "
        "Use `auditjournal explain` or `auditjournal extract --row ID` for one row's story; "
        "the file check below still works."
    )
    return RecordsInfo(False, limit, size, count, note)
