#!/usr/bin/env python3
"""Regenerate schemas/ from the code: ``python tools/gen_schemas.py``."""

from __future__ import annotations

from pathlib import Path

from auditjournal.evidence.schemas import generate_schemas

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def main() -> None:
    SCHEMAS.mkdir(exist_ok=True)
    for name, content in generate_schemas().items():
        (SCHEMAS / name).write_bytes(content)
        print(f"wrote schemas/{name}")


if __name__ == "__main__":
    main()
