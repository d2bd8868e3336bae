"""The completeness certificate: a run's totals, carried by the signed manifest.

The export projector counts, as it makes records: rows, tokens, token outcomes
by kind, validation errors and node states still open when the run ended.
The manifest (signed) carries them as ``completeness``; ``verify`` counts the
records again and checks that every token reaches exactly one terminal outcome
(every outcome but ``buffered`` is terminal: completed, routed, forked,
failed, quarantined, consumed_in_batch, coalesced, expanded) -- or, in a run
that did not complete, is counted as ``unfinished``. So an auditor learns from
the export alone that nothing was dropped, or exactly what was not finished.

The counts are sums, so counts made over parts of a journal (the parallel
replay's ranges, the parallel verify's chunks) add up to the whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "NON_TERMINAL_OUTCOMES",
    "certificate",
    "merge_tally",
    "tally_key",
]

NON_TERMINAL_OUTCOMES: Final = frozenset({"buffered"})
_OUTCOME: Final = "outcome."


def tally_key(record_type: str, outcome: str | None, status: str | None) -> str | None:
    """What one record adds 1 to (None: nothing counted)."""
    if record_type == "row":
        return "rows"
    if record_type == "token":
        return "tokens"
    if record_type == "token_outcome":
        return _OUTCOME + str(outcome)
    if record_type == "validation_error":
        return "validation_errors"
    if record_type == "node_state" and status == "open":
        return "open_states"
    return None


def merge_tally(into: dict[str, int], other: Mapping[str, int]) -> None:
    for key, value in other.items():
        into[key] = into.get(key, 0) + value


def certificate(tally: Mapping[str, int]) -> dict[str, Any]:
    """The manifest's ``completeness`` member from the counts."""
    outcomes = {k[len(_OUTCOME) :]: v for k, v in sorted(tally.items()) if k.startswith(_OUTCOME)}
    terminal = sum(v for k, v in outcomes.items() if k not in NON_TERMINAL_OUTCOMES)
    tokens = tally.get("tokens", 0)
    return {
        "rows": tally.get("rows", 0),
        "tokens": tokens,
        "outcomes": outcomes,
        "terminal_outcomes": terminal,
        "unfinished_tokens": tokens - terminal,
        "validation_errors": tally.get("validation_errors", 0),
        "open_states": tally.get("open_states", 0),
    }
