"""OpenLineage events for a run: START when it begins, COMPLETE/FAIL/ABORT when it is sealed.

The core, below the recorder's stage so that a live run can emit them
(``ExportSettings(openlineage=...)``, :mod:`auditjournal.recording.lineage`);
:mod:`auditjournal.integrations.openlineage` re-exports it and adds the
verifying :func:`~auditjournal.integrations.openlineage.events_from_export`.
This module imports the optional client at import time: import it only when
the extra is wanted.

Built with the ``openlineage-python`` client's own models (extra
``auditjournal[openlineage]``) and sent with its transports (a file, or the
HTTP lineage API). Two ways in, one event shape:

* live, from the recorder's side: :meth:`RunStart.from_event` on the
  ``run_started`` event gives :func:`start_event`; a :class:`DatasetCollector`
  fed every event (:meth:`DatasetCollector.observe`) plus the ``run_completed``
  event and the export's :class:`~auditjournal.export.projector.SealResult` give
  :meth:`RunEnd.from_seal` and :func:`end_event`;
* afterwards, from a sealed export alone: :func:`events_from_manifest` (what
  ``auditjournal openlineage`` sends, after verifying the export: an export that
  does not verify gets no COMPLETE event vouching for its Merkle root). A live
  run's own end event is made the same way from the export it just sealed.

Both ways give the same events for the same run (a test holds them equal).

What goes into an event: the job (namespace; name from the run config's
``pipeline``/``job``/``job_name``/``name``), the OpenLineage run id (the
auditjournal run id if it is a UUID, else a UUIDv7 derived from the run id
and its start time, so START and COMPLETE agree wherever they are made),
input datasets from the source nodes' configured location (``path``, ``uri``,
``url`` or ``location``), output datasets from the artifacts, and the
``auditjournal`` run facet (:class:`AuditjournalRunFacet`): the export's
location, manifest sha256, Merkle root, record and chunk counts, journal head
seq, signature algorithm. What never goes in: payloads, node and run
configs (only the one location string, with any user:password, query and
fragment removed), errors' contents, settings, keys.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import attr
import msgspec
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import (
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
)
from openlineage.client.facet_v2 import (
    RunFacet,
    job_type_job,
    output_statistics_output_dataset,
    processing_engine_run,
)
from openlineage.client.serde import Serde
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport
from openlineage.client.transport.transport import Transport
from openlineage.client.uuid import generate_static_uuid

from ..errors import ExportInvalidError, LineageEmitError, MalformedEvidenceError
from ..fs.safeio import plain_name
from ..model.events import ArtifactRecorded, BaseEvent, NodeRegistered, RunCompleted, RunStarted
from ..model.version import __version__
from .chunks import iter_chunk_records
from .manifest import read_manifest
from .projector import SealResult

__all__ = [
    "FACET_KEY",
    "PRODUCER",
    "AuditjournalRunFacet",
    "DatasetCollector",
    "DatasetRef",
    "RunEnd",
    "RunStart",
    "emit",
    "end_event",
    "event_type",
    "events_from_manifest",
    "start_event",
    "to_json",
]

PRODUCER: Final = f"urn:auditjournal:{__version__}"
FACET_KEY: Final = "auditjournal"
FACET_SCHEMA_URL: Final = "urn:auditjournal:openlineage:AuditjournalRunFacet:1"
DEFAULT_NAMESPACE: Final = "auditjournal"
_JOB_NAME_KEYS: Final = ("pipeline", "job", "job_name", "name")
_LOCATION_KEYS: Final = ("path", "uri", "url", "location")
_END_STATES: Final = {"completed": RunState.COMPLETE, "interrupted": RunState.ABORT}
_HTTP_RETRY: Final = {"total": 3, "connect": 3, "read": 3, "backoff_factor": 0.3}


@attr.define
class AuditjournalRunFacet(RunFacet):
    """The run's audit evidence: where its sealed export is and what seals it."""

    runId: str  # the auditjournal run id (the OpenLineage run id may differ)
    exportLocation: str | None = attr.field(default=None)
    manifestSha256: str | None = attr.field(default=None)
    merkleRoot: str | None = attr.field(default=None)
    runStatus: str | None = attr.field(default=None)
    recordCount: int | None = attr.field(default=None)
    chunkCount: int | None = attr.field(default=None)
    journalHeadSeq: int | None = attr.field(default=None)
    signatureAlgorithm: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return FACET_SCHEMA_URL


@dataclass(frozen=True)
class DatasetRef:
    """An OpenLineage dataset identity (naming as in the OpenLineage spec)."""

    namespace: str
    name: str
    size_bytes: int | None = None


