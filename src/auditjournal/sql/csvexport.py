"""The CSV export: one file per record type, refs instead of payloads, its own sha256 listing.

``export_csv(store, run_id, out_dir)`` projects a *completed* run's journal
through the same :class:`~auditjournal.model.records.RecordMaker` as the JSON
export (payloads not inlined, so records carry their ``*_hash``/``*_ref``
only) and writes, in ``out_dir`` exactly as given (created if missing):

* ``<record_type>.csv`` for every type of :data:`~auditjournal.model.records.RECORD_TYPES`
  (``run.csv``, ``node.csv``, ..., ``artifact.csv``), always all ten, a type
  without records gets its header line only;
* ``audit_trail.csv.sha256`` listing the ten files in ``sha256sum`` format (in
  :data:`RECORD_TYPES` order), so ``cd out_dir && sha256sum -c audit_trail.csv.sha256``
  works with no tool of ours.

Then the export is itself audited: a ``csv_exported`` event (files with
sha256/bytes/rows, the listing's sha256, the absolute ``out_dir``) is
appended to the run's journal. Exporting the same run to the same directory
again gives byte-identical files and records nothing new (the store
de-duplicates an identical export event).

File format (RFC 4180): UTF-8 without BOM, ``\\r\\n`` line ends, a header line,
fields quoted only when needed (comma, quote, CR/LF), ``"`` doubled. Columns are
exactly the record's fields, as :mod:`~auditjournal.model.recordtypes` declares them
(:data:`COLUMNS`). Cells: ``None`` -> empty; strings verbatim (no
spreadsheet-formula escaping: the audit copy keeps the data as recorded);
numbers and booleans as their canonical JSON text (``true``, ``12.5``,
``1e+21``); objects and arrays as their canonical JSON text (RFC 8785). An
empty string and ``None`` therefore both read as an empty cell. Records appear
in export (journal seq) order within each file.

Failure modes: a run that has not completed raises
:class:`RunNotCompletedError` and leaves nothing behind (files are written to
temporary names, ``.<type>.csv.tmp-<pid>-<n>``, and renamed only at the end).
An exporter holds an exclusive ``flock`` on ``out_dir`` itself while it writes
(a second export into the same directory meanwhile raises
:class:`JournalLockedError`), so temporary files found there by the next export
belong to an exporter that was killed (SIGKILL, power loss) and are removed
before it starts. A recorder that still holds
the journal (``run.complete()`` without ``close()``, or another process
appending) makes it raise :class:`JournalLockedError` -- checked before the files
are put in place, so nothing is written then either; close the recorder and
export again. Memory is flat: rows are written as records are projected.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec

from ..errors import ExportError, JournalLockedError, RunNotCompletedError
from ..fs.storage import atomic_write, fsync_dir, storage_error
from ..journal.base import JournalCursor, RunJournal
from ..model.canonical import canonical_json, format_float
from ..model.events import CsvExported, CsvFile
from ..model.records import RecordMaker
from ..model.recordtypes import CONDITIONAL_FIELDS, RECORD_TYPES, record_columns
from ..proofs.ledger import Ledger, LedgerEntry, entry_path

if TYPE_CHECKING:
    import datetime as dt

    from ..fs.storage import Durability


class CsvSource(Protocol):
    """The parts of a store the CSV export uses (:class:`~auditjournal.AuditStore` has them)."""

    durability: Durability
    root: Path
    ledger: Ledger

    def journal(self, run_id: str) -> RunJournal: ...
    def journal_reader(self, run_id: str) -> JournalCursor: ...
    def append_export_event(self, run_id: str, event: CsvExported) -> bool: ...
    def now(self) -> dt.datetime: ...


__all__ = ["COLUMNS", "CSV_LISTING_NAME", "CsvResult", "export_csv", "journal_size"]

CSV_LISTING_NAME: Final = "audit_trail.csv.sha256"

COLUMNS: Final[dict[str, tuple[str, ...]]] = {kind: record_columns(kind) for kind in RECORD_TYPES}
"""The CSV columns of each record type: the record's fields as
:mod:`~auditjournal.model.recordtypes` declares them, without inlined payloads
(``record_type``, ``run_id``, ``seq``, the entity's id and fields, its timestamps, then
its conditional keys, ``appended_at`` last)."""
_OPTIONAL: Final = {kind: frozenset(CONDITIONAL_FIELDS[kind]) for kind in RECORD_TYPES}
"""Per record type, its conditional columns (an empty cell when the record lacks the key)."""

Progress = Callable[[int], None]
_BATCH: Final = 4096


@dataclass(frozen=True)
class CsvResult:
    """What :func:`export_csv` wrote, and whether it was newly recorded in the journal."""

    out_dir: Path
    files: tuple[CsvFile, ...]
    listing_path: Path
    listing_sha256: str
    recorded: bool
    """False when the identical export was already recorded (same directory, same bytes)."""

    @property
    def total_rows(self) -> int:
        """Rows written over all the CSV files."""
        return sum(f.rows for f in self.files)

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values (what ``export-csv --json`` prints)."""
        return {
            "out_dir": str(self.out_dir),
            "files": [msgspec.structs.asdict(f) for f in self.files],
            "listing": str(self.listing_path),
            "listing_sha256": self.listing_sha256,
            "total_rows": self.total_rows,
            "recorded": self.recorded,
        }


