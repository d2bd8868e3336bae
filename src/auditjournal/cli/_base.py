"""Shared parts of the command line: the group, common options, error handling.

Expected failures (every :class:`AuditJournalError`) become one clear line on
stderr and an exit code, in one place (:func:`main`): 0 success,
1 verification/validation failure, 2 usage error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from .. import __version__
from ..errors import (
    AuditJournalError,
    ExportNotFoundError,
    InvalidIdError,
    NotALandscapeDatabaseError,
    RowNotFoundError,
    RunNotFoundError,
    SigningKeyError,
)
from ..recording.store import AuditStore

__all__ = ["cli", "main"]


_USAGE_ERRORS = (
    InvalidIdError,
    RunNotFoundError,
    RowNotFoundError,
    ExportNotFoundError,
    SigningKeyError,
    NotALandscapeDatabaseError,
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
    total = sum(p.lstat().st_size for p in directory.glob("*.json"))  # links are not read
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def _log_to_stderr() -> None:
    """Show the library's warnings (logger ``auditjournal``) as lines on stderr, unless
    the program already configured logging."""
    logger = logging.getLogger("auditjournal")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("auditjournal: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning expected failures into one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="auditjournal", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # one line (SPEC section 5), not click's usage block
        command = exc.ctx.command_path if exc.ctx is not None else "auditjournal"
        click.echo(f"{command}: error: {exc.format_message()} (see --help)", err=True)
        sys.exit(exc.exit_code)
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