def location_dataset(location: str) -> DatasetRef:
    """A dataset from a path or URI; credentials, query and fragment are dropped.

    ``s3://bucket/key`` -> (``s3://bucket``, ``key``); ``/data/a.csv`` or
    ``file:///data/a.csv`` -> (``file``, ``/data/a.csv``).
    """
    parts = urlsplit(location)
    if not parts.scheme or len(parts.scheme) == 1:  # a plain or Windows path
        return DatasetRef("file", location.split("?")[0].split("#")[0])
    if parts.scheme == "file":
        return DatasetRef("file", parts.path)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return DatasetRef(f"{parts.scheme}://{host}", parts.path.lstrip("/") or "/")


@dataclass
class DatasetCollector:
    """The run's input (source nodes) and output (artifacts) datasets, in first-seen order.

    Feed it journal events (:meth:`observe`) or export records
    (:meth:`observe_record`); it keeps one entry per dataset, so memory is
    bounded by the number of distinct sources and artifacts.
    """

    namespace: str = DEFAULT_NAMESPACE
    inputs: dict[tuple[str, str], DatasetRef] = field(default_factory=dict)
    outputs: dict[tuple[str, str], DatasetRef] = field(default_factory=dict)

    def observe(self, event: BaseEvent) -> None:
        if isinstance(event, NodeRegistered):
            self.node(event.node_id, event.node_type, event.plugin_name, event.config)
        elif isinstance(event, ArtifactRecorded):
            self.artifact(event.path_or_uri, event.size_bytes)

    def observe_record(self, record: Mapping[str, Any]) -> None:
        kind = record.get("record_type")
        if kind == "node":
            self.node(
                str(record.get("node_id")),
                str(record.get("node_type")),
                str(record.get("plugin_name")),
                record.get("config"),
            )
        elif kind == "artifact":
            size = record.get("size_bytes")
            self.artifact(str(record.get("path_or_uri")), size if isinstance(size, int) else None)

    def node(self, node_id: str, node_type: str, plugin_name: str, config: Any) -> None:
        if node_type != "source":
            return
        location = _location(config)
        ref = (
            location_dataset(location)
            if location is not None
            else DatasetRef(self.namespace, f"{plugin_name}.{node_id}")
        )
        self.inputs.setdefault((ref.namespace, ref.name), ref)

    def artifact(self, path_or_uri: str, size_bytes: int | None) -> None:
        ref = location_dataset(path_or_uri)
        key = (ref.namespace, ref.name)
        previous = self.outputs.get(key)
        if previous is not None and previous.size_bytes is not None and size_bytes is not None:
            size_bytes += previous.size_bytes  # several artifacts written to one place
        self.outputs[key] = DatasetRef(ref.namespace, ref.name, size_bytes)


def _location(config: Any) -> str | None:
    if isinstance(config, Mapping):
        for key in _LOCATION_KEYS:
            value = config.get(key)
            if isinstance(value, str) and value:
                return value
    return None


@dataclass(frozen=True)
class RunStart:
    """What a START event needs: known as soon as ``run_started`` is appended."""

    run_id: str
    started_at: _dt.datetime
    config: Mapping[str, Any]

    @classmethod
    def from_event(cls, event: RunStarted) -> RunStart:
        return cls(event.run_id, _utc(event.ts), event.config)


@dataclass(frozen=True)
class RunEnd:
    """What a COMPLETE/FAIL/ABORT event needs: known when the export is sealed."""

    start: RunStart
    status: str
    completed_at: _dt.datetime
    export_location: str
    manifest_sha256: str
    merkle_root: str
    record_count: int
    chunk_count: int
    journal_head_seq: int | None
    signature_algorithm: str | None
    inputs: Sequence[DatasetRef]
    outputs: Sequence[DatasetRef]

    @classmethod
    def from_seal(
        cls,
        start: RunStart,
        completed: RunCompleted,
        seal: SealResult,
        datasets: DatasetCollector,
        *,
        signature_algorithm: str | None = None,
    ) -> RunEnd:
        """The end of a live run: its ``run_completed`` event and what sealing returned."""
        return cls(
            start=start,
            status=completed.status,
            completed_at=_utc(completed.ts),
            export_location=Path(seal.manifest_path).parent.resolve().as_uri(),
            manifest_sha256=seal.manifest_sha256,
            merkle_root=seal.merkle_root,
            record_count=seal.record_count,
            chunk_count=seal.chunk_count,
            journal_head_seq=completed.seq,
            signature_algorithm=signature_algorithm,
            inputs=list(datasets.inputs.values()),
            outputs=list(datasets.outputs.values()),
        )


