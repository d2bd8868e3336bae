"""``auditjournal import-landscape``: import runs of a Landscape database."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import msgspec

from ..landscape.importer import ImportReport, import_landscape
from ..recording.store import AuditStore
from ._base import cli, default_root


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
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def import_landscape_command(
    db: str, payloads_dir: Path, root: Path | None, run_ids: tuple[str, ...], as_json: bool
) -> None:
    """Import the runs of a Landscape database DB (a path or a SQLAlchemy URL)."""
    root = root or Path(default_root())
    with AuditStore.open(root) as store:
        report = import_landscape(db, payloads_dir, store, run_ids=run_ids)
    if as_json:
        click.echo(json.dumps(msgspec.to_builtins(report), indent=2))
    else:
        click.echo(render(report))
    if not report.ok:
        sys.exit(1)


def render(report: ImportReport) -> str:
    lines = []
    for run in report.runs:
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
        )
        lines += [f"  note: {n}" for n in run.notes]
    return "\n".join(lines)
