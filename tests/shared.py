"""The types behind the shared fixtures in ``conftest.py`` (a test imports them from here
to annotate its arguments; pytest hands out the fixtures themselves)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Protocol

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
