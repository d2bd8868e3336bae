"""An import appends to the store ledger, and ``verify-store`` covers imported runs
(issue 16 item 1: "every sealed export, CSV export and import appends an entry")."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from auditjournal import AuditStore
from auditjournal.evidence.verify_store import verify_store
from auditjournal.landscape.importer import import_landscape
from auditjournal.proofs.ledger import read_ledger

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "elspeth-landscape"
if not FIXTURES.is_dir():
    FIXTURES = Path("/work/shared/fixtures/elspeth-landscape")
NAME = "landscape_journal"
MANIFEST = "export/audit_trail.manifest.json"
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="Landscape fixtures not found")


@pytest.fixture
def imported(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "audit"
    with AuditStore.open(root) as store:
        report = import_landscape(
            str(FIXTURES / NAME / "audit.db"), FIXTURES / NAME / "payloads", store
        )
    (run,) = report.runs
    assert run.status == "imported", run.message
    return root, run.run_id


def test_an_import_appends_an_entry_for_its_sealed_export(imported: tuple[Path, str]) -> None:
    root, run_id = imported
    state = read_ledger(root)
    assert state is not None
    assert [(e.kind, e.run_id) for e in state.entries] == [("export", run_id), ("import", run_id)]
    seal, entry = state.entries
    assert entry.path == f"runs/{run_id}/{MANIFEST}"
    fields = ("path", "manifest_sha256", "merkle_root", "record_count", "sealed_at")
    assert [getattr(entry, f) for f in fields] == [getattr(seal, f) for f in fields]
    report = verify_store(root)
    assert report.ok, [c.line() for c in report.checks]
    assert f"import runs/{run_id}/{MANIFEST}: valid" in [c.line() for c in report.checks]


def test_verify_store_reports_a_deleted_or_replaced_imported_run(
    imported: tuple[Path, str],
) -> None:
    root, run_id = imported
    manifest = root / "runs" / run_id / MANIFEST
    manifest.write_bytes(manifest.read_bytes().replace(b'"run_status"', b' "run_status"'))
    bad = [c for c in verify_store(root).checks if not c.ok]
    assert {c.subject.split()[0] for c in bad} == {"export", "import"}
    assert all("replaced or edited" in c.reason for c in bad)
    shutil.rmtree(root / "runs" / run_id)
    bad = [c for c in verify_store(root).checks if not c.ok]
    assert [c.subject for c in bad] == [
        f"{k} runs/{run_id}/{MANIFEST}" for k in ("export", "import")
    ]
    assert all("run directory is gone" in c.reason for c in bad)