def journal_size(store: CsvSource, run_id: str) -> int:
    """Bytes of the run's journal now: the total for :func:`export_csv`'s ``progress``."""
    return store.journal(run_id).size_bytes()


def export_csv(
    store: CsvSource,
    run_id: str,
    out_dir: Path | str,
    *,
    progress: Progress | None = None,
) -> CsvResult:
    """Write the CSV export of a completed run into ``out_dir`` and record it in the journal.

    ``progress`` is called with the number of journal bytes consumed since its
    last call (the total is :func:`journal_size`), for a progress bar.

    Raises :class:`RunNotCompletedError` (run not completed),
    :class:`JournalLockedError` (a recorder still holds the journal),
    :class:`RunNotFoundError`; in each case nothing is written.
    """
    out = Path(out_dir)
    reader = store.journal_reader(run_id)  # RunNotFoundError before anything is created
    created = _missing_dirs(out)
    temps = _TempFiles(out)
    dir_lock = -1
    try:
        _make_dir(out)
        dir_lock = _lock_out_dir(out)
        _remove_stale_temps(out)
        temps.open()
        maker = _project(reader, run_id, temps, store.journal(run_id), progress)
        if maker.completed is None:
            raise RunNotCompletedError(
                f"run {run_id!r} has not completed; only a completed run can be exported"
            )
        durable = store.durability != "none"
        files = temps.finish(durable)
        event = _exported_event(store, run_id, out, files)
        with _journal_unlocked(store, run_id):
            temps.commit(durable)
            atomic_write(out / CSV_LISTING_NAME, _listing(files), durable=durable)
    except BaseException:
        temps.discard()
        if dir_lock >= 0:
            os.close(dir_lock)
            dir_lock = -1
        for directory in created:
            _remove_if_empty(directory)
        raise
    finally:
        reader.close()
        if dir_lock >= 0:
            os.close(dir_lock)
    store.ledger.append(
        LedgerEntry(
            kind="csv",
            run_id=run_id,
            path=entry_path(store.root, out / CSV_LISTING_NAME),
            manifest_sha256=event.listing_sha256,
            merkle_root=None,
            record_count=sum(f.rows for f in files),
            sealed_at=None,
        )
    )
    recorded = store.append_export_event(run_id, event)
    return CsvResult(
        out_dir=out,
        files=files,
        listing_path=out / CSV_LISTING_NAME,
        listing_sha256=event.listing_sha256,
        recorded=recorded,
    )


# -- projection -------------------------------------------------------------------------


def _project(
    reader: JournalCursor,
    run_id: str,
    temps: _TempFiles,
    journal: RunJournal,
    progress: Progress | None,
) -> RecordMaker:
    """Every record of the run (refs only) as a CSV row, in journal order."""
    maker = RecordMaker(run_id, None)
    meter = _JournalMeter(journal, progress)
    while batch := reader.poll(limit=_BATCH):
        for event in batch:
            for _, record in maker.records(event):
                temps.add(msgspec.json.decode(record))
        meter.update(reader)
    return maker


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if type(value) is str:
        return value
    if type(value) is float:
        return format_float(value)
    return canonical_json(value).decode()


def _listing(files: tuple[CsvFile, ...]) -> bytes:
    return "".join(f"{f.sha256}  {f.file}\n" for f in files).encode()


def _exported_event(
    store: CsvSource, run_id: str, out: Path, files: tuple[CsvFile, ...]
) -> CsvExported:
    return CsvExported(
        run_id=run_id,
        ts=store.now(),
        out_dir=os.path.abspath(out),
        files=files,
        listing_sha256=hashlib.sha256(_listing(files)).hexdigest(),
    )


@contextmanager
def _journal_unlocked(store: CsvSource, run_id: str) -> Iterator[None]:
    """Fail with :class:`JournalLockedError` *before* files are put in place if a writer
    (a recorder not yet closed, another process) holds the journal we must append to."""
    with ExitStack() as stack:
        try:
            stack.enter_context(store.journal(run_id).lease())
        except JournalLockedError as exc:
            raise JournalLockedError(
                f"{exc}: a recorder (or another process) still holds it; close it and export again"
            ) from None
        yield


class _JournalMeter:
    """Turns the reader's position into journal bytes consumed, for ``progress``."""

    def __init__(self, journal: RunJournal, progress: Progress | None) -> None:
        self._progress = progress
        self._journal = journal
        self._done = 0

    def update(self, reader: JournalCursor) -> None:
        if self._progress is None:
            return
        done = self._journal.bytes_before(reader.position)
        if done > self._done:
            self._progress(done - self._done)
            self._done = done


