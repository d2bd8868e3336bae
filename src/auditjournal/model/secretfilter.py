"""The secret filter: known secret fields never enter the append-only trail.

Node configs, the run config and settings, call requests, responses and errors,
operation inputs and outputs and preflight results pass through
:meth:`SecretFilter.filter` before they are canonicalized, hashed or stored. A value
whose key is a known secret field name is replaced by ``"<fingerprint:HEX>"``, the
HMAC-SHA256 of the value keyed with ``AUDITJOURNAL_FINGERPRINT_KEY`` (for a string:
of its UTF-8 bytes, the same digest as elspeth's ``secret_fingerprint``; for any
other JSON value: of its canonical JSON), or by ``"<redacted>"`` when no key is set.

Names match exactly after ``lower()`` and ``-`` -> ``_`` (``completion_tokens`` or
``max_tokens`` are not secrets), or by a secret suffix (``openai_api_key``); names
ending in ``_fingerprint`` never match. Values already fingerprinted or redacted are
left alone, so filtering twice changes nothing. Row data and node-state data are not
filtered: they are the pipeline's business data, and their hashes are evidence.

The key is read once per filter, and never appears in a repr, a log or an error.
Names found not secret are remembered: a value whose keys are all such names is passed
without a per-key lookup (in C where the optional build is installed, see canonical.py).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Callable, Iterable
from typing import Any, Final

from .canonical import PURE_PYTHON_ENV, canonical_json

__all__ = [
    "DEFAULT_SECRET_FIELDS",
    "FINGERPRINT_ENV",
    "REDACTED",
    "SECRET_SUFFIXES",
    "SecretFilter",
]

FINGERPRINT_ENV: Final = "AUDITJOURNAL_FINGERPRINT_KEY"
REDACTED: Final = "<redacted>"
_CACHE_SIZE: Final = 4096
_FINGERPRINT_SHAPE: Final = re.compile(r"<fingerprint:[0-9a-f]{64}>")
_compiled_unfiltered: Callable[[Any, set[str]], bool] | None
try:  # the compiled fast path (setup.py, optional; see canonical.py)
    from ._canonical_accel import unfiltered as _compiled_unfiltered
except ImportError:  # pragma: no cover - a build without a C compiler
    _compiled_unfiltered = None
_unfiltered = None if os.environ.get(PURE_PYTHON_ENV) else _compiled_unfiltered
"""The compiled check in use, if any: True when no key in the value can be a secret
(every key is a name already found not secret), so the walk would change nothing."""
_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
"""Value types with nothing inside to filter (exact types: a subclass of dict is no scalar)."""
_CONTAINERS: Final = (dict, list, tuple)
_NOTHING: Final[frozenset[str]] = frozenset()

DEFAULT_SECRET_FIELDS: Final = frozenset(
    {
        "api_key",
        "apikey",
        "x_api_key",
        "authorization",
        "proxy_authorization",
        "password",
        "passwd",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "client_secret",
        "private_key",
        "secret_key",
        "connection_string",
        "credential",
        "credentials",
        "cookie",
        "set_cookie",
    }
)
SECRET_SUFFIXES: Final = (
    "_api_key",
    "_password",
    "_secret",
    "_token",
    "_private_key",
    "_secret_key",
    "_access_key",
    "_connection_string",
    "_credential",
)


def _normal(name: str) -> str:
    return name.lower().replace("-", "_")


class SecretFilter:
    """Replaces the values of secret fields (see the module docstring)."""

    __slots__ = ("_cache", "_fields", "_key", "_plain")

    def __init__(self, extra_fields: Iterable[str] = (), key: bytes | None = None) -> None:
        self._fields = DEFAULT_SECRET_FIELDS | {_normal(f) for f in extra_fields}
        self._key = key or None
        self._cache: dict[str, bool] = {}  # key name -> secret (names repeat call after call)
        # the names found not secret, as a set: a dict whose keys all are in it (one C-level
        # issuperset) needs no per-key lookup
        self._plain: set[str] = set()

    @classmethod
    def from_env(cls, extra_fields: Iterable[str] = ()) -> SecretFilter:
        """The filter with the key in ``AUDITJOURNAL_FINGERPRINT_KEY`` (none if unset)."""
        raw = os.environ.get(FINGERPRINT_ENV)
        return cls(extra_fields, raw.encode() if raw else None)

    def __repr__(self) -> str:
        return f"SecretFilter(fields={len(self._fields)}, key={'set' if self._key else 'unset'})"

    def is_secret(self, name: str, extra: frozenset[str] = frozenset()) -> bool:
        known = self._cache.get(name)
        if known is None:
            normal = _normal(name)
            known = not normal.endswith("_fingerprint") and (
                normal in self._fields or normal.endswith(SECRET_SUFFIXES)
            )
            if len(self._cache) < _CACHE_SIZE:
                self._cache[name] = known
                if not known and type(name) is str:
                    self._plain.add(name)
        return known or (bool(extra) and _normal(name) in extra)

    def fingerprint(self, value: Any) -> str:
        """What a secret value is replaced by."""
        if isinstance(value, str) and (value == REDACTED or _FINGERPRINT_SHAPE.fullmatch(value)):
            return value
        if self._key is None:
            return REDACTED
        data = value.encode() if isinstance(value, str) else canonical_json(value)
        return f"<fingerprint:{hmac.new(self._key, data, hashlib.sha256).hexdigest()}>"

    def filter(self, value: Any, extra_fields: Iterable[str] = ()) -> tuple[Any, tuple[str, ...]]:
        """(``value`` with secrets replaced, the JSON paths replaced). Containers are copied
        only on the path to a replaced value; ``value`` itself comes back when nothing
        matched (the common case: one dict lookup per key)."""
        extra = frozenset(_normal(f) for f in extra_fields) if extra_fields else frozenset()
        if not extra and _unfiltered is not None and _unfiltered(value, self._plain):
            return value, ()
        paths: list[str] = []
        out = self._walk(value, (), extra, paths, 0)
        return out, tuple(paths)

    def _walk(
        self, value: Any, at: tuple[Any, ...], extra: frozenset[str], paths: list[str], depth: int
    ) -> Any:
        if depth > 200:  # deeper than anything canonical JSON accepts: leave it to that check
            return value
        if type(value) is dict or isinstance(value, dict):
            # The common case in two C-level scans: every key a name known not to be
            # secret, every value a plain scalar (no container, not even a subclass of one)
            if (
                not extra
                and self._plain.issuperset(value)
                and _SCALARS.issuperset(map(type, value.values()))
            ):
                return value
            changed: dict[Any, Any] | None = None
            plain = self._plain if not extra else _NOTHING
            for key, item in value.items():  # a key known plain needs no is_secret() call
                if key in plain or type(key) is not str or not self.is_secret(key, extra):
                    if type(item) in _SCALARS:
                        continue
                    if type(item) in _CONTAINERS or isinstance(item, dict | list | tuple):
                        new = self._walk(item, (*at, key), extra, paths, depth + 1)
                    else:
                        continue
                else:
                    new = self.fingerprint(item)
                    if new != item:
                        paths.append(_path((*at, key)))
                if new is not item:
                    if changed is None:
                        changed = dict(value)
                    changed[key] = new
            return value if changed is None else changed
        if isinstance(value, list | tuple):
            if _SCALARS.issuperset(map(type, value)):
                return value
            items: list[Any] | None = None  # copied only when an item changes
            for i, item in enumerate(value):
                if isinstance(item, dict | list | tuple):
                    new = self._walk(item, (*at, i), extra, paths, depth + 1)
                    if new is not item:
                        if items is None:
                            items = list(value)
                        items[i] = new
            return value if items is None else items
        return value


def _path(parts: tuple[Any, ...]) -> str:
    return "$" + "".join(f"[{p}]" if type(p) is int else f".{p}" for p in parts)
