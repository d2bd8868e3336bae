"""Faults of the PostgreSQL journal (issue 12 item 4): a connection lost around a COMMIT,
a server restart, an unreachable server. Real servers and real sockets, no mocks: a TCP
proxy (tests/pgtools.py) loses the connection on purpose, and a private cluster of our
own is restarted with ``pg_ctl``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from auditjournal import AuditStore
from auditjournal.errors import JournalLockedError, JournalUnavailableError
from auditjournal.journal.pgschema import RunLease, lock_key
from auditjournal.model.events import RowCreated
from pgtools import PrivateCluster, Proxy, create_database, drop_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxied(pg_url: str) -> Iterator[tuple[Proxy, str]]:
    url = sa.make_url(pg_url)
    proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
    yield proxy, proxy.url(pg_url)
    proxy.close()


def rows_in(store: AuditStore, run_id: str) -> Counter[str]:
    return Counter(e.row_id for e in store.read_journal(run_id) if type(e) is RowCreated)


@pytest.mark.parametrize("when", ["after", "before"])
def test_a_connection_lost_around_commit_records_the_batch_exactly_once(
    tmp_path: Path, proxied: tuple[Proxy, str], when: str
) -> None:
    proxy, url = proxied
    with AuditStore.open(tmp_path / "a", journal_url=url, durability="always") as store:
        run = store.start_run(run_id="r1", export=None, sql=False)
        src = run.register_node(plugin_name="csv", node_type="source")
        proxy.drop_commit = when
        row = run.create_row(source_node_id=src, row_index=0, data={"a": 1}, row_id="lost")
        assert proxy.dropped == 1  # the commit's answer (or the commit) was lost...
        run.create_row(source_node_id=src, row_index=1, data={"a": 2}, row_id="next")
        run.close()
        assert rows_in(store, "r1") == Counter({row: 1, "next": 1})  # ...and no duplicate
        seqs = [e.seq for e in store.read_journal("r1")]
    assert seqs == list(range(1, len(seqs) + 1))


def test_batch_mode_survives_a_lost_connection(tmp_path: Path, proxied: tuple[Proxy, str]) -> None:
    proxy, url = proxied
    with AuditStore.open(tmp_path / "a", journal_url=url, durability="batch") as store:
        run = store.start_run(run_id="r1", export=None, sql=False)
        src = run.register_node(plugin_name="csv", node_type="source")
        for i in range(200):
            if i == 100:
                proxy.drop_commit = "after"
            run.create_row(source_node_id=src, row_index=i, data={"i": i}, row_id=f"r{i}")
            if i % 20 == 0:
                time.sleep(0.02)
        run.close()
        assert proxy.dropped == 1
        assert rows_in(store, "r1") == Counter({f"r{i}": 1 for i in range(200)})


def test_an_unreachable_server_fails_the_call_with_a_typed_error_and_loses_nothing(
    tmp_path: Path, proxied: tuple[Proxy, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, url = proxied
    with AuditStore.open(tmp_path / "a", journal_url=url, durability="always") as store:
        run = store.start_run(run_id="r1", export=None, sql=False)
        src = run.register_node(plugin_name="csv", node_type="source")
        run._journal.reconnect_seconds = 1.0
        proxy.close()  # no new connections...
        proxy.cut()  # ...and the open ones lost
        with pytest.raises(JournalUnavailableError) as caught:
            run.create_row(source_node_id=src, row_index=0, data=1, row_id="kept")
        assert caught.value.recorded_event is not None  # recorded here, not yet committed
        run._abandon()


def lease_pids(url: str, run_id: str) -> list[int]:
    """The server processes holding the run's writer lease."""
    key = lock_key(run_id) & 0xFFFFFFFFFFFFFFFF
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                        " AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1"
                    ),
                    {"hi": key >> 32, "lo": key & 0xFFFFFFFF},
                ).scalars()
            )
    finally:
        engine.dispose()


def terminate(url: str, pids: list[int]) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            for pid in pids:
                conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    finally:
        engine.dispose()


@pytest.mark.parametrize("durability", ["always", "batch"])
def test_a_writer_whose_lease_session_ends_takes_the_lease_again(
    tmp_path: Path, pg_url: str, durability: str
) -> None:
    with AuditStore.open(tmp_path / "a", journal_url=pg_url, durability=durability) as store:
        run = store.start_run(run_id="r1", export=None, sql=False)
        src = run.register_node(plugin_name="csv", node_type="source")
        run.flush()
        lost = lease_pids(pg_url, "r1")
        assert len(lost) == 1
        terminate(pg_url, lost)
        deadline = time.monotonic() + 30
        while lease_pids(pg_url, "r1") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lease_pids(pg_url, "r1") == []  # the server ended the session: no lease
        run.create_row(source_node_id=src, row_index=0, data=1, row_id="after")
        run.flush()  # the next flush takes it again, and the writer goes on
        again = lease_pids(pg_url, "r1")
        assert len(again) == 1 and again != lost
        with pytest.raises(JournalLockedError):  # held: no exclusive writer gets in
            RunLease(store.pg, "r1", shared=False)  # type: ignore[arg-type]
        run.create_row(source_node_id=src, row_index=1, data=2, row_id="later")
        run.close()
        assert rows_in(store, "r1") == Counter({"after": 1, "later": 1})


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    made = PrivateCluster()
    made.ctl("start")
    yield made
    made.destroy()


def test_a_writer_reconnects_after_a_server_restart(
    tmp_path: Path, cluster: PrivateCluster
) -> None:
    url, name = create_database(cluster.url)
    acked: list[str] = []
    errors: list[BaseException] = []
    with AuditStore.open(tmp_path / "a", journal_url=url, durability="always") as store:
        run = store.start_run(run_id="r1", export=None, sql=False)
        src = run.register_node(plugin_name="csv", node_type="source")

        def write() -> None:
            try:
                for i in range(300):
                    run.create_row(source_node_id=src, row_index=i, data=i, row_id=f"r{i}")
                    acked.append(f"r{i}")
                    time.sleep(0.005)
            except BaseException as exc:
                errors.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        while len(acked) < 50:
            time.sleep(0.01)
        cluster.ctl("restart")
        writer.join(120)
        assert errors == []
        assert len(acked) == 300
        assert len(lease_pids(url, "r1")) == 1  # the lease was taken again
        run.close()
        assert rows_in(store, "r1") == Counter({r: 1 for r in acked})
    drop_database(cluster.url, name)
