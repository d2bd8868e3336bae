"""What a recorder call may carry: every argument is checked before anything is appended.

A value the recorder accepts must be one every reader can carry: the journal
reader (which decodes each event with its declared types), the export
projector, ``verify`` and ``verify-bundle`` (which re-derives each record's
bytes from its parsed value). So each argument goes through the rule for its
kind, which checks its type (the event field's declared type) and its value;
a value that fails raises a typed error naming the argument and the value the
caller passed, and nothing is appended (docs/decisions.md, "What the recorder
accepts"):

* text (:func:`check_text`): a str, without NUL and without lone surrogates;
* choices (:func:`check_choice`): one of the ``Literal`` values the event declares;
* counts (:func:`check_count`): an int from 0 to 2**53-1;
* numbers (:func:`check_number`): finite, written by canonical JSON as a float
  or as an integer within +-(2**53 - 1);
* JSON objects (:func:`json_object`): a dict whose canonical JSON exists and
  nests at most :data:`MAX_VALUE_DEPTH` levels; JSON Schemas (:func:`json_schema`)
  are JSON objects a JSON Schema draft accepts;
* content hashes (:func:`check_hash`): 64 lowercase hex characters;
* ids: :func:`storage.validate_id` (:func:`optional_id`); payloads:
  :func:`canonical.canonical_json`.

A subclass of str, int or float (a ``StrEnum`` or ``IntEnum`` member) is taken as
its plain value, as canonical JSON takes it inside payloads. Each rule is a few
type tests on the hot path (a check per event field through ``msgspec.convert``
measured 4 % of the recording rate); ``tests/test_recorder_arguments.py``
derives a wrongly typed value for every argument of every recorder method from
the event's declared field types, so a rule missing for an argument fails there.

Thread-safety: everything here is a pure function.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import re
import reprlib
from typing import Any, Final

import msgspec

from ..errors import CanonicalizationError, InvalidEventError, NaiveTimestampError
from ..fs.storage import validate_id
from ..model.canonical import MAX_SAFE_INTEGER, MAX_VALUE_DEPTH, canonical_json

__all__ = [
    "canonical_value",
    "check_choice",
    "check_count",
    "check_hash",
    "check_number",
    "check_sequence",
    "check_text",
    "check_time",
    "json_object",
    "json_object_bytes",
    "json_schema",
    "json_value",
    "optional_id",
    "shown",
]

_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 80
_SHOWN.maxlevel = 3


def shown(value: Any) -> str:
    """The caller's value for a one-line message: its repr, cut short when long."""
    return _SHOWN.repr(value)


# -- one rule per kind of argument ---------------------------------------------------------


def check_choice(value: object, allowed: frozenset[str], what: str) -> str:
    """An argument that must be one of a vocabulary (``InvalidEventError`` if not)."""
    if type(value) is str and value in allowed:
        return value
    try:
        known = isinstance(value, str) and value in allowed
    except TypeError:  # a str subclass that cannot be hashed
        known = False
    if not known:
        raise InvalidEventError(f"invalid {what} {shown(value)}; expected one of {sorted(allowed)}")
    return str.__str__(value)  # a StrEnum member as its plain str


def check_count(value: object, what: str) -> int:
    """A count or index: an int from 0 to 2**53-1 (bools are not ints here).

    The bound is canonical JSON's: a record holding a larger integer could not be
    re-derived from its parsed value, so ``verify-bundle`` would refuse it.
    """
    if type(value) is not int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidEventError(f"{what} must be an int from 0 to 2**53-1, got {shown(value)}")
        value = int.__int__(value)  # an IntEnum member
    if not 0 <= value <= MAX_SAFE_INTEGER:
        raise InvalidEventError(f"{what} must be an int from 0 to 2**53-1, got {shown(value)}")
    return value