def _utc(ts: _dt.datetime) -> _dt.datetime:
    return ts.replace(tzinfo=_dt.UTC) if ts.tzinfo is None else ts.astimezone(_dt.UTC)


def _iso(ts: _dt.datetime) -> str:
    return _utc(ts).isoformat().replace("+00:00", "Z")


def openlineage_run_id(run_id: str, started_at: _dt.datetime) -> str:
    """The OpenLineage run id: ``run_id`` if it is a UUID, else a UUIDv7 made from it and
    its start time (the client's :func:`generate_static_uuid`), the same every time."""
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        return str(generate_static_uuid(_utc(started_at), run_id.encode("utf-8")))


def job_name_of(config: Mapping[str, Any]) -> str:
    for key in _JOB_NAME_KEYS:
        value = config.get(key)
        if isinstance(value, str) and value:
            return value
    return "auditjournal"


def _job(namespace: str, name: str) -> Job:
    facet = job_type_job.JobTypeJobFacet(
        processingType="BATCH", integration="AUDITJOURNAL", jobType="JOB", producer=PRODUCER
    )
    return Job(namespace=namespace, name=name, facets={"jobType": facet})


def _engine() -> processing_engine_run.ProcessingEngineRunFacet:
    return processing_engine_run.ProcessingEngineRunFacet(
        version=__version__, name="auditjournal", producer=PRODUCER
    )


def start_event(
    start: RunStart,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    job_name: str | None = None,
    export_location: str | None = None,
) -> RunEvent:
    """The run's START event (``export_location``: where its export will be, if any)."""
    facet = AuditjournalRunFacet(
        runId=start.run_id, exportLocation=export_location, producer=PRODUCER
    )
    return RunEvent(
        eventType=RunState.START,
        eventTime=_iso(start.started_at),
        run=Run(
            runId=openlineage_run_id(start.run_id, start.started_at),
            facets={"processing_engine": _engine(), FACET_KEY: facet},
        ),
        job=_job(namespace, job_name or job_name_of(start.config)),
        producer=PRODUCER,
    )


def end_event(
    end: RunEnd, *, namespace: str = DEFAULT_NAMESPACE, job_name: str | None = None
) -> RunEvent:
    """The run's COMPLETE (completed), ABORT (interrupted) or FAIL (failed) event."""
    start = end.start
    facet = AuditjournalRunFacet(
        runId=start.run_id,
        exportLocation=end.export_location,
        manifestSha256=end.manifest_sha256,
        merkleRoot=end.merkle_root,
        runStatus=end.status,
        recordCount=end.record_count,
        chunkCount=end.chunk_count,
        journalHeadSeq=end.journal_head_seq,
        signatureAlgorithm=end.signature_algorithm,
        producer=PRODUCER,
    )
    outputs = []
    for ref in end.outputs:
        facets: dict[str, Any] = {}
        if ref.size_bytes is not None:
            facets["outputStatistics"] = (
                output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    size=ref.size_bytes, producer=PRODUCER
                )
            )
        outputs.append(OutputDataset(namespace=ref.namespace, name=ref.name, outputFacets=facets))
    return RunEvent(
        eventType=_END_STATES.get(end.status, RunState.FAIL),
        eventTime=_iso(end.completed_at),
        run=Run(
            runId=openlineage_run_id(start.run_id, start.started_at),
            facets={"processing_engine": _engine(), FACET_KEY: facet},
        ),
        job=_job(namespace, job_name or job_name_of(start.config)),
        inputs=[InputDataset(namespace=r.namespace, name=r.name) for r in end.inputs],
        outputs=outputs,
        producer=PRODUCER,
    )


class _Record(msgspec.Struct):
    """The fields lineage reads from an export record; payloads are skipped unparsed."""

    record_type: str = ""
    run_id: str = ""
    seq: int = 0
    node_id: str = ""
    node_type: str = ""
    plugin_name: str = ""
    config: Any = None
    path_or_uri: str = ""
    size_bytes: int | None = None
    status: str = ""
    started_at: _dt.datetime | None = None
    completed_at: _dt.datetime | None = None


_DECODE: Final = msgspec.json.Decoder(_Record).decode


