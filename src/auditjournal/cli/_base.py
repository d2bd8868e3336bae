"""Shared parts of the command line: the group, common options, error handling.

Expected failures (every :class:`AuditJournalError`) become one clear line on
stderr and an exit code, in one place (:func:`main`): 0 success,
1 verification/validation failure, 2 usage error.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click
from rich.console import Console

from .. import __version__
from ..errors import (
    AuditJournalError,
    ExportNotFoundError,
    InvalidIdError,
    InvalidSettingsError,
    NotALandscapeDatabaseError,
    RowNotFoundError,
    RunNotFoundError,
    SigningKeyError,
)
from ..model.settings import ExportSettings

if TYPE_CHECKING:
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

ROOT_ENV = "AUDITJOURNAL_ROOT"
DATABASE_URL_ENV = "AUDITJOURNAL_DATABASE_URL"


def default_root() -> str:
    """ROOT when a command is given without it: $AUDITJOURNAL_ROOT, else ./audit."""
    return os.environ.get(ROOT_ENV) or "audit"


class _Command(click.Command):
    """A command whose ROOT argument may be left out: when the command line holds one
    positional argument fewer than the command requires, ROOT is taken from
    $AUDITJOURNAL_ROOT, else ./audit (``auditjournal runs``, ``auditjournal show RUN``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        arguments = [p for p in self.params if isinstance(p, click.Argument)]
        if arguments and arguments[0].name == "root" and not {"-h", "--help"} & set(args):
            wanted = sum(max(p.nargs, 1) for p in arguments if p.required)
            given = _positionals(self, args)
            # `tail RUN_ID` (RUN_ID optional, for --latest): RUN_ID is no directory
            optional_after = any(not p.required for p in arguments[1:])
            if len(given) == wanted - 1 or (
                optional_after and len(given) == wanted and not Path(given[0]).is_dir()
            ):
                args = [default_root(), *args]
        return super().parse_args(ctx, args)


def _positionals(command: click.Command, args: list[str]) -> list[str]:
    """The positional arguments of ``args`` (options and their values skipped)."""
    values: dict[str, int] = {}
    for param in command.params:
        if isinstance(param, click.Option) and not param.is_flag and not param.count:
            for name in param.opts:
                values[name] = param.nargs
    found: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return found + args[i + 1 :]
        if arg.startswith("-") and arg != "-":
            if "=" not in arg:
                i += values.get(arg, 0)
        else:
            found.append(arg)
        i += 1
    return found


def _chunk_size(value: str | None) -> int | str | None:
    if value is None:
        return "default"
    if value.lower() == "none":
        return None
    try:
        size = int(value.replace("_", ""))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number of bytes or 'none'") from None
    try:
        ExportSettings(chunk_size_bytes=size)
    except InvalidSettingsError as exc:
        raise click.BadParameter(str(exc)) from None
    return size


def _check_output(path: Path, *, directory: bool) -> None:
    """Refuse, before any work, an output path the user named that cannot be written:
    a missing parent directory (for a file), a file where a directory should be (or the
    reverse), a directory we may not write into (permissions, a read-only filesystem)."""
    if directory:
        if path.exists() and not path.is_dir():
            raise click.UsageError(f"{path} exists and is not a directory")
        nearest = path
        while not nearest.exists() and nearest.parent != nearest:
            nearest = nearest.parent
    else:
        if path.is_dir():
            raise click.UsageError(f"{path} is a directory; give a file name")
        nearest = path.parent
        if not nearest.is_dir():
            raise click.UsageError(f"directory {nearest} does not exist (create it first)")
    if not nearest.is_dir():
        raise click.UsageError(f"{nearest} is not a directory")
    if not os.access(nearest, os.W_OK | os.X_OK):
        reason = "read-only filesystem" if _read_only_fs(nearest) else "permission denied"
        raise click.UsageError(f"cannot write into {nearest} ({reason})")


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _existing_store(
    root: Path, journal_url: str | None = None, run_id: str | None = None
) -> AuditStore:
    """The store at ``root``; with ``journal_url`` (the PostgreSQL journal) ``root`` may be
    new, and the local copy of ``run_id``'s journal is brought up to date first."""
    from ..recording.store import AuditStore  # (see _Group: not at every start)

    if journal_url is None and not (root / "runs").is_dir():
        raise click.UsageError(f"{root} is not an auditjournal root (no runs/ directory)")
    store = AuditStore.open(root, journal_url=journal_url)
    _sync(store, run_id)
    return store


def _sync(store: AuditStore, run_id: str | None, *, every_run: bool = False) -> None:
    """Copy PostgreSQL journals to ``store``'s root for the commands that read them there."""
    if store.pg is None:
        return
    try:
        for one in store.run_ids() if every_run else [] if run_id is None else [run_id]:
            store.sync_run(one)
    except BaseException:
        store.close()
        raise


_JOURNAL_URL = click.option(
    "--journal-url",
    default=None,
    metavar="URL",
    help="The run journals are in this PostgreSQL database (postgresql+psycopg://...); "
    "their local copy under ROOT is brought up to date first.",
)


class _ReaderGone(Exception):
    """Our stdout's reader went away (``tail | head``): not an error of ours."""


COMMAND_MODULES: Final = {
    "demo": "run",
    "tail": "run",
    "replay": "run",
    "project": "run",
    "finish": "run",
    "verify": "evidence",
    "keygen": "evidence",
    "extract": "evidence",
    "verify-bundle": "evidence",
    "verify-store": "evidence",
    "prove-consistency": "evidence",
    "verify-consistency": "evidence",
    "runs": "query",
    "show": "query",
    "explain": "query",
    "export-csv": "query",
    "report": "outputs",
    "openlineage": "outputs",
    "import-landscape": "landscape",
}
"""Each command and the module of ``auditjournal.cli`` that defines it."""


class _Group(click.Group):
    """The command group, loading a command's module when the command is asked for: a
    start imports what its command needs (``auditjournal verify EXPORT`` neither the
    recorder, the projectors nor SQLAlchemy: ~0.5 s of CPU less), not every command's
    library."""

    command_class = _Command

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is None:
            load_commands()  # a name not in the table: wherever it is defined
        else:
            importlib.import_module(f"{__package__}.{module}")
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        load_commands()
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # click turns an EPIPE into exit 1; this is how tools end when output is unread
            raise _ReaderGone() from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="auditjournal")
