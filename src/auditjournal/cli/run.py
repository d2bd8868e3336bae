"""Commands that record, follow and rebuild: demo, tail, replay, project."""

from __future__ import annotations

import collections
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click
import msgspec

from ..export.projector import record_seal
from ..export.replay import RECORDED, replay_export, replay_settings
from ..export.tail import ExportTail, TailFilter
from ..model.events import EVENT_TYPES, Event, RunCompleted, RunStarted
from ..model.records import RECORD_TYPES
from ..model.settings import ExportSettings
from ..projection.service import ProjectionService, recorded_export_settings
from ..recording.follow import (
    follow_journal,
    journal_stalled,
    latest_run,
    run_activity,
    writer_gone,
)
from ..recording.store import AuditStore
from ..sql.projector import replay_sql
from ..sql.schema import SqlDatabase
from ._base import (
    _JOURNAL_URL,
    _JSON,
    _ROOT,
    _byte_progress,
    _check_output,
    _chunk_size,
    _existing_store,
    _log_to_stderr,
    _sql_store,
    cli,
    progress_bar,
)


@cli.command()
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="AUDITJOURNAL_ROOT",
    default=Path("audit"),
    show_default=True,
    help="Store root to record into (env AUDITJOURNAL_ROOT).",
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
    _check_output(root, directory=True)
    export = ExportSettings() if size == "default" else ExportSettings(chunk_size_bytes=size)  # type: ignore[arg-type]
    click.echo(f"recording {rows} rows of the customer-sentiment demo into {root} ...", err=True)
    with progress_bar(rows, "rows", unit="rows") as advance:
        result = run_demo(root, rows=rows, export=export, progress=advance)
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
    click.echo(f"  auditjournal explain {root} {result.run_id} --where customer_id=C0001")
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
@click.argument("run_id", required=False)
@click.option("--latest", is_flag=True, help="Follow the newest run in ROOT (instead of RUN_ID).")
@click.option(
    "--journal",
    "journal_mode",
    is_flag=True,
    help="Follow the run's journal events (not its export); ends at run_completed.",
)
@click.option(
    "--type",
    "types",
    multiple=True,
    help="Only records of this type (repeatable; with --journal, events of this type).",
)
@click.option("--row", "row_id", help="Only records about this row id.")
@click.option(
    "--node", "node_id", help="Only records about this node id (its states, calls, routing)."
)
@click.option("--from-end", is_flag=True, help="Skip records already written; show new ones.")
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(min=0),
    default=None,
    help="Show only the last N records already written, then follow.",
)
@click.option("--json", "as_json", is_flag=True, help="Print each record as a JSON line.")
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="Give up after this many seconds without the export being sealed.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Hash the records as they stream and check each live checkpoint as it appears "
    "(with --from-end, the records already written are hashed, not shown).",
)
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --verify: the Ed25519 public key (PEM) the checkpoints must be signed with.",
)
@_JOURNAL_URL
def tail(
    root: Path,
    run_id: str | None,
    latest: bool,
    journal_mode: bool,
    types: tuple[str, ...],
    row_id: str | None,
    node_id: str | None,
    from_end: bool,
    lines: int | None,
    as_json: bool,
    timeout: float | None,
    verify: bool,
    public_key: Path | None,
    journal_url: str | None,
) -> None:
    """Follow a run's export as it is written, across chunk rollovers, until it is sealed.

    Stops, saying why (exit 1), when waiting cannot end: the run's writer is gone
    and nothing writes the export, or a sealed export lacks a chunk.
    With --verify, exit 1 as soon as records fail a live checkpoint (with --from-end,
    the records already written are read and hashed too: the tree needs them).
    """
    if (run_id is None) == (not latest):
        raise click.UsageError("give RUN_ID or --latest (one of them)")
    if verify and journal_mode:
        raise click.UsageError("--verify checks the export's live checkpoints: not with --journal")
    if public_key is not None and not verify:
        raise click.UsageError("--public-key goes with --verify")
    known = sorted(EVENT_TYPES) if journal_mode else RECORD_TYPES
    for kind in types:
        if kind not in known:
            raise click.UsageError(f"--type {kind!r} is not one of: {', '.join(known)}")
    store = _existing_store(root, journal_url, run_id)
    try:
        if latest:
            run_id = latest_run(store)
            if run_id is None:
                raise click.UsageError(f"{root} has no runs")
            click.echo(f"following run {run_id}", err=True)
        assert run_id is not None
        record_filter = TailFilter(frozenset(types), row_id, node_id)
        if journal_mode:
            _tail_journal(store, run_id, record_filter, from_end, lines, as_json, timeout)
            return
        settings = recorded_export_settings(store, run_id)
        prefix = store.export_prefix(run_id, settings)
        live = _has_live_export(store, run_id)
        follower = ExportTail(
            prefix,
            record_filter=record_filter,
            from_end=from_end,
            verify=verify,
            public_key=public_key,
        )
        _print_records(follower.poll(), lines, as_json)  # what is there already
        if lines is not None:
            follower.shown = min(follower.shown, lines)

        def stalled() -> str | None:
            return run_activity(store, run_id, prefix, live).stalled_export(run_id, root)

        _print_records(follower.follow(timeout=timeout, stalled=stalled), None, as_json)
    finally:
        store.close()
    if follower.stopped is not None:
        click.echo(f"{follower.shown:,} of {follower.seen:,} records shown", err=True)
        click.echo(f"auditjournal: error: stopped waiting: {follower.stopped}", err=True)
        sys.exit(1)
    state = "sealed" if follower.sealed else "not sealed (timed out)"
    click.echo(f"{follower.shown:,} of {follower.seen:,} records shown; export {state}", err=True)
    if verify:
        click.echo(
            f"{follower.checkpoints_verified} live checkpoint(s) verified, the last at "
            f"{follower.verified_size:,} records",
            err=True,
        )
    if not follower.sealed:
        sys.exit(1)


