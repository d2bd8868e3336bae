"""The lineage queries' results as text for people (:mod:`.lineage` answers them; the
CLI prints these): the runs as a table, a run's summary, a row's lineage with what
each step changed.

The tables are ``rich`` tables (:func:`runs_view`, :func:`show_view`): the CLI prints
them styled on a terminal (rich's rules: no colours with ``NO_COLOR``, ``TERM=dumb``)
and as :func:`plain` text anywhere else, lines whole and without trailing spaces.

Thread-safety: plain functions.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, Final

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from .lineage_landscape import OUTCOME_LABELS, compact, data_text
from .rowfind import field_diff

__all__ = [
    "plain",
    "render_explain",
    "render_runs",
    "render_show",
    "render_validation_error",
    "runs_view",
    "show_view",
]


_WIDE: Final = 1_000_000  # plain text is never squeezed to a terminal's width
_STATUS_STYLES: Final = {
    "completed": "green",
    "running": "yellow",
    "failed": "red",
    "interrupted": "red",
}
_EXPORT_STYLES: Final = {"sealed": "green", "failed": "red"}
_LABEL_WIDTH: Final = 9  # "completed", the longest label of a run's summary


def plain(renderable: RenderableType) -> str:
    """``renderable`` as plain text: no colours, lines whole, no trailing spaces (what the
    CLI prints to a pipe or a file, and what tests read)."""
    console = Console(
        file=io.StringIO(),
        width=_WIDE,
        color_system=None,
        force_terminal=False,
        no_color=True,
        highlight=False,
    )
    with console.capture() as captured:
        console.print(renderable)
    return "\n".join(line.rstrip() for line in captured.get().splitlines())


def _table(*headers: str, numeric: Sequence[str] = ()) -> Table:
    """Columns two spaces apart, no borders; a column of numbers is right-aligned."""
    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="", show_edge=False)
    for header in headers:
        table.add_column(header, justify="right" if header in numeric else "left", no_wrap=True)
    return table


def _grid(indent: int = 0) -> Table:
    """Label/value lines (``status     completed``), without a header row."""
    grid = Table.grid(padding=(0, 2, 0, indent))
    grid.add_column(min_width=_LABEL_WIDTH, no_wrap=True)
    grid.add_column()
    return grid


def _styled(value: str, styles: dict[str, str]) -> Text:
    return Text(value, style=styles.get(value, ""))


def runs_view(result: list[dict[str, Any]]) -> RenderableType:
    """The runs as a table (id, status, started, duration, rows, events, export), and the
    runs that could not be read."""
    if not result:
        return Text("no runs")
    table = _table(
        "RUN",
        "STATUS",
        "STARTED",
        "DURATION",
        "ROWS",
        "EVENTS",
        "EXPORT",
        numeric=("DURATION", "ROWS", "EVENTS"),
    )
    for r in result:
        status = _styled(r["status"], _STATUS_STYLES)
        if r.get("writer_gone"):
            status.append(", writer gone", style="red")
        table.add_row(
            r["run_id"],
            status,
            r["started_at"] or "-",
            "-" if r["duration_s"] is None else f"{r['duration_s']:.3f}s",
            f"{r['rows']:,}",
            f"{r['events']:,}",
            _styled(r["export"]["state"], _EXPORT_STYLES),
        )
    problems = [f"{r['run_id']}: {r['problem']}" for r in result if r.get("problem")]
    if not problems:
        return table
    return Group(table, "", "problems (these runs could not be read):", *problems)


def render_runs(result: list[dict[str, Any]]) -> str:
    """:func:`runs_view` as plain text."""
    return plain(runs_view(result))


def show_view(result: dict[str, Any]) -> RenderableType:
    """A run's summary for people: the run, its nodes, edges and counts, its export."""
    run = result["run"]
    names = {n["node_id"]: f"{n['node_id']} ({n['plugin_name']})" for n in result["nodes"]}
    status = _styled(run["status"], _STATUS_STYLES)
    if run.get("writer_gone"):
        status.append(" (its writer is gone: resume and complete it)", style="red")
    if run["error"]:
        status.append(f"  error {compact(run['error'], 100)}")
    head = _grid()
    head.add_row("run", run["run_id"])
    head.add_row("status", status)
    head.add_row("started", run["started_at"])
    duration = "" if run["duration_s"] is None else f"  ({run['duration_s']:.3f}s)"
    head.add_row("completed", f"{run['completed_at'] or '-'}{duration}")
    head.add_row("events", f"{result['events'] or 0:,}")

    nodes = _table("NODE", "TYPE", "PLUGIN", "VERSION")
    for n in result["nodes"]:
        nodes.add_row(n["node_id"], n["node_type"], n["plugin_name"], str(n["plugin_version"]))
    edges = _table("EDGE", "FROM", "LABEL", "TO", "MODE")
    for e in result["edges"]:
        edges.add_row(
            e["edge_id"],
            names.get(e["from_node_id"], e["from_node_id"]),
            f"--{e['label']}-->",
            names.get(e["to_node_id"], e["to_node_id"]),
            e["mode"],
        )
    routes = {e["edge_id"]: _route(e, names) for e in result["edges"]}
    counts = _table("COUNT", "TOTAL", "BY", numeric=("TOTAL",))
    for key, value in result["counts"].items():
        if isinstance(value, dict):
            label = (lambda k: routes.get(k, k)) if key == "routing_events" else str
            shown = ", ".join(f"{label(k)}={v:,}" for k, v in value.items()) or "-"
            counts.add_row(key, f"{sum(value.values()):,}", shown)
        else:
            counts.add_row(key, f"{value:,}", "")
    export = result["export"]
    tail = _grid()
    state = _styled(export["state"], _EXPORT_STYLES)
    if export["manifest"]:
        state.append(f"  {export['manifest']}")
    tail.add_row("export", state)
    return Group(
        head,
        "",
        Padding(nodes, (0, 0, 0, 2)),
        "",
        Padding(edges, (0, 0, 0, 2)),
        "",
        Padding(counts, (0, 0, 0, 2)),
        "",
        tail,
    )


