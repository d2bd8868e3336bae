"""verify on threads or worker processes reports exactly what the in-process path does."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from auditjournal import AuditStore, ExportSettings, verify_export
from auditjournal.evidence import chunkscan as verify_module

HOW = ["in-process", "threads", "processes"]


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    with AuditStore.open(tmp_path / "audit") as store:
        with store.start_run(export=ExportSettings(chunk_size_bytes=4_000), sql=False) as run:
            src = run.register_node(plugin_name="csv", node_type="source")
            for i in range(120):
                row = run.create_row(source_node_id=src, row_index=i, data={"i": i, "t": "x" * 90})
                run.create_token(row_id=row)
        return store.export_dir(run.run_id)


def _scan_as(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks scanned one after the other, on threads (the compiled scan: any export), or
    on worker processes (the Python loop: big exports)."""
    if how == "in-process":
        monkeypatch.setattr(verify_module, "_WORKERS", 1)
    elif how == "threads" and verify_module._compiled_block is None:
        pytest.skip("no compiled chunk scan in this build")
    elif how == "processes":
        monkeypatch.setattr(verify_module, "_compiled_block", None)
        monkeypatch.setattr(verify_module, "_PARALLEL_BYTES", 0)


@pytest.mark.parametrize("how", HOW)
def test_valid_export(export_dir: Path, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _scan_as(how, monkeypatch)
    seen: list[int] = []
    report = verify_export(export_dir, progress=seen.append)
    assert report.ok, [c.line() for c in report.checks if not c.ok]
    assert report.record_count == 1 + 240 + 1  # node, rows + tokens, run
    assert report.chunk_count > 5
    assert sum(seen) == sum(p.stat().st_size for p in export_dir.glob("audit_trail.0*.json"))


@pytest.mark.parametrize("how", HOW)
def test_damaged_chunk_named(export_dir: Path, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _scan_as(how, monkeypatch)
    victim = sorted(export_dir.glob("audit_trail.0*.json"))[3]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    report = verify_export(export_dir)
    bad = [c for c in report.checks if not c.ok]
    assert not report.ok
    assert victim.name in {c.file for c in bad}


def test_a_small_export_is_scanned_on_threads(
    export_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the compiled scan, chunks are scanned side by side on threads whatever the
    export's size, and no worker process is started."""
    if verify_module._compiled_block is None:
        pytest.skip("no compiled chunk scan in this build")
    monkeypatch.setattr(verify_module.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(verify_module, "ProcessPoolExecutor", None)  # called: a TypeError
    threads: set[str] = set()
    scan = verify_module.scan_chunk

    def spy(*args: Any, **kwargs: Any) -> verify_module.ChunkScan:
        threads.add(threading.current_thread().name)
        return scan(*args, **kwargs)

    monkeypatch.setattr(verify_module, "scan_chunk", spy)
    report = verify_export(export_dir)
    assert report.ok, [c.line() for c in report.checks if not c.ok]
    assert threads and all(name.startswith("verify-scan") for name in threads)
