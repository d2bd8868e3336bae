"""The Landscape-style baseline recorder of SPEC §7, for side-by-side benchmark figures.

It records the same calls as ``auditjournal``'s RunRecorder (same method and keyword
names, so ``workload.drive`` runs against it) the way a Landscape-style recorder does:

* **One statement, one transaction per call.** Every recorder call is exactly one
  SQLAlchemy Core ``INSERT`` (``complete_node_state``: one ``UPDATE``; ``start_run`` and
  ``complete``: one ``INSERT``/``UPDATE`` of ``runs``) executed in its own
  ``with engine.begin()`` block, i.e. its own SQLite transaction and commit.
* **SQLite in WAL mode.** ``PRAGMA journal_mode=WAL`` and ``PRAGMA foreign_keys=ON`` are set
  on every new connection. ``synchronous`` is left at SQLite's compiled-in default, which
  for the stock build (and this machine's, see ``LandscapeBaseline.synchronous``) is
  ``FULL`` (2): every commit fsyncs the WAL. Nothing else is tuned (no ``mmap_size``,
  ``cache_size`` or ``NORMAL`` synchronous).
* **Tables like Landscape's**: ``runs``, ``nodes``, ``edges``, ``rows``, ``tokens``,
  ``node_states``, ``routing_events``, ``calls``, ``artifacts``, ``token_outcomes``, with
  Landscape's foreign keys, unique constraints and indexes, and a ``*_hash``/``*_ref``
  column pair wherever a payload is referenced.
* **One file per payload.** Each payload is serialized with
  ``json.dumps(obj, sort_keys=True, separators=(",", ":"))``, hashed with SHA-256 and, if
  ``<base>/payloads/ab/<sha256>`` does not exist yet, written to a temp file in that
  directory, ``os.fsync``-ed and ``os.rename``-d into place (the directory itself is not
  fsynced — neither does Landscape). The payload file is written before the row that
  references it is inserted.
* **Export after the run** (``export_run``): query the tables (one ``SELECT`` per table,
  streamed, in insertion order — kinder to the baseline than Landscape's per-row/per-token
  query loops), read each referenced payload back from its file, check its SHA-256 (as
  Landscape's ``FilesystemPayloadStore.retrieve`` does), decode it with ``json.loads``,
  and write every record with the ``json`` module as one JSON array, one record per line.

Where this baseline is leaner than the real Landscape recorder (no read-back ``SELECT``
after writes, no ``context_*_json``/``error_json`` encoding, bulk export queries), that
only makes the baseline faster, so the ratios of SPEC §7 measured against it are
conservative.

Run ``python tools/bench/baseline.py [--rows N]`` for a self-check with the reference
workload. The tables are in ``baseline_schema.py``, the export's queries in
``baseline_export.py``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import hmac
import json
import os
import re
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from baseline_export import iter_records, write
from baseline_schema import (
    INSERT_ARTIFACT,
    INSERT_CALL,
    INSERT_EDGE,
    INSERT_NODE,
    INSERT_OUTCOME,
    INSERT_ROUTING,
    INSERT_ROW,
    INSERT_RUN,
    INSERT_STATE,
    INSERT_TOKEN,
    metadata,
    node_states,
    runs,
)
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

__all__ = [
    "BaselineRun",
    "FilePayloadStore",
    "LandscapeBaseline",
    "baseline_json",
    "metadata",
]

CANONICAL_VERSION = "json-sorted-compact/sha256"

# --------------------------------------------------------------------------- helpers


def baseline_json(obj: Any) -> bytes:
    """The baseline's payload serialization: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class FilePayloadStore:
    """Content-addressed payload files ``<base>/ab/<sha256>``, one file per payload."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.base.mkdir(parents=True, exist_ok=True)

    def path_for(self, ref: str) -> Path:
        if not _SHA256_HEX.fullmatch(ref):
            raise ValueError(f"invalid payload ref {ref[:70]!r}")
        return self.base / ref[:2] / ref

    def store(self, obj: Any) -> str:
        """Serialize, hash and (unless present) durably write ``obj``; return its sha256."""
        data = baseline_json(obj)
        ref = hashlib.sha256(data).hexdigest()
        path = self.base / ref[:2] / ref
        if path.exists():
            return ref
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return ref

    def retrieve(self, ref: str) -> bytes:
        """The bytes of ``ref``, integrity-checked."""
        data = self.path_for(ref).read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if not hmac.compare_digest(actual, ref):
            raise ValueError(f"payload integrity check failed: expected {ref}, got {actual}")
        return data

    def load(self, ref: str | None) -> Any:
        """The decoded value of ``ref`` (``None`` for no ref)."""
        if ref is None:
            return None
        return json.loads(self.retrieve(ref))


# --------------------------------------------------------------------------- recorder


class LandscapeBaseline:
    """A Landscape-style audit database: SQLite (WAL) tables plus a payload directory.

    ``base_dir`` holds ``landscape.db`` and ``payloads/``.
    """

    def __init__(self, base_dir: str | os.PathLike[str]) -> None:
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.base_dir / "landscape.db"
        self.payloads = FilePayloadStore(self.base_dir / "payloads")
        self.engine: Engine = create_engine(f"sqlite:///{self.db_path}")
        event.listen(self.engine, "connect", _on_connect)
        metadata.create_all(self.engine)
        with self.engine.connect() as conn:
            self.journal_mode = str(conn.exec_driver_sql("PRAGMA journal_mode").scalar())
            # SQLite's ``synchronous`` in effect: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA.
            self.synchronous = int(conn.exec_driver_sql("PRAGMA synchronous").scalar() or 0)

    def start_run(self, config: Mapping[str, Any]) -> BaselineRun:
        """Insert the run (one transaction) and return its recorder."""
        run_id = _new_id()
        settings = baseline_json(dict(config))
        with self.engine.begin() as conn:
            conn.execute(
                INSERT_RUN,
                {
                    "run_id": run_id,
                    "started_at": _now(),
                    "config_hash": hashlib.sha256(settings).hexdigest(),
                    "settings_json": settings.decode("utf-8"),
                    "canonical_version": CANONICAL_VERSION,
                    "status": "running",
                },
            )
        return BaselineRun(self, run_id)

    def export_run(self, run_id: str, out_path: str | os.PathLike[str]) -> int:
        """Write the run's records, payloads inlined, as a JSON array; return bytes written."""
        written = 0
        first = True
        with open(out_path, "wb") as out, self.engine.connect() as conn:
            written += write(out, b"[\n")
            for record in iter_records(conn, self.payloads, run_id):
                line = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
                written += write(out, line if first else b"," + line)
                written += write(out, b"\n")
                first = False
            written += write(out, b"]\n")
        return written

    def table_counts(self) -> dict[str, int]:
        """Row count of every table (for self-checks)."""
        counts: dict[str, int] = {}
        with self.engine.connect() as conn:
            for table in metadata.sorted_tables:
                counts[table.name] = int(
                    conn.exec_driver_sql(f'SELECT count(*) FROM "{table.name}"').scalar() or 0
                )
        return counts

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> LandscapeBaseline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


