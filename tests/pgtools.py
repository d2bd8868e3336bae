"""A PostgreSQL database of its own for each test (never a mock).

``AUDITJOURNAL_TEST_DATABASE_URL`` names the server (``.ci/run`` exports it, e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each test gets a fresh
database ``aj_<random>`` on it, dropped afterwards (``WITH (FORCE)``: a killed
writer's connection does not keep it).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

PG_ENV = "AUDITJOURNAL_TEST_DATABASE_URL"


def server_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL journal tests need {PG_ENV} (a server to create databases on)")
    return url


def create_database(base: str) -> tuple[str, str]:
    """A fresh database on the server of ``base``: (its URL, its name)."""
    name = f"aj_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(sa.make_url(base), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    url = sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    return url, name


def drop_database(base: str, name: str) -> None:
    admin = sa.create_engine(sa.make_url(base), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a database of this test's own (dropped after it)."""
    base = server_url()
    url, name = create_database(base)
    try:
        yield url
    finally:
        drop_database(base, name)


# -- a TCP proxy that loses connections on purpose --------------------------------------------


class Proxy:
    """Forwards 127.0.0.1:<port> to a PostgreSQL server, and can lose a connection right
    around a ``COMMIT``: ``drop_commit="after"`` forwards the COMMIT to the server and
    closes the connection before the answer comes back (the client cannot know whether it
    committed); ``"before"`` closes it without forwarding the COMMIT (it did not)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        import socket
        import threading

        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.drop_commit: str | None = None
        self.dropped = 0
        self._lock = threading.Lock()
        self._closed = False
        self._open: list[Any] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, base: str) -> str:
        url = sa.make_url(base).set(host="127.0.0.1", port=self.port)
        # in clear, so the proxy sees the COMMIT
        return url.update_query_dict({"sslmode": "disable"}).render_as_string(False)

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            with self._lock:
                self._open += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: Any, dst: Any, upstream: bool) -> None:
        import time

        try:
            while data := src.recv(65536):
                mode = None
                if upstream and b"COMMIT" in data:
                    with self._lock:
                        mode, self.drop_commit = self.drop_commit, None
                if mode is not None:
                    self.dropped += 1
                if mode == "after":
                    src.shutdown(2)  # the client hears nothing more...
                    dst.sendall(data)  # ...while the server gets the COMMIT
                    time.sleep(0.3)
                if mode is not None:
                    raise OSError("dropped on purpose")
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(2)
                sock.close()

    def cut(self) -> None:
        """Lose every connection open through the proxy (as a server that went away)."""
        with self._lock:
            open_now, self._open = self._open, []
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(2)

    def close(self) -> None:
        """Accept no more connections (the ones open stay)."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(2)  # wakes the accept() blocked in the other thread
        self._listener.close()


# -- a private PostgreSQL cluster (to restart it, or to listen on another address) --------------


class PrivateCluster:
    """A cluster of our own made with ``initdb`` and run with ``pg_ctl`` (as the ``postgres``
    user when we are root: the server refuses to run as root). Skips when unavailable."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        import glob
        import shutil
        import socket
        import subprocess
        import tempfile

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            pytest.skip("initdb is not installed")
        self._bin = Path(found[-1]).parent
        self.host = host
        if port is None:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="aj-pg-"))
        self._as: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                pytest.skip("running as root without runuser: cannot start a private cluster")
            shutil.chown(self.dir, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run = subprocess.run
        done = self._run(
            [*self._as, str(self._bin / "initdb"), "-D", str(self.dir / "data"), "-A", "trust",
             "-U", "postgres", "--no-sync"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode:
            pytest.skip(f"initdb failed: {done.stderr.strip()[:200]}")

    def allow(self, network: str) -> None:
        """Let clients from ``network`` (CIDR) in, without a password (before ``start``)."""
        with open(self.dir / "data" / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {network} trust\n")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/postgres"

    def ctl(self, action: str, *extra: str, netns: str | None = None) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses={self.host} -c fsync=off"
        prefix = ["ip", "netns", "exec", netns] if netns else []
        done = self._run(
            [*prefix, *self._as, str(self._bin / "pg_ctl"), "-D", str(self.dir / "data"),
             "-o", options, "-l", str(self.dir / "log"), "-w", "-m", "fast", action, *extra],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            raise RuntimeError(f"pg_ctl {action} failed: {done.stderr} {log[-500:]}")

    def destroy(self) -> None:
        import shutil

        with contextlib.suppress(RuntimeError):
            self.ctl("stop")
        shutil.rmtree(self.dir, ignore_errors=True)
