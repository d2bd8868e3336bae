"""The demo pipeline: a realistic run recorded with the live export, then verified.

customers.csv (shipped) -> validate -> normalize -> enrich (a simulated LLM
call per row) -> route (gate) -> accepted.csv / review.csv (two sinks).
Rows with a bad e-mail are quarantined by the validator; rows whose spend
cannot be parsed fail in the normalizer; the enrichment call sometimes fails
once and is retried. Everything is recorded through the public API.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from .evidence.verify import VerifyReport, verify_export
from .export.manifest import ExportPaths
from .model.settings import ExportSettings
from .recording.recorder import RunRecorder
from .recording.store import AuditStore

__all__ = ["DemoResult", "run_demo"]

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[a-z]{2,}")
_ROW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "customer_id": {"type": "string"},
        "name": {"type": "string"},
        "email": {"type": "string"},
        "country": {"type": "string"},
        "signup_date": {"type": "string", "format": "date"},
        "monthly_spend": {"type": "string"},
        "notes": {"type": "string"},
    },
    "required": ["customer_id", "email"],
}


@dataclass(frozen=True)
class DemoResult:
    """Where the demo put things, and what verify said."""

    root: Path
    run_id: str
    rows: int
    outcomes: dict[str, int]
    journal_dir: Path
    export_dir: Path
    manifest: Path
    outputs: list[Path]
    report: VerifyReport
    first_row_id: str


def sample_rows(count: int) -> Iterator[dict[str, str]]:
    """``count`` rows from the shipped sample (cycled, with fresh ids past its end)."""
    text = resources.files("auditjournal").joinpath("sample_data/customers.csv").read_text()
    base = list(csv.DictReader(io.StringIO(text)))
    for i in range(count):
        row = dict(base[i % len(base)])
        if i >= len(base):
            row["customer_id"] = f"{row['customer_id']}-{i // len(base)}"
        yield row


def _simulated_llm(row: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], bool]:
    """A stand-in for a sentiment model: deterministic from the notes, sometimes flaky."""
    notes = row["notes"].lower()
    negative = sum(w in notes for w in ("complain", "cancel", "frustrat", "disput", "close"))
    score = round(max(0.0, min(1.0, 0.8 - 0.35 * negative + rng.uniform(-0.1, 0.1))), 3)
    ok = rng.random() > 0.08
    return {"label": "positive" if score >= 0.5 else "negative", "score": score}, ok


class _Pipeline:
    def __init__(self, run: RunRecorder, out_dir: Path) -> None:
        self.run = run
        self.rng = random.Random(7)
        self.out_dir = out_dir
        self.outcomes: dict[str, int] = {}
        self.first_row_id: str | None = None
        node = run.register_node
        self.source = node(
            plugin_name="csv_source",
            node_type="source",
            plugin_version="1.2",
            config={"path": "sample_data/customers.csv"},
            determinism="io_read",
            output_schema=_ROW_SCHEMA,
        )
        self.validate = node(
            plugin_name="validate_email", node_type="transform", plugin_version="1.0"
        )
        self.normalize = node(plugin_name="normalize", node_type="transform", plugin_version="2.1")
        self.enrich = node(
            plugin_name="llm_sentiment",
            node_type="transform",
            plugin_version="0.9",
            config={"model": "demo-sentiment-small", "temperature": 0},
            determinism="external_call",
        )
        self.gate = node(plugin_name="route_by_score", node_type="gate", config={"threshold": 0.5})
        self.sinks = {
            name: node(
                plugin_name="csv_sink",
                node_type="sink",
                config={"path": f"{name}.csv"},
                determinism="io_write",
            )
            for name in ("accepted", "review")
        }
        edge = run.register_edge
        edge(from_node_id=self.source, to_node_id=self.validate, label="continue")
        edge(from_node_id=self.validate, to_node_id=self.normalize, label="continue")
        edge(from_node_id=self.normalize, to_node_id=self.enrich, label="continue")
        edge(from_node_id=self.enrich, to_node_id=self.gate, label="continue")
        self.routes = {
            name: edge(from_node_id=self.gate, to_node_id=sink, label=name)
            for name, sink in self.sinks.items()
        }
        self.buffers: dict[str, list[tuple[str, dict[str, Any]]]] = {n: [] for n in self.sinks}

    def _outcome(self, token: str, outcome: str, sink: str | None = None, **kw: Any) -> None:
        self.run.record_token_outcome(token_id=token, outcome=outcome, sink_name=sink, **kw)
        key = sink or outcome
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def process(self, index: int, raw: dict[str, str]) -> None:
        run = self.run
        row_id = run.create_row(source_node_id=self.source, row_index=index, data=raw)
        self.first_row_id = self.first_row_id or row_id
        token = run.create_token(row_id=row_id)
        st = run.begin_node_state(
            token_id=token, node_id=self.validate, step_index=1, input_data=raw
        )
        if not _EMAIL.fullmatch(raw["email"]):
            error = {"rule": "email_format", "value": raw["email"]}
            run.complete_node_state(st, status="failed", error=error, duration_ms=0.05)
            self._outcome(token, "quarantined", error={"reason": "invalid e-mail"})
            return
        run.complete_node_state(st, status="completed", output_data=raw, duration_ms=0.04)

        st = run.begin_node_state(
            token_id=token, node_id=self.normalize, step_index=2, input_data=raw
        )
        try:
            spend = Decimal(raw["monthly_spend"])
        except InvalidOperation:
            error = {
                "type": "InvalidOperation",
                "field": "monthly_spend",
                "value": raw["monthly_spend"],
            }
            run.complete_node_state(st, status="failed", error=error, duration_ms=0.1)
            self._outcome(token, "failed", error=error)
            return
        clean = {
            **raw,
            "name": raw["name"].strip(),
            "email": raw["email"].lower(),
            "monthly_spend": spend,
        }
        run.complete_node_state(st, status="completed", output_data=clean, duration_ms=0.12)

        enriched = self._enrich(token, clean)
        st = run.begin_node_state(
            token_id=token, node_id=self.gate, step_index=4, input_data=enriched
        )
        route = "accepted" if enriched["sentiment"]["score"] >= 0.5 else "review"
        run.complete_node_state(st, status="completed", output_data=enriched, duration_ms=0.01)
        reason = {"rule": "score >= 0.5", "score": enriched["sentiment"]["score"], "route": route}
        run.record_routing_event(
            state_id=st, edge_id=self.routes[route], mode="move", reason=reason
        )
        self.buffers[route].append((token, enriched))
        self._outcome(token, "routed" if route == "review" else "completed", route)

    def _enrich(self, token: str, clean: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(3):
            st = self.run.begin_node_state(
                token_id=token, node_id=self.enrich, step_index=3, input_data=clean, attempt=attempt
            )
            result, ok = _simulated_llm(clean, self.rng)
            request = {"model": "demo-sentiment-small", "prompt": f"Sentiment of: {clean['notes']}"}
            latency = round(self.rng.uniform(20, 180), 2)
            if not ok:
                self.run.record_call(
                    state_id=st,
                    call_type="llm",
                    status="error",
                    request=request,
                    error={"type": "Timeout", "message": "simulated timeout"},
                    latency_ms=latency,
                )
                self.run.complete_node_state(
                    st,
                    status="failed",
                    duration_ms=latency,
                    error={"type": "Timeout", "retryable": True},
                )
                continue
            self.run.record_call(
                state_id=st,
                call_type="llm",
                status="success",
                request=request,
                response=result,
                latency_ms=latency,
            )
            enriched = {**clean, "sentiment": result}
            self.run.complete_node_state(
                st, status="completed", output_data=enriched, duration_ms=latency + 1
            )
            return enriched
        return {**clean, "sentiment": {"label": "unknown", "score": 0.0}}

    def write_sinks(self) -> list[Path]:
        """Each sink writes its CSV and records it as an artifact (one sink state per row)."""
        paths = []
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, rows in self.buffers.items():
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(["customer_id", "email", "monthly_spend", "sentiment"])
            last_state = None
            for token, row in rows:
                last_state = self.run.begin_node_state(
                    token_id=token, node_id=self.sinks[name], step_index=5, input_data=row
                )
                writer.writerow(
                    [
                        row["customer_id"],
                        row["email"],
                        row["monthly_spend"],
                        row["sentiment"]["label"],
                    ]
                )
                self.run.complete_node_state(last_state, status="completed", duration_ms=0.02)
            data = buf.getvalue().encode()
            path = self.out_dir / f"{name}.csv"
            path.write_bytes(data)
            paths.append(path)
            if last_state is not None:
                self.run.record_artifact(
                    state_id=last_state,
                    sink_node_id=self.sinks[name],
                    artifact_type="file",
                    path_or_uri=str(path),
                    content_hash=hashlib.sha256(data).hexdigest(),
                    size_bytes=len(data),
                    sink_input=[row["customer_id"] for _, row in rows],
                )
        return paths


def run_demo(
    root: Path,
    *,
    rows: int = 120,
    export: ExportSettings | None = None,
    progress: Callable[[int], None] | None = None,
) -> DemoResult:
    """Record the demo pipeline into ``root`` with the live export, seal and verify it."""
    export = export or ExportSettings()
    with AuditStore.open(root) as store:
        with store.start_run(
            config={"pipeline": "customer-sentiment-demo", "rows": rows, "source": "customers.csv"},
            export=export,
        ) as run:
            pipeline = _Pipeline(run, root / "demo-output" / run.run_id)
            for index, raw in enumerate(sample_rows(rows)):
                pipeline.process(index, raw)
                if progress is not None:
                    progress(1)
            outputs = pipeline.write_sinks()
        export_dir = store.export_dir(run.run_id)
        manifest = ExportPaths(store.export_prefix(run.run_id, export)).manifest
        report = verify_export(manifest, journal=(store.journal_dir(run.run_id), store.payloads))
        return DemoResult(
            root=root,
            run_id=run.run_id,
            rows=rows,
            outcomes=pipeline.outcomes,
            journal_dir=store.journal_dir(run.run_id),
            export_dir=export_dir,
            manifest=manifest,
            outputs=outputs,
            report=report,
            first_row_id=pipeline.first_row_id or "",
        )