class BaselineRun:
    """One run's recorder: every call is one statement in its own transaction."""

    def __init__(self, db: LandscapeBaseline, run_id: str) -> None:
        self.run_id = run_id
        self._engine = db.engine
        self._payloads = db.payloads
        self._call_index: dict[str, int] = {}
        self._node_seq = 0

    # -- graph ---------------------------------------------------------------

    def register_node(
        self,
        *,
        plugin_name: str,
        node_type: str,
        plugin_version: str,
        config: Mapping[str, Any],
        determinism: str = "deterministic",
        input_schema: Mapping[str, Any] | None = None,
        output_schema: Mapping[str, Any] | None = None,
    ) -> str:
        node_id = _new_id()
        config_json = baseline_json(dict(config))
        seq = self._node_seq
        self._node_seq += 1
        with self._engine.begin() as conn:
            conn.execute(
                INSERT_NODE,
                {
                    "node_id": node_id,
                    "run_id": self.run_id,
                    "plugin_name": plugin_name,
                    "node_type": node_type,
                    "plugin_version": plugin_version,
                    "determinism": determinism,
                    "config_hash": hashlib.sha256(config_json).hexdigest(),
                    "config_json": config_json.decode("utf-8"),
                    "input_schema_json": _json_or_none(input_schema),
                    "output_schema_json": _json_or_none(output_schema),
                    "sequence_in_pipeline": seq,
                    "registered_at": _now(),
                },
            )
        return node_id

    def register_edge(self, *, from_node_id: str, to_node_id: str, label: str, mode: str) -> str:
        edge_id = _new_id()
        with self._engine.begin() as conn:
            conn.execute(
                INSERT_EDGE,
                {
                    "edge_id": edge_id,
                    "run_id": self.run_id,
                    "from_node_id": from_node_id,
                    "to_node_id": to_node_id,
                    "label": label,
                    "default_mode": mode,
                    "created_at": _now(),
                },
            )
        return edge_id

    # -- rows and tokens -----------------------------------------------------

    def create_row(self, *, source_node_id: str, row_index: int, data: Any) -> str:
        row_id = _new_id()
        ref = self._payloads.store(data)
        with self._engine.begin() as conn:
            conn.execute(
                INSERT_ROW,
                {
                    "row_id": row_id,
                    "run_id": self.run_id,
                    "source_node_id": source_node_id,
                    "row_index": row_index,
                    "source_data_hash": ref,
                    "source_data_ref": ref,
                    "created_at": _now(),
                },
            )
        return row_id

    def create_token(self, *, row_id: str) -> str:
        token_id = _new_id()
        with self._engine.begin() as conn:
            conn.execute(
                INSERT_TOKEN,
                {
                    "token_id": token_id,
                    "row_id": row_id,
                    "fork_group_id": None,
                    "join_group_id": None,
                    "expand_group_id": None,
                    "branch_name": None,
                    "step_in_pipeline": None,
                    "created_at": _now(),
                },
            )
        return token_id

    # -- node states ---------------------------------------------------------

    def begin_node_state(
        self, *, token_id: str, node_id: str, step_index: int, input_data: Any
    ) -> str:
        state_id = _new_id()
        ref = self._payloads.store(input_data)
        with self._engine.begin() as conn:
            conn.execute(
                INSERT_STATE,
                {
                    "state_id": state_id,
                    "token_id": token_id,
                    "run_id": self.run_id,
                    "node_id": node_id,
                    "step_index": step_index,
                    "attempt": 0,
                    "status": "open",
                    "input_hash": ref,
                    "input_data_ref": ref,
                    "output_hash": None,
                    "output_data_ref": None,
                    "duration_ms": None,
                    "error_json": None,
                    "started_at": _now(),
                    "completed_at": None,
                },
            )
        return state_id

    def complete_node_state(
        self,
        state_id: str,
        *,
        status: str,
        output_data: Any = None,
        duration_ms: float | None = None,
    ) -> None:
        ref = None if output_data is None else self._payloads.store(output_data)
        with self._engine.begin() as conn:
            result = conn.execute(
                node_states.update()
                .where(node_states.c.state_id == state_id)
                .values(
                    status=status,
                    output_hash=ref,
                    output_data_ref=ref,
                    duration_ms=duration_ms,
                    completed_at=_now(),
                )
            )
            if result.rowcount != 1:
                raise KeyError(f"unknown node state {state_id!r}")

    # -- calls, routing, artifacts, outcomes --------------------------------

    def record_call(
        self,
        *,
        state_id: str,
        call_type: str,
        status: str,
        request: Any,
        response: Any,
        latency_ms: float | None = None,
    ) -> str:
        call_id = _new_id()
        index = self._call_index.get(state_id, 0)
        self._call_index[state_id] = index + 1
        request_ref = self._payloads.store(request)
        response_ref = None if response is None else self._payloads.store(response)
        with self._engine.begin() as conn:
            conn.execute(
                INSERT_CALL,
                {
                    "call_id": call_id,
                    "state_id": state_id,
                    "call_index": index,
                    "call_type": call_type,
                    "status": status,
                    "request_hash": request_ref,
                    "request_ref": request_ref,
                    "response_hash": response_ref,
                    "response_ref": response_ref,
                    "error_json": None,
                    "latency_ms": latency_ms,
                    "created_at": _now(),
                },
            )
        return call_id

    def record_routing_event(self, *, state_id: str, edge_id: str, mode: str, reason: Any) -> str:
        event_id = _new_id()
        ref = None if reason is None else self._payloads.store(reason)
        with self._engine.begin() as conn:
            conn.execute(
                INSERT_ROUTING,
                {
                    "event_id": event_id,
                    "state_id": state_id,
                    "edge_id": edge_id,
                    "routing_group_id": _new_id(),
                    "ordinal": 0,
                    "mode": mode,
                    "reason_hash": ref,
                    "reason_ref": ref,
                    "created_at": _now(),
                },
            )
        return event_id

    def record_artifact(
        self,
        *,
        state_id: str,
        sink_node_id: str,
        artifact_type: str,
        path_or_uri: str,
        content_hash: str,
        size_bytes: int,
        sink_input: Any = None,
    ) -> str:
        artifact_id = _new_id()
        ref = None if sink_input is None else self._payloads.store(sink_input)
        with self._engine.begin() as conn:
            conn.execute(
                INSERT_ARTIFACT,
                {
                    "artifact_id": artifact_id,
                    "run_id": self.run_id,
                    "produced_by_state_id": state_id,
                    "sink_node_id": sink_node_id,
                    "artifact_type": artifact_type,
                    "path_or_uri": path_or_uri,
                    "content_hash": content_hash,
                    "size_bytes": size_bytes,
                    "sink_input_hash": ref,
                    "sink_input_ref": ref,
                    "created_at": _now(),
                },
            )
        return artifact_id

    def record_token_outcome(
        self, *, token_id: str, outcome: str, sink_name: str | None = None
    ) -> str:
        outcome_id = _new_id()
        with self._engine.begin() as conn:
            conn.execute(
                INSERT_OUTCOME,
                {
                    "outcome_id": outcome_id,
                    "run_id": self.run_id,
                    "token_id": token_id,
                    "outcome": outcome,
                    "is_terminal": 1,
                    "recorded_at": _now(),
                    "sink_name": sink_name,
                },
            )
        return outcome_id

    # -- end of run ----------------------------------------------------------

    def complete(self, status: str = "completed") -> None:
        with self._engine.begin() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.run_id == self.run_id)
                .values(status=status, completed_at=_now())
            )

    def __enter__(self) -> BaselineRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.complete("failed" if exc_type is not None else "completed")


