"""One journal line: an event's JSON object with its ``chain`` member appended last.

::

    {"type":"row_created","run_id":"r1","seq":7,...,"chain":"<64 hex>"}

``chain`` is ``sha256(previous chain || event bytes)``, the event bytes being
the line without ``,"chain":"..."`` and the newline: the event's own JSON
object as :func:`~auditjournal.model.events.encode_event` writes it.

Reading a line (:func:`read_entry`) also refuses a member named twice. msgspec
keeps the last of two equal names, another reader (``jq``, a first-wins parser)
may keep the first, so such a line would say different things to different
readers while its chain still checks. Lines our writer wrote are settled
cheaply: the chain is computed over the *re-encoding* of the decoded event,
which is the line's own event bytes exactly when the line is as our encoder
writes that event (no repeated member, nothing else); only a line that is not
(an older writer, members we do not know) is parsed again with every object's
members in view. Readers of many lines (the file journal's cursor) first ask the
optional compiled :data:`check_lines`, which settles the same two questions (chain over
the line as written, no member named twice) for a whole batch, and read any line it
leaves with :func:`read_entry`.

Thread-safety: plain functions.
"""

from __future__ import annotations

import hashlib
import os
from binascii import hexlify
from collections.abc import Callable
from typing import Final

import msgspec

from ..fs.safeio import reject_duplicate_members
from ..model.canonical import PURE_PYTHON_ENV
from ..model.events import Event, decode_event, encode_event, encode_event_into

__all__ = [
    "CHAIN_PREFIX",
    "CHAIN_TAIL",
    "LINE_END",
    "SUFFIX_LEN",
    "check_lines",
    "decode_line",
    "decode_lines",
    "read_entry",
    "seal",
    "seal_python",
    "stored_chain",
]

CHAIN_PREFIX: Final = b',"chain":"'
LINE_END: Final = b'"}\n'
SUFFIX_LEN: Final = len(CHAIN_PREFIX) + 64 + len(LINE_END)
"""Bytes after the event's own members: ``,"chain":"<64 hex>"}`` and the newline."""
CHAIN_TAIL: Final = 64 + len(LINE_END)
"""Bytes from a line's first chain hex digit to its end (newline included)."""
_PREFIX_END: Final = -SUFFIX_LEN + len(CHAIN_PREFIX)
_HEX_START: Final = -(64 + len(LINE_END))
_HEX_END: Final = -len(LINE_END)
_sha256 = hashlib.sha256


def seal_python(event_bytes: bytes, prev_chain: bytes) -> tuple[bytes, bytes]:
    """The journal line for ``event_bytes`` and its chain value."""
    chain = _sha256(prev_chain + event_bytes).digest()
    return b"".join((event_bytes[:-1], CHAIN_PREFIX, hexlify(chain), LINE_END)), chain


_compiled_seal: Callable[[bytes, bytes], tuple[bytes, bytes]] | None
try:  # the same, compiled (setup.py, optional): ~0.45 us an event less
    from ._seal_accel import seal as _compiled_seal
except ImportError:  # pragma: no cover - a build without a C compiler or OpenSSL headers
    _compiled_seal = None
seal: Final = (
    _compiled_seal if _compiled_seal is not None and not os.environ.get(PURE_PYTHON_ENV)
    else seal_python
)  # fmt: skip
"""The journal line for ``event_bytes`` and its chain value: :func:`seal_python`, or
its compiled twin where the optional build is installed (identical bytes)."""


_compiled_check: Callable[[bytes, int, bytes, int], tuple[int, list[bytes], bytes]] | None
try:  # read_entry's checks for many lines in one call (setup.py, optional)
    from ._seal_accel import check_lines as _compiled_check
except ImportError:  # pragma: no cover - a build without a C compiler or OpenSSL headers
    _compiled_check = None
