# payloads/store.py's read from the read-ahead window compiled (optional build, _window_accel.c).
from array import array

def in_window(
    ref: object,
    keys: array[int],
    values: array[int],
    mask: int,
    number: int,
    start: int,
    window: bytes,
    /,
) -> bytes | None: ...
def insert_entries(
    raw: object,
    number: int,
    dat_size: int,
    keys: array[int],
    values: array[int],
    mask: int,
    room: int,
    /,
) -> tuple[int, int]: ...
def rehash(
    old_keys: array[int], old_values: array[int], keys: array[int], values: array[int], mask: int, /
) -> None: ...

lookup: object
"""A capsule of in_window's read for the compiled record loop (_payload_window.h)."""
