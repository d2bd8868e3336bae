"""Commands an auditor uses: verify, keygen, extract, verify-bundle, verify-store."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click
from rich.text import Text

from ..errors import (
    DuplicateMemberError,
    InvalidSettingsError,
    JournalUnavailableError,
    MalformedEvidenceError,
    MissingExtraError,
    SchemaVersionError,
)
from ..evidence.consistency import prove_consistency, verify_consistency_file
from ..evidence.extract import Selection, extract_bundle, read_bundle, verify_bundle, write_bundle
from ..evidence.verify import verify_export, verify_work
from ..proofs.signing import NOT_CHECKED, generate_keypair
from ._base import (
    _JOURNAL_URL,
    _JSON,
    _ROOT,
    _byte_progress,
    _check_output,
    _existing_store,
    _hmac_key,
    cli,
    console,
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
@click.option(
    "--require-signature",
    is_flag=True,
    help="INVALID unless the manifest is signed and its signature verifies with the key given.",
)
@click.option(
    "--tsa-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PEM CA file: the manifest's RFC 3161 token (audit_trail.manifest.tsr) must be "
    "there and verify against it.",
)
@_JOURNAL_URL
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "-q", "--quiet", is_flag=True, help="Print only what is INVALID; the exit code is the verdict."
)
def verify(
    export: Path,
    journal: tuple[Path, str] | None,
    public_key: Path | None,
    hmac_key_env: str | None,
    require_signature: bool,
    tsa_ca: Path | None,
    journal_url: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Verify a sealed export (EXPORT = its directory or its manifest).

    One line per file (valid / INVALID: reason) and a summary; exit 1 if
    anything is invalid.
    """
    hmac_key = _hmac_key(hmac_key_env)
    if require_signature and public_key is None and hmac_key is None:
        raise click.UsageError("--require-signature needs the key: --public-key or --hmac-key-env")
    store = None
    journal_arg = None
    run_journal = None
    if journal_url is not None and journal is None:
        raise click.UsageError("--journal-url goes with --journal ROOT RUN_ID")
    if journal is not None:
        store = _existing_store(journal[0], journal_url, journal[1])
        run_journal = store.journal(journal[1])
        # the directory, not the RunJournal: verify finds the run's live export beside it
        journal_arg = (store.journal_dir(journal[1]), store.payloads)
    try:
        total = verify_work(export, run_journal)
        bar = contextlib.nullcontext(None) if quiet else _byte_progress(export, "verifying", total)
        with bar as progress:
            report = verify_export(
                export,
                journal=journal_arg,
                public_key=public_key,
                hmac_key=hmac_key,
                progress=progress,
                require_signature=require_signature,
                tsa_ca=tsa_ca,
            )
    finally:
        if store is not None:
            store.close()
    if report.signature == NOT_CHECKED and not quiet:
        click.echo(
            "auditjournal: WARNING: the manifest is signed but its signature was NOT checked; "
            "give --public-key (or --hmac-key-env), and --require-signature",
            err=True,
        )
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:  # --quiet, like `sha256sum --quiet`: silence when all is well
        out = console()
        for check in report.checks:
            if not (quiet and check.ok):
                out.print(_verdict(f"{check.file}: ", check.ok, check.reason))
        if not quiet:
            summary = report.summary()
            head, _, verdict = summary.rpartition(": ")
            out.print(Text.assemble(f"{head}: ", (verdict, _style(report.ok))))
    if not report.ok:
        sys.exit(1)


def _style(ok: bool) -> str:
    return "green" if ok else "bold red"


def _verdict(head: str, ok: bool, reason: str) -> Text:
    """``file: valid`` / ``file: INVALID: reason``, the verdict coloured on a terminal."""
    return Text.assemble(head, ("valid" if ok else f"INVALID: {reason}", _style(ok)))