check_lines: Final = None if os.environ.get(PURE_PYTHON_ENV) else _compiled_check
"""``check_lines(data, start, prev_chain, limit) -> (stop, chains, array)``, or None
without the optional build: the whole lines of ``data[start:]`` (at most ``limit``;
negative: all) that :func:`read_entry` would take *if they decode*, in order, up to the
first it might not (a damaged, edited or foreign line, a member named twice, or what its
scan leaves to Python: escaped member names, deep nesting, huge numbers, a line that is
not one object). ``stop`` is where that line starts; ``chains`` the lines' chain values;
``array`` the lines as one JSON array, for :func:`decode_lines`. The caller decodes them
(and checks their seqs) before taking them, and reads the line at ``stop`` with
:func:`read_entry`, which words its problem.
The chain is checked over each line as written, and a line naming no member twice is
one :func:`read_entry` takes with that same chain (its re-encoding is only a cheaper
way to settle the same two questions in Python)."""


_EVENTS: Final = msgspec.json.Decoder(list[Event])  # one call for a batch (decode_lines)


def decode_lines(array: bytes, count: int) -> list[Event] | None:
    """The ``count`` events of :func:`check_lines`' ``array``, each as :func:`decode_event`
    gives it; None if one does not decode (:func:`read_entry` then says why)."""
    try:
        events = _EVENTS.decode(array)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    return events if len(events) == count else None  # (one element a line: check_lines)


def _line_chain(line: bytes | memoryview, prev_chain: bytes) -> bytes:
    """The chain of ``line`` as written, checked against the hash it stores."""
    hasher = _sha256(prev_chain)
    hasher.update(line[:-SUFFIX_LEN])
    hasher.update(b"}")
    chain = hasher.digest()
    if line[_HEX_START:_HEX_END] != hexlify(chain):
        raise ValueError("chain hash does not match (entry edited, removed or reordered)")
    return chain


def read_entry(
    line: bytes | memoryview, prev_chain: bytes, scratch: bytearray
) -> tuple[Event, bytes]:
    """Decode one line (with its newline) and verify it against the previous chain;
    return the event and its chain value. ``scratch`` is the caller's buffer for the
    re-encoding (one per thread: its contents are replaced).

    Raises ValueError with the reason (a damaged, edited or foreign line, or one
    naming a member twice); callers add the file and offset.
    """
    if (
        line[-SUFFIX_LEN:_PREFIX_END] != CHAIN_PREFIX
        or line[-3:] != LINE_END
        or len(line) <= SUFFIX_LEN + 1
    ):
        raise ValueError("entry is not a chained journal line")
    try:
        event = decode_event(line)
    except Exception as exc:
        _line_chain(line, prev_chain)  # an edited entry: say that first
        raise ValueError(f"undecodable event: {exc}") from None
    encode_event_into(event, scratch)
    hasher = _sha256(prev_chain)
    hasher.update(scratch)
    chain = hasher.digest()
    if line[_HEX_START:_HEX_END] != hexlify(chain):  # not as our encoder writes this event:
        # check the chain over the line as written, then that it names no member twice
        chain = _line_chain(line, prev_chain)
        reject_duplicate_members(line, "entry")
    return event, chain


def decode_line(line: bytes | memoryview) -> Event:
    """The event of one line, its chain not checked (:func:`read_entry` does), refusing a
    member named twice (ValueError)."""
    try:
        event = decode_event(line)
    except Exception as exc:
        raise ValueError(f"undecodable event: {exc}") from None
    encoded = encode_event(event)
    if line[: len(encoded) - 1] != encoded[:-1] or len(line) != len(encoded) - 1 + SUFFIX_LEN:
        reject_duplicate_members(line, "entry")
    return event


def stored_chain(data: bytes | bytearray, newline: int) -> bytes:
    """The chain value stored in the line whose newline is ``data[newline]`` (not checked:
    :func:`read_entry` does); ValueError if it is not hex."""
    start = newline + 1 - CHAIN_TAIL
    if start < 0:
        raise ValueError("line too short for a chain value")
    return bytes.fromhex(data[start : start + 64].decode("ascii"))
