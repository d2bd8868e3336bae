"""Worker processes are never forked from a multi-threaded process (fs/processes.py), with
the same results: Python 3.12+ warns (DeprecationWarning) about such forks, and these
tests turn that warning into an error. CI also runs the worker-related tests with
``-W error::DeprecationWarning`` on Python 3.12 and 3.13 (``.ci/run``).

* the live projector process comes from our own single-threaded fork server;
* the parallel replay's and verify's pools fork only while the process has one thread,
  else they use the standard fork server.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditjournal import AuditStore, ExportSettings, replay_export, verify_export
from auditjournal.evidence import chunkscan
from auditjournal.export import replay as replay_module
from auditjournal.fs import processes

SETTINGS = ExportSettings(chunk_size_bytes=6_000)


@pytest.fixture
def busy_thread() -> Iterator[None]:
    """Another thread alive for the whole test (as a recorder's flusher would be)."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@pytest.fixture
def no_fork_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        yield


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AuditStore, str]]:
    root = tmp_path_factory.mktemp("workers") / "audit"
    with AuditStore.open(root, segment_bytes=40_000) as store:
        with store.start_run(export=SETTINGS, sql=False) as run:
            src = run.register_node(plugin_name="csv", node_type="source")
            for i in range(600):
                row = run.create_row(source_node_id=src, row_index=i, data={"i": i, "t": "x" * 80})
                run.create_token(row_id=row)
        yield store, run.run_id


def files(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(directory.iterdir())
        if p.is_file() and not p.name.startswith(".")
    }


def test_a_threaded_process_gets_a_fork_server_not_fork(busy_thread: None) -> None:
    context, inherit = processes.pool_context()
    assert processes.thread_count() > 1
    assert context.get_start_method() in ("forkserver", "spawn") and not inherit


def test_parallel_replay_from_a_threaded_process(
    recorded: tuple[AuditStore, str],
    tmp_path: Path,
    busy_thread: None,
    no_fork_warnings: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The workers are not forked from this (multi-threaded) process, do not inherit its
    memory, and the export has exactly the single-process replay's bytes."""
    store, run_id = recorded
    methods: list[tuple[str, bool]] = []
    real = processes.pool_context

    def spy() -> tuple[processes.PoolContext, bool]:
        context, inherit = real()
        methods.append((context.get_start_method(), inherit))
        return context, inherit

    monkeypatch.setattr(replay_module, "pool_context", spy)
    out = tmp_path / "par"
    result = replay_module._replay_parallel(
        store.journal(run_id), run_id, store.payloads, SETTINGS, out / "audit_trail", 2, 4_000
    )
    assert result is not None
    assert methods == [("forkserver", False)]
    single = tmp_path / "single"
    replay_export(
        journal_dir=store.journal_dir(run_id), run_id=run_id, payloads=store.payloads,
        settings=SETTINGS, prefix=single / "audit_trail", workers=1,
    )  # fmt: skip
    assert files(out) == files(single) == files(store.export_dir(run_id))


def test_parallel_verify_from_a_threaded_process(
    recorded: tuple[AuditStore, str],
    busy_thread: None,
    no_fork_warnings: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, run_id = recorded
    monkeypatch.setattr(chunkscan, "_PARALLEL_BYTES", 0)
    report = verify_export(store.export_dir(run_id))
    assert report.ok, [c.line() for c in report.checks if not c.ok]
    assert report.chunk_count > 5


def test_live_projector_process_from_a_threaded_process(
    tmp_path: Path, busy_thread: None, no_fork_warnings: None
) -> None:
    with AuditStore.open(tmp_path / "audit", projection="process") as store:
        with store.start_run(run_id="r", export=SETTINGS) as run:
            src = run.register_node(plugin_name="csv", node_type="source")
            for i in range(300):
                run.create_row(source_node_id=src, row_index=i, data={"i": i})
            live = run.live.export
            assert live is not None and type(live).__name__ == "ProcessExport"
        assert run.export_result is not None and run.export_result.record_count == 302
        out = tmp_path / "replayed"
        replay_export(
            journal_dir=store.journal_dir("r"), run_id="r", payloads=store.payloads,
            settings=SETTINGS, prefix=out / "audit_trail", workers=1,
        )  # fmt: skip
        assert files(out) == files(store.export_dir("r"))


_SINGLE_THREADED = """
import sys, warnings
from pathlib import Path
from auditjournal import AuditStore, ExportSettings
from auditjournal.export import replay
from auditjournal.fs import processes
root, out = Path(sys.argv[1]), Path(sys.argv[2])
store = AuditStore.open(root, projection="process")  # opening starts no thread
used = []
real = processes.pool_context
def spy():
    context, inherit = real()
    used.append((context.get_start_method(), inherit))
    return context, inherit
replay.pool_context = spy
run_id = store.run_ids()[0]
result = replay._replay_parallel(
    store.journal(run_id), run_id, store.payloads, ExportSettings(chunk_size_bytes=6_000),
    out / "audit_trail", 2, 4_000,
)
assert result is not None
assert used == [("fork", True)], used
# then a live run (threads from here on) and its projector process
with store.start_run(run_id="again", export=ExportSettings()) as run:
    run.register_node(plugin_name="csv", node_type="source")
assert run.export_result is not None
store.close()
"""


def test_a_single_threaded_process_forks_its_pool_without_warnings(
    recorded: tuple[AuditStore, str], tmp_path: Path
) -> None:
    """Fork before threads: a fresh process (as the command line is) forks the pool's
    workers (they inherit the payload index), and nothing warns, under ``-W error``."""
    store, run_id = recorded
    root = tmp_path / "copy"
    shutil.copytree(store.root, root, ignore=shutil.ignore_patterns("*.lock", ".*lock*"))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", _SINGLE_THREADED, root, out],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
    assert files(out) == files(store.export_dir(run_id))
