"""Commands that record, follow and rebuild: demo, tail, replay, project."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..export.replay import replay_export
from ..export.tail import ExportTail, TailFilter
from ..model.settings import ExportSettings
from ..projection.service import ProjectionService, recorded_export_settings
from ..recording.store import AuditStore
from ..sql.projector import replay_sql
from ..sql.schema import SqlDatabase
from ._base import (
    _ROOT,
    _chunk_size,
    _existing_store,
    _log_to_stderr,
    _sql_store,
    cli,
)


@cli.command()
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("audit"),
    show_default=True,
    help="Store root to record into.",
)
@click.option(
    "--rows",
    type=click.IntRange(min=0),
    default=120,
    show_default=True,
    help="Rows to push through the sample pipeline.",
)
@click.option(
    "--chunk-size",
    "chunk_size",
    default=None,
    help="Export chunk size in bytes, or 'none' for one file (default 10 MB).",
)
def demo(root: Path, rows: int, chunk_size: str | None) -> None:
    """Record a sample pipeline run with the live export, seal and verify it."""
    from ..demo import run_demo

    size = _chunk_size(chunk_size)
    export = ExportSettings() if size == "default" else ExportSettings(chunk_size_bytes=size)  # type: ignore[arg-type]
    click.echo(f"recording {rows} rows of the customer-sentiment demo into {root} ...", err=True)
    with click.progressbar(length=rows, label="rows", file=sys.stderr) as bar:
        result = run_demo(root, rows=rows, export=export, progress=bar.update)
    report = result.report
    click.echo(f"run            {result.run_id}")
    click.echo(
        f"outcomes       {', '.join(f'{k}={v}' for k, v in sorted(result.outcomes.items()))}"
    )
    click.echo(f"journal        {result.journal_dir}")
    click.echo(f"export chunks  {result.export_dir}")
    click.echo(f"manifest       {result.manifest}")
    click.echo(f"sink outputs   {', '.join(str(p) for p in result.outputs)}")
    click.echo(f"SQL tables     {root / 'landscape.db'}")
    click.echo(f"verify         {report.summary()}")
    click.echo("")
    click.echo("next:")
    click.echo(f"  auditjournal tail {root} {result.run_id} --type node_state")
    click.echo(f"  auditjournal verify {result.export_dir} --journal {root} {result.run_id}")
    click.echo(f"  auditjournal replay {root} {result.run_id} --out replayed-export")
    click.echo(f"  auditjournal explain {root} {result.run_id} --row {result.first_row_id}")
    click.echo(
        f"  auditjournal extract {result.export_dir} --row {result.first_row_id} --out row.json"
    )
    if not report.ok:
        for check in report.checks:
            if not check.ok:
                click.echo(check.line(), err=True)
        sys.exit(1)


@cli.command()
@_ROOT
@click.argument("run_id")
@click.option("--type", "types", multiple=True, help="Only records of this type (repeatable).")
@click.option("--row", "row_id", help="Only records about this row id.")
@click.option("--node", "node_id", help="Only records about this node id.")
@click.option("--from-end", is_flag=True, help="Skip records already written; show new ones.")
@click.option("--json", "as_json", is_flag=True, help="Print each record as a JSON line.")
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="Give up after this many seconds without the export being sealed.",
)
def tail(
    root: Path,
    run_id: str,
    types: tuple[str, ...],
    row_id: str | None,
    node_id: str | None,
    from_end: bool,
    as_json: bool,
    timeout: float | None,
) -> None:
    """Follow a run's export as it is written, across chunk rollovers, until it is sealed."""
    store = _existing_store(root)
    settings = recorded_export_settings(store, run_id)
    prefix = store.export_prefix(run_id, settings)
    store.close()
    follower = ExportTail(
        prefix, record_filter=TailFilter(frozenset(types), row_id, node_id), from_end=from_end
    )
    for record in follower.follow(timeout=timeout):
        if as_json:
            click.echo(json.dumps(record, sort_keys=True, separators=(",", ":")))
        else:
            click.echo(_describe(record))
    state = "sealed" if follower.sealed else "not sealed (timed out)"
    click.echo(f"{follower.shown:,} of {follower.seen:,} records shown; export {state}", err=True)
    if not follower.sealed:
        sys.exit(1)


def _describe(record: dict[str, Any]) -> str:
    kind = record.get("record_type", "?")
    ids = " ".join(
        f"{k}={record[k]}"
        for k in (
            "row_id",
            "token_id",
            "node_id",
            "state_id",
            "edge_id",
            "call_id",
            "status",
            "outcome",
            "sink_name",
            "mode",
        )
        if record.get(k) is not None
    )
    return f"{record.get('seq', 0):>8}  {kind:<14} {ids}"


