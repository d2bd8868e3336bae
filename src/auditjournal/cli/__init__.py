"""The ``auditjournal`` command line: a thin layer over the library.

Each command parses options, calls one library function and formats the
result; behaviour is tested on the library, the CLI tests check the wiring.
Commands live by theme in :mod:`.run`, :mod:`.evidence`, :mod:`.query`,
:mod:`.outputs` and :mod:`.landscape`, each imported when one of its commands is asked
for (``_base.COMMAND_MODULES``); :mod:`._base` holds the group and the one place errors
become exit codes.
"""

from __future__ import annotations

from ._base import cli, load_commands, main

__all__ = ["cli", "load_commands", "main"]