def cli() -> None:
    """An append-only, verifiable audit trail for data pipelines.

    Data lives under ROOT: payloads/, runs/<run_id>/journal/ and
    runs/<run_id>/export/. Leave ROOT out to use $AUDITJOURNAL_ROOT, else ./audit;
    --db defaults to $AUDITJOURNAL_DATABASE_URL, else ROOT/landscape.db.
    """


def _sql_store(
    root: Path,
    db_url: str | None,
    journal_url: str | None = None,
    run_id: str | None = None,
    *,
    every_run: bool = False,
) -> AuditStore:
    if journal_url is None and not (root / "runs").is_dir():
        raise click.UsageError(f"{root} is not an auditjournal root (no runs/ directory)")
    from ..recording.store import AuditStore  # (see _Group: not at every start)

    store = AuditStore.open(root, database_url=db_url, journal_url=journal_url)
    _sync(store, run_id, every_run=every_run)
    return store


_DB = click.option(
    "--db",
    "db_url",
    default=None,
    envvar=DATABASE_URL_ENV,
    metavar="URL",
    help="Database of the SQL tables (SQLAlchemy URL; default $AUDITJOURNAL_DATABASE_URL, "
    "else ROOT/landscape.db).",
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
def _byte_progress(
    export: Path, label: str, total: int | None = None
) -> Iterator[Callable[[int], None] | None]:
    """A progress bar over the export's bytes (or ``total``) when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    if total is None:
        directory = export if export.is_dir() else export.parent
        total = sum(p.lstat().st_size for p in directory.glob("*.json"))  # links are not read
    with progress_bar(total, label, unit="bytes") as advance:
        yield advance


@contextlib.contextmanager
def progress_bar(
    total: int, label: str, *, unit: str = "bytes"
) -> Iterator[Callable[[int], None] | None]:
    """One progress bar on stderr (``rich``: it respects NO_COLOR and TERM=dumb), or
    nothing when stderr is not a terminal. Yields ``advance(n)``."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn() if unit == "bytes" else MofNCompleteColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console(stderr=True), transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def console(*, stderr: bool = False) -> Console:
    """Where styled output goes: colours only on a terminal and never with NO_COLOR set
    (rich's own rules); lines are never wrapped, so pipes and tests get them whole."""
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


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


def load_commands() -> dict[str, click.Command]:
    """Every command, their modules imported (``--help``, the docs)."""
    for module in sorted(set(COMMAND_MODULES.values())):
        importlib.import_module(f"{__package__}.{module}")
    return dict(cli.commands)


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
    except (BrokenPipeError, _ReaderGone):
        _quiet_broken_pipe()
        sys.exit(0)
    except OSError as exc:  # an expected OS failure (a read-only disk, a vanished file)
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"auditjournal: error: {exc.strerror or exc}{where}", err=True)
        sys.exit(1)


def _quiet_broken_pipe() -> None:
    """The reader went away (``tail | head``): like other tools, exit 0 without a word,
    and keep Python from complaining when it flushes stdout at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
