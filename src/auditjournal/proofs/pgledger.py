"""The store ledger of a PostgreSQL-journal store: the same log, kept in the journal database.

With ``journal_url`` every writer host has a root of its own, but the runs are the
database's, so there is one ledger per database (tables ``auditjournal_ledger*`` of the
journal schema, :mod:`auditjournal.journal.pgschema`). The entries are the file ledger's
:class:`~.ledger.LedgerEntry` lines, hashed the same way (RFC 9162), and the checkpoints
the same C2SP notes, so ``verify-store`` checks either source with the same code. Each
entry also names the root it was sealed in (``store``: the id in ``<root>/ledger/store``,
written once), because its ``path`` is relative to that root.

An append is one transaction under the ledger's advisory lock: read the lines, add one,
write the checkpoint of the new tree; the line and its checkpoint commit together, so
the file ledger's torn-line cut and checkpoint catch-up have nothing to do here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Final

import msgspec

from ..errors import MalformedEvidenceError
from ..fs.safeio import read_regular, real_dir
from ..fs.storage import fsync_dir, storage_error
from ..journal.pgbackend import PgDatabase
from .ledger import LEDGER_DIR, Ledger, LedgerEntry, new_origin, parse_ledger
from .merkle import leaf_hash

__all__ = ["STORE_ID_FILE", "PgLedger", "open_ledger", "read_store_id"]

STORE_ID_FILE: Final = "store"
_STORE_PREFIX: Final = "auditjournal.store/"


def read_store_id(root: Path) -> str | None:
    """The id of the store root ``root`` (``<root>/ledger/store``), None if it has none."""
    try:
        data = read_regular(root / LEDGER_DIR / STORE_ID_FILE, "store id", 4096)
    except FileNotFoundError:
        return None
    value = data.decode("utf-8", "replace").rstrip("\n")
    if not value.startswith(_STORE_PREFIX):
        raise MalformedEvidenceError(f"{root / LEDGER_DIR / STORE_ID_FILE} is not a store id")
    return value


def _store_id(root: Path) -> str:
    """The root's id, made once: written to a temporary file and linked into place, so
    two processes opening a new root at once agree on the first one."""
    found = read_store_id(root)
    if found is not None:
        return found
    directory = real_dir(root, LEDGER_DIR)
    temporary = directory / f".store.{secrets.token_hex(8)}"
    try:
        temporary.write_bytes((_STORE_PREFIX + secrets.token_hex(8) + "\n").encode())
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # another process was first: its id
            os.link(temporary, directory / STORE_ID_FILE)
        fsync_dir(directory)
    except OSError as exc:
        raise storage_error(exc, f"cannot write {directory / STORE_ID_FILE}") from None
    finally:
        temporary.unlink(missing_ok=True)
    found = read_store_id(root)
    assert found is not None
    return found


class PgLedger(Ledger):
    """Appends to the ledger of the journal database ``db`` for the store root ``root``."""

    def __init__(self, root: Path, key_file: Path | None, db: PgDatabase) -> None:
        super().__init__(root, key_file)
        self.db = db
        self._store: str | None = None

    @property
    def store(self) -> str:
        """This root's id, the ``store`` of the entries it appends."""
        if self._store is None:
            self._store = _store_id(self.paths.root)
        return self._store

    def append(self, entry: LedgerEntry) -> bool:
        """Append ``entry`` (for this root) unless it is already the latest for its key, and
        the checkpoint of the new tree, in one transaction. True if appended."""
        entry = msgspec.structs.replace(entry, store=self.store)

        def step(origin: str, lines: list[bytes]) -> tuple[bytes | None, bytes]:
            state = parse_ledger(origin, b"".join(line + b"\n" for line in lines))
            if state.latest().get(entry.key) == entry:
                return None, self._note(origin, state)
            line = entry.line()
            state.entries.append(entry)
            state.leaves.append(leaf_hash(line))
            return line, self._note(origin, state)

        return self.db.ledger_append(new_origin(), step)

    def catch_up(self) -> None:
        """Nothing to repair: a line and its checkpoint commit in one transaction."""


def open_ledger(root: Path, key_file: Path | None, journal_url: str | None) -> Ledger:
    """The ledger a store at ``root`` appends to: its files, or (``journal_url``) the
    journal database's."""
    if journal_url is None:
        return Ledger(root, key_file)
    return PgLedger(root, key_file, PgDatabase(journal_url))
