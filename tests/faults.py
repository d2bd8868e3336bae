"""Fault injection shared by the storage tests (a real ENOSPC from the OS is not to be had)."""

from __future__ import annotations

import errno
import os

import pytest


def fail_writes(monkeypatch: pytest.MonkeyPatch, needle: str, times: int = 1) -> list[str]:
    """Make the next ``times`` os.write calls on files whose path contains ``needle`` fail."""
    real = os.write
    failed: list[str] = []

    def write(fd: int, data: bytes) -> int:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if len(failed) < times and needle in path:
            failed.append(path)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    return failed