# -- files ------------------------------------------------------------------------------


class _HashingSink:
    """A text sink for :mod:`csv` that writes UTF-8, hashing and counting the bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hash = hashlib.sha256()
        self.bytes = 0
        self.rows = 0
        self._fh = open(path, "wb")  # noqa: SIM115 - closed by finish() or discard()

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self.hash.update(data)
        self.bytes += len(data)
        self._fh.write(data)
        return len(text)

    def close(self, durable: bool) -> None:
        if self._fh.closed:
            return
        self._fh.flush()
        if durable:
            os.fsync(self._fh.fileno())
        self._fh.close()


class _TempFiles:
    """One temporary CSV file and writer per record type; renamed into place by commit."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._sinks: dict[str, _HashingSink] = {}
        self._writers: dict[str, Any] = {}
        self._tag = f"{os.getpid()}-{id(self):x}"

    def open(self) -> None:
        try:
            for kind in RECORD_TYPES:
                sink = _HashingSink(self.out / f".{kind}.csv.tmp-{self._tag}")
                self._sinks[kind] = sink
                writer = csv.writer(sink, lineterminator="\r\n")
                writer.writerow(COLUMNS[kind])
                self._writers[kind] = writer
        except OSError as exc:
            raise storage_error(exc, f"cannot write CSV files in {self.out}") from exc

    def add(self, record: dict[str, Any]) -> None:
        kind = record["record_type"]
        columns = COLUMNS.get(kind)
        if columns is None:
            raise ExportError(f"record type {kind!r} has no CSV file")
        if not record.keys() <= set(columns) or not set(columns) - record.keys() <= _OPTIONAL[kind]:
            extra = sorted((set(record) ^ set(columns)) - _OPTIONAL[kind])
            raise ExportError(f"{kind} record fields differ from its CSV columns: {extra}")
        try:
            self._writers[kind].writerow([_cell(record.get(c)) for c in columns])
        except OSError as exc:
            raise storage_error(exc, f"cannot write {kind}.csv in {self.out}") from exc
        self._sinks[kind].rows += 1

    def finish(self, durable: bool) -> tuple[CsvFile, ...]:
        """Close the files (fsynced if ``durable``); their name, sha256, bytes and rows."""
        files = []
        for kind, sink in self._sinks.items():
            try:
                sink.close(durable)
            except OSError as exc:
                raise storage_error(exc, f"cannot write {kind}.csv in {self.out}") from exc
            files.append(
                CsvFile(
                    file=f"{kind}.csv",
                    sha256=sink.hash.hexdigest(),
                    bytes=sink.bytes,
                    rows=sink.rows,
                )
            )
        return tuple(files)

    def commit(self, durable: bool) -> None:
        """Rename every temporary file to its final name (replacing an older one)."""
        try:
            for kind, sink in self._sinks.items():
                os.replace(sink.path, self.out / f"{kind}.csv")
            if durable:
                fsync_dir(self.out)
        except OSError as exc:
            raise storage_error(exc, f"cannot write CSV files in {self.out}") from exc
        self._sinks.clear()

    def discard(self) -> None:
        """Close and delete whatever temporary files exist (after a failure)."""
        for sink in self._sinks.values():
            with suppress(OSError):
                sink.close(durable=False)
            sink.path.unlink(missing_ok=True)
        self._sinks.clear()


_STALE_TEMP = re.compile(
    r"\.(?:"
    + "|".join(re.escape(kind) for kind in RECORD_TYPES)
    + r")\.csv\.tmp-[0-9]+-[0-9a-f]+|\."
    + re.escape(CSV_LISTING_NAME)
    + r"\.tmp-[0-9]+-[0-9]+"
)
"""Names of our temporary files (``_TempFiles``, and ``atomic_write`` of the listing)."""


def _lock_out_dir(out: Path) -> int:
    """Hold an exclusive ``flock`` on ``out`` itself (no lock file left among the CSVs)."""
    try:
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise storage_error(exc, f"cannot open {out}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalLockedError(
            f"another CSV export is writing into {out}; wait for it or choose another --out"
        ) from None
    return fd


def _remove_stale_temps(out: Path) -> None:
    """Remove temporary files a killed exporter left (we hold the directory's lock, so
    no live exporter has any here). Only our own names, only regular files."""
    try:
        names = [entry for entry in os.scandir(out) if _STALE_TEMP.fullmatch(entry.name)]
    except OSError as exc:
        raise storage_error(exc, f"cannot list {out}") from exc
    for entry in names:
        if entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise storage_error(exc, f"cannot remove stale {entry.path}") from exc


def _missing_dirs(directory: Path) -> list[Path]:
    """``directory`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not directory.exists() and directory.parent != directory:
        missing.append(directory)
        directory = directory.parent
    return missing


def _make_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, f"cannot create {directory}") from exc


def _remove_if_empty(directory: Path) -> None:
    with suppress(OSError):  # not empty (someone else's files) or already gone: leave it
        directory.rmdir()
