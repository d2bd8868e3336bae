"""Canonical JSON (RFC 8785 / JCS) and the stable hash of a value.

The fast path lets msgspec do the encoding: with ``order="sorted"`` its output
is already canonical for strings, integers, booleans, null, arrays and objects
whose keys sort the same by code point as by UTF-16 code unit. A single walk
over the value (in Python, but only over containers and leaves) does what
msgspec would not:

* rejects what RFC 8785 (and an auditor) cannot accept: NaN/Infinity, integers
  beyond +-(2**53 - 1) -- also as floats from 2**53 up to 1e21, whose JSON text
  is such an integer --, sets, non-str keys, cycles, unknown types;
* takes a subclass of a JSON type (``OrderedDict``, ``defaultdict``, a
  ``StrEnum`` or ``IntEnum`` member, a str/int/float/list/dict subclass) as
  that type's plain value;
* turns floats into ECMAScript ``Number.prototype.toString`` text, spliced in
  as :class:`msgspec.Raw`;
* maps datetime -> UTC ISO-8601 (naive taken as UTC), date -> ISO date,
  Decimal -> its string, bytes -> ``{"__bytes__": "<base64>"}``.

Containers are copied only when something inside them had to change, so the
common payload (dicts of str/int/bool) is encoded straight from the caller's
object. Where the optional C build is installed (``_canonical_accel.c``, see
``setup.py``), a compiled walk first returns the value unchanged, or with its integral
floats as ints, where the Python walk would, about six times faster; only values it
leaves to the walk are walked in Python (identical bytes either way: a property test).
Objects with a key outside the Basic Multilingual Plane take a slower path that sorts
keys by UTF-16 code units, as RFC 8785 requires.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import enum
import hashlib
import os
import re
from collections.abc import Callable
from typing import Any

import msgspec

from ..errors import CanonicalizationError

__all__ = [
    "MAX_DEPTH",
    "MAX_SAFE_INTEGER",
    "MAX_VALUE_DEPTH",
    "PURE_PYTHON_ENV",
    "RECORD_NESTING",
    "canonical_json",
    "format_float",
    "stable_hash",
]

MAX_SAFE_INTEGER = 2**53 - 1
"""Integers beyond +-MAX_SAFE_INTEGER are rejected (RFC 8785 numbers are IEEE doubles)."""
MAX_DEPTH = 512
"""Deepest nesting of a JSON document auditjournal writes or reads back (a record, a
manifest); deeper values (or cycles) are rejected."""
RECORD_NESTING = 1
"""Levels an export record adds around a value it carries (the record object)."""
MAX_VALUE_DEPTH = MAX_DEPTH - RECORD_NESTING
"""Deepest nesting of a value the recorder accepts (a payload, a config, an error): its
export record, one level deeper, stays within :data:`MAX_DEPTH`."""
PURE_PYTHON_ENV = "AUDITJOURNAL_PURE_PYTHON"
"""Set (non-empty) to leave the compiled fast path unused (for comparisons, tests)."""
_INTEGER_TEXT_END = 1e21  # from here on ECMAScript writes numbers with an exponent

_compiled_normalized: Callable[[Any, int], Any] | None
_WALK: object = object()
try:  # the walk's fast path compiled (setup.py, optional); the Python walk otherwise
    from ._canonical_accel import WALK as _WALK
    from ._canonical_accel import normalized as _compiled_normalized
except ImportError:  # pragma: no cover - a build without a C compiler
    _compiled_normalized = None
_normalized = None if os.environ.get(PURE_PYTHON_ENV) else _compiled_normalized
"""The compiled walk in use, if any: the walk's result for plain values (``plain``, the
compiled check, passes them as they are) and integral floats (as ints), else ``_WALK``
(the Python walk decides)."""

_SORTED = msgspec.json.Encoder(order="sorted")
_AS_GIVEN = msgspec.json.Encoder()
_UTC = _dt.UTC
_INF = float("inf")
_ASTRAL = re.compile(rb"[\xf0-\xf4]")  # the first byte of a character beyond U+FFFF


def canonical_json(obj: Any, *, max_depth: int = MAX_DEPTH) -> bytes:
    """Return the RFC 8785 canonical JSON bytes of ``obj``.

    ``max_depth`` (at most :data:`MAX_DEPTH`) bounds the nesting; the recorder
    passes :data:`MAX_VALUE_DEPTH` for the values it records. Raises
    :class:`CanonicalizationError` naming the offending path for values that
    have no faithful JSON form.
    """
    # counting from the offset keeps the walk's depth test against one constant
    start = MAX_DEPTH - max_depth
    try:
        # the compiled walk returns what the walk would for the common payload (as it is,
        # or with integral floats as ints); anything else, and every error, takes the walk
        value = _WALK if _normalized is None else _normalized(obj, start)
        if value is _WALK:
            value = _normalize(obj, start)
    except _PathError as exc:
        message = exc.message or f"value is nested deeper than {max_depth} levels"
        raise CanonicalizationError(f"{message} at {exc.path()}") from None
    except RecursionError:  # the caller's own stack was already deep
        raise _stack_exhausted(obj) from None
    try:
        out = _SORTED.encode(value)
        # msgspec sorts keys by code point; RFC 8785 by UTF-16 code unit. They differ only
        # for keys beyond U+FFFF, whose UTF-8 starts with a byte 0xF0..0xF4: look for one
        # in the output (no key-by-key check on the way), then for such a key.
        if not out.isascii() and _ASTRAL.search(out) is not None and _has_astral_key(value):
            return _AS_GIVEN.encode(_utf16_sorted(value))
        return out
    except UnicodeEncodeError as exc:
        raise CanonicalizationError(
            f"string is not valid Unicode (lone surrogate) at {_surrogate_path(value)}: {exc}"
        ) from None
    except RecursionError:  # a value the compiled check passed, deeper than the stack left
        raise _stack_exhausted(obj) from None
    except TypeError as exc:  # pragma: no cover - guarded by _normalize
        raise CanonicalizationError(str(exc)) from None


def _stack_exhausted(obj: Any) -> CanonicalizationError:
    reason = "contains a reference cycle" if _has_cycle(obj) else "is nested too deeply"
    return CanonicalizationError(f"value {reason} for this thread's stack")


def stable_hash(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj``, as 64 lowercase hex characters."""
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def format_float(value: float) -> str:
    """Format a finite float exactly as ECMAScript's ``Number.prototype.toString``."""
    if value != value or value in (_INF, -_INF):
        raise CanonicalizationError(f"{value!r} is not allowed in canonical JSON")
    if value == 0:
        return "0"  # also -0.0
    text = repr(value)  # shortest round-trip digits, the same digits ECMAScript picks
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exp_text = text.partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    all_digits = int_part + frac_part
    digits = all_digits.lstrip("0")
    # n: position of the decimal point counted from the first significant digit
    n = len(int_part) + (int(exp_text) if exp_text else 0) - (len(all_digits) - len(digits))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        exp = n - 1
        exp_str = ("e+" if exp >= 0 else "e-") + str(abs(exp))
        body = (digits if k == 1 else digits[0] + "." + digits[1:]) + exp_str
    return sign + body


