"""The ordered plan of one Landscape run: one recorder call per happening.

Each table row becomes one call (a node state two: started and completed) at its
Landscape time; things recorded at the same instant come in the order a pipeline
records them (:data:`_RANK`); facts Landscape does not time (batch members, field
resolution, contracts) take the latest time of what they refer to. Payloads are
checked and copied into the store while the plan is made, before anything of the
run is recorded.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Final

import msgspec

from ..errors import AuditJournalError, LandscapeDataError, PayloadIntegrityError
from ..model.canonical import canonical_json
from ..recording.store import AuditStore
from .report import PayloadCount
from .schema import TABLES, json_value, utc

__all__ = ["Match", "RunPlan"]

_HEX64: Final = re.compile(r"[0-9a-f]{64}")


# ranks for things recorded at the same instant: the order a pipeline records in
_RANK: Final = {
    "runs": 0, "nodes": 1, "edges": 2, "contracts": 3, "secret_resolutions": 4,
    "preflight_results": 4, "operations": 5, "batches": 6, "rows": 7, "validation_errors": 8,
    "tokens": 9, "node_states": 10, "calls": 11, "routing_events": 12, "state_completed": 13,
    "batch_members": 14, "batch_updated": 15, "transform_errors": 16, "checkpoints": 17,
    "artifacts": 18, "batch_outputs": 19, "token_outcomes": 20, "operation_completed": 21,
}  # fmt: skip


# the recorder's argument for each form of an operation's payload slot
_OPERATION_SLOT: Final = {
    "input": {"ref": "input_data_ref", "hash": "input_hash", "data": "input_data"},
    "output": {"ref": "output_data_ref", "hash": "output_hash", "data": "output_data"},
}


class Match:
    """The rows a validation error's hash matches (resolved when it is recorded)."""

    def __init__(self, rows: list[str]) -> None:
        self.rows = rows


_Call = tuple[str, tuple[Any, ...], dict[str, Any]]