def _has_live_export(store: AuditStore, run_id: str) -> bool:
    reader = store.journal_reader(run_id)
    try:
        first = reader.poll(limit=1)
    finally:
        reader.close()
    return bool(first) and isinstance(first[0], RunStarted) and "export" in first[0].settings


def _print_records(records: Iterable[dict[str, Any]], lines: int | None, as_json: bool) -> None:
    """Print the records; with ``lines``, only the last N of them."""
    for record in records if lines is None else collections.deque(records, maxlen=lines):
        _print_record(record, as_json)


def _print_record(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(record, sort_keys=True, separators=(",", ":")))
    else:
        click.echo(_describe(record))


def _tail_journal(
    store: AuditStore,
    run_id: str,
    record_filter: TailFilter,
    from_end: bool,
    lines: int | None,
    as_json: bool,
    timeout: float | None,
) -> None:
    shown = seen = 0
    completed = False

    def records(events: Iterable[Event]) -> Iterator[dict[str, Any]]:
        nonlocal completed, shown, seen
        for event in events:
            completed = completed or isinstance(event, RunCompleted)
            seen += 1
            record = msgspec.to_builtins(event)
            record["record_type"] = record["type"]
            picked = record_filter.pick(record)
            shown += len(picked)
            yield from picked

    already = records(store.read_journal(run_id))
    if from_end:
        collections.deque(already, maxlen=0)  # read past them
        shown = 0
    else:
        _print_records(already, lines, as_json)
        shown = shown if lines is None else min(shown, lines)
    present = seen
    stopped: list[str] = []
    events = follow_journal(
        store,
        run_id,
        timeout=timeout,
        stalled=lambda: journal_stalled(store, run_id),
        stopped=stopped,
    )
    if not completed:
        _print_records(records(itertools.islice(events, present, None)), None, as_json)
    click.echo(f"{shown:,} of {seen:,} events shown", err=True)
    if stopped:
        click.echo(f"auditjournal: error: stopped waiting: {stopped[0]}", err=True)
        sys.exit(1)
    if not completed:
        click.echo("run not completed (timed out)", err=True)
        sys.exit(1)


_TIMES = ("completed_at", "started_at", "created_at", "recorded_at", "registered_at", "ts")


