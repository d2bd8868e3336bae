"""Import Landscape databases: each Landscape run becomes an auditjournal run.

:func:`import_landscape` reads a Landscape database (a SQLite path, opened
read-only, or any SQLAlchemy URL; it only SELECTs), and for each run calls the
public recorder once per happening -- with the same ids, the original times
(``occurred_at``), the same hashes and payload refs -- in the order things
happened (Landscape time, then the order a pipeline records in). Payload files
are checked (their SHA-256 must equal the file name and the database's hash,
their bytes must be canonical JSON as auditjournal writes it) and copied into the
store; a purged payload is imported hash-only. Node-state data is hash-only, as
Landscape keeps it. The run is completed with its Landscape status (``running``
becomes ``interrupted``) and reproducibility grade, which seals its export.

The report gives, per run and per table, rows read, rows imported, and anything
not mapped with the reason. A run already in the store is refused; a run that
fails a check is removed again (its journal and SQL rows; copied payloads stay,
content-addressed and harmless) and the others go on.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
import sqlalchemy as sa

from ..errors import (
    AuditJournalError,
    LandscapeDataError,
    NotALandscapeDatabaseError,
    PayloadIntegrityError,
    RunAlreadyImportedError,
)
from ..model.canonical import canonical_json
from ..recording.recorder import RunRecorder
from ..recording.store import AuditStore
from .schema import KNOWN_COLUMNS, TABLES, THROUGH, json_value, utc

__all__ = [
    "ImportReport",
    "PayloadCount",
    "RunImport",
    "TableCount",
    "Unmapped",
    "import_landscape",
]

_HEX64: Final = re.compile(r"[0-9a-f]{64}")


class Unmapped(msgspec.Struct, frozen=True):
    what: str
    rows: int
    reason: str


class TableCount(msgspec.Struct, frozen=True):
    table: str
    read: int
    imported: int
    not_mapped: tuple[Unmapped, ...] = ()


class PayloadCount(msgspec.Struct, frozen=True):
    referenced: int = 0
    copied: int = 0
    already_present: int = 0
    missing: int = 0


class RunImport(msgspec.Struct, frozen=True):
    run_id: str
    status: Literal["imported", "refused", "failed"]
    message: str | None
    landscape_status: str
    imported_status: str | None
    records: int | None
    manifest_sha256: str | None
    tables: tuple[TableCount, ...]
    payloads: PayloadCount
    notes: tuple[str, ...] = ()


class ImportReport(msgspec.Struct, frozen=True):
    database: str
    payloads_dir: str
    root: str
    runs: tuple[RunImport, ...]

    @property
    def ok(self) -> bool:
        return all(
            r.status == "imported" and not any(t.not_mapped for t in r.tables) for r in self.runs
        )


def _url(db: str) -> str:
    if "://" in db:
        return db
    path = Path(db)
    if not path.is_file():
        raise NotALandscapeDatabaseError(f"no such database file: {db}")
    return f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"


class _Reader:
    """The database, read-only: which tables and columns it has, a run's rows per table."""

    def __init__(self, db: str) -> None:
        try:
            self.engine = sa.create_engine(_url(db))
            with self.engine.connect() as conn:
                inspector = sa.inspect(conn)
                missing = [t for t in TABLES if not inspector.has_table(t)]
                if missing:
                    raise NotALandscapeDatabaseError(
                        f"{db} is not a Landscape database (no {', '.join(missing)} tables)"
                    )
                self.tables = {t: sa.Table(t, sa.MetaData(), autoload_with=conn) for t in TABLES}
        except sa.exc.SQLAlchemyError as exc:
            first = (str(getattr(exc, "orig", exc)).splitlines() or ["?"])[0]
            raise NotALandscapeDatabaseError(f"cannot read {db}: {first}") from None
        self.sqlite = self.engine.dialect.name == "sqlite"

    def run_ids(self) -> list[str]:
        runs = self.tables["runs"]
        with self.engine.connect() as conn:
            return [
                r[0] for r in conn.execute(sa.select(runs.c.run_id).order_by(runs.c.started_at))
            ]

    def rows(self, run_id: str) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for name in TABLES:
                table = self.tables[name]
                order = sa.literal_column("rowid") if self.sqlite else next(iter(table.primary_key))
                if name == "calls":  # through states and operations: read below
                    continue
                if name in THROUGH:
                    parent, column, key = THROUGH[name]
                    ids = {r[key] for r in out[parent]}
                    query = sa.select(table).where(table.c[column].in_(sorted(ids)))
                else:
                    query = sa.select(table).where(table.c.run_id == run_id)
                out[name] = [dict(r._mapping) for r in conn.execute(query.order_by(order))]
            calls = self.tables["calls"]
            states = {r["state_id"] for r in out["node_states"]}
            operations = {r["operation_id"] for r in out["operations"]}
            query = sa.select(calls).where(
                sa.or_(
                    calls.c.state_id.in_(sorted(states)),
                    calls.c.operation_id.in_(sorted(operations)),
                )
            )
            out["calls"] = [
                dict(r._mapping) for r in conn.execute(query.order_by(calls.c.created_at))
            ]
        return out

    def close(self) -> None:
        self.engine.dispose()


