# The optional compiled datetime text of bulkinsert.py's and rowbuild.py's SQLite rows.
from typing import Any

def datetime_text(value: Any, /) -> str | None: ...
