"""Fault injection shared by the storage tests.

:func:`fail_writes` makes chosen writes fail with ENOSPC; :func:`small_filesystem`
mounts a real, size-limited tmpfs (needs root; the test is skipped otherwise)
whose writes fail with the kernel's own ENOSPC once it is full.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def wait_stopped(live: Any, patience: float = 60.0) -> None:
    """Wait until a live projector (thread or projector process part) has stopped by
    itself; fail, instead of hanging, after ``patience`` seconds."""
    deadline = time.monotonic() + patience
    while live.alive():
        assert time.monotonic() < deadline, f"the live projector still runs after {patience} s"
        time.sleep(0.01)


def kill_and_wait(pid: int, patience: float = 60.0) -> None:
    """SIGKILL ``pid`` and wait until it is gone (a zombie nobody reaped counts as gone)."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + patience
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):  # gone (reaped between open and read)
            return
        if state in ("Z", "X"):
            return
        assert time.monotonic() < deadline, f"process {pid} still runs after SIGKILL"
        time.sleep(0.01)


def fail_writes(
    monkeypatch: pytest.MonkeyPatch, needle: str, times: int = 1, error: int = errno.ENOSPC
) -> list[str]:
    """Make the next ``times`` os.write calls on files whose path contains ``needle`` fail
    (with ``error``: ENOSPC, a full disk, unless told otherwise)."""
    real = os.write
    failed: list[str] = []

    def write(fd: int, data: bytes) -> int:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if len(failed) < times and needle in path:
            failed.append(path)
            raise OSError(error, os.strerror(error))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    return failed


class SmallFilesystem:
    """A mounted tmpfs of a few MiB that the test can fill up and free again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / ".filler"

    def free_bytes(self) -> int:
        info = os.statvfs(self.path)
        return info.f_bavail * info.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Take all the space but ``leave`` bytes (rounded to pages) with a filler file."""
        with open(self._filler, "ab", buffering=0) as fh:  # unbuffered: closing writes nothing
            while self.free_bytes() > leave:
                step = max(4096, min(1 << 20, self.free_bytes() - leave))
                try:
                    fh.write(b"\0" * step)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break

    def free(self) -> None:
        """Give the space back."""
        self._filler.unlink(missing_ok=True)


@contextlib.contextmanager
def small_filesystem(where: Path, size: str = "4m") -> Iterator[SmallFilesystem]:
    """A real filesystem that runs full: tmpfs of ``size`` mounted at ``where``."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to run out of space needs root")
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield SmallFilesystem(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@contextlib.contextmanager
def read_only_copy(where: Path, *sources: Path, size: str = "64m") -> Iterator[Path]:
    """``sources`` copied onto a tmpfs at ``where`` that is then remounted read-only: writes
    there fail with the kernel's own EROFS, even for root (needs root; skipped otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        for source in sources:
            subprocess.run(["cp", "-a", str(source), str(where)], check=True)
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
