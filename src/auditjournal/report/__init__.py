"""``auditjournal report``: one self-contained HTML page about a sealed export.

An auditor opens the page in a browser, without a server or network: the
run, ``verify``'s verdict on every file, the pipeline graph with how many
tokens went along each edge, a timeline of node states, outcome counts, a row
browser (search by row id, index or field value; each row's full story with
payloads and input/output diffs), and a check of the export's chunk files
that runs in the browser with WebCrypto (sha256 per chunk and the RFC 6962
Merkle root), so an auditor can re-check the files without our tools.

Records are embedded up to ``embed_limit_bytes`` of chunks (50 MB by
default); above that the page is a summary and says so. See docs/report.md.

Modules: :mod:`.summarize` (one pass over the records), :mod:`.layout` (the
graph drawing), :mod:`.model` (the page's data format), :mod:`.build`
(verify + read), :mod:`.html` (the page); ``assets/`` holds the page's HTML,
CSS and script.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import OutputPathError
from ..evidence.verify import find_manifest
from ..export.manifest import prefix_name_of
from ..fs.storage import atomic_write
from .build import gather
from .html import render_html
from .model import DEFAULT_EMBED_LIMIT_BYTES, REPORT_FORMAT, ReportData

__all__ = [
    "DEFAULT_EMBED_LIMIT_BYTES",
    "REPORT_FORMAT",
    "ReportData",
    "ReportResult",
    "write_report",
]


@dataclass(frozen=True)
class ReportResult:
    """What :func:`write_report` wrote and what the export's verification said."""

    path: Path
    bytes: int
    ok: bool  # the export verified
    summary: str  # verify's summary line
    records_embedded: bool
    record_count: int
    data: ReportData


def write_report(
    export: Path | str,
    out: Path | str,
    *,
    public_key: Path | None = None,
    hmac_key: bytes | None = None,
    embed_limit_bytes: int = DEFAULT_EMBED_LIMIT_BYTES,
    progress: Callable[[int], None] | None = None,
    now: _dt.datetime | None = None,
) -> ReportResult:
    """Verify the sealed export at ``export`` (its directory or manifest) and write the
    report page to ``out``.

    ``out`` may not name a file of the export (:class:`OutputPathError`). The page is
    written whatever the verdict (an INVALID export gets a report that
    shows why); ``ReportResult.ok`` tells whether it verified. ``public_key`` /
    ``hmac_key`` make the signature check strict, as for ``verify``. ``progress`` is
    called with bytes read (the chunks are read twice: verify, then the records).
    ``now`` fixes the report's time stamp (for reproducible pages).
    """
    target = Path(out)
    _refuse_export_files(Path(export), target)
    gathered = gather(
        Path(export),
        public_key=public_key,
        hmac_key=hmac_key,
        embed_limit_bytes=embed_limit_bytes,
        progress=progress,
        now=now,
    )
    page = render_html(gathered.data, gathered.lines)
    atomic_write(target, page, durable=False)
    return ReportResult(
        path=target,
        bytes=len(page),
        ok=gathered.verify.ok,
        summary=gathered.verify.summary(),
        records_embedded=gathered.data.records.embedded,
        record_count=gathered.data.records.count,
        data=gathered.data,
    )


def _refuse_export_files(export: Path, out: Path) -> None:
    """The report must not replace the evidence it reports on (manifest, listing, chunks)."""
    manifest = find_manifest(export)
    prefix = prefix_name_of(manifest)
    target = out.resolve()
    if target.parent == manifest.parent.resolve() and target.name.startswith(prefix):
        raise OutputPathError(f"{out} is a file of the export itself; write the report elsewhere")
