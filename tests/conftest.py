"""Shared test configuration and the fixtures more than one test file uses.

Hypothesis runs derandomized by default, so the suite a new user or CI runs is the same
every time (a property failure is reproducible, never a flaky red). Set
``HYPOTHESIS_PROFILE=explore`` to draw fresh random examples, as the deep ``-m slow``
runs are meant to be used when hunting for bugs.

Fixtures (their types are in ``shared.py``):

* ``store`` -- an :class:`AuditStore` at ``tmp_path / "audit"``, closed after the test;
  a module or test changes how it is opened with
  ``pytest.mark.store_options(durability=..., ...)`` (keyword arguments of
  ``AuditStore.open``).
* ``keys`` -- one Ed25519 key pair for the whole session (read only).
* ``sealed_demo`` -- records the demo pipeline into a fresh directory with the live
  export, signed with ``keys`` unless ``signed=False``, and checks that it verifies.
* ``cli`` -- ``cli("verify", path, ...)`` runs the command line in this process and
  returns ``(code, out, err)`` (``shared.run_cli``).
* ``receiver`` -- a real HTTP lineage endpoint on 127.0.0.1 (``http.server``) that
  records what it is sent (``shared.Receiver``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from hypothesis import settings

from auditjournal import AuditStore, ExportSettings
from auditjournal.demo import DemoResult, run_demo
from auditjournal.proofs.signing import generate_keypair
from shared import Cli, CliRun, Keys, Receiver, SealedDemo, run_cli

settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "store_options(**kwargs): how the `store` fixture opens its AuditStore "
        "(keyword arguments of AuditStore.open)",
    )


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditStore]:
    marker = request.node.get_closest_marker("store_options")
    options = marker.kwargs if marker is not None else {}
    with AuditStore.open(tmp_path / "audit", **options) as opened:
        yield opened


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(*generate_keypair(tmp_path_factory.mktemp("keys")))


@pytest.fixture(scope="session")
def sealed_demo(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> SealedDemo:
    def record(
        rows: int,
        *,
        chunk_size_bytes: int | None,
        signed: bool = True,
        root: Path | None = None,
    ) -> DemoResult:
        if signed:
            settings_ = ExportSettings(
                chunk_size_bytes=chunk_size_bytes,
                sign="ed25519",
                signing_key_file=str(keys.private),
            )
        else:
            settings_ = ExportSettings(chunk_size_bytes=chunk_size_bytes)
        root = root or tmp_path_factory.mktemp("demo") / "audit"
        result = run_demo(root, rows=rows, export=settings_)
        assert result.report.ok, [c.line() for c in result.report.checks if not c.ok]
        return result

    return record


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    def invoke(*args: str | Path) -> CliRun:
        return run_cli(capsys, *args)

    return invoke


from pgtools import pg_url  # noqa: E402, F401 - a database of the test's own (PostgreSQL tests)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A lineage endpoint on 127.0.0.1 that records what it is sent."""
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.posts.append((self.path, dict(self.headers), body))
            self.send_response(state.status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
