"""Render the report as one self-contained HTML file: no server, no network.

The page is ``assets/page.html`` with the stylesheet (``report.css``), the
script (``base.js`` ... ``main.js``, joined into one function scope) and the
data inlined. Data goes into ``<script type="application/json">`` blocks, which the
browser never runs; the script reads them with ``JSON.parse`` and puts every
value into the page as text (``textContent``, never ``innerHTML``). Inside
those blocks every ``<`` is written as ``\\u003c`` (the same string to a JSON
parser), so no value can close the block (``</script>``) or open a comment.

A Content-Security-Policy in the page allows exactly its own inline script and
stylesheet (by their SHA-256) and nothing else: no other script runs, and the
page cannot load or send anything over the network.

The records are embedded as a JSON array of strings, each one record's line
exactly as it is in its chunk, so the page can hash them (RFC 6962 leaves) and
compare the root with the manifest's.
"""

from __future__ import annotations

import base64
import hashlib
import html
from importlib import resources
from typing import Final

import msgspec

from .model import ReportData

__all__ = ["render_html", "script_json"]

_ENCODER: Final = msgspec.json.Encoder()
# the page's script, in this order, inside one strict-mode function scope
_SCRIPTS: Final = ("base.js", "draw.js", "rows.js", "check.js", "main.js")
_MARKERS: Final = ("@@CSP@@", "@@TITLE@@", "@@STYLE@@", "@@NOSCRIPT@@", "@@DATA@@", "@@SCRIPT@@")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def script_json(encoded: bytes) -> str:
    """JSON text safe inside a ``<script>`` block: every ``<`` escaped as ``\\u003c``.

    ``<`` can only occur inside JSON strings, where ``\\u003c`` means the same.
    """
    return encoded.replace(b"<", b"\\u003c").decode("utf-8")


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _noscript(data: ReportData) -> str:
    """What a browser without scripts shows: the verdict and where to read more."""
    v = data.verification
    return (
        f"<p>Run <b>{html.escape(data.run.run_id)}</b> ({html.escape(data.run.status)}): "
        f"{html.escape(v.summary)}</p>"
        "<p>This report draws its pages with a script; allow scripts for this file to see "
        "the graph, the timeline and the rows.</p>"
    )


def render_html(data: ReportData, lines: list[bytes] | None) -> bytes:
    """The page's bytes for ``data`` and (when embedded) the record lines."""
    style = _asset("report.css")
    script = (
        '"use strict";\n(function () {\n' + "".join(_asset(name) for name in _SCRIPTS) + "})();\n"
    )
    blocks = [
        '<script type="application/json" id="aj-data">'
        + script_json(_ENCODER.encode(data))
        + "</script>"
    ]
    if lines is not None:
        # each record line as a JSON string: the page hashes exactly these bytes
        texts = [line.decode("utf-8", errors="replace") for line in lines]
        blocks.append(
            '<script type="application/json" id="aj-records">'
            + script_json(_ENCODER.encode(texts))
            + "</script>"
        )
    csp = (
        "default-src 'none'; "
        f"script-src {_csp_hash(script)}; "
        f"style-src {_csp_hash(style)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    page = _asset("page.html")
    values = (
        html.escape(csp),
        html.escape(f"Audit report: {data.run.run_id}"),
        style,
        _noscript(data),
        "\n".join(blocks),
        script,
    )
    # one pass, so a value can never be taken for a later marker
    parts = [page]
    for marker, value in zip(_MARKERS, values, strict=True):
        head, sep, tail = parts[-1].partition(marker)
        if not sep:
            raise AssertionError(f"page.html lacks {marker}")
        parts[-1:] = [head, value, tail]
    return "".join(parts).encode("utf-8")
