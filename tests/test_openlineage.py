"""OpenLineage events of a run (``auditjournal.integrations.openlineage``, extra
``auditjournal[openlineage]``).

Every event is rebuilt from its JSON through the client's own attrs models
(their validators run: UUID run id, ISO event time, URIs) and must serialize
back to the same JSON. Sent with the client's file transport and its HTTP
transport to a receiver the test runs on 127.0.0.1. No payload value, config
value (other than a source's location), credential or key ends up in them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditjournal import AuditStore, ExportSettings
from auditjournal.errors import ExportInvalidError, LineageEmitError
from auditjournal.export.projector import SealResult
from auditjournal.model.events import ExportSealed, RunCompleted, RunStarted
from report_runs import ForkRun, read_records, record_fork_run
from shared import Receiver, run_cli

ol = pytest.importorskip("auditjournal.integrations.openlineage")
event_v2 = pytest.importorskip("openlineage.client.event_v2")
facet_v2 = pytest.importorskip("openlineage.client.facet_v2")
serde = pytest.importorskip("openlineage.client.serde")

HMAC_SECRET = "hmac-key-that-must-not-leak-0123456789"

# facet name -> the client's model for it (ours for "auditjournal")
FACETS: dict[str, Any] = {
    "processing_engine": facet_v2.processing_engine_run.ProcessingEngineRunFacet,
    "auditjournal": ol.AuditjournalRunFacet,
    "jobType": facet_v2.job_type_job.JobTypeJobFacet,
    "outputStatistics": (
        facet_v2.output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet
    ),
}


def _facet(name: str, data: dict[str, Any]) -> Any:
    if name == "tags":  # the client adds its version as a run tag when it emits
        fields = facet_v2.tags_run.TagsRunFacetFields
        tags = [fields(t["key"], t["value"], t.get("source")) for t in data["tags"]]
        made = facet_v2.tags_run.TagsRunFacet(tags=tags, producer=data["_producer"])
    else:
        values = {k: v for k, v in data.items() if not k.startswith("_")}
        made = FACETS[name](**values, producer=data["_producer"])
    assert made._schemaURL == data["_schemaURL"]
    return made


def rebuild(data: dict[str, Any]) -> Any:
    """The event as the client's models make it from this JSON (validators and all)."""
    run, job = data["run"], data["job"]
    return event_v2.RunEvent(
        eventType=event_v2.RunState(data["eventType"]),
        eventTime=data["eventTime"],
        producer=data["producer"],
        run=event_v2.Run(
            runId=run["runId"], facets={k: _facet(k, v) for k, v in run["facets"].items()}
        ),
        job=event_v2.Job(
            namespace=job["namespace"],
            name=job["name"],
            facets={k: _facet(k, v) for k, v in job["facets"].items()},
        ),
        inputs=[
            event_v2.InputDataset(namespace=d["namespace"], name=d["name"]) for d in data["inputs"]
        ],
        outputs=[
            event_v2.OutputDataset(
                namespace=d["namespace"],
                name=d["name"],
                outputFacets={k: _facet(k, v) for k, v in d["outputFacets"].items()},
            )
            for d in data["outputs"]
        ],
    )


def validated(text: str) -> dict[str, Any]:
    data = json.loads(text)
    assert serde.Serde.to_dict(rebuild(data)) == data
    return data


@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory) -> ForkRun:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDITJOURNAL_SIGNING_KEY", HMAC_SECRET)
        return record_fork_run(tmp_path_factory.mktemp("ol") / "audit", sign="hmac-sha256")


