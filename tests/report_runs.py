"""Runs recorded for the report and OpenLineage tests, and an independent export reader.

``read_records`` parses chunk files with the standard library only (not the
library's chunk reader), so counts the tests compare against do not share
code with what they test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from auditjournal import AuditStore, ExportSettings, OpenLineageSettings

# A value that would end a <script> block, open a comment or run code if any of the
# page's data were written as markup instead of text.
XSS = '</script><script>alert(1)</script><!-- <img src=x onerror="window.__xss=1">'


def read_records(export: Path) -> list[dict[str, Any]]:
    """Every record of a sealed export, in export order, parsed with ``json``."""
    manifest = json.loads((export / "audit_trail.manifest.json").read_text())
    records = []
    for chunk in manifest["chunks"]:
        lines = (export / chunk["file"]).read_text(encoding="utf-8").split("\n")
        assert lines[0] == "[" and lines[-2] == "]" and lines[-1] == ""
        for line in lines[1:-2]:
            records.append(json.loads(line[1:] if line.startswith(",") else line))
    return records


@dataclass(frozen=True)
class ForkRun:
    export: Path
    run_id: str
    edges: dict[str, str]  # name -> edge id
    rows: list[str]


def record_fork_run(
    root: Path,
    *,
    rows: int = 3,
    chunk_size: int = 4000,
    sign: Literal["hmac-sha256"] | None = None,
    run_id: str | None = None,
    openlineage: OpenLineageSettings | None = None,
) -> ForkRun:
    """source -> split (gate, forks) -> left | right -> join (coalesce) -> out (sink).

    Per row: the parent token is forked by two copy routing events, each child
    passes one branch (row 0's left branch fails once and is retried), a joined
    token with both children as parents goes through join and out. So every edge
    carries ``rows`` tokens.
    """
    with AuditStore.open(root) as store:
        with store.start_run(
            config={"pipeline": "fork-join", "secret_hint": "see vault"},
            export=ExportSettings(chunk_size_bytes=chunk_size, sign=sign, openlineage=openlineage),
            sql=False,
            run_id=run_id,
        ) as run:
            node = run.register_node
            src = node(plugin_name="reader", node_type="source", config={"path": "/data/in.csv"})
            split = node(plugin_name="split", node_type="gate")
            left = node(plugin_name="left", node_type="transform")
            right = node(plugin_name="right", node_type="transform")
            join = node(plugin_name="join", node_type="coalesce")
            out = node(plugin_name="writer", node_type="sink")
            edge = run.register_edge
            edges = {
                "src-split": edge(from_node_id=src, to_node_id=split, label="continue"),
                "split-left": edge(from_node_id=split, to_node_id=left, label="left", mode="copy"),
                "split-right": edge(
                    from_node_id=split, to_node_id=right, label="right", mode="copy"
                ),
                "left-join": edge(from_node_id=left, to_node_id=join, label="continue"),
                "right-join": edge(from_node_id=right, to_node_id=join, label="continue"),
                "join-out": edge(from_node_id=join, to_node_id=out, label="continue"),
            }
            row_ids = []
            last_state = None
            for i in range(rows):
                data = {"id": i, "name": f"name-{i}", "nested": {"a": i}}
                row = run.create_row(source_node_id=src, row_index=i, data=data)
                row_ids.append(row)
                parent = run.create_token(row_id=row)
                st = run.begin_node_state(
                    token_id=parent, node_id=split, step_index=1, input_data=data
                )
                run.complete_node_state(st, status="completed", output_data=data)
                group = f"fork-{i}"
                for ordinal, name in enumerate(("split-left", "split-right")):
                    run.record_routing_event(
                        state_id=st,
                        edge_id=edges[name],
                        mode="copy",
                        reason={"rule": "both"},
                        routing_group_id=group,
                        ordinal=ordinal,
                    )
                run.record_token_outcome(token_id=parent, outcome="forked")
                children = []
                for branch, node_id in (("left", left), ("right", right)):
                    child = run.create_token(
                        row_id=row,
                        parent_token_ids=[parent],
                        branch_name=branch,
                        fork_group_id=group,
                    )
                    children.append(child)
                    if i == 0 and branch == "left":
                        st = run.begin_node_state(
                            token_id=child, node_id=node_id, step_index=2, input_data=data
                        )
                        run.complete_node_state(st, status="failed", error={"type": "Flaky"})
                        attempt = 1
                    else:
                        attempt = 0
                    st = run.begin_node_state(
                        token_id=child,
                        node_id=node_id,
                        step_index=2,
                        input_data=data,
                        attempt=attempt,
                    )
                    run.complete_node_state(
                        st, status="completed", output_data={**data, branch: True}
                    )
                    run.record_token_outcome(token_id=child, outcome="coalesced")
                joined = run.create_token(
                    row_id=row, parent_token_ids=children, join_group_id=f"join-{i}"
                )
                merged = {**data, "left": True, "right": True}
                st = run.begin_node_state(
                    token_id=joined, node_id=join, step_index=3, input_data=merged
                )
                run.complete_node_state(st, status="completed", output_data=merged)
                st = run.begin_node_state(
                    token_id=joined, node_id=out, step_index=4, input_data=merged
                )
                run.complete_node_state(st, status="completed", output_data=merged)
                last_state = st
                run.record_token_outcome(token_id=joined, outcome="completed", sink_name="out")
            assert last_state is not None
            run.record_artifact(
                state_id=last_state,
                sink_node_id=out,
                artifact_type="file",
                path_or_uri="s3://user:pa55word@bucket/out/part-0.csv?X-Amz-Signature=deadbeef",
                content_hash="0" * 64,
                size_bytes=123,
                sink_input=[{"id": i} for i in range(rows)],
            )
        return ForkRun(store.export_dir(run.run_id), run.run_id, edges, row_ids)


@dataclass(frozen=True)
class XssRun:
    export: Path
    run_id: str
    row_id: str


def record_xss_run(root: Path) -> XssRun:
    """A run whose names, configs and payloads all carry :data:`XSS`."""
    with AuditStore.open(root) as store:
        with store.start_run(config={"pipeline": XSS}, sql=False) as run:
            src = run.register_node(plugin_name=XSS, node_type="source", config={"note": XSS})
            t = run.register_node(plugin_name="clean", node_type="transform")
            sink = run.register_node(plugin_name="sink", node_type="sink")
            run.register_edge(from_node_id=src, to_node_id=t, label="continue")
            e = run.register_edge(from_node_id=t, to_node_id=sink, label=XSS)
            row = run.create_row(source_node_id=src, row_index=0, data={"name": XSS, "n": 1})
            tok = run.create_token(row_id=row)
            st = run.begin_node_state(
                token_id=tok, node_id=t, step_index=1, input_data={"name": XSS}
            )
            run.record_call(
                state_id=st,
                call_type="http",
                status="success",
                request={"q": XSS},
                response={"a": XSS},
            )
            run.complete_node_state(
                st, status="completed", output_data={"name": XSS.upper(), XSS: 1}
            )
            run.record_routing_event(state_id=st, edge_id=e, mode="move", reason={"why": XSS})
            st = run.begin_node_state(token_id=tok, node_id=sink, step_index=2, input_data=[XSS])
            run.complete_node_state(st, status="completed")
            run.record_token_outcome(token_id=tok, outcome="completed", sink_name=XSS)
        return XssRun(store.export_dir(run.run_id), run.run_id, row)
