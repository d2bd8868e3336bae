"""verify on worker processes (big exports) reports exactly what the in-process path does."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditjournal import AuditStore, ExportSettings, verify_export
from auditjournal.evidence import chunkscan as verify_module


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    with AuditStore.open(tmp_path / "audit") as store:
        with store.start_run(export=ExportSettings(chunk_size_bytes=4_000), sql=False) as run:
            src = run.register_node(plugin_name="csv", node_type="source")
            for i in range(120):
                row = run.create_row(source_node_id=src, row_index=i, data={"i": i, "t": "x" * 90})
                run.create_token(row_id=row)
        return store.export_dir(run.run_id)


@pytest.mark.parametrize("parallel", [False, True])
def test_valid_export(export_dir: Path, parallel: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if parallel:
        monkeypatch.setattr(verify_module, "_PARALLEL_BYTES", 0)
    seen: list[int] = []
    report = verify_export(export_dir, progress=seen.append)
    assert report.ok, [c.line() for c in report.checks if not c.ok]
    assert report.record_count == 1 + 240 + 1  # node, rows + tokens, run
    assert report.chunk_count > 5
    assert sum(seen) == sum(p.stat().st_size for p in export_dir.glob("audit_trail.0*.json"))


@pytest.mark.parametrize("parallel", [False, True])
def test_damaged_chunk_named(
    export_dir: Path, parallel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if parallel:
        monkeypatch.setattr(verify_module, "_PARALLEL_BYTES", 0)
    victim = sorted(export_dir.glob("audit_trail.0*.json"))[3]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    report = verify_export(export_dir)
    bad = [c for c in report.checks if not c.ok]
    assert not report.ok
    assert victim.name in {c.file for c in bad}
