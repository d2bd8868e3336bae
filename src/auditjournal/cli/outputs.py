"""Commands that turn a sealed export into something other tools and people open:
``report`` (one HTML page)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..report import DEFAULT_EMBED_LIMIT_BYTES, write_report
from ._base import _byte_progress, _hmac_key, cli


@cli.command()
@click.argument("export", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The HTML file to write (one self-contained page).",
)
@click.option(
    "--embed-limit",
    type=click.IntRange(min=0),
    default=DEFAULT_EMBED_LIMIT_BYTES,
    show_default=True,
    metavar="BYTES",
    help="Embed the records (row browser) only when the chunks hold at most this many bytes.",
)
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Ed25519 public key (PEM) the manifest signature must verify with.",
)
@click.option("--hmac-key-env", default=None, metavar="NAME", help="Variable holding the HMAC key.")
def report(
    export: Path, out: Path, embed_limit: int, public_key: Path | None, hmac_key_env: str | None
) -> None:
    """Write an HTML report of a sealed export (EXPORT = its directory or manifest).

    The page needs no server or network: run summary, verify's verdict per file,
    the pipeline graph, a timeline of node states, outcomes, a row browser, and a
    check of the chunk files that runs in the browser. Exit 1 if the export does
    not verify (the report is still written and shows why).
    """
    hmac_key = _hmac_key(hmac_key_env)
    with _byte_progress(export, "verifying and reading") as bar:
        # the chunks are read twice (verify, then the records): half a step per byte
        progress = None if bar is None else (lambda n: bar(n // 2))
        result = write_report(
            export,
            out,
            public_key=public_key,
            hmac_key=hmac_key,
            embed_limit_bytes=embed_limit,
            progress=progress,
        )
    embedded = (
        "records embedded" if result.records_embedded else "summary only (records not embedded)"
    )
    click.echo(f"{result.path}: {result.bytes:,} bytes, {embedded}")
    click.echo(result.summary)
    if not result.ok:
        sys.exit(1)