# -- internals ----------------------------------------------------------------------


class _PathError(Exception):
    """Carries a rejection up the recursion, collecting the path on the way."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.parts: list[str] = []

    def path(self) -> str:
        parts = self.parts[::-1]
        if len(parts) > 12:  # a cycle or very deep value: keep the message one short line
            parts = [*parts[:6], f"...({len(parts) - 10} more)...", *parts[-4:]]
        return "$" + "".join(parts)


def _msgspec_float_ok(value: float) -> bool:
    """True where msgspec already writes a float exactly as ECMAScript does.

    In [1e-4, 1e16) Python's (and msgspec's) shortest repr has no exponent and,
    for non-integral values, equals ``Number.prototype.toString`` (checked
    against rfc8785 by the property tests); such floats need no conversion.
    """
    return 1e-4 <= abs(value) < 1e16 and not value.is_integer()


def _normalize(o: Any, depth: int) -> Any:
    """``o`` itself if it is already canonical-ready, else a converted copy.

    Scalars inside containers are checked inline (no call per leaf): this is
    the recorder's hot path.
    """
    t = type(o)
    if t is not dict and t is not list and t is not tuple:
        if t is str or t is bool or o is None:
            return o
        if t is int:
            if -MAX_SAFE_INTEGER <= o <= MAX_SAFE_INTEGER:
                return o
            raise _PathError(f"integer {o} is beyond +-(2**53 - 1)")
        if t is float:
            return _float(o)
        convert = _CONVERTERS.get(t)
        if convert is not None:
            return convert(o)
        o = _plain(o)
        t = type(o)
        if t is not dict and t is not list:
            return _normalize(o, depth)  # a scalar: no deeper recursion
        # a dict or list subclass goes on as its plain copy, in this frame
    if depth >= MAX_DEPTH:
        raise _PathError(_too_deep(o))
    if t is dict:
        copy: dict[str, Any] | None = None
        for key, item in o.items():
            if type(key) is not str:
                if isinstance(key, str):  # a StrEnum member, ...: once more with plain keys
                    return _normalize(_plain_keys(o), depth)
                raise _PathError(f"object key {key!r} is a {type(key).__name__}, not a str")
            ti = type(item)
            if ti is str or ti is bool or item is None:
                continue
            if ti is int and -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                continue
            if ti is float and 1e-4 <= abs(item) < 1e16 and not item.is_integer():
                continue  # msgspec already writes it as ECMAScript does (_msgspec_float_ok)
            try:
                new = _normalize(item, depth + 1)
            except _PathError as exc:
                exc.parts.append(f"[{key!r}]")
                raise
            if new is not item:
                if copy is None:
                    copy = dict(o)
                copy[key] = new
        return o if copy is None else copy
    items: list[Any] | None = None
    for index, item in enumerate(o):
        ti = type(item)
        if ti is str or ti is bool or item is None:
            continue
        if ti is int and -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
            continue
        if ti is float and 1e-4 <= abs(item) < 1e16 and not item.is_integer():
            continue  # msgspec already writes it as ECMAScript does (_msgspec_float_ok)
        try:
            new = _normalize(item, depth + 1)
        except _PathError as exc:
            exc.parts.append(f"[{index}]")
            raise
        if new is not item:
            if items is None:
                items = list(o)
            items[index] = new
    return o if items is None else items


def _float(o: float) -> Any:
    """A float as msgspec writes it, as an int, or as ECMAScript's text (msgspec.Raw)."""
    if _msgspec_float_ok(o):
        return o
    if o.is_integer():
        if -MAX_SAFE_INTEGER <= o <= MAX_SAFE_INTEGER:
            return int(o)  # ECMAScript prints integral numbers without ".0"; so do ints
        if -_INTEGER_TEXT_END < o < _INTEGER_TEXT_END:
            # its text is an integer literal a reader parses as an integer beyond 2**53
            raise _PathError(
                f"float {o!r} is written as the integer {format_float(o)}, beyond "
                "+-(2**53 - 1); record it as a string or a Decimal"
            )
    # What is left: below 1e-4 or from 1e21 on (Python's repr has an exponent there, in
    # another form than ECMAScript's), and inf/nan (refused by format_float)
    try:
        return msgspec.Raw(format_float(o).encode())
    except CanonicalizationError as exc:
        raise _PathError(str(exc)) from None


