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

from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "NON_TERMINAL_OUTCOMES",
    "OUTCOME_PREFIX",
    "certificate",
    "count_detail",
    "count_record",
    "merge_tally",
    "scan_tally",
]

NON_TERMINAL_OUTCOMES: Final = frozenset({"buffered"})
OUTCOME_PREFIX: Final = "outcome."
"""The tally key of a token outcome kind: ``outcome.<kind>``."""


def count_record(tally: dict[str, int], record_type: str, outcome: object, status: object) -> None:
    """Count one record: by its type (the caller may do that part itself, in a hot loop),
    then :func:`count_detail`."""
    tally[record_type] = tally.get(record_type, 0) + 1
    count_detail(tally, record_type, outcome, status)


def count_detail(tally: dict[str, int], record_type: str, outcome: object, status: object) -> None:
    """A token outcome by its kind, a node state still ``open`` as such."""
    if record_type == "token_outcome":
        key = OUTCOME_PREFIX + str(outcome)
        tally[key] = tally.get(key, 0) + 1
    elif status == "open" and record_type == "node_state":
        tally["open_states"] = tally.get("open_states", 0) + 1


def scan_tally(kinds: list[str], outcomes: list[str], open_states: int) -> dict[str, int]:
    """The counts from a scan that listed each record's type, each token outcome's kind
    and counted the open node states (what ``verify`` does, in its hot loop)."""
    tally = dict(Counter(kinds))
    for kind, n in Counter(outcomes).items():
        tally[OUTCOME_PREFIX + kind] = n
    if open_states:
        tally["open_states"] = open_states
    return tally


def merge_tally(into: dict[str, int], other: Mapping[str, int]) -> None:
    for key, value in other.items():
        into[key] = into.get(key, 0) + value


def certificate(tally: Mapping[str, int]) -> dict[str, Any]:
    """The manifest's ``completeness`` member from the counts (keys: record types,
    ``outcome.<kind>``, ``open_states``; others are ignored)."""
    outcomes = {
        k[len(OUTCOME_PREFIX) :]: v
        for k, v in sorted(tally.items())
        if k.startswith(OUTCOME_PREFIX)
    }
    terminal = sum(v for k, v in outcomes.items() if k not in NON_TERMINAL_OUTCOMES)
    tokens = tally.get("token", 0)
    return {
        "rows": tally.get("row", 0),
        "tokens": tokens,
        "outcomes": outcomes,
        "terminal_outcomes": terminal,
        "unfinished_tokens": tokens - terminal,
        "validation_errors": tally.get("validation_error", 0),
        "open_states": tally.get("open_states", 0),
    }