def check_number(value: object, what: str) -> float | None:
    """An optional number the export writes faithfully, as a float: finite, and an int
    within +-(2**53 - 1) or a float outside [2**53, 1e21) (see canonical.py)."""
    if value is None:
        return None
    if type(value) is float:  # the common case first
        number: float = value
    elif isinstance(value, float):
        number = float.__float__(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return float(int.__int__(value))
        number = math.inf
    else:
        raise InvalidEventError(f"{what} must be a finite number, got {shown(value)}")
    # finite, and not from 2**53 up to 1e21 (written as integers beyond 2**53)
    if math.isfinite(number) and not 9007199254740992.0 <= abs(number) < 1e21:
        return number
    raise InvalidEventError(
        f"{what} must be a finite number whose JSON form is a float or an integer "
        f"within +-(2**53 - 1), got {shown(value)}"
    )


def check_text(value: object, what: str) -> str:
    """Free text (a name, a label, a path): a str without NUL and without lone surrogates.

    A lone surrogate has no UTF-8 form, so the journal could not be written; a NUL
    cannot be stored in a PostgreSQL text column (the SQL audit tables).
    """
    if type(value) is not str:
        if not isinstance(value, str):
            raise InvalidEventError(f"{what} must be a str, got {shown(value)}")
        value = str.__str__(value)
    if "\x00" in value:
        raise InvalidEventError(f"{what} must not contain NUL characters, got {shown(value)}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise InvalidEventError(
                f"{what} is not valid Unicode (a lone surrogate), got {shown(value)}"
            ) from None
    return value


def check_time(value: object, what: str = "occurred_at") -> _dt.datetime | None:
    """None, or a timezone-aware datetime (as UTC). A naive one is ambiguous:
    :class:`NaiveTimestampError`. Years outside 1..9999 cannot be exported."""
    if value is None:
        return None
    if not isinstance(value, _dt.datetime):
        raise InvalidEventError(f"{what} must be a datetime, got {shown(value)}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveTimestampError(
            f"{what} must be timezone-aware (say datetime.now(UTC)), got naive {value.isoformat()}"
        )
    try:
        utc = value.astimezone(_dt.UTC)
    except OverflowError:
        raise InvalidEventError(f"{what} is out of range in UTC: {value.isoformat()}") from None
    return _dt.datetime(
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, _dt.UTC
    )


def check_sequence(value: object, what: str) -> tuple[Any, ...]:
    """A list (or tuple) of ids, as a tuple; its items are checked where they are looked up."""
    if type(value) is tuple:
        return value
    if not isinstance(value, list | tuple):
        raise InvalidEventError(f"{what} must be a list of ids, got {shown(value)}")
    return tuple(value)


def check_names(value: object, what: str) -> tuple[str, ...]:
    """A list (or tuple) of field names, as a tuple (a str alone is not a list of names)."""
    if isinstance(value, list | tuple) and all(type(name) is str for name in value):
        return tuple(value)
    raise InvalidEventError(f"{what} must be a list of field names (str), got {shown(value)}")


def optional_id(value: object, what: str) -> str | None:
    """None, or an id (:func:`storage.validate_id`: path-safe, as every id is)."""
    return None if value is None else validate_id(value, what)


def check_hash(value: object, what: str) -> str:
    """A content hash: the SHA-256 hex digest, 64 lowercase hex characters (like every ref)."""
    if type(value) is not str or _HEX64.fullmatch(value) is None:
        raise InvalidEventError(
            f"{what} must be a SHA-256 hex digest (64 lowercase hex characters, as "
            f"hashlib.sha256(data).hexdigest() gives), got {shown(value)}"
        )
    return value


def json_object(value: object, what: str) -> Any:
    """An optional JSON object as it will be audited: canonicalized, then decoded again.

    ``value`` must be a dict (or a dict subclass) whose canonical JSON exists and
    nests at most :data:`MAX_VALUE_DEPTH` levels (its export record is one deeper).
    Raises :class:`InvalidEventError` for another type, CanonicalizationError (naming
    the argument) for content with no canonical form.
    """
    if value is None:
        return None
    return msgspec.json.decode(json_object_bytes(value, what))


def json_value(value: object, what: str) -> Any:
    """An optional JSON list or object (of any content), canonicalized."""
    if value is None:
        return None
    if not isinstance(value, list | tuple | dict):
        raise InvalidEventError(f"{what} must be a JSON list or object, got {shown(value)}")
    return msgspec.json.decode(canonical_value(value, what))


def json_object_bytes(value: object, what: str) -> bytes:
    """The canonical JSON of a JSON-object argument (see :func:`json_object`)."""
    if not isinstance(value, dict):
        raise InvalidEventError(
            f"{what} must be a JSON object (a dict with str keys), got {shown(value)}"
        )
    return canonical_value(value, what)


def canonical_value(value: object, what: str) -> bytes:
    """Canonical JSON of a value the recorder takes (payload or not), errors naming ``what``."""
    try:
        return canonical_json(value, max_depth=MAX_VALUE_DEPTH)
    except CanonicalizationError as exc:
        raise CanonicalizationError(f"{what}: {exc}") from None


def json_schema(value: object, what: str) -> Any:
    """An optional JSON Schema: a JSON object that a JSON Schema draft accepts.

    The draft its ``$schema`` names, else any draft ``jsonschema`` knows (2020-12
    back to 4: schemas from older tools still register). Only the structure is
    checked (``{"type": 5}`` is refused), not ``format`` values such as regex
    dialects. Verdicts are cached by the schema's canonical JSON: pipelines
    register the same schemas run after run, and a check costs about a millisecond.
    """
    if value is None:
        return None
    data = json_object_bytes(value, what)
    try:
        problem = _schema_problem(data)
    except RecursionError:  # not cached: it depends on the caller's stack too
        problem = "nested too deeply to check"
    if problem is not None:
        raise InvalidEventError(f"{what} is not a valid JSON Schema: {problem}")
    return msgspec.json.decode(data)


@functools.lru_cache(maxsize=256)
def _schema_problem(data: bytes) -> str | None:
    # imported here: it costs ~0.2 s, and only registering a schema needs it
    from jsonschema import exceptions

    schema = msgspec.json.decode(data)
    declared = schema.get("$schema")
    checkers = _checkers()
    if isinstance(declared, str):
        named = [c for c in checkers if c[0] == declared.rstrip("#")]
        checkers = named or checkers  # an unknown $schema (a dialect of its own): any draft
    errors = []
    for _, checker in checkers:
        error = exceptions.best_match(checker.iter_errors(schema))
        if error is None:
            return None
        errors.append(error)
    error = errors[-1]  # the newest draft's complaint (the list ends with 2020-12)
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{error.message} (at /{where})"


@functools.cache
def _checkers() -> list[tuple[str, Any]]:
    """Per draft: its metaschema's URI and a validator of schemas against it, without
    format assertions (regex dialects vary). The cheap drafts come first: a schema
    valid under one of them needs no other check."""
    from jsonschema import validators

    drafts = [
        validators.Draft7Validator,
        validators.Draft6Validator,
        validators.Draft4Validator,
        validators.Draft201909Validator,
        validators.Draft202012Validator,
    ]
    out = []
    for draft in drafts:
        meta = draft.META_SCHEMA
        uri = str(meta.get("$id", meta.get("id", ""))).rstrip("#")
        out.append((uri, draft(meta)))
    return out