@cli.command()
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for signing_key.pem (private, 0600) and signing_key.pub.pem.",
)
@_JSON
def keygen(out_dir: Path, as_json: bool) -> None:
    """Write a new Ed25519 key pair for signing export manifests."""
    _check_output(out_dir, directory=True)
    private, public = generate_keypair(out_dir)
    if as_json:  # the paths only: never the key
        click.echo(json.dumps({"private_key": str(private), "public_key": str(public)}))
        return
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
@_JSON
def extract(
    export: Path,
    row_id: str | None,
    token_id: str | None,
    node_id: str | None,
    seqs: tuple[int, ...],
    out: Path,
    as_json: bool,
) -> None:
    """Write a self-contained bundle of some records with Merkle inclusion proofs."""
    selection = Selection(row_id, token_id, node_id, frozenset(seqs))
    if selection.empty():
        raise click.UsageError("select something: --row, --token, --node or --seq")
    _check_output(out, directory=False)
    bundle = extract_bundle(export, selection)
    if not bundle["records"]:
        click.echo(f"auditjournal: error: no record matches; {out} not written", err=True)
        sys.exit(1)
    write_bundle(bundle, out)
    if as_json:
        seqs_out = [r["record"]["seq"] for r in bundle["records"]]
        click.echo(json.dumps({"out": str(out), "records": len(seqs_out), "seqs": seqs_out}))
        return
    click.echo(f"{len(bundle['records'])} record(s) with inclusion proofs written to {out}")


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
@click.option(
    "-q", "--quiet", is_flag=True, help="Print only what is INVALID; the exit code is the verdict."
)
def verify_bundle_cmd(
    bundle: Path, public_key: Path | None, hmac_key_env: str | None, as_json: bool, quiet: bool
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
        click.echo(json.dumps(report.as_dict()))
    else:
        for line in report.text(quiet=quiet):
            click.echo(line)
    if not report.ok:
        sys.exit(1)


@cli.command("verify-store")
@_ROOT
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Ed25519 public key (PEM) the ledger's checkpoints must be signed with.",
)
@click.option(
    "--since",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="CHECKPOINT_FILE",
    help="An earlier ledger checkpoint the ledger must still extend (RFC 9162 consistency).",
)
@click.option(
    "--journal-url",
    default=None,
    metavar="URL",
    help="The store's PostgreSQL journal database (postgresql+psycopg://...): its ledger "
    "is the one checked.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_store_command(
    root: Path,
    public_key: Path | None,
    since: Path | None,
    journal_url: str | None,
    as_json: bool,
) -> None:
    """Verify a store: its ledger, checkpoints, and that every sealed run is in it.

    One line per check (valid / INVALID: reason) and a summary; exit 1 if
    anything is invalid. With --journal-url the ledger is the PostgreSQL journal
    database's (shared by the roots of its writer hosts): the entries sealed in
    ROOT are checked on it, the others counted.
    """
    # here, not at the top: it loads the PostgreSQL journal (SQLAlchemy), which the other
    # commands of this module (`verify` among them) do without
    from ..evidence.verify_store import verify_store

    if not (root / "runs").is_dir():
        raise click.UsageError(f"{root} is not an auditjournal root (no runs/ directory)")
    try:
        report = verify_store(root, public_key=public_key, since=since, journal_url=journal_url)
    except (
        JournalUnavailableError,
        InvalidSettingsError,
        MissingExtraError,
        SchemaVersionError,
    ) as exc:
        # the database could not be read: nothing was checked (exit 2), not INVALID (1)
        raise click.BadParameter(str(exc), param_hint="--journal-url") from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for check in report.checks:
            click.echo(check.line())
        for note in report.notes:
            click.echo(f"note: {note}")
        click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


@cli.command("prove-consistency")
@click.argument("export", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--from",
    "checkpoint_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A live checkpoint of the export kept during the run.",
)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Proof file."
)
def prove_consistency_command(export: Path, checkpoint_file: Path, out: Path) -> None:
    """Write a proof that the sealed EXPORT extends a live checkpoint (RFC 9162).

    Exit 1 if it does not (a record the checkpoint covered was changed since).
    """
    _check_output(out, directory=False)
    proof = prove_consistency(export, checkpoint_file)
    out.write_text(json.dumps(proof, indent=2) + "\n")
    click.echo(f"proof from {proof['checkpoint'].splitlines()[1]} records written to {out}")


@cli.command("verify-consistency")
@click.argument("proof", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The export's Ed25519 public key (PEM): checkpoint and manifest must be signed by it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_consistency_command(proof: Path, public_key: Path | None, as_json: bool) -> None:
    """Check a consistency proof file without the export's chunks; exit 1 if it fails."""
    report = verify_consistency_file(proof, public_key)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for note in report.notes:
            click.echo(f"note: {note}")
        click.echo(report.summary())
    if not report.ok:
        sys.exit(1)