def _describe(record: dict[str, Any]) -> str:
    kind = record.get("record_type", "?")
    when = next((str(record[k]) for k in _TIMES if record.get(k)), "")
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
    return f"{record.get('seq', 0):>8}  {when:<27} {kind:<14} {ids}"


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
    "--force",
    is_flag=True,
    help="Replace the export files already in --out (never the run's own live export).",
)
@click.option(
    "--signing-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Ed25519 private key (PEM) to sign with (default: as the live export).",
)
@_JSON
@_JOURNAL_URL
def replay(
    root: Path,
    run_id: str,
    out_dir: Path | None,
    db_url: str | None,
    no_payloads: bool,
    chunk_size: str | None,
    no_sign: bool,
    signing_key_file: Path | None,
    force: bool,
    as_json: bool,
    journal_url: str | None,
) -> None:
    """Rebuild a run's export (--out) and/or SQL tables (--db) from its journal.

    The export is byte-identical for the same settings. Settings default to
    those the run's live export used; a signed export is re-signed with the
    same key ($AUDITJOURNAL_SIGNING_KEY for HMAC).
    """
    if out_dir is None and db_url is None:
        raise click.UsageError("give --out DIR (an export), --db URL (SQL tables), or both")
    if out_dir is not None:
        _check_output(out_dir, directory=True)
    store = _existing_store(root, journal_url, run_id)
    if out_dir is not None:
        try:
            _check_replay_target(store, run_id, out_dir, force=force)
        except BaseException:
            store.close()
            raise
    tables = None
    if db_url is not None:
        try:
            tables = _replay_tables(store, run_id, db_url, quiet=as_json)
        except BaseException:
            store.close()
            raise
    if out_dir is None:
        store.close()
        if as_json:
            click.echo(json.dumps({"run_id": run_id, "export": None, "tables": tables}, indent=2))
        return
    try:
        size = _chunk_size(chunk_size)
        settings = replay_settings(
            recorded_export_settings(store, run_id),
            include_payloads=not no_payloads,
            chunk_size_bytes=RECORDED if size == "default" else size,  # type: ignore[arg-type]
            sign=not no_sign,
            signing_key_file=str(signing_key_file) if signing_key_file else None,
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        journal = store.journal(run_id)
        with _byte_progress(out_dir, "replaying", journal.size_bytes()) as progress:
            result = replay_export(
                journal_dir=journal,
                run_id=run_id,
                payloads=store.payloads,
                settings=settings,
                prefix=out_dir / "audit_trail",
                progress=progress,
            )
        if result is not None:
            record_seal(store.ledger, run_id, result)
    finally:
        store.close()
    if as_json:
        export = None if result is None else {"out": str(out_dir), **result.as_dict()}
        click.echo(json.dumps({"run_id": run_id, "export": export, "tables": tables}, indent=2))
    if result is None:
        click.echo(
            f"run {run_id} has not completed: export in {out_dir} written but not sealed", err=True
        )
        sys.exit(1)
    if as_json:
        return
    click.echo(f"replayed {result.record_count:,} records into {result.chunk_count} chunk(s)")
    click.echo(f"manifest {result.manifest_path} (sha256 {result.manifest_sha256})")


def _check_replay_target(store: AuditStore, run_id: str, out_dir: Path, *, force: bool) -> None:
    """Never the run's live export (even with --force: its sealed files are the evidence);
    a non-empty directory only with --force (its old export files are replaced)."""
    live = {
        store.export_dir(run_id).resolve(),
        store.export_prefix(run_id, recorded_export_settings(store, run_id)).parent.resolve(),
    }
    if out_dir.resolve() in live:
        raise click.UsageError(
            f"{out_dir} is the live export of run {run_id}; replay into another directory"
        )
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise click.UsageError(
            f"{out_dir} is not empty; give --force to replace the export files in it"
        )


def _replay_tables(store: AuditStore, run_id: str, db_url: str, *, quiet: bool) -> dict[str, Any]:
    url = store.database_url if db_url == "default" else db_url
    database = SqlDatabase(url)
    try:
        last = replay_sql(database=database, journal_dir=store.journal(run_id), run_id=run_id)
    finally:
        database.close()
    if not quiet:
        click.echo(f"rebuilt the SQL tables of run {run_id} in {database.url}: {last:,} events")
    return {"database": database.url, "events": last}


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
    envvar="AUDITJOURNAL_DATABASE_URL",
    metavar="URL",
    help="SQL tables' database (default $AUDITJOURNAL_DATABASE_URL, else ROOT/landscape.db).",
)
@_JSON
@_JOURNAL_URL
def project(
    root: Path,
    follow: bool,
    run_ids: tuple[str, ...],
    sql: bool,
    db_url: str | None,
    as_json: bool,
    journal_url: str | None,
) -> None:
    """Run the projectors (export, SQL tables) as a separate process over every run in ROOT
    (with --journal-url: every run of that PostgreSQL journal, exports under ROOT)."""
    store = _sql_store(root, db_url, journal_url)

    def sealed(run_id: str, result: Any) -> None:
        if as_json:  # one JSON object per sealed export, as it happens (--follow)
            click.echo(json.dumps({"run_id": run_id, **result.as_dict()}, sort_keys=True))
            return
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
    with AuditStore.open(root) as looked:
        for run_id in run_ids or looked.run_ids():
            if writer_gone(looked, run_id):
                click.echo(
                    f"auditjournal: warning: run {run_id} did not complete and its writer is "
                    "gone: its export cannot be sealed until the run is resumed and completed "
                    "(see docs/operating.md)",
                    err=True,
                )
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