def _json_or_none(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else baseline_json(dict(value)).decode("utf-8")


# --------------------------------------------------------------------------- self-check


def _main() -> int:
    import argparse
    import shutil
    import sys
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import workload

    parser = argparse.ArgumentParser(description="Self-check of the Landscape-style baseline.")
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="keep the data here")
    args = parser.parse_args()

    base = args.dir if args.dir is not None else Path(tempfile.mkdtemp(prefix="landscape-"))
    try:
        plans = workload.prepare(args.rows, args.seed)
        with LandscapeBaseline(base) as db:
            t0 = time.perf_counter()
            run = db.start_run(workload.run_config(args.rows, args.seed))
            events = workload.drive(run, plans)
            run.complete("completed")
            t_record = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = base / "audit_trail.json"
            size = db.export_run(run.run_id, out)
            t_export = time.perf_counter() - t0
            counts = db.table_counts()
            with open(out, "rb") as fh:
                records = json.load(fh)
            payload_files = sum(
                1 for p in (base / "payloads").rglob("*") if p.is_file() and p.name[0] != "."
            )
            print(f"sqlite journal_mode={db.journal_mode} synchronous={db.synchronous}")
        expected = workload.expected_events(args.rows)
        print(f"rows={args.rows} events recorded={events} (expected {expected})")
        print(f"recording: {t_record:.3f} s = {events / t_record:,.0f} events/s")
        print(f"export: {size:,} bytes, {len(records)} records in {t_export:.3f} s")
        print("tables:", ", ".join(f"{k}={v}" for k, v in counts.items()))
        print(f"payload files: {payload_files}")
        by_type: dict[str, int] = {}
        for rec in records:
            by_type[rec["record_type"]] = by_type.get(rec["record_type"], 0) + 1
        print("records:", ", ".join(f"{k}={v}" for k, v in by_type.items()))
        first_row = next(r for r in records if r["record_type"] == "row")
        ok = (
            events == expected
            and first_row["source_data"] == plans[0].row
            and counts["node_states"] == 5 * args.rows
            and counts["calls"] == args.rows
            and payload_files
            == workload.DISTINCT_PAYLOADS_PER_ROW * args.rows + counts["artifacts"]
            and os.path.getsize(out) == size
        )
        print("self-check:", "OK" if ok else "FAILED")
        return 0 if ok else 1
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(_main())
