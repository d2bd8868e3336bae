"""The export projector: follows a run's journal and writes the auditor's export live.

Events become records (:mod:`records`), records go to chunk files
(:mod:`chunks`); when ``run_completed`` is projected the export is sealed:
the last chunk is closed and fsynced, ``audit_trail.sha256`` (``sha256sum``
format) and then ``audit_trail.manifest.json`` are written atomically. The
manifest appearing is the signal that the export is complete.

Restartable: after each batch the projector may write a checkpoint
(``audit_trail.checkpoint.json`` beside the export: journal position, chunk state, Merkle
frontier, open node states). After a crash it truncates the current chunk
back to the checkpoint and re-projects from there; records are a pure
function of the events, so the bytes are the same as an uninterrupted run.
If the files do not match the checkpoint (say, after power loss) it
rebuilds the export from the start of the journal.

The projector never writes the journal itself: whoever drives it appends
``export_sealed`` / ``export_failed`` with the :class:`SealResult`
(the in-process recorder, or ``auditjournal project``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from ..errors import AuditJournalError, ExportError
from ..fs.storage import atomic_write
from ..journal.base import JournalCursor, JournalPosition, RunJournal
from ..journal.filebackend import as_run_journal
from ..model.completeness import certificate
from ..model.events import Event, ExportSealed, RunCompleted
from ..model.records import RecordMaker, iso
from ..model.settings import ExportSettings
from ..payloads.store import PayloadStore
from ..proofs.ledger import Ledger, LedgerEntry, entry_path
from ..proofs.signing import load_signer, sign_manifest
from ..proofs.timestamping import request_timestamp
from .checkpoint import CHECKPOINT_VERSION, encode_checkpoint, load_checkpoint, lock_export
from .chunks import ChunkWriter
from .livecheckpoints import (
    LiveCheckpoints,
    checkpoint_file_name,
    manifest_checkpoints,
)
from .manifest import (
    MANIFEST_FORMAT,
    MERKLE_TREE,
    ChunkEntry,
    ExportPaths,
    JournalHead,
    Manifest,
    ManifestSignature,
    encode_manifest,
    prefix_name_of,
    read_manifest,
    sha256sums_text,
)

__all__ = [
    "LIVE_STEP_EVENTS",
    "MANIFEST_FORMAT",
    "ExportPaths",
    "ExportProjector",
    "SealResult",
    "encode_manifest",
    "record_seal",
]

_log = logging.getLogger("auditjournal")

_CHECKPOINT_EVERY: Final = 1.0  # seconds
# events per step over a finished journal: ~1 MB of records, small enough to stay in the
# CPU's cache while they are hashed and written (4096: ~15% more CPU per event)
_BATCH: Final = 1024
LIVE_STEP_EVENTS: Final = 256  # per step when following a live journal: ~3 ms, then readable
_LIVE_BATCH: Final = LIVE_STEP_EVENTS


@dataclass(frozen=True)
class SealResult:
    """What sealing produced; the driver records it as ``export_sealed``."""

    manifest_path: str
    manifest_sha256: str
    chunk_count: int
    record_count: int
    merkle_root: str
    run_status: str
    checkpoints: tuple[tuple[int, str], ...] = ()  # live checkpoints: (tree size, root hex)
    timestamp: str = ""  # "" (none asked for), "stored", or why there is none

    def as_dict(self) -> dict[str, Any]:
        """The seal as JSON-ready values (``replay --json``, ``project --json``)."""
        return dict(self.__dict__)

    def sealed_event(self, run_id: str, ts: dt.datetime) -> ExportSealed:
        """The ``export_sealed`` event recording this seal (its seq is the journal's)."""
        return ExportSealed(
            run_id=run_id,
            ts=ts,
            manifest_sha256=self.manifest_sha256,
            chunk_count=self.chunk_count,
            record_count=self.record_count,
            export_path=self.manifest_path,
            merkle_root=self.merkle_root,
        )

    def checkpoint_path(self, size: int) -> str:
        """Where the live checkpoint of ``size`` records is."""
        prefix = Path(self.manifest_path).with_name(prefix_name_of(Path(self.manifest_path)))
        return str(ExportPaths(prefix).live_checkpoints / checkpoint_file_name(size))


class ExportProjector:
    """Projects one run's journal into one export. One thread drives it."""

    def __init__(
        self,
        *,
        journal_dir: Path | RunJournal,
        run_id: str,
        payloads: PayloadStore,
        settings: ExportSettings,
        prefix: Path,
        checkpoint: bool = True,
        live: bool = False,
        ledger: Ledger | None = None,
        io_thread: bool | None = None,
    ) -> None:
        self.run_id = run_id
        self._ledger = ledger
        self.settings = settings
        self.paths = ExportPaths(prefix)
        self._journal = as_run_journal(journal_dir, run_id)
        self._use_checkpoint = checkpoint
        self._payloads = payloads
        # a live projector trails its recorder closely: take payloads from its memory
        get: Callable[[str], bytes] | None = payloads.get_recent if live else payloads.get
        if not settings.include_payloads:
            get = None
        # what is not in this process's memory is read from the store's window
        window = None if live and payloads.keeps_recent else payloads.window_sources
        self._maker = RecordMaker(run_id, get, window)
        self._writer = ChunkWriter(
            prefix,
            settings.chunk_size_bytes,
            settings.checkpoint_every_records,
            # a live step is small: written at once (see chunkio.Inline); so is a step of a
            # projector process that follows a live journal (``io_thread=False``)
            io_thread=not live if io_thread is None else io_thread,
        )
        self._lock_fd = -1
        self.result: SealResult | None = None
        self._last_checkpoint = 0.0
        try:  # the writer may have started its I/O thread: closed if the rest fails
            self._tree_heads = LiveCheckpoints(prefix, run_id, settings)
            self._signer = load_signer(settings.sign, settings.signing_key_file)
            self.paths.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = lock_export(self.paths, f"export {prefix}")
            self._reader = self._resume()
        except BaseException:
            self.close()
            raise

    # -- driving ------------------------------------------------------------------------

    @property
    def sealed(self) -> bool:
        """True once the manifest is written (``result`` holds the seal)."""
        return self.result is not None

    @property
    def position(self) -> JournalPosition:
        """Where in the journal the projector reads next (``next_seq``, segment, offset, chain)."""
        return self._reader.position

    def step(self, limit: int = _BATCH) -> int:
        """Project what the journal has now (up to ``limit`` events); return events read."""
        if self.result is not None:
            return 0
        chains: list[bytes] = []
        events = self._reader.poll(limit=limit, chains=chains)
        if not events:
            return 0
        # the step's records are made, and go to the writer, in one call each (as lines
        # with their leaf hashes when compiled: no bytes object per record, no join)
        seqs: list[int] = []
        lined = self._maker.extend_lines(events, seqs)
        if lined is None:
            records: list[bytes] = []
            used = self._maker.extend(events, seqs, records)
            self._writer.add_records(seqs, records)
        else:
            used, lines, lengths, leaves = lined
            self._writer.add_lines(lines, lengths, seqs, leaves)
        last = events[used - 1]
        if type(last) is RunCompleted:
            self._seal(last, chains[used - 1])
            return used
        self.flush()
        now = time.monotonic()
        if self._use_checkpoint and now - self._last_checkpoint >= _CHECKPOINT_EVERY:
            self._write_checkpoint()
            self._last_checkpoint = now
        return len(events)

    # -- driving from events read elsewhere (the parallel replay, replay.py) --------------

    @property
    def maker(self) -> RecordMaker:
        """The record maker (events -> records; the parallel replay drives it directly)."""
        return self._maker

    def add_lines(
        self, lines: bytes, lengths: Sequence[int], seqs: Sequence[int], leaves: bytes
    ) -> None:
        """Records built elsewhere from the events in order (see ChunkWriter.add_lines)."""
        self._writer.add_lines(lines, lengths, seqs, leaves)
        self.flush()

    def flush(self) -> None:
        """Hand what is buffered to the OS (the chunks are readable up to here), then
        write the live checkpoints reached."""
        self._writer.flush()
        self._tree_heads.write(self._writer.tree_heads)

    def project(self, event: Event, chain: bytes) -> None:
        """One event read elsewhere (``chain``: its journal chain value); seals on
        ``run_completed``."""
        for seq, record in self._maker.records(event):
            self._writer.add(seq, record)
        if type(event) is RunCompleted:
            self._seal(event, chain)
            return
        self.flush()

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        poll_interval: float = 0.002,
        follow: bool = True,
        batch: int | None = None,
    ) -> SealResult | None:
        """Project until sealed (or, without ``follow``, until the journal's end).

        ``batch`` bounds the events per step: records become readable at the end
        of a step, so following a live journal uses small steps (low lag; the
        default with ``follow``), a replay big ones.
        """
        if batch is None:
            batch = _LIVE_BATCH if follow else _BATCH
        while self.result is None:
            if self.step(batch):
                continue
            if not follow or (stop is not None and stop.is_set()):
                break
            time.sleep(poll_interval)
        return self.result

    def close(self) -> None:
        """Close the files and release the export's lock; the checkpoint stays (resumable).
        Safe to call twice."""
        self._writer.close()
        if getattr(self, "_reader", None) is not None:
            self._reader.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- sealing ------------------------------------------------------------------------

    def _seal(self, completed: RunCompleted, chain: bytes) -> None:
        chunks = self._writer.finish()
        self._writer.close()
        heads = self._writer.tree_heads
        self._tree_heads.write(heads)
        entries = [ChunkEntry(**c.as_dict()) for c in chunks]
        manifest = Manifest(
            format=MANIFEST_FORMAT,
            run_id=self.run_id,
            run_status=completed.status,
            chunk_count=len(chunks),
            chunk_size_bytes=self.settings.chunk_size_bytes,
            total_record_count=self._writer.total_records,
            include_payloads=self.settings.include_payloads,
            chunks=entries,
            journal_head=JournalHead(seq=completed.seq, chain=chain.hex()),
            merkle_tree=MERKLE_TREE,
            merkle_root=self._writer.merkle.root().hex(),
            sealed_at=iso(completed.ts),
            checkpoints=manifest_checkpoints(heads),
            completeness=certificate(self._maker.tally),
        )
        if self._signer is not None:
            signed = sign_manifest(manifest.as_dict(), self._signer)["signature"]
            manifest = msgspec.structs.replace(manifest, signature=ManifestSignature(**signed))
        data = encode_manifest(manifest)
        listing = sha256sums_text(entries, (self.paths.manifest.name, data))
        atomic_write(self.paths.sha256sums, listing)
        timestamp = self._timestamp(data)
        atomic_write(self.paths.manifest, data)
        result = SealResult(
            manifest_path=str(self.paths.manifest),
            manifest_sha256=hashlib.sha256(data).hexdigest(),
            chunk_count=len(chunks),
            record_count=self._writer.total_records,
            merkle_root=manifest.merkle_root,
            run_status=completed.status,
            checkpoints=tuple((size, root.hex()) for size, root in heads),
            timestamp=timestamp,
        )
        self._record_in_ledger(result, manifest.sealed_at)
        self.result = result
        if self._use_checkpoint:
            self._write_checkpoint()

    def _timestamp(self, manifest: bytes) -> str:
        """Ask the TSA for a token over the manifest and store it beside it (before the
        manifest: a sealed export never lacks a token it was meant to have). A TSA that
        fails raises :class:`ExportError` (the seal fails, ``export_failed``), or with
        ``timestamp_required=False`` is logged and said in the result."""
        url = self.settings.timestamp_url
        self.paths.timestamp.unlink(missing_ok=True)
        if url is None:
            return ""
        try:
            token = request_timestamp(url, manifest)
        except AuditJournalError as exc:
            if self.settings.timestamp_required:
                raise ExportError(f"no trusted timestamp for the manifest: {exc}") from exc
            _log.warning("run %s sealed WITHOUT a trusted timestamp: %s", self.run_id, exc)
            return f"none: {exc}"
        atomic_write(self.paths.timestamp, token)
        return "stored"

    def _record_in_ledger(self, result: SealResult, sealed_at: str) -> None:
        """Append the seal to the store ledger (idempotent: a seal re-done after a crash,
        or found sealed on resume, is recorded once)."""
        if self._ledger is not None:
            record_seal(self._ledger, self.run_id, result, sealed_at)

    # -- checkpoints --------------------------------------------------------------------

    def _write_checkpoint(self) -> None:
        pos = self._reader.position
        state = {
            "version": CHECKPOINT_VERSION,
            "run_id": self.run_id,
            "settings": self.settings.describe(),
            "position": {
                "next_seq": pos.next_seq,
                "segment_first_seq": pos.segment_first_seq,
                "offset": pos.offset,
                "chain": pos.chain.hex(),
            },
            "writer": self._writer.snapshot(),
            "records": self._maker.snapshot(),
            "sealed": None if self.result is None else self.result.as_dict(),
        }
        atomic_write(self.paths.checkpoint, encode_checkpoint(state), durable=False)

    def _resume(self) -> JournalCursor:
        """A reader positioned after what the files on disk already hold."""
        state = self._load_checkpoint()
        if state is not None:
            if state["sealed"] is not None and self.paths.manifest.exists():
                sealed = dict(state["sealed"])
                sealed["checkpoints"] = tuple(tuple(c) for c in sealed["checkpoints"])
                self.result = SealResult(**sealed)
                if self._ledger is not None:  # a crash may have come before its entry
                    record_seal(self._ledger, self.run_id, self.result)
                return self._journal.cursor()
            # a sealed checkpoint without its manifest is past run_completed: rebuild
            if (
                state["sealed"] is None
                and self._payloads_known(state["records"])
                and self._writer.restore(state["writer"])
            ):
                self._maker.restore(state["records"])
                p = state["position"]
                position = JournalPosition(
                    p["next_seq"], p["segment_first_seq"], p["offset"], bytes.fromhex(p["chain"])
                )
                return self._journal.cursor(position)
        # no usable checkpoint: start the export afresh
        self._writer.remove_all()
        self._tree_heads.remove_all()
        for path in (
            self.paths.manifest,
            self.paths.sha256sums,
            self.paths.checkpoint,
            self.paths.timestamp,
        ):
            path.unlink(missing_ok=True)
        return self._journal.cursor()

    def _payloads_known(self, records: dict[str, Any]) -> bool:
        """Every open state's input is in the store: a checkpoint naming a payload the store
        never held was not written over this store's journal, so the export is rebuilt."""
        try:
            return all(
                s["input_data_ref"] is None or s["input_data_ref"] in self._payloads
                for s in records["open_states"].values()
            )
        except AuditJournalError:  # not a ref at all
            return False

    def _load_checkpoint(self) -> dict[str, Any] | None:
        if not self._use_checkpoint:
            return None
        return load_checkpoint(
            self.paths.checkpoint,
            run_id=self.run_id,
            settings=self.settings.describe(),
            journal=self._journal,
        )


def record_seal(
    ledger: Ledger,
    run_id: str,
    result: SealResult,
    sealed_at: str | None = None,
    kind: Literal["export", "import"] = "export",
) -> bool:
    """Append a sealed export to the store ledger (``sealed_at`` read from the manifest
    when not given), as an ``import`` entry when an import sealed it; False if it is
    already the ledger's latest entry of that kind for that manifest."""
    if sealed_at is None:
        sealed_at = read_manifest(Path(result.manifest_path))[1].sealed_at
    return ledger.append(
        LedgerEntry(
            kind=kind,
            run_id=run_id,
            path=entry_path(ledger.paths.root, Path(result.manifest_path)),
            manifest_sha256=result.manifest_sha256,
            merkle_root=result.merkle_root,
            record_count=result.record_count,
            sealed_at=sealed_at,
        )
    )
