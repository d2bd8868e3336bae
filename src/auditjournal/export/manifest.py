"""The sealed export's manifest and file names, declared once.

An export at the path prefix ``.../export/audit_trail`` is these files (:class:`ExportPaths`):

* ``audit_trail.000.json`` ... the chunks (:func:`chunk_name`; ``audit_trail.json``
  when unchunked);
* ``audit_trail.sha256`` -- the chunks' SHA-256 in ``sha256sum`` format;
* ``audit_trail.manifest.json`` -- :class:`Manifest`, written last (its appearing
  means the export is sealed);
* ``audit_trail.manifest.tsr`` -- an RFC 3161 token over the manifest (when asked for);
* ``audit_trail.checkpoints/`` -- live checkpoints, signed tree heads written while live.

The projector's own files, its checkpoint ``audit_trail.checkpoint.json`` and its
lock ``audit_trail.lock``, are not part of the export: they are kept beside the
export directory, in ``<directory>.state/`` (``runs/<id>/export.state/`` for a
store's run), so the directory an auditor receives holds only the export. Exports
written before issue 15 kept them inside as ``.audit_trail.checkpoint.json`` and
``.audit_trail.lock`` (:attr:`ExportPaths.legacy_checkpoint`); the projector moves
them out when it opens such an export (:func:`~auditjournal.export.checkpoint.lock_export`).

The projector writes the manifest with :func:`encode_manifest`; every reader
(verify, extract, tail, the typed reimport) reads it with :func:`read_manifest`,
so the writer and the readers share one :class:`Manifest` type, and
``schemas/manifest.schema.json`` is generated from it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec

from ..fs.safeio import MAX_MANIFEST_BYTES, decode_strict, read_regular

__all__ = [
    "CHUNK_SUFFIX",
    "MANIFEST_FORMAT",
    "MANIFEST_SUFFIX",
    "MERKLE_TREE",
    "SHA256SUMS_SUFFIX",
    "ChunkEntry",
    "ExportPaths",
    "JournalHead",
    "Manifest",
    "ManifestSignature",
    "TreeHead",
    "chunk_name",
    "encode_manifest",
    "prefix_name_of",
    "read_manifest",
    "sha256sums_text",
]

MANIFEST_FORMAT: Final = "auditjournal-export/1"
MERKLE_TREE: Final = "rfc6962-sha256"
MANIFEST_SUFFIX: Final = ".manifest.json"
SHA256SUMS_SUFFIX: Final = ".sha256"
CHUNK_SUFFIX: Final = ".json"


def chunk_name(prefix_name: str, index: int, single_file: bool) -> str:
    """``audit_trail.000.json`` ... (3 digits minimum), or ``audit_trail.json`` unchunked."""
    if single_file:
        return f"{prefix_name}{CHUNK_SUFFIX}"
    return f"{prefix_name}.{index:03d}{CHUNK_SUFFIX}"


def prefix_name_of(manifest: Path) -> str:
    """The export's prefix name (``audit_trail``) from its manifest's path."""
    return manifest.name.removesuffix(MANIFEST_SUFFIX)


@dataclass(frozen=True)
class ExportPaths:
    """Where an export's files are, from its path prefix (``.../export/audit_trail``)."""

    prefix: Path

    @property
    def directory(self) -> Path:
        """The export directory (the prefix's parent): what an auditor receives."""
        return self.prefix.parent

    @property
    def manifest(self) -> Path:
        """``audit_trail.manifest.json``: written last; its presence means sealed."""
        return self.prefix.with_name(self.prefix.name + MANIFEST_SUFFIX)

    @property
    def sha256sums(self) -> Path:
        """``audit_trail.sha256``: the chunks' and the manifest's SHA-256, ``sha256sum`` format."""
        return self.prefix.with_name(self.prefix.name + SHA256SUMS_SUFFIX)

    @property
    def state_dir(self) -> Path:
        """``<directory>.state/`` beside the export directory: the projector's checkpoint
        and lock, kept out of the export (absolute; an export in a filesystem root keeps
        them inside, under the old hidden names)."""
        directory = Path(os.path.abspath(self.directory))
        if not directory.name:
            return directory
        return directory.with_name(directory.name + ".state")

    @property
    def checkpoint(self) -> Path:
        """The projector's checkpoint (``<directory>.state/audit_trail.checkpoint.json``)."""
        state = self.state_dir
        if state.name.endswith(".state"):
            return state / f"{self.prefix.name}.checkpoint.json"
        return self.legacy_checkpoint

    @property
    def legacy_checkpoint(self) -> Path:
        """Where exports written before issue 15 kept the checkpoint: inside, hidden."""
        return self.prefix.with_name(f".{self.prefix.name}.checkpoint.json")

    @property
    def timestamp(self) -> Path:
        """``audit_trail.manifest.tsr``: the RFC 3161 token over the manifest, if asked for."""
        return self.prefix.with_name(self.prefix.name + ".manifest.tsr")

    @property
    def live_checkpoints(self) -> Path:
        """``audit_trail.checkpoints/``: the signed tree heads written while live."""
        return self.prefix.with_name(self.prefix.name + ".checkpoints")

    @property
    def lock(self) -> Path:
        """The projector's lock (``<directory>.state/audit_trail.lock``): one writer."""
        state = self.state_dir
        if state.name.endswith(".state"):
            return state / f"{self.prefix.name}.lock"
        return self.legacy_lock

    @property
    def legacy_lock(self) -> Path:
        """Where exports written before issue 15 kept the lock: inside, hidden."""
        return self.prefix.with_name(f".{self.prefix.name}.lock")

    def chunk(self, index: int, single_file: bool = False) -> Path:
        """Chunk ``index`` (``audit_trail.000.json``...); ``audit_trail.json`` if single_file."""
        return self.directory / chunk_name(self.prefix.name, index, single_file)


class ChunkEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One chunk as the manifest lists it (also the projector's checkpoint form)."""

    file: str
    sha256: str
    bytes: int
    record_count: int
    first_seq: int
    last_seq: int


class JournalHead(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The journal entry the export was sealed at: ``run_completed``'s seq and chain."""

    seq: int
    chain: str


class ManifestSignature(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``signature`` member (see :mod:`auditjournal.proofs.signing`)."""

    algorithm: str
    key_id: str
    value: str


class TreeHead(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A live checkpoint as the manifest lists it: its tree size and Merkle root (hex)."""

    tree_size: int
    root: str


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """``audit_trail.manifest.json``: what a sealed export holds and its Merkle root.

    Written with :func:`encode_manifest`; ``signature`` is omitted when unsigned,
    ``checkpoints`` when there are no live checkpoints, ``completeness`` (the
    certificate, :func:`auditjournal.model.completeness.certificate`) in exports
    sealed before issue 16 -- so older manifests read, and verify, as before."""

    format: str
    run_id: str
    run_status: str
    chunk_count: int
    chunk_size_bytes: int | None
    total_record_count: int
    include_payloads: bool
    chunks: list[ChunkEntry]
    journal_head: JournalHead
    merkle_tree: str
    merkle_root: str
    sealed_at: str
    signature: ManifestSignature | None = None
    checkpoints: list[TreeHead] | None = None
    completeness: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The manifest as JSON values (what is signed, without ``signature``, and encoded)."""
        value: dict[str, Any] = msgspec.to_builtins(self)
        return value


def encode_manifest(manifest: Manifest | dict[str, Any]) -> bytes:
    """The manifest file's bytes: sorted keys, two-space indent, UTF-8, final newline."""
    value = manifest.as_dict() if isinstance(manifest, Manifest) else manifest
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def sha256sums_text(chunks: list[ChunkEntry], manifest: tuple[str, bytes] | None = None) -> bytes:
    """``audit_trail.sha256``: each chunk's SHA-256 and file name, ``sha256sum`` format,
    then the manifest's (``manifest`` = its file name and bytes), so ``sha256sum -c``
    checks the manifest too (the listing cannot list itself: a cycle)."""
    text = "".join(f"{c.sha256}  {c.file}\n" for c in chunks)
    if manifest is not None:
        name, data = manifest
        text += f"{hashlib.sha256(data).hexdigest()}  {name}\n"
    return text.encode()


def read_manifest(path: Path) -> tuple[bytes, Manifest]:
    """The manifest file's bytes and their parsed form, read as evidence (a regular file
    only, bounded, no duplicate members, every field of the right type; a missing file is
    ``FileNotFoundError``). The chunk entries are not checked here (``verify`` does)."""
    raw = read_regular(path, "manifest", MAX_MANIFEST_BYTES)
    return raw, decode_strict(raw, f"{path.name}", Manifest)