def events_from_manifest(
    manifest_path: Path,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    job_name: str | None = None,
) -> list[RunEvent]:
    """START and COMPLETE/FAIL/ABORT for the sealed export whose manifest is at
    ``manifest_path``, read as it is (the caller verified it, or just sealed it).

    Raises :class:`~auditjournal.errors.ExportInvalidError` when it is not a
    readable export of a completed run.
    """
    try:
        raw, manifest = read_manifest(manifest_path)
    except (MalformedEvidenceError, FileNotFoundError) as exc:
        raise ExportInvalidError(f"{manifest_path} is not an export manifest ({exc})") from None
    files = [plain_name(chunk.file, "chunk file") for chunk in manifest.chunks]
    datasets = DatasetCollector(namespace)
    run: _Record | None = None
    for name in files:
        for line in iter_chunk_records(manifest_path.parent / name):
            record = _DECODE(line)
            if record.record_type == "node":
                datasets.node(record.node_id, record.node_type, record.plugin_name, record.config)
            elif record.record_type == "artifact":
                datasets.artifact(record.path_or_uri, record.size_bytes)
            elif record.record_type == "run":
                run = record
    if run is None or run.started_at is None or run.completed_at is None:
        raise ExportInvalidError(f"{manifest_path.parent} holds no complete run record")
    config = run.config if isinstance(run.config, Mapping) else {}
    start = RunStart(run.run_id, _utc(run.started_at), config)
    end = RunEnd(
        start=start,
        status=run.status,
        completed_at=_utc(run.completed_at),
        export_location=manifest_path.parent.resolve().as_uri(),
        manifest_sha256=hashlib.sha256(raw).hexdigest(),
        merkle_root=manifest.merkle_root,
        record_count=manifest.total_record_count,
        chunk_count=manifest.chunk_count,
        journal_head_seq=manifest.journal_head.seq,
        signature_algorithm=None if manifest.signature is None else manifest.signature.algorithm,
        inputs=list(datasets.inputs.values()),
        outputs=list(datasets.outputs.values()),
    )
    return [
        start_event(
            start, namespace=namespace, job_name=job_name, export_location=end.export_location
        ),
        end_event(end, namespace=namespace, job_name=job_name),
    ]


def to_json(event: RunEvent) -> str:
    """The event as the client serializes it (sorted keys, nulls dropped)."""
    return Serde.to_json(event)


def event_type(event: RunEvent) -> str:
    return event.eventType.value if event.eventType is not None else "OTHER"


def _redacted(url: str) -> str:
    """``url`` without user:password, query or fragment, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


_USERINFO: Final = re.compile(r"(?<=://)[^/\s@]+@")
_QUERY: Final = re.compile(r"(?<=://)([^\s'\"?#]*)[?#][^\s'\"]*")


def _scrub(message: str) -> str:
    """An error message without credentials: URLs lose user:password, query and fragment."""
    return _QUERY.sub(r"\1", _USERINFO.sub("", message))


def emit(
    events: Iterable[RunEvent],
    *,
    out: Path | str | None = None,
    url: str | None = None,
    endpoint: str = "api/v1/lineage",
    api_key: str | None = None,
    timeout: float = 5.0,
) -> str:
    """Send ``events`` with the client's file transport (``out``, appending one JSON event
    per line) or HTTP transport (``url`` + ``endpoint``; ``api_key`` as a Bearer token).

    Returns where they went (without credentials); raises
    :class:`~auditjournal.errors.LineageEmitError` if the client cannot write or send.
    """
    transport: Transport
    if out is not None:
        target = str(Path(out))
        transport = FileTransport(FileConfig(log_file_path=target, append=True))
    elif url is not None:
        target = _redacted(url.rstrip("/") + "/" + endpoint.lstrip("/"))
        config: dict[str, Any] = {
            "url": url,
            "endpoint": endpoint,
            "timeout": timeout,
            "retry": _HTTP_RETRY,
        }
        if api_key:
            config["auth"] = {"type": "api_key", "apiKey": api_key}
        transport = HttpTransport(HttpConfig.from_dict(config))
    else:
        raise LineageEmitError("give a file (out=) or an endpoint (url=) for the events")
    client = OpenLineageClient(transport=transport)
    if client.transport.kind == "noop":
        raise LineageEmitError("OPENLINEAGE_DISABLED is set: the client sends nothing")
    for event in events:
        try:
            # the client adds facets (its tags) to the event it is given: send a copy
            client.emit(copy.deepcopy(event))
        except (OSError, RuntimeError, ValueError) as exc:
            # the transports raise what their libraries raise (requests, file I/O); the
            # message must not carry credentials from the URL
            message = _scrub(str(exc))
            raise LineageEmitError(
                f"cannot send OpenLineage events to {target}: {message}"
            ) from exc
    return target
