# journal/lines.py's seal() and the check of read lines compiled (optional build, _seal_accel.c).

_Bytes = bytes | bytearray | memoryview

def seal(event_bytes: _Bytes, prev_chain: _Bytes, /) -> tuple[bytes, bytes]: ...
def check_lines(
    data: _Bytes, start: int, prev_chain: _Bytes, limit: int, /
) -> tuple[int, list[bytes], bytes]: ...
