"""Commands an auditor uses: verify, keygen, extract, verify-bundle."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import DuplicateMemberError, MalformedEvidenceError
from ..evidence.extract import Selection, extract_bundle, read_bundle, verify_bundle, write_bundle
from ..evidence.verify import verify_export
from ..proofs.signing import generate_keypair
from ._base import (
    _JOURNAL_URL,
    _byte_progress,
    _existing_store,
    _hmac_key,
    cli,
)


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
@_JOURNAL_URL
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(
    export: Path,
    journal: tuple[Path, str] | None,
    public_key: Path | None,
    hmac_key_env: str | None,
    journal_url: str | None,
    as_json: bool,
) -> None:
    """Verify a sealed export (EXPORT = its directory or its manifest).

    One line per file (valid / INVALID: reason) and a summary; exit 1 if
    anything is invalid.
    """
    hmac_key = _hmac_key(hmac_key_env)
    store = None
    journal_arg = None
    if journal_url is not None and journal is None:
        raise click.UsageError("--journal-url goes with --journal ROOT RUN_ID")
    if journal is not None:
        store = _existing_store(journal[0], journal_url, journal[1])
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
        data = read_bundle(bundle)
    except DuplicateMemberError:
        raise  # a forged bundle: a verification failure (exit 1), not a usage error
    except MalformedEvidenceError as exc:
        raise click.UsageError(f"{bundle} is not JSON of a bundle: {exc}") from None
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