class RunPlan:
    """One run: check, order, record; counts what it imported."""

    def __init__(
        self, store: AuditStore, payloads_dir: Path, run: dict[str, Any], rows: dict[str, Any]
    ) -> None:
        self.store = store
        self.dir = payloads_dir
        self.run = run
        self.rows = rows
        self.run_id: str = run["run_id"]
        self.imported = dict.fromkeys(TABLES, 0)
        self.payloads = PayloadCount()
        self.notes: list[str] = []
        self.plan: list[tuple[_dt.datetime, int, int, str, _Call]] = []
        self.latest = utc(run["started_at"], "runs", self.run_id, "started_at")

    # -- values ------------------------------------------------------------------------

    def _time(self, table: str, row: dict[str, Any], column: str) -> _dt.datetime | None:
        when = utc(row.get(column), table, str(next(iter(row.values()))), column)
        if when is not None and (self.latest is None or when > self.latest):
            self.latest = when
        return when

    def _json(self, table: str, row: dict[str, Any], column: str) -> Any:
        return json_value(row.get(column), table, str(next(iter(row.values()))), column)

    def _payload(
        self, ref: str | None, digest: str | None, where: str, *, secrets: str = ""
    ) -> dict[str, Any]:
        """The recorder arguments of one payload slot: ``*_ref`` when the file was copied,
        ``*_hash`` when it is missing (purged), nothing when there was no data.

        ``secrets`` names a slot the recorder's secret filter covers (a call's request,
        an operation's input ...): a payload holding a secret field is not copied; its
        data goes to the recorder (``data``), which stores it filtered, as it does for
        data a pipeline gives it. Landscape's hash of the clear data is not kept."""
        if ref is None:
            return {} if digest is None else {"hash": digest}
        if not _HEX64.fullmatch(ref):
            raise LandscapeDataError(f"{where}: ref {ref!r} is not a SHA-256 hex digest")
        if digest is not None and digest != ref:
            raise LandscapeDataError(f"{where}: ref {ref} and hash {digest} differ")
        count = self.payloads
        path = self.dir / ref[:2] / ref
        if not path.is_file():
            self.payloads = msgspec.structs.replace(
                count, referenced=count.referenced + 1, missing=count.missing + 1
            )
            return {"hash": ref}
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != ref:
            raise PayloadIntegrityError(f"{where}: payload file {path} does not hash to {ref}")
        try:
            canonical = canonical_json(json.loads(data))
        except (ValueError, AuditJournalError):
            canonical = b""
        if canonical != data:
            raise LandscapeDataError(f"{where}: payload {ref} is not canonical JSON")
        if secrets:
            value = json.loads(data)
            _, paths = self.store.secret_filter.filter(value)
            if paths:
                self.notes.append(
                    f"{where}: {secrets} held secret field(s) {', '.join(paths)}; stored "
                    "filtered (Landscape's hash of the clear data not kept)"
                )
                self.payloads = msgspec.structs.replace(
                    count, referenced=count.referenced + 1, filtered=count.filtered + 1
                )
                return {"data": value}
        present = ref in self.store.payloads
        self.store.payloads.put_canonical(data)
        self.payloads = msgspec.structs.replace(
            count,
            referenced=count.referenced + 1,
            copied=count.copied + (not present),
            already_present=count.already_present + present,
        )
        return {"ref": ref}

    def _add(
        self, when: _dt.datetime | None, rank: str, table: str, method: str, *args: Any, **kw: Any
    ) -> None:
        """One recorder call, at its Landscape time (untimed facts: the latest time so far)."""
        at = when or self.latest or _dt.datetime.min.replace(tzinfo=_dt.UTC)
        self.plan.append((at, _RANK[rank], len(self.plan), table, (method, args, kw)))

    # -- the plan ----------------------------------------------------------------------

    def build(self) -> None:
        r = self.rows
        source_nodes = [n["node_id"] for n in r["nodes"] if n["node_type"] == "source"]
        for n in r["nodes"]:
            self._node(n)
        for e in r["edges"]:
            self._add(
                self._time("edges", e, "created_at"),
                "edges",
                "edges",
                "register_edge",
                edge_id=e["edge_id"],
                from_node_id=e["from_node_id"],
                to_node_id=e["to_node_id"],
                label=e["label"],
                mode=e["default_mode"],
                occurred_at=self._t(e, "created_at"),
            )
        self._run_facts(source_nodes)
        for row in r["rows"]:
            slot = self._payload(
                row["source_data_ref"], row["source_data_hash"], f"rows {row['row_id']}"
            )
            kwargs = (
                {"source_data_ref": slot["ref"]}
                if "ref" in slot
                else {"source_data_hash": slot.get("hash", row["source_data_hash"])}
            )
            self._add(
                self._time("rows", row, "created_at"),
                "rows",
                "rows",
                "create_row",
                row_id=row["row_id"],
                source_node_id=row["source_node_id"],
                row_index=row["row_index"],
                occurred_at=self._t(row, "created_at"),
                **kwargs,
            )
        parents: dict[str, list[tuple[int, str]]] = {}
        for p in r["token_parents"]:
            parents.setdefault(p["token_id"], []).append((p["ordinal"], p["parent_token_id"]))
        token_times: dict[str, _dt.datetime | None] = {}
        for t in r["tokens"]:
            token_times[t["token_id"]] = self._time("tokens", t, "created_at")
            ordered = [pid for _, pid in sorted(parents.get(t["token_id"], []))]
            self._add(
                token_times[t["token_id"]],
                "tokens",
                "tokens",
                "create_token",
                token_id=t["token_id"],
                row_id=t["row_id"],
                parent_token_ids=ordered,
                branch_name=t["branch_name"],
                fork_group_id=t["fork_group_id"],
                join_group_id=t["join_group_id"],
                expand_group_id=t["expand_group_id"],
                step_in_pipeline=t["step_in_pipeline"],
                occurred_at=self._t(t, "created_at"),
            )
        for s in r["node_states"]:
            self._state(s)
        for e in r["routing_events"]:
            slot = self._payload(
                e["reason_ref"], e["reason_hash"], f"routing_events {e['event_id']}"
            )
            kw = {f"reason_{k}": v for k, v in slot.items()}
            self._add(
                self._time("routing_events", e, "created_at"),
                "routing_events",
                "routing_events",
                "record_routing_event",
                routing_event_id=e["event_id"],
                state_id=e["state_id"],
                edge_id=e["edge_id"],
                mode=e["mode"],
                routing_group_id=e["routing_group_id"],
                ordinal=e["ordinal"],
                occurred_at=self._t(e, "created_at"),
                **kw,
            )
        for o in r["operations"]:
            self._operation(o)
        for c in r["calls"]:
            self._call(c)
        for a in r["artifacts"]:
            self._add(
                self._time("artifacts", a, "created_at"),
                "artifacts",
                "artifacts",
                "record_artifact",
                artifact_id=a["artifact_id"],
                state_id=a["produced_by_state_id"],
                sink_node_id=a["sink_node_id"],
                artifact_type=a["artifact_type"],
                path_or_uri=a["path_or_uri"],
                content_hash=a["content_hash"],
                size_bytes=a["size_bytes"],
                idempotency_key=a["idempotency_key"],
                occurred_at=self._t(a, "created_at"),
            )
        for o in r["token_outcomes"]:
            self._outcome(o)
        self._batches(token_times)
        self._errors()

    def _t(self, row: dict[str, Any], column: str) -> _dt.datetime | None:
        return utc(row.get(column), "?", "?", column)

    def _node(self, n: dict[str, Any]) -> None:
        where = f"nodes {n['node_id']}"
        when = self._time("nodes", n, "registered_at")
        config = self._json("nodes", n, "config_json")
        fields = self._json("nodes", n, "schema_fields_json")
        self._add(
            when,
            "nodes",
            "nodes",
            "register_node",
            node_id=n["node_id"],
            plugin_name=n["plugin_name"],
            node_type=n["node_type"],
            plugin_version=n["plugin_version"],
            determinism=n["determinism"],
            config=config,
            config_hash=n["config_hash"],
            schema_hash=n["schema_hash"],
            sequence_in_pipeline=n["sequence_in_pipeline"],
            schema_mode=n["schema_mode"],
            schema_fields=fields,
            payload_policy="hash_only",
            occurred_at=when,
        )
        for role in ("input", "output"):
            contract = self._json("nodes", n, f"{role}_contract_json")
            if contract is not None:
                self._add(
                    when,
                    "contracts",
                    "",
                    "record_schema_contract",
                    contract=contract,
                    node_id=n["node_id"],
                    role=role,
                )
        del where

    def _run_facts(self, source_nodes: list[str]) -> None:
        run = self.run
        # after the graph: the source's header resolution and the run contract refer to it
        times = [self._time("nodes", n, "registered_at") for n in self.rows["nodes"]]
        when = max([t for t in times if t], default=self._time("runs", run, "started_at"))
        resolution = self._json("runs", run, "source_field_resolution_json")
        if resolution is not None:
            source = source_nodes[0] if len(source_nodes) == 1 else None
            self._add(
                when,
                "contracts",
                "",
                "record_field_resolution",
                mapping=resolution.get("resolution_mapping", {}),
                source_node_id=source,
                normalization_version=resolution.get("normalization_version"),
            )
        contract = self._json("runs", run, "schema_contract_json")
        if contract is not None:
            self._add(
                when,
                "contracts",
                "",
                "record_schema_contract",
                contract=contract,
                contract_hash=run["schema_contract_hash"],
            )
        for s in self.rows["secret_resolutions"]:
            self._add(
                self._time("secret_resolutions", s, "timestamp"),
                "secret_resolutions",
                "secret_resolutions",
                "record_secret_resolution",
                secret_resolution_id=s["resolution_id"],
                env_var_name=s["env_var_name"],
                source=s["source"],
                fingerprint=s["fingerprint"],
                vault_url=s["vault_url"],
                secret_name=s["secret_name"],
                resolution_latency_ms=s["resolution_latency_ms"],
                occurred_at=self._t(s, "timestamp"),
            )
        for p in self.rows["preflight_results"]:
            result = self._json("preflight_results", p, "result_json")
            self._add(
                self._time("preflight_results", p, "created_at"),
                "preflight_results",
                "preflight_results",
                "record_preflight_result",
                preflight_result_id=p["result_id"],
                result_type=p["result_type"],
                name=p["name"],
                result=result,
                occurred_at=self._t(p, "created_at"),
            )

    def _state(self, s: dict[str, Any]) -> None:
        before = self._json("node_states", s, "context_before_json")
        self._add(
            self._time("node_states", s, "started_at"),
            "node_states",
            "node_states",
            "begin_node_state",
            state_id=s["state_id"],
            token_id=s["token_id"],
            node_id=s["node_id"],
            step_index=s["step_index"],
            attempt=s["attempt"],
            input_hash=s["input_hash"],
            context_before=before,
            occurred_at=self._t(s, "started_at"),
        )
        if s["status"] == "open":
            return
        after = self._json("node_states", s, "context_after_json")
        error = self._json("node_states", s, "error_json")
        reason = self._json("node_states", s, "success_reason_json")
        self._add(
            self._time("node_states", s, "completed_at"),
            "state_completed",
            "",
            "complete_node_state",
            s["state_id"],
            status=s["status"],
            output_hash=s["output_hash"],
            duration_ms=s["duration_ms"],
            error=error,
            success_reason=reason,
            context_after=after,
            occurred_at=self._t(s, "completed_at"),
        )

    def _operation(self, o: dict[str, Any]) -> None:
        where = f"operations {o['operation_id']}"
        slot = self._payload(o["input_data_ref"], o["input_data_hash"], where, secrets="input")
        kw = {_OPERATION_SLOT["input"][k]: v for k, v in slot.items()}
        self._add(
            self._time("operations", o, "started_at"),
            "operations",
            "operations",
            "begin_operation",
            operation_id=o["operation_id"],
            node_id=o["node_id"],
            operation_type=o["operation_type"],
            occurred_at=self._t(o, "started_at"),
            **kw,
        )
        if o["status"] == "open":
            return
        out = self._payload(o["output_data_ref"], o["output_data_hash"], where, secrets="output")
        kw2 = {_OPERATION_SLOT["output"][k]: v for k, v in out.items()}
        self._add(
            self._time("operations", o, "completed_at"),
            "operation_completed",
            "",
            "complete_operation",
            o["operation_id"],
            status=o["status"],
            error_message=o["error_message"],
            duration_ms=o["duration_ms"],
            occurred_at=self._t(o, "completed_at"),
            **kw2,
        )

    def _call(self, c: dict[str, Any]) -> None:
        where = f"calls {c['call_id']}"
        request = self._payload(c["request_ref"], c["request_hash"], where, secrets="request")
        response = self._payload(c["response_ref"], c["response_hash"], where, secrets="response")
        kw = {
            f"{slot}_{k}" if k != "data" else slot: v
            for slot, given in (("request", request), ("response", response))
            for k, v in given.items()
        }
        error = self._json("calls", c, "error_json")
        self._add(
            self._time("calls", c, "created_at"),
            "calls",
            "calls",
            "record_call",
            call_id=c["call_id"],
            state_id=c["state_id"],
            operation_id=c["operation_id"],
            call_index=c["call_index"],
            call_type=c["call_type"],
            status=c["status"],
            error=error,
            latency_ms=c["latency_ms"],
            occurred_at=self._t(c, "created_at"),
            **kw,
        )

    def _outcome(self, o: dict[str, Any]) -> None:
        where = f"token_outcomes {o['outcome_id']}"
        if bool(o["is_terminal"]) != (o["outcome"] != "buffered"):
            raise LandscapeDataError(
                f"{where}: is_terminal {o['is_terminal']} disagrees with {o['outcome']!r}"
            )
        context = self._json("token_outcomes", o, "context_json")
        branches = self._json("token_outcomes", o, "expected_branches_json")
        self._add(
            self._time("token_outcomes", o, "recorded_at"),
            "token_outcomes",
            "token_outcomes",
            "record_token_outcome",
            outcome_id=o["outcome_id"],
            token_id=o["token_id"],
            outcome=o["outcome"],
            sink_name=o["sink_name"],
            error_hash=o["error_hash"],
            context=context,
            batch_id=o["batch_id"],
            fork_group_id=o["fork_group_id"],
            join_group_id=o["join_group_id"],
            expand_group_id=o["expand_group_id"],
            expected_branches=branches,
            occurred_at=self._t(o, "recorded_at"),
        )

    def _batches(self, token_times: dict[str, _dt.datetime | None]) -> None:
        created: dict[str, _dt.datetime | None] = {}
        for b in self.rows["batches"]:
            created[b["batch_id"]] = self._time("batches", b, "created_at")
            self._add(
                created[b["batch_id"]],
                "batches",
                "batches",
                "create_batch",
                batch_id=b["batch_id"],
                aggregation_node_id=b["aggregation_node_id"],
                attempt=b["attempt"],
                occurred_at=self._t(b, "created_at"),
            )
            if b["status"] != "draft":
                done = self._time("batches", b, "completed_at")
                self._add(
                    done,
                    "batch_updated",
                    "",
                    "update_batch",
                    b["batch_id"],
                    status=b["status"],
                    trigger_type=b["trigger_type"],
                    trigger_reason=b["trigger_reason"],
                    aggregation_state_id=b["aggregation_state_id"],
                    occurred_at=self._t(b, "completed_at"),
                )
        for m in self.rows["batch_members"]:
            times = [t for t in (created.get(m["batch_id"]), token_times.get(m["token_id"])) if t]
            self._add(
                max(times, default=None),
                "batch_members",
                "batch_members",
                "add_batch_member",
                batch_id=m["batch_id"],
                token_id=m["token_id"],
                ordinal=m["ordinal"],
            )
        for o in self.rows["batch_outputs"]:
            self._add(
                None,
                "batch_outputs",
                "batch_outputs",
                "record_batch_output",
                batch_output_id=o["batch_output_id"],
                batch_id=o["batch_id"],
                output_type=o["output_type"],
                output_id=o["output_id"],
            )

    def _errors(self) -> None:
        by_hash: dict[tuple[str, str], list[str]] = {}
        row_times = {r["row_id"]: self._time("rows", r, "created_at") for r in self.rows["rows"]}
        for row in self.rows["rows"]:
            by_hash.setdefault((row["source_node_id"], row["source_data_hash"]), []).append(
                row["row_id"]
            )
        for v in self.rows["validation_errors"]:
            data = self._json("validation_errors", v, "row_data_json")
            match = by_hash.get((v["node_id"], v["row_hash"]), [])
            at = self._time("validation_errors", v, "created_at")
            if len(match) == 1 and at is not None:  # appended after the row it made
                at = max(at, row_times[match[0]] or at)
            self._add(
                at,
                "validation_errors",
                "validation_errors",
                "record_validation_error",
                validation_error_id=v["error_id"],
                node_id=v["node_id"],
                row_id=Match(match),
                row_hash=v["row_hash"],
                data=data,
                error=v["error"],
                schema_mode=v["schema_mode"],
                destination=v["destination"],
                violation_type=v["violation_type"],
                original_field_name=v["original_field_name"],
                normalized_field_name=v["normalized_field_name"],
                expected_type=v["expected_type"],
                actual_type=v["actual_type"],
                occurred_at=self._t(v, "created_at"),
            )
        for e in self.rows["transform_errors"]:
            data = self._json("transform_errors", e, "row_data_json")
            details = self._json("transform_errors", e, "error_details_json")
            self._add(
                self._time("transform_errors", e, "created_at"),
                "transform_errors",
                "transform_errors",
                "record_transform_error",
                transform_error_id=e["error_id"],
                token_id=e["token_id"],
                node_id=e["transform_id"],
                row_hash=e["row_hash"],
                data=data,
                error_details=details,
                destination=e["destination"],
                occurred_at=self._t(e, "created_at"),
            )
        for c in self.rows["checkpoints"]:
            states = {
                k: c[f"{k}_json"]
                for k in ("aggregation_state", "coalesce_state")
                if c[f"{k}_json"] is not None
            }
            self._add(
                self._time("checkpoints", c, "created_at"),
                "checkpoints",
                "checkpoints",
                "record_checkpoint",
                checkpoint_id=c["checkpoint_id"],
                token_id=c["token_id"],
                node_id=c["node_id"],
                sequence_number=c["sequence_number"],
                upstream_topology_hash=c["upstream_topology_hash"],
                node_config_hash=c["checkpoint_node_config_hash"],
                format_version=c["format_version"],
                occurred_at=self._t(c, "created_at"),
                **states,
            )

    # -- recording ---------------------------------------------------------------------
