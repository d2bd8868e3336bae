"""The ``auditjournal`` command line: a thin layer over the library.

Each command parses options, calls one library function and formats the
result. Expected failures (every :class:`AuditJournalError`) become one
clear line on stderr and an exit code, in one place (:func:`main`):
0 success, 1 verification/validation failure, 2 usage error.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import (
    AuditJournalError,
    ExportNotFoundError,
    InvalidIdError,
    RowNotFoundError,
    RunNotFoundError,
    SigningKeyError,
)
from .export import replay_export
from .extract import Selection, extract_bundle, verify_bundle, write_bundle
from .lineage import explain_row, list_runs, render_explain, render_runs, render_show, show_run
from .service import ProjectionService, recorded_export_settings
from .settings import ExportSettings
from .signing import generate_keypair
from .sqlproj import replay_sql
from .sqlschema import SqlDatabase
from .store import AuditStore
from .tail import ExportTail, TailFilter
from .verify import verify_export

__all__ = ["cli", "main"]

_USAGE_ERRORS = (
    InvalidIdError,
    RunNotFoundError,
    RowNotFoundError,
    ExportNotFoundError,
    SigningKeyError,
)
_ROOT = click.argument("root", type=click.Path(file_okay=False, path_type=Path))


def _chunk_size(value: str | None) -> int | str | None:
    if value is None:
        return "default"
    if value.lower() == "none":
        return None
    try:
        return int(value.replace("_", ""))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number of bytes or 'none'") from None


def _existing_store(root: Path) -> AuditStore:
    if not (root / "runs").is_dir():
        raise click.UsageError(f"{root} is not an auditjournal root (no runs/ directory)")
    return AuditStore.open(root)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="auditjournal")
def cli() -> None:
    """An append-only, verifiable audit trail for data pipelines.

    Data lives under ROOT (default ./audit): payloads/, runs/<run_id>/journal/
    and runs/<run_id>/export/.
    """


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
    from .demo import run_demo

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
    click.echo(f"verify         {report.summary()}")
    click.echo("")
    click.echo("next:")
    click.echo(f"  auditjournal tail {root} {result.run_id} --type node_state")
    click.echo(f"  auditjournal verify {result.export_dir} --journal {root} {result.run_id}")
    click.echo(f"  auditjournal replay {root} {result.run_id} --out replayed-export")
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

    service = ProjectionService(store, run_ids=list(run_ids) or None, on_sealed=sealed, sql=sql)
    try:
        count = service.run(follow=follow)
    except KeyboardInterrupt:
        count = 0
    finally:
        store.close()
    click.echo(f"{count} export(s) sealed", err=True)


def _sql_store(root: Path, db_url: str | None) -> AuditStore:
    if not (root / "runs").is_dir():
        raise click.UsageError(f"{root} is not an auditjournal root (no runs/ directory)")
    return AuditStore.open(root, database_url=db_url)


_DB = click.option(
    "--db",
    "db_url",
    default=None,
    metavar="URL",
    help="Database of the SQL tables (SQLAlchemy URL; default ROOT/landscape.db).",
)
_NO_REFRESH = click.option(
    "--no-refresh",
    is_flag=True,
    help="Query the tables as they are (default: first project what the journals add).",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


@cli.command()
@_ROOT
@_DB
@_NO_REFRESH
@_JSON
def runs(root: Path, db_url: str | None, no_refresh: bool, as_json: bool) -> None:
    """List the runs in ROOT: status, start, duration, rows, events, export state."""
    with _sql_store(root, db_url) as store:
        result = list_runs(store, refresh=not no_refresh)
    click.echo(json.dumps(result, indent=2) if as_json else render_runs(result))


@cli.command()
@_ROOT
@click.argument("run_id")
@_DB
@_NO_REFRESH
@_JSON
def show(root: Path, run_id: str, db_url: str | None, no_refresh: bool, as_json: bool) -> None:
    """Show a run: nodes, edges, counts by state / outcome / call, export state."""
    with _sql_store(root, db_url) as store:
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


@cli.command()
@click.argument("export", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--journal",
    nargs=2,
    type=(click.Path(file_okay=False, path_type=Path), str),
    default=None,
    metavar="ROOT RUN_ID",
    help="Also check the journal's chain and that re-projecting it gives this export.",
)
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Ed25519 public key (PEM) the manifest signature must verify with.",
)
@click.option(
    "--hmac-key-env",
    default=None,
    metavar="NAME",
    help="Environment variable holding the HMAC key the signature must verify with.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(
    export: Path,
    journal: tuple[Path, str] | None,
    public_key: Path | None,
    hmac_key_env: str | None,
    as_json: bool,
) -> None:
    """Verify a sealed export (EXPORT = its directory or its manifest).

    One line per file (valid / INVALID: reason) and a summary; exit 1 if
    anything is invalid.
    """
    hmac_key = _hmac_key(hmac_key_env)
    store = None
    journal_arg = None
    if journal is not None:
        store = _existing_store(journal[0])
        journal_arg = (store.journal_dir(journal[1]), store.payloads)
    try:
        with _byte_progress(export, "verifying") as progress:
            report = verify_export(
                export,
                journal=journal_arg,
                public_key=public_key,
                hmac_key=hmac_key,
                progress=progress,
            )
    finally:
        if store is not None:
            store.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for check in report.checks:
            click.echo(check.line())
        click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for signing_key.pem (private, 0600) and signing_key.pub.pem.",
)
def keygen(out_dir: Path) -> None:
    """Write a new Ed25519 key pair for signing export manifests."""
    private, public = generate_keypair(out_dir)
    click.echo(f"private key {private} (keep it secret; ExportSettings(signing_key_file=...))")
    click.echo(f"public key  {public} (give it to auditors: verify --public-key)")


@cli.command()
@click.argument("export", type=click.Path(exists=True, path_type=Path))
@click.option("--row", "row_id", help="Everything about this row.")
@click.option("--token", "token_id", help="Everything about this token.")
@click.option("--node", "node_id", help="This node and everything it processed.")
@click.option(
    "--seq", "seqs", type=int, multiple=True, help="The records of this seq (repeatable)."
)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Bundle file."
)
def extract(
    export: Path,
    row_id: str | None,
    token_id: str | None,
    node_id: str | None,
    seqs: tuple[int, ...],
    out: Path,
) -> None:
    """Write a self-contained bundle of some records with Merkle inclusion proofs."""
    selection = Selection(row_id, token_id, node_id, frozenset(seqs))
    if selection.empty():
        raise click.UsageError("select something: --row, --token, --node or --seq")
    bundle = extract_bundle(export, selection)
    write_bundle(bundle, out)
    click.echo(f"{len(bundle['records'])} record(s) with inclusion proofs written to {out}")
    if not bundle["records"]:
        sys.exit(1)


@cli.command("verify-bundle")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Ed25519 public key (PEM) the manifest signature must verify with.",
)
@click.option("--hmac-key-env", default=None, metavar="NAME", help="Variable holding the HMAC key.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_bundle_cmd(
    bundle: Path, public_key: Path | None, hmac_key_env: str | None, as_json: bool
) -> None:
    """Check a bundle on its own: each record's proof against the signed Merkle root."""
    try:
        data = json.loads(bundle.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise click.UsageError(f"{bundle} is not JSON: {exc}") from None
    report = verify_bundle(data, public_key=public_key, hmac_key=_hmac_key(hmac_key_env))
    if as_json:
        lines = [{"item": n, "valid": ok, "reason": r} for n, ok, r in report.lines]
        click.echo(json.dumps({"ok": report.ok, "lines": lines, "summary": report.summary()}))
    else:
        for name, ok, reason in report.lines:
            click.echo(f"{name}: {'valid' if ok else 'INVALID: ' + reason}")
        click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


def _hmac_key(env_name: str | None) -> bytes | None:
    if env_name is None:
        return None
    secret = os.environ.get(env_name)
    if not secret:
        raise click.UsageError(f"environment variable {env_name} is not set or empty")
    return secret.encode()


@contextlib.contextmanager
def _byte_progress(export: Path, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar over the export's bytes when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    directory = export if export.is_dir() else export.parent
    total = sum(p.stat().st_size for p in directory.glob("*.json"))
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning expected failures into one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="auditjournal", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except _USAGE_ERRORS as exc:
        click.echo(f"auditjournal: error: {exc}", err=True)
        sys.exit(2)
    except AuditJournalError as exc:
        click.echo(f"auditjournal: error: {exc}", err=True)
        sys.exit(1)
    except BrokenPipeError:
        sys.exit(0)
