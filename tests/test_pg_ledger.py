"""The store ledger of PostgreSQL-journal stores (issue 16): kept in the journal database.

Every test has a database of its own (tests/pgtools.py); PostgreSQL is never mocked.
Several roots (one per writer host) share the database and its one ledger.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from auditjournal import AuditStore
from auditjournal.cli import cli
from auditjournal.evidence.verify_store import verify_store
from auditjournal.journal.pgbackend import PgDatabase
from auditjournal.proofs.ledger import LedgerPaths, parse_ledger
from auditjournal.proofs.pgledger import PgLedger, read_store_id
from auditjournal.proofs.signednote import read_checkpoint
from auditjournal.proofs.signing import generate_keypair
from auditjournal.sql.csvexport import export_csv
from test_ledger import problems, seal_run, spec_leaf, spec_root

pytestmark = pytest.mark.postgres


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_keypair(tmp_path / "keys")


def ledger_rows(url: str) -> tuple[str, list[bytes], list[tuple[int, bytes]]]:
    db = PgDatabase(url)
    try:
        found = db.ledger_read()
    finally:
        db.close()
    assert found is not None
    return found


def execute(url: str, *statements: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def test_seals_of_two_roots_go_to_the_databases_one_ledger(
    tmp_path: Path, pg_url: str, keys: tuple[Path, Path]
) -> None:
    with (
        AuditStore.open(tmp_path / "a", journal_url=pg_url, ledger_key=keys[0]) as a,
        AuditStore.open(tmp_path / "b", journal_url=pg_url, ledger_key=keys[0]) as b,
    ):
        in_a, in_b = seal_run(a), seal_run(b)
        seal_run(a)
    assert not LedgerPaths(tmp_path / "a").entries.exists()  # not the file ledger
    origin, lines, notes = ledger_rows(pg_url)
    state = parse_ledger(origin, b"".join(line + b"\n" for line in lines))
    assert [e.run_id for e in state.entries][:2] == [in_a, in_b] and state.size == 3
    ids = {read_store_id(tmp_path / "a"), read_store_id(tmp_path / "b")}
    assert None not in ids and {e.store for e in state.entries} == ids
    assert [size for size, _ in notes] == [1, 2, 3]  # one checkpoint per append
    checkpoint, note = read_checkpoint(notes[-1][1])
    assert note is not None and checkpoint.origin == origin
    assert checkpoint.root_hash == spec_root([spec_leaf(line) for line in lines])
    report = verify_store(tmp_path / "a", public_key=keys[1], journal_url=pg_url)
    assert report.ok, problems(report)
    assert any("1 other store root" in n for n in report.notes)
    assert sum(c.subject.startswith("export ") for c in report.checks) == 2
    # the same store without --journal-url has no file ledger, and says so
    assert "no ledger yet" in " ".join(verify_store(tmp_path / "a").notes)


def test_deleted_replaced_and_added_runs_are_reported(tmp_path: Path, pg_url: str) -> None:
    with AuditStore.open(tmp_path / "a", journal_url=pg_url) as a:
        gone, replaced, _ = seal_run(a), seal_run(a), seal_run(a)
        root = a.root
        shutil.rmtree(a.run_dir(gone))
        manifest = a.export_dir(replaced) / "audit_trail.manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b"{", b"{ ", 1))
    with AuditStore.open(tmp_path / "elsewhere") as other:  # a run from outside the ledger
        added = seal_run(other)
    shutil.copytree(other.run_dir(added), root / "runs" / added)
    bad = problems(verify_store(root, journal_url=pg_url))
    assert len(bad) == 3, bad
    assert any(gone in line and "run directory is gone" in line for line in bad)
    assert any(replaced in line and "replaced or edited" in line for line in bad)
    assert any(added in line and "not in the ledger" in line for line in bad)


def test_an_edited_line_in_the_database_is_reported(tmp_path: Path, pg_url: str) -> None:
    with AuditStore.open(tmp_path / "a", journal_url=pg_url) as a:
        seal_run(a)
        seal_run(a)
    line = json.loads(ledger_rows(pg_url)[1][0])
    line["record_count"] += 1
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE auditjournal_ledger SET line = :line WHERE size = 1"),
                {"line": json.dumps(line, sort_keys=True, separators=(",", ":")).encode()},
            )
    finally:
        engine.dispose()
    bad = problems(verify_store(tmp_path / "a", journal_url=pg_url))
    assert any("rewritten" in line for line in bad)
    assert any("does not say what the ledger recorded" in line for line in bad)


def test_a_rolled_back_ledger_is_reported_with_since(tmp_path: Path, pg_url: str) -> None:
    with AuditStore.open(tmp_path / "a", journal_url=pg_url) as a:
        seal_run(a)
        gone = seal_run(a)
        root = a.root
    kept = tmp_path / "auditor.checkpoint"
    kept.write_bytes(ledger_rows(pg_url)[2][-1][1])  # the auditor keeps the checkpoint of 2
    assert verify_store(root, journal_url=pg_url, since=kept).ok
    # the operator rolls the ledger back to one entry and removes the run
    execute(
        pg_url,
        "DELETE FROM auditjournal_ledger WHERE size = 2",
        "DELETE FROM auditjournal_ledger_checkpoints WHERE size = 2",
    )
    shutil.rmtree(root / "runs" / gone)
    assert verify_store(root, journal_url=pg_url).ok  # consistent with itself
    bad = problems(verify_store(root, journal_url=pg_url, since=kept))
    assert len(bad) == 1 and "fewer than the 2" in bad[0]
    # ... and re-grows it with another run to the same size
    with AuditStore.open(root, journal_url=pg_url) as again:
        seal_run(again)
    assert verify_store(root, journal_url=pg_url).ok
    bad = problems(verify_store(root, journal_url=pg_url, since=kept))
    assert len(bad) == 1 and "not an extension" in bad[0]


_CHILD = """
import sys
from pathlib import Path
from auditjournal.journal.pgbackend import PgDatabase
from auditjournal.proofs.ledger import LedgerEntry
from auditjournal.proofs.pgledger import PgLedger
ledger = PgLedger(Path(sys.argv[1]), Path(sys.argv[2]), PgDatabase(sys.argv[3]))
print("ready", flush=True)
sys.stdin.readline()
for i in range(int(sys.argv[4])):
    ledger.append(LedgerEntry(kind="csv", run_id=f"r{i}", path=f"x/{i}",
        manifest_sha256="0" * 64, merkle_root=None, record_count=i, sealed_at=None))