def render_show(result: dict[str, Any]) -> str:
    """:func:`show_view` as plain text."""
    return plain(show_view(result))


def _route(edge: dict[str, Any], names: dict[str, str]) -> str:
    """An edge as people name it: its label and where it leads (``review -> node-5 (sink)``)."""
    return f"{edge['label']} -> {names.get(edge['to_node_id'], edge['to_node_id'])}"


def render_explain(result: dict[str, Any], *, width: int | None = 120) -> str:
    """A row's lineage for people: per token, its node states with their input/output,
    calls and routing decisions, then the outcome. ``width`` truncates payloads."""
    row = result["row"]
    out = [
        f"row {row['row_id']} (index {row['row_index']}) of run {result['run_id']}, "
        f"from node {row['source_node_id']}",
        f"  source data {data_text(row, 'source_data', 'source_data_hash', width)}",
    ]
    for error in result.get("validation_errors", []):
        out.append(
            f"  rejected at validation {error['validation_error_id']} (schema mode "
            f"{error['schema_mode']}) -> {error['destination']}: {error['error']}"
        )
    states_of = _group(result["node_states"], "token_id")
    outcomes_of = _group(result["token_outcomes"], "token_id")
    for token in result["tokens"]:
        parents = ", ".join(token["parent_token_ids"])
        extra = f" from {parents}" if parents else ""
        extra += f" branch {token['branch_name']}" if token["branch_name"] else ""
        out.append(f"token {token['token_id']}{extra}")
        for state in sorted(states_of.get(token["token_id"], []), key=lambda s: s["started_seq"]):
            out += _render_state(state, result, width)
        out += [_outcome(o) for o in outcomes_of.get(token["token_id"], [])]
    for error in result.get("transform_errors", []):
        out.append(f"  transform error at {error['node_id']} -> {error['destination']}")
    for found in result.get("batches", []):
        batch = found["batch"]
        members = "  ".join(f"{m['ordinal']} {m['token_id']}" for m in found["members"])
        out.append(
            f"batch {batch['batch_id']}  {batch['status']}, trigger {batch['trigger_type']}, "
            f"{len(found['members'])} members, flushed by state {batch['aggregation_state_id']}"
        )
        out.append(f"  members {members}")
        out += [
            f"  output {o['output_type']} {o['output_id']}"
            for o in found["outputs"]
            if o["output_type"] != "token"  # tokens are shown below, with their story
        ]
        for made in found.get("produced", []):
            out += _render_produced(made, result, width)
    out.append(f"outcome {result['outcome'] or '(none yet)'}")
    return "\n".join(out)


