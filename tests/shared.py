"""The types behind the shared fixtures in ``conftest.py`` (a test imports them from here
to annotate its arguments; pytest hands out the fixtures themselves), and the one way
the tests run the command line in process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from auditjournal.cli import main
from auditjournal.demo import DemoResult


class Keys(NamedTuple):
    """An Ed25519 key pair as ``auditjournal keygen`` writes it (PEM files)."""

    private: Path
    public: Path


class SealedDemo(Protocol):
    """Record the demo pipeline with the live export, seal and verify it (see ``sealed_demo``)."""

    def __call__(
        self,
        rows: int,
        *,
        chunk_size_bytes: int | None,
        signed: bool = True,
        root: Path | None = None,
    ) -> DemoResult: ...


class CliRun(NamedTuple):
    """What a command-line run ended with: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


Cli = Callable[..., CliRun]


def run_cli(capsys: Any, *args: str | Path) -> CliRun:
    """The CLI's entry point in this process, errors becoming exit codes as in the shell
    (``capsys`` is pytest's fixture; what was printed before is dropped)."""
    capsys.readouterr()
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return CliRun(code, captured.out, captured.err)


@dataclass
class Receiver:
    """What the ``receiver`` fixture's lineage endpoint on 127.0.0.1 was sent (``posts``:
    path, headers, body); ``status`` is what it answers."""

    url: str
    status: int = 200
    posts: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
