"""Values as export records write them, and the compiled record loop (optional).

:func:`json_value` prepares a field that may hold floats or nested JSON for the record
encoder, :func:`iso` writes a timestamp as canonical JSON does. ``compiled_extend`` is
``RecordMaker.extend``'s loop in C (``_records_accel.c``, an optional build): it writes
the records of the events every run has many of straight as bytes -- the same bytes as
the Python handlers (a property test), which it leaves every other event and every
value of an unusual shape to. ``compiled_extend_lines`` writes them as the chunk
writer's lines instead, with their Merkle leaf hashes (``RecordMaker.extend_lines``).
``AUDITJOURNAL_PURE_PYTHON`` leaves both unused.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable
from typing import Any, Final

import msgspec
from msgspec import Raw

from .canonical import MAX_SAFE_INTEGER, PURE_PYTHON_ENV, canonical_json
from .events import (
    CallRecorded,
    NodeStateCompleted,
    NodeStateStarted,
    RoutingEventRecorded,
    RowCreated,
    RunCompleted,
    TokenCreated,
    TokenOutcomeRecorded,
)

__all__ = [
    "ENCODER",
    "HOT_EVENTS",
    "IN_ORDER",
    "compiled_extend",
    "compiled_extend_lines",
    "iso",
    "json_bytes",
    "json_value",
]

# the events whose records the compiled loop writes itself (its order: _records_accel.c)
HOT_EVENTS: Final = (
    RowCreated, TokenCreated, NodeStateStarted, NodeStateCompleted,
    RoutingEventRecorded, CallRecorded, TokenOutcomeRecorded, RunCompleted,
)  # fmt: skip
ENCODER: Final = msgspec.json.Encoder(order="sorted")
# The hot handlers build their dicts with the keys already in sorted order and encode
# them as they are (sorting ~25 keys costs msgspec ~2 us a record): the same bytes, as
# long as each literal lists its keys sorted (tests/property/test_export_hotpath_identity.py).
IN_ORDER: Final = msgspec.json.Encoder()


def json_value(value: Any) -> Any:
    """A field that may hold floats or nested JSON, ready for the record encoder: scalars
    msgspec already writes canonically as they are, anything else as canonical bytes."""
    t = type(value)
    if value is None or t is str or t is bool:
        return value
    if t is float and 1e-4 <= abs(value) < 1e16 and not value.is_integer():
        return value  # written as ECMAScript does (canonical._msgspec_float_ok)
    if t is int and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return value
    return Raw(canonical_json(value))


def json_bytes(value: Any) -> bytes:
    """:func:`json_value` as the record encoder writes it (for the compiled loop)."""
    return IN_ORDER.encode(json_value(value))


def iso(ts: _dt.datetime) -> str:
    """UTC timestamp as ISO-8601 with ``Z`` (the same text canonical JSON gives datetimes)."""
    if ts.utcoffset():
        ts = ts.astimezone(_dt.UTC)
    return ts.replace(tzinfo=None).isoformat() + "Z"


compiled_extend: Callable[..., int | None] | None
compiled_extend_lines: Callable[..., tuple[int, bytes, list[int], list[int], bytes] | None] | None
try:  # setup.py, optional: the record loop compiled (_records_accel.c)
    from ._records_accel import extend as compiled_extend
    from ._records_accel import extend_lines as compiled_extend_lines
except ImportError:  # pragma: no cover - a build without a C compiler or OpenSSL headers
    compiled_extend = compiled_extend_lines = None
if os.environ.get(PURE_PYTHON_ENV):
    compiled_extend = compiled_extend_lines = None