def render_validation_error(result: dict[str, Any], *, width: int | None = 120) -> str:
    """A validation error's story: the row it made (as :func:`render_explain`), or, when
    it made none, the error itself."""
    if result["row"] is not None:
        return render_explain(result, width=width)
    error = result["validation_error"]
    node = error["node_id"] or "-"
    name = result["node_names"].get(error["node_id"])
    out = [
        f"validation error {error['validation_error_id']} of run {result['run_id']}, "
        f"at node {node}" + (f" ({name})" if name else ""),
        f"  rejected (schema mode {error['schema_mode']}) -> {error['destination']}: "
        f"{error['error']}",
    ]
    details = [
        f"{label} {error[key]}"
        for key, label in (
            ("violation_type", "violation"),
            ("original_field_name", "field"),
            ("normalized_field_name", "recorded as"),
            ("expected_type", "expected"),
            ("actual_type", "got"),
        )
        if error.get(key) is not None
    ]
    if details:
        out.append("  " + ", ".join(details))
    out.append(f"  data {data_text(error, 'row_data', 'row_hash', width)}")
    out.append(f"  row hash {error['row_hash']}; it never became a row (sent to "
               f"{error['destination']})")  # fmt: skip
    return "\n".join(out)


def _outcome(outcome: dict[str, Any], indent: str = "  ") -> str:
    sink = f" -> {outcome['sink_name']}" if outcome["sink_name"] else ""
    groups = ", ".join(
        f"{label} {outcome[key]}" for key, label in OUTCOME_LABELS if outcome.get(key) is not None
    )
    return f"{indent}outcome {outcome['outcome']}{sink}" + (f" ({groups})" if groups else "")


def _render_produced(made: dict[str, Any], result: dict[str, Any], width: int | None) -> list[str]:
    """A token a batch produced (``found``: a batch output, or a member's child), with its
    states, calls, routing, artifacts and outcomes."""
    token = made["token"]
    out = [f"  produced token {token['token_id']} of row {token['row_id']} ({made['found']})"]
    own = {**result, **{k: made[k] for k in ("calls", "routing_events", "artifacts")}}
    for state in made["node_states"]:
        out += ["  " + line for line in _render_state(state, own, width)]
    out += [_outcome(o, "    ") for o in made["token_outcomes"]]
    return out


def _render_state(state: dict[str, Any], result: dict[str, Any], width: int | None) -> list[str]:
    node = result["node_names"].get(state["node_id"], "")
    duration = "" if state["duration_ms"] is None else f" {state['duration_ms']:g} ms"
    attempt = f" attempt {state['attempt']}" if state["attempt"] else ""
    out = [
        f"  [{state['step_index']}] {state['node_id']} {node} {state['status']}{duration}{attempt}",
        f"      in  {data_text(state, 'input_data', 'input_hash', width)}",
    ]
    if state["output_data"] is not None or state["output_hash"] is not None:
        out.append(f"      out {data_text(state, 'output_data', 'output_hash', width)}")
        if state["input_data"] is not None and state["output_data"] is not None:
            for op, path, old, new in field_diff(state["input_data"], state["output_data"]):
                shown = {
                    "+": compact(new, width),
                    "-": compact(old, width),
                    "~": f"{compact(old, width)} -> {compact(new, width)}",
                }[op]
                out.append(f"        {op} {path or '(whole value)'}: {shown}")
    for key in ("context_before", "context_after"):
        if state.get(key) is not None:
            out.append(f"      {key.replace('_', ' ')} {compact(state[key], width)}")
    if state["error"] is not None:
        out.append(f"      error {compact(state['error'], width)}")
    mine = state["state_id"]
    for call in (c for c in result["calls"] if c["state_id"] == mine):
        latency = "" if call["latency_ms"] is None else f" {call['latency_ms']:g} ms"
        out += [
            f"      call #{call['call_index']} {call['call_type']} {call['status']}{latency}",
            f"        request  {compact(call['request'], width)}",
            f"        response {compact(call['response'], width)}",
        ]
    for route in (r for r in result["routing_events"] if r["state_id"] == mine):
        edge = result.get("edges", {}).get(route["edge_id"])
        where = route["edge_id"]
        if edge is not None:
            target = edge["to_node_id"]
            name = result["node_names"].get(target)
            where = f"{edge['label']} -> {target}" + (f" ({name})" if name else "")
        out.append(
            f"      routed {where} ({route['mode']}) reason {compact(route['reason'], width)}"
        )
    for art in (a for a in result["artifacts"] if a["state_id"] == mine):
        size = f"{art['size_bytes']:,} bytes"
        out.append(f"      artifact {art['artifact_type']} {art['path_or_uri']} ({size})")
    return out


def _group(records: list[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(record[key], []).append(record)
    return grouped
