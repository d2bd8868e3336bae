"""Several hosts for real (issue 12): a private PostgreSQL cluster in a network namespace of
its own, reached over veth links from writers in two other namespaces (this one, and one
more), each writer process with its own root. Slow-marked; skipped with the reason where
network namespaces or a private cluster cannot be made (not root, no ``ip``, a container
without CAP_SYS_ADMIN, no ``initdb``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditjournal import AuditStore
from auditjournal.evidence.verify import verify_export
from auditjournal.model.events import RowCreated
from pgtools import PrivateCluster

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

HERE = Path(__file__).parent


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def hosts() -> Iterator[tuple[str, str, str]]:
    """(server namespace, the other writer's namespace, a tag); links: this namespace
    10.231.1.2 <-> server 10.231.1.1, other 10.231.2.2 <-> server 10.231.2.1."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2 (ip)")
    tag = uuid.uuid4().hex[:6]
    srv, other = f"ajsrv{tag}", f"ajw{tag}"
    try:
        _ip("netns", "add", srv)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr.strip()}")
    try:
        _ip("netns", "add", other)
        for name in (srv, other):
            _ip("-n", name, "link", "set", "lo", "up")
        _ip("link", "add", f"aja{tag}", "type", "veth", "peer", "name", f"ajb{tag}")
        _ip("link", "set", f"ajb{tag}", "netns", srv)
        _ip("addr", "add", "10.231.1.2/24", "dev", f"aja{tag}")
        _ip("link", "set", f"aja{tag}", "up")
        _ip("-n", srv, "addr", "add", "10.231.1.1/24", "dev", f"ajb{tag}")
        _ip("-n", srv, "link", "set", f"ajb{tag}", "up")
        _ip("-n", other, "link", "add", f"ajc{tag}", "type", "veth", "peer", "name", f"ajd{tag}")
        _ip("-n", other, "link", "set", f"ajd{tag}", "netns", srv)
        _ip("-n", other, "addr", "add", "10.231.2.2/24", "dev", f"ajc{tag}")
        _ip("-n", other, "link", "set", f"ajc{tag}", "up")
        _ip("-n", srv, "addr", "add", "10.231.2.1/24", "dev", f"ajd{tag}")
        _ip("-n", srv, "link", "set", f"ajd{tag}", "up")
    except subprocess.CalledProcessError as exc:
        for name in (srv, other):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        pytest.skip(f"cannot link network namespaces here: {exc.stderr.strip()}")
    yield srv, other, tag
    subprocess.run(["ip", "link", "del", f"aja{tag}"], capture_output=True, check=False)
    for name in (srv, other):
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def test_writers_on_two_hosts_record_one_run(tmp_path: Path, hosts: tuple[str, str, str]) -> None:
    srv, other, _ = hosts
    cluster = PrivateCluster(host="10.231.1.1,10.231.2.1", port=55432)
    try:
        cluster.allow("10.231.0.0/16")
        cluster.ctl("start", netns=srv)
        here_url = "postgresql+psycopg://postgres@10.231.1.1:55432/postgres"
        there_url = "postgresql+psycopg://postgres@10.231.2.1:55432/postgres"
        rows = 100
        with AuditStore.open(tmp_path / "coordinator", journal_url=here_url) as store:
            run = store.start_run(run_id="hosts", sql=False)
            src = run.register_node(plugin_name="csv", node_type="source", node_id="src")
            sink = run.register_node(plugin_name="out", node_type="sink", node_id="sink")
            run.flush()
            child = [str(HERE / "pg_writer_child.py")]
            writers = [
                subprocess.Popen(
                    [sys.executable, *child, here_url, str(tmp_path / "here"), "hosts", src,
                     sink, "here", str(rows), "always"],
                    stdout=subprocess.PIPE, text=True,
                ),
                subprocess.Popen(
                    ["ip", "netns", "exec", other, sys.executable, *child, there_url,
                     str(tmp_path / "there"), "hosts", src, sink, "there", str(rows), "batch"],
                    stdout=subprocess.PIPE, text=True,
                ),
            ]  # fmt: skip
            for proc in writers:
                out, _ = proc.communicate(timeout=600)
                assert proc.returncode == 0 and out.endswith("done\n")
            run.complete()
            run.close()
            events = list(store.read_journal("hosts"))
            report = verify_export(
                store.export_dir("hosts"), journal=(store.journal_dir("hosts"), store.payloads)
            )
        assert report.ok, report.summary()
        rows_seen = Counter(e.row_id for e in events if type(e) is RowCreated)
        expected = {f"{tag}-row-{i}" for tag in ("here", "there") for i in range(rows)}
        assert set(rows_seen) == expected and set(rows_seen.values()) == {1}
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
    finally:
        cluster.destroy()