"""


def test_two_processes_appending_at_once_make_one_consistent_log(
    tmp_path: Path, pg_url: str, keys: tuple[Path, Path]
) -> None:
    PgDatabase(pg_url).close()  # the schema, made before the children race
    each = 25
    for name in ("h1", "h2"):
        (tmp_path / name).mkdir()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tmp_path / name), str(keys[0]), pg_url, str(each)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("h1", "h2")
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    for child in children:  # both start appending together
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.close()
    for child in children:
        assert child.wait(timeout=300) == 0
    origin, lines, notes = ledger_rows(pg_url)
    state = parse_ledger(origin, b"".join(line + b"\n" for line in lines))
    per_store: dict[str | None, list[int]] = {}
    for entry in state.entries:
        per_store.setdefault(entry.store, []).append(entry.record_count)
    assert sorted(per_store.values()) == [list(range(each))] * 2  # each once, in its order
    assert [size for size, _ in notes] == list(range(1, 2 * each + 1))  # no fork, no gap
    leaves = [spec_leaf(line) for line in lines]
    for size, note in notes:
        assert read_checkpoint(note)[0].root_hash == spec_root(leaves[:size])
    (tmp_path / "auditor" / "runs").mkdir(parents=True)
    report = verify_store(tmp_path / "auditor", public_key=keys[1], journal_url=pg_url)
    assert report.ok, problems(report)
    assert report.tree_size == 2 * each and "2 other store root" in " ".join(report.notes)


def test_a_version_2_journal_database_is_upgraded_in_place(tmp_path: Path, pg_url: str) -> None:
    with AuditStore.open(tmp_path / "a", journal_url=pg_url) as a:
        before = seal_run(a)
    # as a journal database of schema 2 was: no ledger tables
    execute(
        pg_url,
        "DROP TABLE auditjournal_ledger, auditjournal_ledger_checkpoints, auditjournal_ledger_meta",
        "UPDATE auditjournal_journal_schema SET version = 2",
    )
    with AuditStore.open(tmp_path / "a", journal_url=pg_url) as a:
        assert before in a.run_ids()  # what was recorded is still there
        after = seal_run(a)
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            version = conn.execute(
                sa.text("SELECT version FROM auditjournal_journal_schema")
            ).scalar()
    finally:
        engine.dispose()
    assert version == 3
    _, lines, _ = ledger_rows(pg_url)
    assert [json.loads(line)["run_id"] for line in lines] == [after]
    # the run sealed before the upgrade is reported: its seal is in no ledger
    bad = problems(verify_store(tmp_path / "a", journal_url=pg_url))
    assert len(bad) == 1 and before in bad[0] and "not in the ledger" in bad[0]


def test_cli_verify_store_with_journal_url(tmp_path: Path, pg_url: str) -> None:
    with AuditStore.open(tmp_path / "a", journal_url=pg_url) as a:
        run_id = seal_run(a)
    runner = CliRunner()
    args = ["verify-store", str(tmp_path / "a"), "--journal-url", pg_url]
    ok = runner.invoke(cli, args)
    assert ok.exit_code == 0, ok.output
    assert "ledger checkpoint 1: valid" in ok.output and "VALID" in ok.output
    shutil.rmtree(tmp_path / "a" / "runs" / run_id / "export")
    bad = runner.invoke(cli, [*args, "--json"])
    assert bad.exit_code == 1
    assert json.loads(bad.output)["tree_size"] == 1


def test_a_ledger_object_keeps_the_roots_id(tmp_path: Path, pg_url: str) -> None:
    db = PgDatabase(pg_url)
    try:
        first, second = PgLedger(tmp_path, None, db), PgLedger(tmp_path, None, db)
        assert first.store == second.store == read_store_id(tmp_path)
        (tmp_path / "other").mkdir()
        assert PgLedger(tmp_path / "other", None, db).store != first.store
    finally:
        db.close()


def test_csv_exports_and_replays_of_a_pg_store_go_to_its_ledger(
    tmp_path: Path, pg_url: str
) -> None:
    with AuditStore.open(tmp_path / "a", journal_url=pg_url) as a:
        run_id = seal_run(a)
        listing = export_csv(a, run_id, tmp_path / "csv").listing_path
        store_id = a.ledger.store if isinstance(a.ledger, PgLedger) else None
    out = CliRunner().invoke(
        cli,
        [
            "replay",
            str(tmp_path / "a"),
            run_id,
            "--journal-url",
            pg_url,
            "--out",
            str(tmp_path / "re"),
        ],
    )
    assert out.exit_code == 0, out.output
    _, lines, _ = ledger_rows(pg_url)
    entries = [json.loads(line) for line in lines]
    assert [(e["kind"], e["path"]) for e in entries[1:]] == [
        ("csv", str(listing.resolve())),
        ("export", str((tmp_path / "re" / "audit_trail.manifest.json").resolve())),
    ]
    assert store_id is not None and {e["store"] for e in entries} == {store_id}
    assert not LedgerPaths(tmp_path / "a").entries.exists()
    assert verify_store(tmp_path / "a", journal_url=pg_url).ok


_VERIFY_STORE = [sys.executable, "-m", "auditjournal", "verify-store"]


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_verify_store_on_a_database_without_a_journal_creates_nothing(
    tmp_path: Path, pg_url: str
) -> None:
    """Checking is read-only: a database holding no journal is a usage error (exit 2,
    one line), not an INVALID ledger, and no tables are made in it."""
    (tmp_path / "a" / "runs").mkdir(parents=True)
    result = subprocess.run(
        [*_VERIFY_STORE, str(tmp_path / "a"), "--journal-url", pg_url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no auditjournal journal" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert _tables(pg_url) == []


def test_verify_store_with_an_unreachable_journal_database_is_a_usage_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "a" / "runs").mkdir(parents=True)
    dead = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"
    result = subprocess.run(
        [*_VERIFY_STORE, str(tmp_path / "a"), "--journal-url", dead],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--journal-url" in result.stderr and "127.0.0.1:1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "INVALID" not in result.stdout