@cli.command()
@_ROOT
@click.argument("run_id")
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the new export (created).",
)
@click.option(
    "--db",
    "db_url",
    default=None,
    metavar="URL",
    help="Rebuild the run's SQL tables in this database (SQLAlchemy URL, or 'default' for "
    "ROOT/landscape.db); the run's old rows there are deleted first.",
)
@click.option("--no-payloads", is_flag=True, help="Export refs only, without inlined payloads.")
@click.option(
    "--chunk-size",
    "chunk_size",
    default=None,
    help="Chunk size in bytes, or 'none' for one file (default: as the live export).",
)
@click.option("--no-sign", is_flag=True, help="Do not sign the manifest even if the live one was.")
@click.option(
    "--signing-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Ed25519 private key (PEM) to sign with (default: as the live export).",
)
def replay(
    root: Path,
    run_id: str,
    out_dir: Path | None,
    db_url: str | None,
    no_payloads: bool,
    chunk_size: str | None,
    no_sign: bool,
    signing_key_file: Path | None,
) -> None:
    """Rebuild a run's export (--out) and/or SQL tables (--db) from its journal.

    The export is byte-identical for the same settings. Settings default to
    those the run's live export used; a signed export is re-signed with the
    same key ($AUDITJOURNAL_SIGNING_KEY for HMAC).
    """
    if out_dir is None and db_url is None:
        raise click.UsageError("give --out DIR (an export), --db URL (SQL tables), or both")
    store = _existing_store(root)
    if db_url is not None:
        try:
            _replay_tables(store, run_id, db_url)
        except BaseException:
            store.close()
            raise
    if out_dir is None:
        store.close()
        return
    try:
        recorded = recorded_export_settings(store, run_id)
        size = _chunk_size(chunk_size)
        key_file = str(signing_key_file) if signing_key_file else recorded.signing_key_file
        settings = ExportSettings(
            include_payloads=recorded.include_payloads and not no_payloads,
            chunk_size_bytes=recorded.chunk_size_bytes if size == "default" else size,  # type: ignore[arg-type]
            sign=None if no_sign else ("ed25519" if signing_key_file else recorded.sign),
            signing_key_file=None if no_sign else key_file,
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        result = replay_export(
            journal_dir=store.journal_dir(run_id),
            run_id=run_id,
            payloads=store.payloads,
            settings=settings,
            prefix=out_dir / "audit_trail",
        )
    finally:
        store.close()
    if result is None:
        click.echo(
            f"run {run_id} has not completed: export in {out_dir} written but not sealed", err=True
        )
        sys.exit(1)
    click.echo(f"replayed {result.record_count:,} records into {result.chunk_count} chunk(s)")
    click.echo(f"manifest {result.manifest_path} (sha256 {result.manifest_sha256})")


def _replay_tables(store: AuditStore, run_id: str, db_url: str) -> None:
    url = store.database_url if db_url == "default" else db_url
    database = SqlDatabase(url)
    try:
        last = replay_sql(database=database, journal_dir=store.journal_dir(run_id), run_id=run_id)
    finally:
        database.close()
    click.echo(f"rebuilt the SQL tables of run {run_id} in {database.url}: {last:,} events")


@cli.command()
@_ROOT
@click.option("--follow", is_flag=True, help="Keep running and project new runs as they appear.")
@click.option("--run", "run_ids", multiple=True, help="Only this run (repeatable).")
@click.option(
    "--sql/--no-sql", default=True, show_default=True, help="Also keep the SQL tables current."
)
@click.option(
    "--db",
    "db_url",
    default=None,
    metavar="URL",
    help="SQL tables' database (default ROOT/landscape.db).",
)
def project(
    root: Path, follow: bool, run_ids: tuple[str, ...], sql: bool, db_url: str | None
) -> None:
    """Run the projectors (export, SQL tables) as a separate process over every run in ROOT."""
    store = _sql_store(root, db_url)

    def sealed(run_id: str, result: Any) -> None:
        click.echo(
            f"sealed {run_id}: {result.record_count:,} records, "
            f"{result.chunk_count} chunk(s), manifest sha256 {result.manifest_sha256}"
        )

    _log_to_stderr()
    service = ProjectionService(store, run_ids=list(run_ids) or None, on_sealed=sealed, sql=sql)
    try:
        count = service.run(follow=follow)
    except KeyboardInterrupt:
        count = 0
    finally:
        store.close()
    click.echo(f"{count} export(s) sealed", err=True)
    if service.problems:  # each was logged with its reason when it happened
        broken = ", ".join(sorted(service.problems))
        click.echo(f"auditjournal: error: not projected: {broken}", err=True)
        sys.exit(1)


@cli.command()
@_ROOT
@click.argument("run_id")
@click.option(
    "--status",
    type=click.Choice(["interrupted", "failed"]),
    required=True,
    help="How the run ended.",
)
@click.option("--reason", default=None, help="Why (recorded with the interruption).")
@click.option(
    "--db",
    "db_url",
    default=None,
    metavar="URL",
    help="SQL tables' database (default ROOT/landscape.db).",
)
def finish(root: Path, run_id: str, status: str, reason: str | None, db_url: str | None) -> None:
    """Complete and seal a run whose writer died: record the interruption, run_completed
    with --status, then seal its export and bring its SQL tables up to date."""
    store = _sql_store(root, db_url)
    try:
        recorder = store.finish_run(run_id, status, reason=reason)
        sealed: list[Any] = []
        service = ProjectionService(
            store, run_ids=[run_id], on_sealed=lambda _, result: sealed.append(result)
        )
        service.run(follow=False)
    finally:
        store.close()
    if service.problems:
        raise click.ClickException(f"run {run_id} finished, not projected: {service.problems}")
    line = f"finished {run_id} as {status} (seq {recorder.last_seq})"
    if sealed:
        line += f", export sealed: manifest sha256 {sealed[0].manifest_sha256}"
    click.echo(line)
