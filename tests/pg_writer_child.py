"""A writer process that joins a run in a PostgreSQL journal and records rows.

Run as ``python pg_writer_child.py URL ROOT RUN_ID SOURCE_NODE SINK_NODE TAG ROWS DURABILITY``
(a fresh interpreter), or call :func:`write_rows` in a forked child. Under
``always`` it prints ``ack <row id>`` once every event of the row is committed,
so a test that kills it knows what was acknowledged.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from auditjournal import AuditStore


def write_rows(
    url: str,
    root: str,
    run_id: str,
    source: str,
    sink: str,
    tag: str,
    rows: int,
    durability: str,
    out: TextIO,
) -> None:
    store = AuditStore.open(Path(root), journal_url=url, durability=durability)  # type: ignore[arg-type]
    with store, store.join_run(run_id) as run:
        for index in range(rows):
            row = run.create_row(
                source_node_id=source,
                row_index=index,
                data={"writer": tag, "i": index, "text": f"{tag}-{index}" * 20},
                row_id=f"{tag}-row-{index}",
            )
            token = run.create_token(row_id=row)
            state = run.begin_node_state(
                token_id=token, node_id=sink, step_index=1, input_data={"i": index}
            )
            run.complete_node_state(state, status="completed", output_data={"ok": index})
            run.record_token_outcome(token_id=token, outcome="completed", sink_name="out")
            out.write(f"ack {row}\n")
            out.flush()
    out.write("done\n")
    out.flush()


if __name__ == "__main__":
    url, root, run_id, source, sink, tag, rows, durability = sys.argv[1:9]
    write_rows(url, root, run_id, source, sink, tag, int(rows), durability, sys.stdout)


def write_rows_acking_to(ack_path: str, *args: Any, **kwargs: Any) -> None:
    """:func:`write_rows` with the acknowledgements in a file (for a forked child)."""
    with open(ack_path, "a", buffering=1) as out:
        write_rows(*args, **kwargs, out=out)
