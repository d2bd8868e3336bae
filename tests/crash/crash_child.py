"""Child process of the crash tests: records into one run until it is killed.

Usage: ``python crash_child.py ROOT RUN_ID GENERATION [DURABILITY]``. Generation 0
starts the run, later generations resume it. After a recorder call returns (with
``durability="always"`` the event is then acknowledged: written and fsynced)
it prints one line ``ack <seq> <kind> <id>`` and flushes stdout, so every line
the parent reads names an event that must survive a SIGKILL. With another
durability nothing is acknowledged, so it prints nothing and records at full speed.
"""

from __future__ import annotations

import sys

from auditjournal import AuditStore


def row_data(generation: int, index: int) -> dict[str, object]:
    """Deterministic, varied row content (the parent recomputes it to check payloads)."""
    return {"g": generation, "i": index, "text": "x" * (index * 7919 % 3000), "n": index * 1.5}


def main(root: str, run_id: str, generation: int, durability: str = "always") -> None:
    store = AuditStore.open(root, durability=durability, segment_bytes=4096)  # type: ignore[arg-type]
    acknowledge = durability == "always"

    def ack(run: object, kind: str, ident: str) -> None:
        if acknowledge:
            sys.stdout.write(f"ack {run.last_seq} {kind} {ident}\n")  # type: ignore[attr-defined]
            sys.stdout.flush()

    if generation == 0:
        run = store.start_run(run_id=run_id, export=None, config={"crash": True})
        run.register_node(plugin_name="src", node_type="source", node_id="src")
        run.register_node(plugin_name="t", node_type="transform", node_id="t1")
        run.register_node(plugin_name="out", node_type="sink", node_id="sink")
    else:
        run = store.resume_run(run_id)
    sys.stdout.write(f"ready {run.last_seq}\n")
    sys.stdout.flush()
    for i in range(100_000):
        prefix = f"g{generation}-{i}"
        row = run.create_row(
            source_node_id="src", row_index=i, data=row_data(generation, i), row_id=f"{prefix}-row"
        )
        ack(run, "row", row)
        tok = run.create_token(row_id=row, token_id=f"{prefix}-tok")
        ack(run, "token", tok)
        st = run.begin_node_state(
            token_id=tok, node_id="t1", step_index=1, input_data={"in": i}, state_id=f"{prefix}-st"
        )
        ack(run, "state", st)
        call = run.record_call(
            state_id=st,
            call_type="http",
            status="success",
            request={"i": i},
            response={"r": "y" * (i % 500)},
            call_id=f"{prefix}-call",
        )
        ack(run, "call", call)
        run.complete_node_state(st, status="completed", output_data={"out": i}, duration_ms=0.5)
        ack(run, "done", st)
        outcome = run.record_token_outcome(
            token_id=tok, outcome="completed", sink_name="sink", outcome_id=f"{prefix}-out"
        )
        ack(run, "outcome", outcome)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:])