def test_events_from_an_export(fork: ForkRun) -> None:
    start, end = ol.events_from_export(fork.export, namespace="acme")
    a, b = validated(ol.to_json(start)), validated(ol.to_json(end))
    records = read_records(fork.export)
    run = next(r for r in records if r["record_type"] == "run")
    manifest_bytes = (fork.export / "audit_trail.manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    assert (a["eventType"], b["eventType"]) == ("START", "COMPLETE")
    assert a["eventTime"] == run["started_at"]
    assert b["eventTime"] == run["completed_at"] == manifest["sealed_at"]
    assert a["run"]["runId"] == b["run"]["runId"]
    assert uuid.UUID(a["run"]["runId"]).version == 7
    assert a["job"] == b["job"]
    assert (a["job"]["namespace"], a["job"]["name"]) == ("acme", "fork-join")
    assert b["inputs"] == [
        {"namespace": "file", "name": "/data/in.csv", "facets": {}, "inputFacets": {}}
    ]
    [output] = b["outputs"]
    assert (output["namespace"], output["name"]) == ("s3://bucket", "out/part-0.csv")
    assert output["outputFacets"]["outputStatistics"]["size"] == 123
    facet = b["run"]["facets"]["auditjournal"]
    assert facet["runId"] == fork.run_id
    assert facet["manifestSha256"] == hashlib.sha256(manifest_bytes).hexdigest()
    assert facet["merkleRoot"] == manifest["merkle_root"]
    assert facet["exportLocation"] == fork.export.resolve().as_uri()
    assert facet["recordCount"] == manifest["total_record_count"] == len(records)
    assert facet["chunkCount"] == manifest["chunk_count"]
    assert facet["journalHeadSeq"] == manifest["journal_head"]["seq"]
    assert facet["signatureAlgorithm"] == "hmac-sha256"
    assert facet["runStatus"] == "completed"
    assert a["run"]["facets"]["auditjournal"] == {
        "_producer": ol.PRODUCER,
        "_schemaURL": ol.FACET_SCHEMA_URL,
        "runId": fork.run_id,
        "exportLocation": fork.export.resolve().as_uri(),
    }
    # the same export gives the same events
    assert [ol.to_json(e) for e in ol.events_from_export(fork.export, namespace="acme")] == [
        ol.to_json(start),
        ol.to_json(end),
    ]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


_PAYLOADS = (
    "source_data",
    "input_data",
    "output_data",
    "reason",
    "request",
    "response",
    "sink_input",
    "error",
    "context",
    "success_reason",
    "config",
    "settings",
)


def test_no_payloads_configs_or_secrets_in_the_events(fork: ForkRun) -> None:
    text = "\n".join(ol.to_json(e) for e in ol.events_from_export(fork.export))
    secret_values = {HMAC_SECRET, "pa55word", "user:", "X-Amz-Signature", "deadbeef"}
    for record in read_records(fork.export):
        for name in _PAYLOADS:
            secret_values.update(s for s in _strings(record.get(name)) if len(s) >= 4)
    # what the events are meant to carry: the source's location (the input dataset), the
    # job name from the config, the signature algorithm from the settings
    secret_values -= {"/data/in.csv", "fork-join", "hmac-sha256"}
    found = sorted(s for s in secret_values if s in text)
    assert found == []
    manifest = json.loads((fork.export / "audit_trail.manifest.json").read_text())
    assert manifest["signature"]["key_id"] not in text
    assert manifest["signature"]["value"] not in text


def test_the_live_way_gives_the_same_events(fork: ForkRun, tmp_path: Path) -> None:
    """What the recorder would emit at run start and at seal, built from the journal's
    events and the seal's result, equals what the export gives."""
    root = fork.export.parents[2]
    with AuditStore.open(root) as store:
        events = list(store.read_journal(fork.run_id))
    started = next(e for e in events if isinstance(e, RunStarted))
    completed = next(e for e in events if isinstance(e, RunCompleted))
    sealed = next(e for e in events if isinstance(e, ExportSealed))
    datasets = ol.DatasetCollector()
    for event in events:
        datasets.observe(event)
    start = ol.RunStart.from_event(started)
    seal = SealResult(
        manifest_path=sealed.export_path,
        manifest_sha256=sealed.manifest_sha256,
        chunk_count=sealed.chunk_count,
        record_count=sealed.record_count,
        merkle_root=sealed.merkle_root,
        run_status=completed.status,
    )
    end = ol.RunEnd.from_seal(start, completed, seal, datasets, signature_algorithm="hmac-sha256")
    location = fork.export.resolve().as_uri()
    live = [ol.start_event(start, export_location=location), ol.end_event(end)]
    assert [ol.to_json(e) for e in live] == [
        ol.to_json(e) for e in ol.events_from_export(fork.export)
    ]


def test_run_status_gives_the_end_event_type(tmp_path: Path) -> None:
    with AuditStore.open(tmp_path / "audit") as store:
        kinds = {}
        for status in ("failed", "interrupted"):
            run = store.start_run(config={"job": "j"}, export=ExportSettings(), sql=False)
            run.register_node(plugin_name="s", node_type="source")
            run.complete(status=status, error={"message": "secret detail"})
            run.close()
            start, end = ol.events_from_export(store.export_dir(run.run_id))
            kinds[status] = validated(ol.to_json(end))
            assert start.job.name == "j"
        assert kinds["failed"]["eventType"] == "FAIL"
        assert kinds["interrupted"]["eventType"] == "ABORT"
        assert "secret detail" not in json.dumps(kinds)


def test_a_uuid_run_id_is_the_openlineage_run_id(tmp_path: Path) -> None:
    run_id = str(uuid.uuid4())
    run = record_fork_run(tmp_path / "audit", rows=1, run_id=run_id)
    assert {e.run.runId for e in ol.events_from_export(run.export)} == {run_id}


def test_an_export_that_does_not_verify_gets_no_events(fork: ForkRun, tmp_path: Path) -> None:
    damaged = tmp_path / "export"
    shutil.copytree(fork.export, damaged)
    chunk = damaged / "audit_trail.000.json"
    chunk.write_bytes(chunk.read_bytes().replace(b'"seq":', b'"seq": ', 1))
    with pytest.raises(ExportInvalidError, match="INVALID"):
        ol.events_from_export(damaged)


@pytest.mark.parametrize(
    ("location", "namespace", "name"),
    [
        ("/data/a.csv", "file", "/data/a.csv"),
        ("relative/a.csv", "file", "relative/a.csv"),
        ("file:///data/a.csv", "file", "/data/a.csv"),
        ("s3://AKIA:secret@bucket/k/x.csv?X-Amz-Signature=abc#f", "s3://bucket", "k/x.csv"),
        ("postgresql://user:pw@db.example:5432/prod", "postgresql://db.example:5432", "prod"),
    ],
)
def test_dataset_names_drop_credentials(location: str, namespace: str, name: str) -> None:
    assert ol.location_dataset(location) == ol.DatasetRef(namespace, name)


# -- the transports ---------------------------------------------------------------------


def test_file_transport_appends_one_event_per_line(fork: ForkRun, tmp_path: Path) -> None:
    out = tmp_path / "lineage.jsonl"
    events = ol.events_from_export(fork.export)
    assert ol.emit(events, out=out) == str(out)
    ol.emit(events, out=out)
    lines = out.read_text().splitlines()
    assert len(lines) == 4
    sent = [validated(line) for line in lines]
    assert [e["eventType"] for e in sent] == ["START", "COMPLETE", "START", "COMPLETE"]
    fresh = ol.events_from_export(fork.export)
    assert [ol.to_json(e) for e in events] == [ol.to_json(e) for e in fresh]  # not changed
    for line, event in zip(lines, fresh * 2, strict=True):
        data = json.loads(line)
        assert data["run"]["facets"].pop("tags")  # the client adds its version as a run tag
        assert data == json.loads(ol.to_json(event))
    with pytest.raises(LineageEmitError, match="cannot send"):
        ol.emit(events, out=tmp_path / "missing" / "x.jsonl")


def test_http_transport_posts_to_the_lineage_api(
    fork: ForkRun,
    receiver: Receiver,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENLINEAGE_API_KEY", "api-key-7f3c")
    code, out, err = run_cli(capsys, "openlineage", fork.export, "--url", receiver.url)
    assert code == 0, err
    assert out.strip() == (
        f"2 OpenLineage event(s) (START, COMPLETE) sent to {receiver.url}/api/v1/lineage"
    )
    assert [path for path, _, _ in receiver.posts] == ["/api/v1/lineage"] * 2
    for _, headers, body in receiver.posts:
        assert headers["Content-Type"] == "application/json"
        assert headers["Authorization"] == "Bearer api-key-7f3c"
        validated(body.decode())
    assert [json.loads(body)["eventType"] for _, _, body in receiver.posts] == ["START", "COMPLETE"]
    assert "api-key-7f3c" not in out + err

    receiver.status = 500
    receiver.posts.clear()
    url = receiver.url.replace("http://", "http://bob:hunter22@") + "/?token=abc"
    code, out, err = run_cli(capsys, "openlineage", fork.export, "--url", url)
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "cannot send OpenLineage events" in lines[0]
    assert "hunter22" not in err and "token=abc" not in err and "api-key" not in err
    assert len(receiver.posts) >= 1  # it did try (and retried)


def test_cli_wiring(fork: ForkRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "openlineage", fork.export, "--job-name", "nightly")
    assert code == 0
    events = [validated(line) for line in out.splitlines()]
    assert [e["job"]["name"] for e in events] == ["nightly", "nightly"]
    target = tmp_path / "events.jsonl"
    code, out, _ = run_cli(capsys, "openlineage", fork.export, "--out", target)
    assert code == 0 and out.strip().endswith(f"sent to {target}")
    assert len(target.read_text().splitlines()) == 2

    damaged = tmp_path / "export"
    shutil.copytree(fork.export, damaged)
    (damaged / "audit_trail.001.json").unlink()
    for args, want in (
        ((damaged,), 1),
        ((fork.export, "--out", target, "--url", "http://127.0.0.1:9"), 2),
        ((tmp_path / "nope",), 2),
    ):
        code, out, err = run_cli(capsys, "openlineage", *args)
        assert code == want, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_disabled_client_is_said_not_hidden(
    fork: ForkRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENLINEAGE_DISABLED", "true")
    with pytest.raises(LineageEmitError, match="OPENLINEAGE_DISABLED"):
        ol.emit(ol.events_from_export(fork.export), out=tmp_path / "x.jsonl")


def test_without_the_client_the_command_says_how_to_install_it(fork: ForkRun) -> None:
    code = (
        "import sys; sys.modules['openlineage'] = None\n"
        "from auditjournal.cli import main\n"
        f"main(['openlineage', {str(fork.export)!r}])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "pip install 'auditjournal[openlineage]'" in lines[0]
