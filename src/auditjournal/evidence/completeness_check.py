"""``verify``'s check of the completeness certificate (model/completeness.py).

The counts are re-derived while the chunks are scanned (no extra pass); only
when they disagree with the signed certificate (or count more terminal outcomes
than tokens) are the records read once more to name the rows concerned (memory
then grows with the number of tokens). Tokens the certificate itself declares
unfinished are not a failure -- the pipeline said so, and ``verify`` reports
it (``completeness`` in its report) -- a dropped, duplicated or injected
record is, because the counts then differ from the signed ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from ..export.chunks import iter_chunk_records
from ..model.completeness import NON_TERMINAL_OUTCOMES, certificate

__all__ = ["check_completeness", "completeness_note"]

_SHOWN: Final = 5  # rows named per kind of problem


class _Head(msgspec.Struct):
    record_type: str
    token_id: str | None = None
    row_id: str | None = None
    outcome: str | None = None


def check_completeness(
    claimed: dict[str, Any] | None,
    tally: dict[str, int],
    run_status: str,
    chunk_paths: Sequence[Path],
) -> list[str]:
    """Problems with the certificate ``claimed`` (the manifest's), given the counts of the
    records; ``[]`` when it holds. A manifest without one (older exports) is not checked."""
    if claimed is None:
        return []
    found = certificate(tally)
    problems: list[str] = []
    if found != claimed:
        differ = sorted(k for k in set(found) | set(claimed) if found.get(k) != claimed.get(k))
        problems.append(
            "completeness certificate does not match the records ("
            + ", ".join(f"{k}: manifest {claimed.get(k)}, records {found.get(k)}" for k in differ)
            + ")"
        )
    if problems or found["terminal_outcomes"] > found["tokens"]:
        problems += _name_rows(run_status, chunk_paths)
    return problems


def completeness_note(claimed: dict[str, Any] | None, run_status: str) -> str:
    """What the (verified) certificate says was not finished; "" when everything was."""
    if claimed is None:
        return "absent"
    unfinished, open_states = claimed.get("unfinished_tokens"), claimed.get("open_states")
    if not unfinished and not open_states:
        return "every token reached one terminal outcome"
    return (
        f"{unfinished} token(s) without a terminal outcome, {open_states} node state(s) open "
        f"(run {run_status})"
    )


def _name_rows(run_status: str, chunk_paths: Sequence[Path]) -> list[str]:
    decode = msgspec.json.Decoder(_Head).decode
    token_rows: dict[str, str | None] = {}
    terminal: dict[str, list[str]] = {}
    for path in chunk_paths:
        try:
            for line in iter_chunk_records(path):
                head = decode(line)
                if head.record_type == "token" and head.token_id is not None:
                    token_rows[head.token_id] = head.row_id
                elif (
                    head.record_type == "token_outcome"
                    and head.token_id is not None
                    and head.outcome not in NON_TERMINAL_OUTCOMES
                ):
                    terminal.setdefault(head.token_id, []).append(str(head.outcome))
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return []  # the chunk's own check reports it
    problems = []
    duplicated = [(t, o) for t, o in terminal.items() if len(o) > 1]
    for token, outcomes in duplicated[:_SHOWN]:
        problems.append(
            f"row {token_rows.get(token)}: token {token} has {len(outcomes)} terminal outcomes "
            f"({', '.join(outcomes)})"
        )
    orphans = [t for t in terminal if t not in token_rows]
    for token in orphans[:_SHOWN]:
        problems.append(f"an outcome names token {token}, which no token record has")
    if run_status == "completed":
        missing = [t for t in token_rows if t not in terminal]
        for token in missing[:_SHOWN]:
            problems.append(
                f"row {token_rows[token]}: token {token} reaches no terminal outcome "
                "in a completed run (outcome dropped?)"
            )
        if len(missing) > _SHOWN:
            problems.append(f"... and {len(missing) - _SHOWN} more tokens without an outcome")
    return problems
