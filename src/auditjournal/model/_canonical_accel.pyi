# The optional compiled fast path of canonical.py's walk (_canonical_accel.c).
from typing import Any

def plain(value: Any, depth: int, /) -> bool: ...
