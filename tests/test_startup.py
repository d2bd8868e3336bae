"""What a start imports: ``import auditjournal`` loads the public names on first use, and
``auditjournal verify EXPORT`` neither the recorder, the projectors nor SQLAlchemy
(~0.5 s of CPU per command line start otherwise)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import auditjournal

_HEAVY = [
    "sqlalchemy",
    "auditjournal.recording.recorder",
    "auditjournal.export.replay",
    "auditjournal.sql.projector",
    "auditjournal.cli.run",
]


def _loaded_after(code: str, *args: str) -> list[str]:
    """The modules of _HEAVY a fresh interpreter has loaded after running ``code``."""
    shown = f"print(json.dumps([m for m in {_HEAVY} if m in sys.modules]))"
    probe = f"import json, sys\n{code}\n{shown}"
    done = subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_import_auditjournal_loads_no_library_part_yet() -> None:
    assert _loaded_after("import auditjournal") == []


def test_every_public_name_is_its_module_s_object() -> None:
    """Each name of ``__all__`` is there on first use, the very object its module defines."""
    for name in auditjournal.__all__:
        value = getattr(auditjournal, name)
        module = auditjournal._LAZY.get(name)
        if module is not None:
            assert value is getattr(importlib.import_module(module, "auditjournal"), name)
    assert set(auditjournal.__all__) <= set(dir(auditjournal))


def test_verify_starts_without_the_recorder_or_sqlalchemy(tmp_path: Path) -> None:
    code = (
        "from auditjournal.cli import main\n"
        "try:\n"
        "    main(['verify', sys.argv[1]])\n"
        "except SystemExit:\n"
        "    pass"
    )
    assert _loaded_after(code, str(tmp_path)) == []
