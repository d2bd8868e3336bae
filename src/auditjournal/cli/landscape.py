"""``auditjournal import-landscape``: import runs of a Landscape database."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import msgspec
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from ..landscape.importer import ImportProgress, ImportReport, import_landscape
from ..recording.store import AuditStore
from ._base import cli, console, default_root


@cli.command("import-landscape")
@click.argument("db")
@click.option(
    "--payloads",
    "payloads_dir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The Landscape payload store of those runs (DIR/<2 hex>/<sha256>).",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The auditjournal store to import into (default $AUDITJOURNAL_ROOT, else ./audit).",
)
@click.option("--run", "run_ids", multiple=True, help="Only this run (repeatable).")
@click.option(
    "--allow-running",
    is_flag=True,
    help="Import a run Landscape still marks running (its writer died) as interrupted; "
    "without it such a run is refused.",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress, and print only the runs that were not imported whole.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def import_landscape_command(
    db: str,
    payloads_dir: Path,
    root: Path | None,
    run_ids: tuple[str, ...],
    allow_running: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Import the runs of a Landscape database DB (a path or a SQLAlchemy URL).

    Running the same command again after an import died halfway imports that run
    again from the start; a run imported whole is refused."""
    root = root or Path(default_root())
    with AuditStore.open(root) as store, _progress(quiet or as_json) as progress:
        report = import_landscape(
            db, payloads_dir, store, run_ids=run_ids, allow_running=allow_running,
            progress=progress,
        )  # fmt: skip
    if as_json:
        click.echo(json.dumps(msgspec.to_builtins(report), indent=2))
    else:
        shown = render(report, quiet=quiet)
        if shown:
            click.echo(shown)
    if not report.ok:
        sys.exit(1)


@contextlib.contextmanager
def _progress(off: bool) -> Iterator[Callable[[ImportProgress], None] | None]:
    """Per run, a bar over its Landscape rows as they are recorded, naming the table at
    hand (on stderr, when it is a terminal)."""
    if off or not sys.stderr.isatty():
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console(stderr=True), transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def show(step: ImportProgress) -> None:
            if step.run_id not in tasks:
                tasks[step.run_id] = bar.add_task("", total=step.total)
            label = f"run {step.run_id[:12]} rows ({step.table})"
            bar.update(tasks[step.run_id], completed=step.done, description=label)

        yield show


def render(report: ImportReport, *, quiet: bool = False) -> str:
    """The report as text; ``quiet``: only the runs not imported whole."""
    lines = []
    for run in report.runs:
        whole = run.status == "imported" and not any(t.not_mapped for t in run.tables)
        if quiet and whole:
            continue
        head = f"run {run.run_id}  {run.landscape_status} -> {run.status}"
        if run.records is not None:
            head += f", export sealed ({run.records} records)"
        if run.message:
            head += f": {run.message}"
        lines.append(head)
        lines.append(f"  {'table':<20}{'read':>6}{'imported':>10}  not mapped / notes")
        for t in run.tables:
            extra = "; ".join(f"{u.what}: {u.rows} rows, {u.reason}" for u in t.not_mapped)
            lines.append(f"  {t.table:<20}{t.read:>6}{t.imported:>10}  {extra}".rstrip())
        p = run.payloads
        lines.append(
            f"  payloads: {p.referenced} referenced, {p.copied} copied, "
            f"{p.already_present} already present, {p.missing} missing"
            + (f", {p.filtered} stored filtered (secret fields)" if p.filtered else "")
        )
        lines += [f"  note: {n}" for n in run.notes]
    return "\n".join(lines)
