# model/records.py's RecordMaker.extend loop compiled (optional build, _records_accel.c).
from collections.abc import Callable, Sequence
from typing import Any

def extend(
    events: Sequence[Any],
    seqs: list[int],
    records: list[bytes],
    handlers: dict[type, Callable[[Any], list[tuple[int, bytes]]]],
    hot: tuple[type, ...],
    run_id: str,
    get: Callable[[str], bytes] | None,
    open_states: dict[str, dict[str, Any]],
    tally: dict[str, int],
    json_bytes: Callable[[Any], bytes],
    /,
) -> int | None: ...
def extend_lines(
    events: Sequence[Any],
    handlers: dict[type, Callable[[Any], list[tuple[int, bytes]]]],
    hot: tuple[type, ...],
    run_id: str,
    get: Callable[[str], bytes] | None,
    open_states: dict[str, dict[str, Any]],
    tally: dict[str, int],
    json_bytes: Callable[[Any], bytes],
    seqs: list[int] = ...,
    /,
) -> tuple[int, bytes, list[int], list[int], bytes] | None: ...
