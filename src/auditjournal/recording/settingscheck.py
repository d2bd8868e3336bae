"""The store's own settings, checked before anything is created (InvalidSettingsError)."""

from __future__ import annotations

import math

from ..errors import InvalidSettingsError
from ..fs.storage import DURABILITY_MODES
from ..journal.filebackend import MIN_SEGMENT_BYTES

__all__ = ["check_store_settings"]


def check_store_settings(
    durability: object,
    database_url: object,
    flush_interval: object,
    segment_bytes: object,
    max_payload_bytes: object,
) -> None:
    """Refuse a store setting of the wrong type or out of range (InvalidSettingsError)."""
    if type(durability) is not str or durability not in DURABILITY_MODES:
        raise InvalidSettingsError(
            f"invalid durability {durability!r}; expected one of {list(DURABILITY_MODES)}"
        )
    if database_url is not None and (type(database_url) is not str or not database_url):
        raise InvalidSettingsError(f"database_url must be None or a URL, got {database_url!r}")
    if not (
        isinstance(flush_interval, int | float)
        and type(flush_interval) is not bool
        and 0 < flush_interval < math.inf
    ):
        raise InvalidSettingsError(
            f"flush_interval must be a finite number of seconds > 0, got {flush_interval!r}"
        )
    if type(segment_bytes) is not int or segment_bytes < MIN_SEGMENT_BYTES:
        # a tiny segment means a file (and a directory fsync) every few events
        raise InvalidSettingsError(
            f"segment_bytes must be an int >= {MIN_SEGMENT_BYTES}, got {segment_bytes!r}"
        )
    if type(max_payload_bytes) is not int or max_payload_bytes < 1:
        raise InvalidSettingsError(
            f"max_payload_bytes must be an int >= 1, got {max_payload_bytes!r}"
        )
