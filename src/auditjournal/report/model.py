"""The report's data: what the Python side measured, embedded in the page as JSON.

One frozen msgspec Struct per part, declared once here; :mod:`.html` encodes a
:class:`ReportData` into the page and its script (``assets/*.js``) draws it. The
format is versioned (``REPORT_FORMAT``); new fields get defaults.

Everything here is computed from the sealed export alone (manifest and chunk
files), so a report can be made where the journal and database are absent.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

__all__ = [
    "DEFAULT_EMBED_LIMIT_BYTES",
    "REPORT_FORMAT",
    "FileVerdict",
    "Graph",
    "GraphEdge",
    "GraphNode",
    "RecordsInfo",
    "ReportData",
    "RunInfo",
    "Timeline",
    "TimelineLane",
    "Verification",
]

REPORT_FORMAT: Final = "auditjournal-report/1"
# Records are embedded (row browser, in-page check of the embedded records) when the
# export's chunks hold at most this many bytes; the page stays responsive up to about
# this size in a browser (see docs/report.md).
DEFAULT_EMBED_LIMIT_BYTES: Final = 50_000_000


class FileVerdict(msgspec.Struct, frozen=True):
    """``verify``'s verdict on one file of the export."""

    file: str
    valid: bool
    reason: str = ""


class Verification(msgspec.Struct, frozen=True):
    """What ``verify_export`` said when the report was made."""

    ok: bool
    summary: str
    signature: str
    record_count: int
    chunk_count: int
    files: list[FileVerdict]
    checked_at: str


class RunInfo(msgspec.Struct, frozen=True):
    """The run as its ``run`` record and the manifest describe it."""

    run_id: str
    status: str
    started_at: str | None
    completed_at: str | None
    sealed_at: str | None
    config: Any = None
    error: Any = None


class GraphNode(msgspec.Struct, frozen=True):
    """A node with its place in the drawing (top-left corner) and its states by status."""

    node_id: str
    plugin_name: str
    plugin_version: str
    node_type: str
    determinism: str
    layer: int
    x: float
    y: float
    states: dict[str, int]


class GraphEdge(msgspec.Struct, frozen=True):
    """An edge, how many tokens went along it, and its drawn path (SVG ``d``)."""

    edge_id: str
    from_node_id: str
    to_node_id: str
    label: str
    mode: str
    tokens: int
    routing_events: int
    path: str
    label_x: float
    label_y: float


class Graph(msgspec.Struct, frozen=True):
    """The pipeline graph, laid out in layers by topological depth."""

    nodes: list[GraphNode]
    edges: list[GraphEdge]
    width: float
    height: float
    node_width: float
    node_height: float
    # moves between two nodes that no single edge explains (no edge, or several
    # edges without a routing event to choose between them)
    unattributed: int = 0


class TimelineLane(msgspec.Struct, frozen=True):
    """One node's states over the run: per status, how many ended in each time bin."""

    node_id: str
    first_started: str | None
    last_ended: str | None
    bins: dict[str, list[int]]


class Timeline(msgspec.Struct, frozen=True):
    """Node states over time: ``bin_count`` equal bins from ``start`` to ``end``."""

    start: str | None
    end: str | None
    bin_count: int
    lanes: list[TimelineLane]


class RecordsInfo(msgspec.Struct, frozen=True):
    """Whether the records are in the page, and why not when they are not."""

    embedded: bool
    limit_bytes: int
    export_bytes: int
    count: int
    note: str = ""


class ReportData(msgspec.Struct, frozen=True):
    """Everything the page shows besides the records themselves."""

    format: str
    generator: str
    generated_at: str
    export_dir: str
    manifest_file: str
    manifest_sha256: str
    manifest: Any
    run: RunInfo
    verification: Verification
    counts: dict[str, int]
    states_by_status: dict[str, int]
    calls_by_status: dict[str, int]
    outcomes: dict[str, int]
    outcomes_by_sink: dict[str, int]
    graph: Graph
    timeline: Timeline
    records: RecordsInfo
    unreadable_lines: int = 0
