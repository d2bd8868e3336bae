"""The leaves of a JSON Schema as msgspec types: strings (lengths, patterns, formats,
base64) and numbers (bounds, ``multipleOf``), and the error naming a schema's JSON path.
Used by :mod:`.typed`'s schema compiler.

Thread-safety: plain functions.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import math
import re
import uuid
from typing import Annotated, Any, Final

import msgspec

from ..errors import UnsupportedSchemaError

__all__ = ["FORMATS", "constrained", "numeric_type", "pointer", "schema_error", "string_type"]

FORMATS: Final[dict[str, Any]] = {
    "date-time": _dt.datetime,
    "date": _dt.date,
    "time": _dt.time,
    "duration": _dt.timedelta,
    "uuid": uuid.UUID,
    "decimal": decimal.Decimal,
}


def schema_error(path: str, message: str) -> UnsupportedSchemaError:
    return UnsupportedSchemaError(f"{message} (schema at {path})")


def pointer(path: str, *parts: str | int) -> str:
    return path + "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def string_type(schema: dict[str, Any], path: str) -> Any:
    encoding, fmt = schema.get("contentEncoding"), schema.get("format")
    if encoding not in (None, "base64"):
        raise schema_error(pointer(path, "contentEncoding"), f"contentEncoding {encoding!r}")
    base = bytes if encoding else FORMATS.get(fmt, str) if isinstance(fmt, str) else str
    low, high, pattern = (schema.get(k) for k in ("minLength", "maxLength", "pattern"))
    if base is not str and (low, high, pattern) != (None, None, None):
        raise schema_error(
            path, f"length or pattern limits on a {base.__name__} have no typed form"
        )
    return constrained(base, path, min_length=low, max_length=high, pattern=pattern)


def numeric_type(base: type, schema: dict[str, Any], path: str) -> Any:
    low, high = schema.get("minimum"), schema.get("maximum")
    x_low, x_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if type(x_low) is bool:  # draft 4: a flag that makes minimum exclusive
        low, x_low = (None, low) if x_low else (low, None)
    if type(x_high) is bool:
        high, x_high = (None, high) if x_high else (high, None)
    limits: dict[str, Any] = {"multiple_of": schema.get("multipleOf")}
    for key, value in (("ge", low), ("le", high), ("gt", x_low), ("lt", x_high)):
        if value is not None and (type(value) not in (int, float) or not math.isfinite(value)):
            raise schema_error(path, f"bound {value!r} is not a finite number")
        if base is int and type(value) is float:  # the same set of integers, as an int bound
            value = math.ceil(value) if key in ("ge", "lt") else math.floor(value)
        limits[key] = value
    if base is int and limits["multiple_of"] is not None and type(limits["multiple_of"]) is not int:
        raise schema_error(
            pointer(path, "multipleOf"), "an integer's multipleOf must be an integer"
        )
    return constrained(base, path, **limits)


def constrained(base: Any, path: str, **limits: Any) -> Any:
    limits = {k: v for k, v in limits.items() if v is not None}
    if not limits:
        return base
    try:
        return Annotated[base, msgspec.Meta(**limits)]
    except (TypeError, ValueError, re.error) as exc:
        raise schema_error(path, f"invalid constraint: {exc}") from None
