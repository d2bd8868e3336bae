"""The bench's second workload and its projection-cost measurement (tools/bench, issue 13).

The small-record workload must record what its docstring says (events per row, hash-only
transform states, a few calls, ~200-byte stored payloads) and its export must verify;
``projcost.measure`` must project a finished journal in child processes with each tree
and report CPU per event and the same-round ratio.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec

from auditjournal import AuditStore, ExportSettings, verify_export

BENCH = Path(__file__).resolve().parent.parent / "tools" / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import projcost  # noqa: E402
import workload_small  # noqa: E402

ROWS = 60


def _records(export_dir: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for chunk in sorted(export_dir.glob("audit_trail.[0-9]*.json")):
        out += msgspec.json.decode(chunk.read_bytes())
    return out


def test_small_workload_records_its_documented_shape(tmp_path: Path) -> None:
    plans = workload_small.prepare(ROWS, 3)
    assert plans == workload_small.prepare(ROWS, 3)  # deterministic from the seed
    assert len({msgspec.json.encode(p.row) for p in plans}) == ROWS  # every row differs
    with AuditStore.open(tmp_path / "store") as store:
        run = store.start_run(
            run_id="small",
            config=workload_small.run_config(ROWS, 3),
            export=ExportSettings(),
            sql=False,
        )
        driven = workload_small.drive(run, plans)
        run.complete()
        assert driven == workload_small.expected_events(ROWS)
        assert run.last_seq == driven + 3  # + run_started, run_completed, export_sealed
        prefix = store.export_prefix("small", ExportSettings())
    report = verify_export(prefix.parent)
    assert report.ok, report.summary()
    records = _records(prefix.parent)
    kinds: dict[str, int] = {}
    for r in records:
        kinds[r["record_type"]] = kinds.get(r["record_type"], 0) + 1
    calls = ROWS // workload_small.CALL_EVERY
    assert kinds["row"] == kinds["token"] == kinds["token_outcome"] == ROWS
    assert kinds["node_state"] == 4 * ROWS
    assert kinds["call"] == calls
    per_row = sum(v for k, v in kinds.items() if k not in ("node", "edge", "run", "call"))
    assert per_row == workload_small.RECORDS_PER_ROW * ROWS
    states = [r for r in records if r["record_type"] == "node_state"]
    hashed_only = [s for s in states if s.get("input_data_retained") is False]
    assert len(hashed_only) == 3 * ROWS  # the three transforms: input hashed, not stored
    assert all(s["input_data"] is None and s["input_hash"] for s in hashed_only)
    assert all(s["output_data"] is None for s in states)
    rows = [r for r in records if r["record_type"] == "row"]
    sizes = [len(msgspec.json.encode(r["source_data"])) for r in rows]
    assert 150 <= sum(sizes) / len(sizes) <= 260  # ~200-byte stored payloads


def test_projection_cost_measures_each_tree_in_children(tmp_path: Path) -> None:
    src = Path(projcost.__file__).resolve().parent.parent.parent / "src"
    logged: list[str] = []
    result = projcost.measure(
        workload_small,
        rows=30,
        seed=1,
        repeats=2,
        work=tmp_path,
        trees={"this": src, "baseline": src},
        pg_url=None,
        log=logged.append,
    )
    assert result["events"] == workload_small.expected_events(30) + 2
    assert set(result["figures"]) == {"export", "sqlite"}
    for fig in result["figures"].values():
        for tree in ("this", "baseline"):
            assert len(fig[tree]["samples"]) == 2
            assert all(us > 0 for us in fig[tree]["samples"])
        ratio = fig["ratio_baseline_over_this"]
        assert ratio["samples"] == [
            b / t for b, t in zip(fig["baseline"]["samples"], fig["this"]["samples"], strict=True)
        ]
    assert len(logged) == 2
