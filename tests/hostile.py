"""Shared pieces of the hostile-input tests: a signed sealed export to damage (made by
conftest's ``sealed_demo``), a deadline for calls that used to hang, and the CLI run
in-process and in a subprocess."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from auditjournal.demo import DemoResult
from shared import run_cli

T = TypeVar("T")


@dataclass(frozen=True)
class Signed:
    root: Path
    run_id: str
    export: Path
    public_key: Path

    @classmethod
    def of(cls, run: DemoResult, public_key: Path) -> Signed:
        return cls(run.root, run.run_id, run.export_dir, public_key)

    def copy(self, to: Path) -> Path:
        """A copy of the export to damage."""
        shutil.copytree(self.export, to)
        return to


def within(seconds: float, call: Callable[[], T], *, fifos: tuple[Path, ...] = ()) -> T:
    """``call()``, failing the test if it has not returned after ``seconds``.

    A call that hangs on a FIFO is then released by opening the FIFO's other end,
    so the thread does not outlive the test.
    """
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(("ok", call()))
        except BaseException as exc:  # handed to the test
            result.append(("raised", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for fifo in fifos:
            for flags in (os.O_WRONLY | os.O_NONBLOCK, os.O_RDONLY | os.O_NONBLOCK):
                with contextlib.suppress(OSError):
                    os.close(os.open(fifo, flags))
        thread.join(5)
        raise AssertionError(f"still running after {seconds} s (hangs)")
    kind, value = result[0]
    if kind == "raised":
        raise value
    return value  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Run:
    code: int | str
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def cli_subprocess(*args: str | Path, timeout: float = 30) -> Run:
    """``python -m auditjournal ARGS`` in a child; a hang shows as code ``"hang"``."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "auditjournal", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    except subprocess.TimeoutExpired as exc:
        return Run("hang", str(exc.stdout or ""), str(exc.stderr or ""))
    return Run(done.returncode, done.stdout, done.stderr)


def cli_here(capsys: Any, *args: str | Path) -> Run:
    """The CLI entry point in this process (errors become exit codes as in the shell)."""
    return Run(*run_cli(capsys, *args))


def assert_one_line_error(result: Run, code: int, *fragments: str) -> None:
    """Exit ``code`` with exactly one line on stderr naming the problem, no traceback."""
    assert result.code == code, result
    assert "Traceback" not in result.text, result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert "error: " in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
