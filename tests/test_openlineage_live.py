"""A live run's own OpenLineage events: ``ExportSettings(openlineage=...)``.

START goes out when the run starts, the end event once its export is sealed; both
are the events ``auditjournal openlineage`` makes from the sealed export, checked
through the client's own models (``validated``), sent with the client's file
transport and to a real HTTP receiver on 127.0.0.1. A receiver that fails, or no
receiver at all, loses nothing of the run and records nothing about lineage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from auditjournal import AuditStore, ExportSettings, OpenLineageSettings, verify_export
from auditjournal.errors import InvalidSettingsError
from report_runs import ForkRun, read_records, record_fork_run
from shared import Receiver
from test_openlineage import _PAYLOADS, HMAC_SECRET, _strings, validated

ol = pytest.importorskip("auditjournal.integrations.openlineage")


def _sent(lines: list[str]) -> list[dict[str, Any]]:
    """The events as sent, checked by the client's models, without the client's tag facet."""
    events = [validated(line) for line in lines]
    for event in events:
        assert event["run"]["facets"].pop("tags")  # the client adds its version as a tag
    return events


def _from_export(export: Path) -> list[dict[str, Any]]:
    return [json.loads(ol.to_json(e)) for e in ol.events_from_export(export)]


def _record(root: Path, settings: OpenLineageSettings, **kwargs: Any) -> ForkRun:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDITJOURNAL_SIGNING_KEY", HMAC_SECRET)
        return record_fork_run(root, sign="hmac-sha256", openlineage=settings, **kwargs)


def test_file_transport_gets_start_then_the_end_event(tmp_path: Path) -> None:
    out = tmp_path / "lineage.jsonl"
    seen_at_start: list[str] = []
    with AuditStore.open(tmp_path / "audit") as store:
        run = store.start_run(
            config={"pipeline": "nightly"},
            export=ExportSettings(openlineage=OpenLineageSettings(file=str(out))),
            sql=False,
        )
        seen_at_start = out.read_text().splitlines()  # START is out before any record
        run.register_node(plugin_name="reader", node_type="source", config={"path": "/d/a.csv"})
        run.complete()
        run.close()
        export = store.export_dir(run.run_id)
    assert [json.loads(line)["eventType"] for line in seen_at_start] == ["START"]
    sent = _sent(out.read_text().splitlines())
    assert [e["eventType"] for e in sent] == ["START", "COMPLETE"]
    assert sent == _from_export(export)  # exactly what `auditjournal openlineage` makes
    facet = sent[1]["run"]["facets"]["auditjournal"]
    manifest = export / "audit_trail.manifest.json"
    assert facet["manifestSha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert facet["merkleRoot"] == json.loads(manifest.read_text())["merkle_root"]
    assert facet["exportLocation"] == export.resolve().as_uri()
    assert sent[0]["job"]["name"] == "nightly"
    assert [(d["namespace"], d["name"]) for d in sent[1]["inputs"]] == [("file", "/d/a.csv")]


def test_http_receiver_gets_the_events_without_secrets_or_payloads(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENLINEAGE_API_KEY", "api-key-live-91c2")
    settings = OpenLineageSettings(url=receiver.url, namespace="prod", job_name="fork")
    fork = _record(tmp_path / "audit", settings)
    assert [path for path, _, _ in receiver.posts] == ["/api/v1/lineage"] * 2
    assert {h["Authorization"] for _, h, _ in receiver.posts} == {"Bearer api-key-live-91c2"}
    bodies = [body.decode() for _, _, body in receiver.posts]
    sent = _sent(bodies)
    assert [e["eventType"] for e in sent] == ["START", "COMPLETE"]
    assert sent == [
        json.loads(ol.to_json(e))
        for e in ol.events_from_export(fork.export, namespace="prod", job_name="fork")
    ]
    assert {e["job"]["namespace"] for e in sent} == {"prod"}
    text = "\n".join(bodies)
    secret_values = {HMAC_SECRET, "api-key-live-91c2", "see vault"}
    for record in read_records(fork.export):
        for name in _PAYLOADS:
            secret_values.update(s for s in _strings(record.get(name)) if len(s) >= 4)
    secret_values -= {"/data/in.csv", "fork-join", "hmac-sha256"}
    found = sorted(s for s in secret_values if s in text)
    assert found == [], [text[text.index(s) - 80 : text.index(s) + 40] for s in found]
    # the option is news about the run, not its evidence: not in the recorded settings
    with AuditStore.open(tmp_path / "audit") as store:
        started = next(iter(store.read_journal(fork.run_id)))
    assert "openlineage" not in json.dumps(started.settings)


@pytest.mark.parametrize("status", [500, None])
def test_a_failed_send_loses_nothing_and_records_nothing(
    tmp_path: Path,
    receiver: Receiver,
    status: int | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if status is None:  # nobody listens there
        url = "http://127.0.0.1:9"
    else:
        receiver.status = status
        url = receiver.url
    settings = OpenLineageSettings(url=url, timeout=2)
    with caplog.at_level(logging.WARNING, logger="auditjournal"):
        fork = _record(tmp_path / "audit", settings, rows=2)
    assert verify_export(fork.export / "audit_trail.manifest.json").ok
    warnings = [r.getMessage() for r in caplog.records if "OpenLineage" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert "START event not sent" in warnings[0] and "COMPLETE event not sent" in warnings[1]
    with AuditStore.open(tmp_path / "audit") as store:
        kinds = [type(e).__name__ for e in store.read_journal(fork.run_id)]
    assert kinds[-1] == "ExportSealed"  # sealed and recorded, nothing about lineage after it
    assert not any("ineage" in kind for kind in kinds)


def test_without_the_client_start_run_says_so_before_the_run_exists(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['openlineage'] = None\n"
        "from auditjournal import AuditStore, ExportSettings, OpenLineageSettings\n"
        "from auditjournal.errors import MissingExtraError\n"
        f"store = AuditStore.open({str(tmp_path / 'audit')!r})\n"
        "lineage = OpenLineageSettings(file='x.jsonl')\n"
        "try:\n"
        "    store.start_run(run_id='r1', export=ExportSettings(openlineage=lineage), sql=False)\n"
        "except MissingExtraError as exc:\n"
        "    print(exc)\n"
        "print(store.run_ids())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    message, runs = done.stdout.strip().splitlines()
    assert "pip install 'auditjournal[openlineage]'" in message
    assert runs == "[]"


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"file": "a.jsonl", "url": "http://h"},
        {"url": "ftp://h/x"},
        {"url": "http://bob:pw@h"},
        {"url": "http://h/?token=abc"},
        {"url": "http://h", "namespace": ""},
        {"url": "http://h", "timeout": 0},
        {"file": ""},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidSettingsError, match="openlineage"):
        OpenLineageSettings(**kwargs)


def test_export_settings_take_only_openlineage_settings() -> None:
    with pytest.raises(InvalidSettingsError, match="openlineage"):
        ExportSettings(openlineage={"file": "x"})  # type: ignore[arg-type]
    assert ExportSettings(openlineage=OpenLineageSettings(file="x")).describe() == (
        ExportSettings().describe()
    )
