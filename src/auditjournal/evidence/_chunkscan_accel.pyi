# evidence/chunkscan.py's per-block record work compiled (optional build, _chunkscan_accel.c).

_Bytes = bytes | bytearray | memoryview

def heads(
    data: _Bytes, end: int, state: int, run_id: bytes, types: tuple[str, ...], previous: int, /
) -> tuple[int, bytes, list[int], dict[str, int], int, int | None, int | None] | None: ...
def subtrees(leaves: _Bytes, start: int, /) -> list[tuple[int, bytes]]: ...
