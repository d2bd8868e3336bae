"""Child of the import crash test: ``auditjournal import-landscape`` that stops halfway.

Usage: ``python landscape_import_child.py STOP_AFTER ARGS...`` runs the command line
with ARGS. After the recorder has created STOP_AFTER tokens it flushes the journal
(so the killed import leaves events on disk, as a long import does), prints
``stopped <last seq>`` and waits for the parent's SIGKILL. Nothing of the importer
is changed: only the recorder is watched.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from auditjournal.cli import main
from auditjournal.recording.recorder import RunRecorder

stop_after = int(sys.argv[1])
created = 0
original = RunRecorder.create_token


def create_token(self: RunRecorder, *args: Any, **kw: Any) -> str:
    global created
    token = original(self, *args, **kw)
    created += 1
    if created == stop_after:
        self.flush()
        sys.stdout.write(f"stopped {self.last_seq}\n")
        sys.stdout.flush()
        threading.Event().wait()  # until killed
    return token


RunRecorder.create_token = create_token  # type: ignore[method-assign]
main(sys.argv[2:])