def _plain(o: Any) -> Any:
    """A subclass of a JSON type as a value of that very type; raises for anything else.

    The base type's own methods read the value, so an override (a ``StrEnum``'s
    ``__str__``, a list subclass's ``__iter__``) cannot change what is recorded.
    """
    if isinstance(o, str):
        return str.__str__(o)
    if isinstance(o, int):  # IntEnum, IntFlag, ... (bool cannot be subclassed)
        return int.__int__(o)
    if isinstance(o, float):
        return float.__float__(o)
    if isinstance(o, dict):
        return _plain_keys(o)
    if isinstance(o, list):
        return list.copy(o)
    raise _PathError(_unsupported(o))


def _plain_keys(o: dict[Any, Any]) -> dict[Any, Any]:
    """A plain dict of ``o``'s items, str-subclass keys (``StrEnum`` members) as plain str."""
    plain = {(str.__str__(k) if isinstance(k, str) else k): v for k, v in dict.items(o)}
    if len(plain) != len(o):
        raise _PathError("two keys of an object are the same string")
    return plain


def _from_datetime(value: _dt.datetime) -> str:
    naive = value.utcoffset() is None  # Python's definition of naive, not just tzinfo is None
    value = value.replace(tzinfo=_UTC) if naive else value.astimezone(_UTC)
    return value.replace(tzinfo=None).isoformat() + "Z"


