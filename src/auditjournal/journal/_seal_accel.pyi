# journal/lines.py's seal() compiled (optional build, _seal_accel.c).

_Bytes = bytes | bytearray | memoryview

def seal(event_bytes: _Bytes, prev_chain: _Bytes, /) -> tuple[bytes, bytes]: ...
