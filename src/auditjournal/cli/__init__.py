"""The ``auditjournal`` command line: a thin layer over the library.

Each command parses options, calls one library function and formats the
result; behaviour is tested on the library, the CLI tests check the wiring.
Commands live by theme in :mod:`.run`, :mod:`.evidence`, :mod:`.query` and
:mod:`.outputs`; :mod:`._base` holds the group and the one place errors become
exit codes.
"""

from __future__ import annotations

from . import evidence, landscape, outputs, query, run
from ._base import cli, main

__all__ = ["cli", "evidence", "landscape", "main", "outputs", "query", "run"]