def _from_decimal(value: decimal.Decimal) -> str:
    if not value.is_finite():
        raise _PathError(f"Decimal {value} is not allowed in canonical JSON")
    return str(value)


def _from_bytes(value: bytes | bytearray | memoryview) -> dict[str, str]:
    return {"__bytes__": base64.b64encode(value).decode("ascii")}


_CONVERTERS: dict[type, Callable[[Any], Any]] = {
    _dt.datetime: _from_datetime,
    _dt.date: lambda d: d.isoformat(),
    decimal.Decimal: _from_decimal,
    bytes: _from_bytes,
    bytearray: _from_bytes,
    memoryview: _from_bytes,
}


def _unsupported(o: Any) -> str:
    if isinstance(o, set | frozenset):
        return "sets have no order and are not allowed; pass a sorted list"
    if isinstance(o, enum.Enum):  # str and int enums were taken as their value before
        return f"enum member {o!r} is neither a str nor an int; record its .value or .name"
    if isinstance(o, tuple):  # a namedtuple: as an array it would lose its field names
        return f"a {type(o).__qualname__} (tuple subclass) is ambiguous; pass a list or a dict"
    return f"values of type {type(o).__qualname__} have no canonical JSON form"


def _too_deep(o: Any) -> str:
    """The message for a value too deep ("" = the caller names the depth it allowed)."""
    if _has_cycle(o):
        return "value contains a reference cycle"
    return ""


def _has_cycle(root: Any) -> bool:
    on_path: set[int] = set()

    def visit(o: Any) -> bool:
        if not isinstance(o, dict | list | tuple):
            return False
        if id(o) in on_path:
            return True
        on_path.add(id(o))
        children = dict.values(o) if isinstance(o, dict) else o
        found = any(visit(child) for child in children)
        on_path.discard(id(o))
        return found

    try:
        return visit(root)
    except RecursionError:
        return False


def _has_astral_key(o: Any) -> bool:
    """Whether an object in ``o`` has a key with a character beyond U+FFFF."""
    t = type(o)
    if t is dict:
        return any(max(k, default="") > "\uffff" or _has_astral_key(v) for k, v in o.items())
    if t is list or t is tuple:
        return any(_has_astral_key(item) for item in o)
    return False


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _utf16_sorted(o: Any) -> Any:
    """Rebuild every object with its keys in UTF-16 code unit order (RFC 8785 3.2.3)."""
    t = type(o)
    if t is dict:
        return {k: _utf16_sorted(o[k]) for k in sorted(o, key=_utf16_key)}
    if t is list or t is tuple:
        return [_utf16_sorted(item) for item in o]
    return o


def _surrogate_path(root: Any) -> str:
    """Path of the first string or key holding a lone surrogate (error path only)."""

    def bad(s: str) -> bool:
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False

    def find(o: Any, parts: list[str]) -> list[str] | None:
        t = type(o)
        if t is str:
            return parts if bad(o) else None
        pairs = o.items() if t is dict else enumerate(o) if t in (list, tuple) else ()
        for key, item in pairs:
            here = [*parts, f"[{key!r}]"]
            if type(key) is str and bad(key):
                return here
            found = find(item, here)
            if found is not None:
                return found
        return None

    err = _PathError("")
    err.parts = (find(root, []) or [])[::-1]
    return err.path()
