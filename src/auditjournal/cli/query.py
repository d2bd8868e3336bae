"""Commands that query the SQL tables or export them: runs, show, explain, export-csv."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
from rich.console import RenderableType
from rich.measure import Measurement

from ..errors import AuditJournalError
from ..recording.follow import writer_gone
from ..recording.store import AuditStore
from ..sql.csvexport import export_csv, journal_size
from ..sql.lineage import (
    explain_row,
    explain_validation_error,
    list_runs,
    refresh_tables,
    show_run,
)
from ..sql.lineagetext import plain, render_explain, render_validation_error, runs_view, show_view
from ..sql.reading import open_read_only
from ..sql.rowfind import find_rows, parse_where
from ..sql.schema import SqlDatabase
from ._base import (
    _DB,
    _JOURNAL_URL,
    _JSON,
    _NO_REFRESH,
    _ROOT,
    _check_output,
    _existing_store,
    _sql_store,
    cli,
    console,
    progress_bar,
)

_WIDE = 1_000_000

_WRITER_GONE = (
    "auditjournal: warning: run {run_id} is running but its writer is gone (nothing holds its "
    "journal): resume it with AuditStore.open({root!r}).resume_run({run_id!r}) and complete "
    "it; see docs/operating.md"
)


@contextlib.contextmanager
def _tables(
    store: AuditStore, db_url: str | None, run_id: str | None, no_refresh: bool
) -> Iterator[tuple[SqlDatabase, bool]]:
    """The tables to read and whether to bring them up to date first. The store's own
    landscape.db is evidence: read-only, brought up to date in a copy in memory
    (:mod:`auditjournal.sql.reading`); a database given with --db is the caller's."""
    if db_url is not None:
        yield store.sql_database(), not no_refresh
        return
    run_ids = store.run_ids() if run_id is None else [run_id]
    journals = [] if no_refresh else [store.journal(r) for r in run_ids]
    database, refresh = open_read_only(store.root / "landscape.db", journals)
    try:
        yield database, refresh and not no_refresh
    finally:
        database.engine.dispose()


def _print_view(view: RenderableType | str) -> None:
    """A table styled on a terminal (rich: colours unless NO_COLOR), else as plain text;
    a str (``--json``) as it is."""
    out = console()
    if isinstance(view, str):
        click.echo(view)
    elif out.is_terminal:
        # as wide as the table needs: a narrow terminal wraps the lines, rich would
        # otherwise cut run ids short ("run-2026…"), and they are what people copy
        needed = Measurement.get(out, out.options.update(width=_WIDE), view).maximum
        out.width = max(out.width, needed)
        out.print(view)
    else:
        click.echo(plain(view))


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
    with (
        _sql_store(root, db_url, journal_url, every_run=True) as store,
        _tables(store, db_url, None, no_refresh) as tables,
    ):
        result = list_runs(store, database=tables[0], refresh=tables[1])
        for run in result:
            run["writer_gone"] = run["status"] == "running" and writer_gone(store, run["run_id"])
    _print_view(json.dumps(result, indent=2) if as_json else runs_view(result))
    for run in result:
        if run["writer_gone"]:
            click.echo(_WRITER_GONE.format(run_id=run["run_id"], root=root), err=True)
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
    with (
        _sql_store(root, db_url, journal_url, run_id) as store,
        _tables(store, db_url, run_id, no_refresh) as tables,
    ):
        result = show_run(store, run_id, database=tables[0], refresh=tables[1])
        gone = result["run"]["status"] == "running" and writer_gone(store, run_id)
        result["run"]["writer_gone"] = gone
    _print_view(json.dumps(result, indent=2) if as_json else show_view(result))
    if gone:
        click.echo(_WRITER_GONE.format(run_id=run_id, root=root), err=True)


@cli.command()
@_ROOT
@click.argument("run_id")
@click.option("--row", "row_id", default=None, help="The row to explain, by its row id.")
@click.option(
    "--row-index",
    type=click.IntRange(min=0),
    default=None,
    help="The row at this index of the source (its row_index).",
)
@click.option(
    "--where",
    "where",
    default=None,
    metavar="FIELD=VALUE",
    help="The rows whose source data has FIELD equal to VALUE (e.g. customer_id=C0001; "
    "a dotted path for nested fields).",
)
@click.option(
    "--validation-error",
    "validation_error_id",
    default=None,
    metavar="ID",
    help="A row rejected at source validation, by the validation error's id: the row it "
    "made (quarantined), or the error alone when it made none.",
)
@_DB
@_NO_REFRESH
@click.option("--full", is_flag=True, help="Show payloads in full (default: cut at 120 chars).")
@_JSON
def explain(
    root: Path,
    run_id: str,
    row_id: str | None,
    row_index: int | None,
    where: str | None,
    validation_error_id: str | None,
    db_url: str | None,
    no_refresh: bool,
    full: bool,
    as_json: bool,
) -> None:
    """The full lineage of rows: source data, every state's input/output and what it
    changed, routing (label -> target) with reasons, calls with request/response,
    batches the row was consumed into and the tokens they produced, artifacts and
    outcome (--json: export records). Name the row by --row (its id), --row-index,
    --where FIELD=VALUE (every matching row is explained), or --validation-error ID."""
    named = (row_id is not None) + (row_index is not None or where is not None)
    if named + (validation_error_id is not None) != 1:
        raise click.UsageError(
            "name the row: --row ID, --row-index N and/or --where F=V, or --validation-error ID"
        )
    if validation_error_id is not None:
        with _sql_store(root, db_url) as store, _tables(store, db_url, run_id, no_refresh) as t:
            story = explain_validation_error(
                store, run_id, validation_error_id, database=t[0], refresh=t[1]
            )
        if as_json:
            click.echo(json.dumps(story, indent=2, ensure_ascii=False))
        else:
            click.echo(render_validation_error(story, width=None if full else 120))
        return
    try:
        condition = None if where is None else parse_where(where)
    except AuditJournalError as exc:
        raise click.UsageError(str(exc)) from None
    with _sql_store(root, db_url) as store, _tables(store, db_url, run_id, no_refresh) as tables:
        database, refresh = tables
        if refresh:
            refresh_tables(store, [run_id], database)
        if row_id is not None:
            row_ids = [row_id]
        else:
            row_ids = find_rows(store, run_id, database, row_index=row_index, where=condition)
        results = [explain_row(store, run_id, r, database=database, refresh=False) for r in row_ids]
    if as_json:
        value = results[0] if row_id is not None else results
        click.echo(json.dumps(value, indent=2, ensure_ascii=False))
    else:
        click.echo("\n\n".join(render_explain(r, width=None if full else 120) for r in results))


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
@_JOURNAL_URL
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def export_csv_cmd(
    root: Path, run_id: str, out_dir: Path, journal_url: str | None, as_json: bool
) -> None:
    """Write a completed run as CSV: one file per record type, refs instead of payloads.

    Beside the files, audit_trail.csv.sha256 lists them for `sha256sum -c`; the
    export is recorded in the run's journal (csv_exported). Exit 1 if the run has
    not completed or a recorder still holds its journal.
    """
    _check_output(out_dir, directory=True)
    store = _existing_store(root, journal_url, run_id)
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
    with progress_bar(journal_size(store, run_id), "exporting CSV") as advance:
        yield advance
