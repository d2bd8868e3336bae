"""A PostgreSQL writer's payload buffer (:class:`PgPayloads`): the payloads its events refer
to, kept in memory until the flush that inserts them with those events (one transaction;
``auditjournal_payloads`` in :mod:`.pgschema`). A ref another writer stored is found by
asking the server.

Thread-safety: the recording threads put and ask, the flusher takes and gives back; one
lock guards the buffer.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from ..errors import CanonicalizationError, PayloadTooLargeError
from ..model.canonical import MAX_VALUE_DEPTH, canonical_json
from .pgschema import PgDatabase

__all__ = ["PgPayloads"]


class PgPayloads:
    """A writer's payloads on their way to PostgreSQL: canonical bytes are kept in memory
    until the flush that inserts the events referring to them (same transaction).
    ``db``: where to look for a ref this writer has not stored (another writer's)."""

    def __init__(self, max_payload_bytes: int, db: PgDatabase | None = None) -> None:
        self.max_payload_bytes = max_payload_bytes
        self._db = db
        self._lock = threading.Lock()
        self._pending: dict[bytes, bytes] = {}
        self._sent: set[bytes] = set()

    def put(self, obj: Any, what: str = "payload") -> str:
        """Canonicalize ``obj`` and keep it for the next flush; return its ref."""
        try:
            data = canonical_json(obj, max_depth=MAX_VALUE_DEPTH)
        except CanonicalizationError as exc:
            raise CanonicalizationError(f"{what}: {exc}") from None
        if len(data) > self.max_payload_bytes:
            raise PayloadTooLargeError(
                f"payload of {len(data):,} bytes exceeds the limit of "
                f"{self.max_payload_bytes:,} bytes"
            )
        digest = hashlib.sha256(data).digest()
        if digest not in self._sent:
            with self._lock:
                self._pending[digest] = data
        return digest.hex()

    def __contains__(self, ref: object) -> bool:
        """Whether the payload ``ref`` is stored: this writer holds or has sent it, or
        (asked of the server once) another writer committed it."""
        if not isinstance(ref, str):
            return False
        try:
            digest = bytes.fromhex(ref)
        except ValueError:
            return False
        if len(digest) != hashlib.sha256().digest_size:
            return False
        with self._lock:
            if digest in self._pending or digest in self._sent:
                return True
        if self._db is None or not self._db.payloads([ref]):  # JournalUnavailableError
            return False
        with self._lock:
            self._sent.add(digest)
        return True

    def take(self) -> dict[bytes, bytes]:
        with self._lock:
            taken, self._pending = self._pending, {}
        return taken

    def give_back(self, taken: dict[bytes, bytes]) -> None:
        with self._lock:
            taken.update(self._pending)
            self._pending = taken

    def sent(self, taken: dict[bytes, bytes]) -> None:
        if len(self._sent) > 1_000_000:
            self._sent.clear()
        self._sent.update(taken)