# ranks for things recorded at the same instant: the order a pipeline records in
_RANK: Final = {
    "runs": 0, "nodes": 1, "edges": 2, "contracts": 3, "secret_resolutions": 4,
    "preflight_results": 4, "operations": 5, "batches": 6, "rows": 7, "validation_errors": 8,
    "tokens": 9, "node_states": 10, "calls": 11, "routing_events": 12, "state_completed": 13,
    "batch_members": 14, "batch_updated": 15, "transform_errors": 16, "checkpoints": 17,
    "artifacts": 18, "batch_outputs": 19, "token_outcomes": 20, "operation_completed": 21,
}  # fmt: skip


class _Match:
    """The rows a validation error's hash matches (resolved when it is recorded)."""

    def __init__(self, rows: list[str]) -> None:
        self.rows = rows


_Call = tuple[str, tuple[Any, ...], dict[str, Any]]


class _RunImporter:
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

    def _payload(self, ref: str | None, digest: str | None, where: str) -> dict[str, str]:
        """The recorder arguments of one payload slot: ``*_ref`` when the file was copied,
        ``*_hash`` when it is missing (purged), nothing when there was no data."""
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
        slot = self._payload(o["input_data_ref"], o["input_data_hash"], where)
        kw = {"input_data_ref" if k == "ref" else "input_hash": v for k, v in slot.items()}
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
        out = self._payload(o["output_data_ref"], o["output_data_hash"], where)
        kw2 = {"output_data_ref" if k == "ref" else "output_hash": v for k, v in out.items()}
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
        request = self._payload(c["request_ref"], c["request_hash"], where)
        response = self._payload(c["response_ref"], c["response_hash"], where)
        kw = {f"request_{k}": v for k, v in request.items()} | {
            f"response_{k}": v for k, v in response.items()
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
                row_id=_Match(match),
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

    def record(self, database: str) -> RunRecorder:
        run = self.run
        where = f"runs {self.run_id}"
        status = run["status"]
        imported_status = {"running": "interrupted"}.get(status, status)
        if imported_status != status:
            self.notes.append(f"Landscape status {status!r} imported as {imported_status!r}")
        settings = {
            "import": {
                "source": "landscape",
                "database": database,
                "landscape_status": status,
                "canonical_version": run["canonical_version"],
                "source_schema": self._json("runs", run, "source_schema_json"),
                "landscape_export": {
                    "status": run["export_status"],
                    "format": run["export_format"],
                    "sink": run["export_sink"],
                    "exported_at": None if run["exported_at"] is None else str(run["exported_at"]),
                    "error": run["export_error"],
                },
            }
        }
        recorder = self.store.start_run(
            run_id=self.run_id,
            config=self._json("runs", run, "settings_json"),
            config_hash=run["config_hash"],
            settings=settings,
            occurred_at=self._time("runs", run, "started_at"),
        )
        self.imported["runs"] = 1
        try:
            for _, _, _, table, (method, args, kw) in sorted(self.plan, key=lambda p: p[:3]):
                match = kw.get("row_id")
                if isinstance(match, _Match):  # the row a validation error made, if recorded
                    rows = match.rows
                    kw["row_id"] = (
                        rows[0] if len(rows) == 1 and rows[0] in recorder._state.rows else None
                    )
                try:
                    getattr(recorder, method)(*args, **kw)
                except AuditJournalError as exc:
                    ident = next(iter(kw.values()), "?") if not args else args[0]
                    raise LandscapeDataError(f"{table or method} {ident}: {exc}") from exc
                if table:
                    self.imported[table] += 1
                if table == "tokens":
                    self.imported["token_parents"] += len(kw["parent_token_ids"])
            completed = self._time("runs", run, "completed_at")
            if completed is None:
                self.notes.append("completed_at is NULL: the run's latest time stands for it")
            grade = run["reproducibility_grade"]
            recorder.complete(
                imported_status,
                reproducibility_grade=grade,
                occurred_at=completed or self.latest,
            )
        except BaseException:
            recorder.close()
            raise
        recorder.close()
        del where
        return recorder

    def tables(self, reader: _Reader) -> tuple[TableCount, ...]:
        out = []
        for name in TABLES:
            rows = self.rows[name]
            unknown = [
                c.name for c in reader.tables[name].columns if c.name not in KNOWN_COLUMNS[name]
            ]
            unmapped = tuple(
                Unmapped(column, sum(r[column] is not None for r in rows),
                         "column unknown to this importer (newer Landscape schema?)")
                for column in unknown
            )  # fmt: skip
            idempotency = (
                sum(r["idempotency_key"] is not None for r in rows) if name == "artifacts" else 0
            )
            if idempotency:
                unmapped += (Unmapped("idempotency_key", idempotency, "no field for it yet"),)
            out.append(TableCount(name, len(rows), self.imported[name], unmapped))
        return tuple(out)


def import_landscape(
    db: str, payloads_dir: Path, store: AuditStore, *, run_ids: Sequence[str] = ()
) -> ImportReport:
    """Import the runs of a Landscape database into ``store`` (see the module docstring)."""
    reader = _Reader(db)
    try:
        known = reader.run_ids()
        wanted = list(run_ids) or known
        unknown = [r for r in wanted if r not in known]
        if unknown:
            raise NotALandscapeDatabaseError(f"no run {', '.join(unknown)} in {db}")
        shown = sa.make_url(_url(db)).render_as_string(hide_password=True)
        results = [_import_one(reader, store, payloads_dir, run_id, shown) for run_id in wanted]
    finally:
        reader.close()
    return ImportReport(str(db), str(payloads_dir), str(store.root), tuple(results))


def _import_one(
    reader: _Reader, store: AuditStore, payloads_dir: Path, run_id: str, shown: str
) -> RunImport:
    rows = reader.rows(run_id)
    (run,) = rows["runs"]
    importer = _RunImporter(store, payloads_dir, run, rows)
    status: Literal["imported", "refused", "failed"] = "imported"
    message = None
    records = manifest = None
    imported_status = None
    try:
        if store.journal_dir(run_id).is_dir() and any(store.journal_dir(run_id).glob("*.jsonl")):
            raise RunAlreadyImportedError(f"run {run_id} is already in {store.root}")
        importer.build()
        recorder = importer.record(shown)
        result = recorder.export_result
        records = None if result is None else result.record_count
        manifest = None if result is None else result.manifest_sha256
        imported_status = {"running": "interrupted"}.get(run["status"], run["status"])
    except RunAlreadyImportedError as exc:
        status, message = "refused", str(exc)
    except AuditJournalError as exc:
        status, message = "failed", str(exc).splitlines()[0]
        _remove(store, run_id)
    return RunImport(
        run_id=run_id,
        status=status,
        message=message,
        landscape_status=run["status"],
        imported_status=imported_status,
        records=records,
        manifest_sha256=manifest,
        tables=importer.tables(reader),
        payloads=importer.payloads,
        notes=tuple(importer.notes),
    )


def _remove(store: AuditStore, run_id: str) -> None:
    """Undo a failed import: the run's directory and its SQL rows."""
    shutil.rmtree(store.journal_dir(run_id).parent, ignore_errors=True)
    with contextlib.suppress(AuditJournalError):
        store.sql_database().delete_run(run_id)
