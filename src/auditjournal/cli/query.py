"""Commands that query the SQL tables or export them: runs, show, explain, export-csv."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from ..recording.store import AuditStore
from ..sql.csvexport import export_csv, journal_size
from ..sql.lineage import explain_row, list_runs, render_explain, render_runs, render_show, show_run
from ._base import (
    _DB,
    _JOURNAL_URL,
    _JSON,
    _NO_REFRESH,
    _ROOT,
    _existing_store,
    _sql_store,
    cli,
)


@cli.command()
@_ROOT
@_DB
@_NO_REFRESH
@_JOURNAL_URL
@_JSON
def runs(
    root: Path, db_url: str | None, no_refresh: bool, journal_url: str | None, as_json: bool
) -> None:
    """List the runs in ROOT: status, start, duration, rows, events, export state.

    A run that cannot be read is listed with its problem (exit 1); the others as usual.
    """
    with _sql_store(root, db_url, journal_url, every_run=True) as store:
        result = list_runs(store, refresh=not no_refresh)
    click.echo(json.dumps(result, indent=2) if as_json else render_runs(result))
    if any(r["problem"] for r in result):
        sys.exit(1)


@cli.command()
@_ROOT
@click.argument("run_id")
@_DB
@_NO_REFRESH
@_JOURNAL_URL
@_JSON
def show(
    root: Path,
    run_id: str,
    db_url: str | None,
    no_refresh: bool,
    journal_url: str | None,
    as_json: bool,
) -> None:
    """Show a run: nodes, edges, counts by state / outcome / call, export state."""
    with _sql_store(root, db_url, journal_url, run_id) as store:
        result = show_run(store, run_id, refresh=not no_refresh)
    click.echo(json.dumps(result, indent=2) if as_json else render_show(result))


@cli.command()
@_ROOT
@click.argument("run_id")
@click.option("--row", "row_id", required=True, help="The row to explain.")
@_DB
@_NO_REFRESH
@click.option("--full", is_flag=True, help="Show payloads in full (default: cut at 120 chars).")
@_JSON
def explain(
    root: Path,
    run_id: str,
    row_id: str,
    db_url: str | None,
    no_refresh: bool,
    full: bool,
    as_json: bool,
) -> None:
    """The full lineage of one row: source data, every state's input/output, routing
    reasons, calls with request/response, artifacts and outcome (--json: export records)."""
    with _sql_store(root, db_url) as store:
        result = explain_row(store, run_id, row_id, refresh=not no_refresh)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        click.echo(render_explain(result, width=None if full else 120))


@cli.command("export-csv")
@_ROOT
@click.argument("run_id")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the CSV files (created if missing, used exactly as given).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def export_csv_cmd(root: Path, run_id: str, out_dir: Path, as_json: bool) -> None:
    """Write a completed run as CSV: one file per record type, refs instead of payloads.

    Beside the files, audit_trail.csv.sha256 lists them for `sha256sum -c`; the
    export is recorded in the run's journal (csv_exported). Exit 1 if the run has
    not completed or a recorder still holds its journal.
    """
    store = _existing_store(root)
    try:
        with _journal_progress(store, run_id) as progress:
            result = export_csv(store, run_id, out_dir, progress=progress)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    for f in result.files:
        click.echo(f"{f.file:<18} {f.rows:>10,} rows {f.bytes:>14,} bytes  {f.sha256}")
    click.echo(f"{result.total_rows:,} rows in {len(result.files)} files in {result.out_dir}")
    click.echo(f"listing {result.listing_path} (sha256 {result.listing_sha256})")
    click.echo(f"check:  cd {result.out_dir} && sha256sum -c {result.listing_path.name}")
    if not result.recorded:
        click.echo("this identical export was already recorded in the journal", err=True)


@contextlib.contextmanager
def _journal_progress(store: AuditStore, run_id: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar over the run's journal bytes when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    total = journal_size(store, run_id)
    with click.progressbar(length=total, label="exporting CSV", file=sys.stderr) as bar:
        yield bar.update
