"""Commands that turn a sealed export into something other tools and people open:
``report`` (one HTML page) and ``openlineage`` (the run's lineage events)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..errors import OutputPathError
from ..evidence.verify import verify_work
from ..report import DEFAULT_EMBED_LIMIT_BYTES, write_report
from ._base import _byte_progress, _check_output, _hmac_key, cli

_OPENLINEAGE_MISSING = (
    "the openlineage command needs the OpenLineage client: "
    "pip install 'auditjournal[openlineage]' (or pip install openlineage-python)"
)


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
    _check_output(out, directory=False)
    # the chunks are read twice (verify, then the records): the bar counts both
    with _byte_progress(export, "verifying and reading", 2 * verify_work(export)) as progress:
        try:
            result = write_report(
                export,
                out,
                public_key=public_key,
                hmac_key=hmac_key,
                embed_limit_bytes=embed_limit,
                progress=progress,
            )
        except OutputPathError as exc:
            raise click.UsageError(str(exc)) from None
    embedded = (
        "records embedded" if result.records_embedded else "summary only (records not embedded)"
    )
    click.echo(f"{result.path}: {result.bytes:,} bytes, {embedded}")
    click.echo(result.summary)
    if not result.ok:
        sys.exit(1)


@cli.command()
@click.argument("export", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append the events to this file (one JSON event per line).",
)
@click.option("--url", default=None, help="Send the events to this OpenLineage HTTP endpoint.")
@click.option(
    "--endpoint",
    default="api/v1/lineage",
    show_default=True,
    help="Path of the lineage API under --url.",
)
@click.option(
    "--namespace",
    envvar="OPENLINEAGE_NAMESPACE",
    default="auditjournal",
    show_default=True,
    help="The job's namespace (env OPENLINEAGE_NAMESPACE).",
)
@click.option("--job-name", default=None, help="The job's name (default: from the run config).")
def openlineage(
    export: Path,
    out: Path | None,
    url: str | None,
    endpoint: str,
    namespace: str,
    job_name: str | None,
) -> None:
    """Emit the run's OpenLineage START and COMPLETE/FAIL/ABORT events for a sealed export.

    Without --out or --url the events are printed, one JSON object per line. The
    API key for --url is read from OPENLINEAGE_API_KEY, as the client does.
    """
    if out is not None and url is not None:
        raise click.UsageError("give --out or --url, not both")
    if out is not None:
        _check_output(out, directory=False)
    try:
        from ..integrations import openlineage as ol
    except ImportError:
        raise click.UsageError(_OPENLINEAGE_MISSING) from None
    events = ol.events_from_export(export, namespace=namespace, job_name=job_name)
    if out is None and url is None:
        for event in events:
            click.echo(ol.to_json(event))
        return
    api_key = os.environ.get("OPENLINEAGE_API_KEY") or None
    target = ol.emit(events, out=out, url=url, endpoint=endpoint, api_key=api_key)
    names = ", ".join(ol.event_type(e) for e in events)
    click.echo(f"{len(events)} OpenLineage event(s) ({names}) sent to {target}")
