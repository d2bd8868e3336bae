"""What every recorder call shares: the recorder's parts a call uses (its lock, state,
journal writer, payload store and secret filter), and how a payload slot, a rejected
row's data and a filtered config are taken. :class:`CallBase` is the base of the call
mixins of :class:`~.recorder.RunRecorder` (:mod:`.calls`, :mod:`.outcomes`,
:mod:`.operations`, :mod:`.landscape`); the recorder provides how an event is emitted
and committed (the run's lifecycle).

Payload slots (a row's data, a state's input and output, an operation's input/output,
a rejected row's data, a checkpoint's states) take one of three forms: the data
(stored, ``*_hash`` = ``*_ref``), a ``*_ref`` already in the store, or a ``*_hash``
alone (the data was not retained).

Thread-safety: as :class:`~.recorder.RunRecorder`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import threading
from typing import Any, Final, Protocol

from ..errors import (
    CanonicalizationError,
    InvalidEventError,
    PayloadNotFoundError,
)
from ..journal.base import JournalWriter
from ..model.canonical import canonical_json
from ..model.events import (
    BaseEvent,
)
from ..model.secretfilter import SecretFilter
from .arguments import (
    canonical_value,
    check_hash,
    check_names,
    check_text,
    json_object_bytes,
    shown,
)
from .runstate import RunState

__all__ = ["MISSING", "CallBase", "PayloadSink", "text_or_none"]

_UTC = _dt.UTC
_now = _dt.datetime.now


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final[Any] = _Missing()
"""No data given for a payload slot (``None`` is data: JSON null)."""

_STAND_IN_REPR: Final = 10_000


def text_or_none(value: object, what: str) -> str | None:
    """``value`` checked as text, or None."""
    return None if value is None else check_text(value, what)


class PayloadSink(Protocol):
    """Where the calls' payloads go: the store's :class:`~auditjournal.payloads.store.
    PayloadStore`, or the PostgreSQL writer's buffer (sent with the events' batch)."""

    def put(self, obj: Any, what: str = "payload") -> str: ...
    def __contains__(self, ref: object) -> bool: ...


class CallBase:
    """The parts of the recorder its calls use (every call mixin's base)."""

    run_id: str
    _lock: threading.Lock
    _journal: JournalWriter
    _payloads: PayloadSink
    _secrets: SecretFilter
    _state: RunState

    def _open_state(self) -> RunState:  # pragma: no cover - the recorder's
        raise NotImplementedError

    def _emit(self, event: BaseEvent) -> None:  # pragma: no cover - the recorder's
        raise NotImplementedError

    def _commit(self) -> None:  # pragma: no cover - the recorder's
        raise NotImplementedError

    @staticmethod
    def _hash(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    # -- payload slots -----------------------------------------------------------------

    def _slot(
        self,
        what: str,
        data: Any,
        ref: object,
        hash_: object,
        *,
        names: tuple[str, str] | None = None,
        hash_only: bool = False,
    ) -> tuple[str | None, str | None]:
        """(hash, ref) of a payload slot given as data, as a stored ref, or as a hash only
        (ref None). ``hash_only``: data is hashed, not stored (a node's payload policy)."""
        if data is not MISSING and ref is None and hash_ is None:  # the common case first
            if hash_only:
                return hashlib.sha256(canonical_value(data, what)).hexdigest(), None
            stored = self._payloads.put(data, what)
            return stored, stored
        ref_name, hash_name = names or (f"{what}_ref", f"{what}_hash")
        given = (data is not MISSING) + (ref is not None) + (hash_ is not None)
        if given > 1:
            raise InvalidEventError(
                f"{what}: give the data, {ref_name} or {hash_name}, not more than one"
            )
        if ref is not None:
            ref = check_hash(ref, ref_name)
            if ref not in self._payloads:
                raise PayloadNotFoundError(f"{ref_name} {ref} is not in this store's payloads")
            return ref, ref
        if hash_ is not None:
            return check_hash(hash_, hash_name), None
        return None, None

    def _rejected_data(self, data: Any, ref: object, hash_: object) -> tuple[str, str | None, bool]:
        """(row_hash, row_data_ref, canonical) of a rejected row's data. Data with no
        canonical form (NaN, a set, ...) is stored as a stand-in: its repr and the reason."""
        canonical = True
        if data is not MISSING and ref is None:
            try:
                canonical_json(data)
            except (CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
                canonical = False
                data = {"__repr__": repr(data)[:_STAND_IN_REPR], "__error__": str(exc)[:500]}
        if data is not MISSING and hash_ is not None:  # the pipeline's own hash of the data
            row_hash = check_hash(hash_, "row_hash")
            stored, _ = self._slot("row_data", data, None, None)
            return row_hash, stored, canonical
        digest, stored = self._slot("row_data", data, ref, hash_)
        if digest is None:
            raise InvalidEventError("a rejected row needs its data, row_data_ref or row_hash")
        return digest, stored, canonical

    def _base(self, occurred_at: _dt.datetime | None) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seq": self._journal.next_seq,
            "ts": _now(_UTC),
            "occurred_at": occurred_at,
        }

    def _filtered_config(
        self, config: object, given_hash: object, secret_fields: object, what: str = "config"
    ) -> tuple[bytes, str, tuple[str, ...]]:
        """(canonical bytes of the filtered config, its config_hash, redacted slots)."""
        extra = check_names(secret_fields, "secret_fields")
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise InvalidEventError(
                f"{what} must be a JSON object (a dict with str keys), got {shown(config)}"
            )
        filtered, paths = self._secrets.filter(config, extra)
        data = json_object_bytes(filtered, what)
        digest = self._hash(data)
        if given_hash is None:
            return data, digest, (what,) if paths else ()
        given = check_text(given_hash, "config_hash")
        if not paths and given != digest:
            raise InvalidEventError(
                f"config_hash {given!r} is not the hash of this {what} ({digest}); "
                "give the hash of its canonical JSON, or none"
            )
        return data, given, (what,) if paths else ()
