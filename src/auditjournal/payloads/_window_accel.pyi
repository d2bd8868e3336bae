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
