"""Live checkpoints: signed tree heads of an export while it is written.

Every ``checkpoint_every_records`` records (a multiple of it: the tree sizes are
a pure function of the records, so a replay writes the same ones) the export
projector writes ``<prefix>.checkpoints/<tree size, 20 digits>.checkpoint``: a
C2SP ``tlog-checkpoint`` of the export's RFC 9162 Merkle tree so far, origin
``auditjournal.export/<run_id>``, signed as a C2SP signed note under that
name with the export's Ed25519 key when ``sign='ed25519'``, else the text
alone (unsigned). The sealed manifest lists them (``checkpoints``: tree size
and root) and ``verify`` checks each is a prefix of the sealed tree; an
observer who kept one can hold the sealed export to it
(``prove-consistency`` / ``verify-consistency``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

from ..fs.safeio import real_dir
from ..fs.storage import atomic_write
from ..model.settings import ExportSettings
from ..proofs.signednote import Checkpoint, NoteSigner, sign_checkpoint
from .manifest import ExportPaths, TreeHead

__all__ = [
    "ORIGIN_PREFIX",
    "LiveCheckpoints",
    "checkpoint_file_name",
    "checkpoints_dir",
    "export_origin",
]

ORIGIN_PREFIX: Final = "auditjournal.export/"


def export_origin(run_id: str) -> str:
    """The checkpoints' origin (and signing key name) for a run's export."""
    return ORIGIN_PREFIX + run_id


def checkpoints_dir(prefix: Path) -> Path:
    return ExportPaths(prefix).live_checkpoints


def checkpoint_file_name(size: int) -> str:
    return f"{size:020d}.checkpoint"


class LiveCheckpoints:
    """Writes the checkpoint files of one export (one thread)."""

    def __init__(self, prefix: Path, run_id: str, settings: ExportSettings) -> None:
        self.directory = checkpoints_dir(prefix)
        self.origin = export_origin(run_id)
        self._signer: NoteSigner | None = None
        if settings.sign == "ed25519" and settings.signing_key_file:
            self._signer = NoteSigner.from_pem_file(self.origin, Path(settings.signing_key_file))
        self.written = 0  # tree heads already on disk

    def note(self, size: int, root: bytes) -> bytes:
        checkpoint = Checkpoint(self.origin, size, root)
        if self._signer is None:
            return checkpoint.text().encode()
        return sign_checkpoint(checkpoint, self._signer)

    def write(self, heads: list[tuple[int, bytes]]) -> None:
        """Write the files of the heads not written yet (after their records are flushed)."""
        if self.written >= len(heads):
            return
        real_dir(self.directory.parent, self.directory.name)
        for size, root in heads[self.written :]:
            atomic_write(self.directory / checkpoint_file_name(size), self.note(size, root))
        self.written = len(heads)

    def remove_all(self) -> None:
        """Before a rebuild: the old files go (the new ones are the same, or fewer)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.written = 0


def manifest_checkpoints(heads: list[tuple[int, bytes]]) -> list[TreeHead] | None:
    """The manifest's ``checkpoints``: None (left out) when there are none."""
    return [TreeHead(tree_size=size, root=root.hex()) for size, root in heads] or None
