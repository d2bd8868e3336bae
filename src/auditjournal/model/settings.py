"""Settings shared by the recorder and the projectors."""

from __future__ import annotations

import os
from typing import Final, Literal
from urllib.parse import urlsplit

import msgspec

from ..errors import InvalidSettingsError

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY_RECORDS",
    "DEFAULT_CHUNK_SIZE_BYTES",
    "SIGNING_ALGORITHMS",
    "ExportSettings",
    "OpenLineageSettings",
]

DEFAULT_CHUNK_SIZE_BYTES: Final = 10_000_000
DEFAULT_CHECKPOINT_EVERY_RECORDS: Final = 10_000
SIGNING_ALGORITHMS: Final = ("hmac-sha256", "ed25519")
_MIN_CHUNK: Final = 64

SignAlgorithm = Literal["hmac-sha256", "ed25519"]


class OpenLineageSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where a live run sends its OpenLineage START and COMPLETE/FAIL/ABORT events
    (``ExportSettings(openlineage=...)``; needs the extra ``auditjournal[openlineage]``).

    * ``file`` -- append one JSON event per line to this file (the client's file
      transport), or
    * ``url`` -- post them to this OpenLineage HTTP endpoint (``url`` + ``endpoint``),
      with the API key in the ``OPENLINEAGE_API_KEY`` environment variable, if set,
      as a Bearer token: no key is ever part of the settings;
    * ``namespace`` / ``job_name`` -- the job (the name defaults to the run config's
      ``pipeline``/``job``/``job_name``/``name``);
    * ``timeout`` -- seconds per HTTP request.

    Exactly one of ``file`` and ``url``. A URL with ``user:password@``, a query or a
    fragment is refused (credentials belong in the environment). A bad setting raises
    :class:`InvalidSettingsError` at construction.
    """

    file: str | None = None
    url: str | None = None
    endpoint: str = "api/v1/lineage"
    namespace: str = "auditjournal"
    job_name: str | None = None
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.file is not None:
            text = os.fspath(self.file) if isinstance(self.file, os.PathLike) else self.file
            if type(text) is not str or not text or "\x00" in text:
                raise InvalidSettingsError(f"openlineage file must be a path, got {self.file!r}")
            msgspec.structs.force_setattr(self, "file", text)
        if (self.file is None) == (self.url is None):
            raise InvalidSettingsError("openlineage needs exactly one of file= and url=")
        if self.url is not None:
            parts = urlsplit(self.url) if type(self.url) is str else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidSettingsError(
                    f"openlineage url must be an http(s) URL, got {self.url!r}"
                )
            if parts.username is not None or parts.query or parts.fragment:
                raise InvalidSettingsError(
                    "openlineage url must not carry credentials, a query or a fragment "
                    "(put an API key in OPENLINEAGE_API_KEY)"
                )
        for name in ("endpoint", "namespace"):
            value = getattr(self, name)
            if type(value) is not str or not value:
                raise InvalidSettingsError(f"openlineage {name} must be a non-empty str")
        if self.job_name is not None and (type(self.job_name) is not str or not self.job_name):
            raise InvalidSettingsError("openlineage job_name must be None or a non-empty str")
        if type(self.timeout) not in (int, float) or not 0 < self.timeout <= 600:
            raise InvalidSettingsError(
                f"openlineage timeout must be in (0, 600] s, got {self.timeout!r}"
            )


class ExportSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How the auditor's export is written (names as in the Landscape export design).

    * ``include_payloads`` -- inline payloads into records (``row.source_data``,
      ``node_state.input_data``/``output_data``, ...);
    * ``chunk_size_bytes`` -- roll to a new chunk before a chunk would exceed
      this size; ``None`` writes one file, ``audit_trail.json``;
    * ``path_prefix`` -- where files go; ``None`` means
      ``<root>/runs/<run_id>/export/audit_trail`` (a ``pathlib.Path`` is kept as its str);
    * ``sign`` / ``signing_key_file`` -- manifest signature (``hmac-sha256`` with
      the key in ``AUDITJOURNAL_SIGNING_KEY``, or ``ed25519`` with a PEM key file);
    * ``checkpoint_every_records`` -- a live checkpoint (C2SP signed note of the
      export's Merkle tree so far, signed when ``sign='ed25519'``) at every multiple of
      this many records; ``None``: none;
    * ``timestamp_url`` -- an RFC 3161 time-stamping authority asked for a token over
      the manifest's SHA-256 at sealing (``audit_trail.manifest.tsr``); with
      ``timestamp_required=False`` a TSA that fails leaves the export sealed without a
      token (logged, and in ``export_sealed``) instead of failing the seal;
    * ``openlineage`` -- :class:`OpenLineageSettings`: the run emits its OpenLineage
      START event when it starts and its end event once the export is sealed
      (``docs/report.md``). Not part of the recorded settings: it says where
      news of the run goes, not how its evidence is written.

    A setting of the wrong type or out of range raises :class:`InvalidSettingsError`
    at construction.
    """

    include_payloads: bool = True
    chunk_size_bytes: int | None = DEFAULT_CHUNK_SIZE_BYTES
    path_prefix: str | None = None
    sign: SignAlgorithm | None = None
    signing_key_file: str | None = None
    checkpoint_every_records: int | None = DEFAULT_CHECKPOINT_EVERY_RECORDS
    timestamp_url: str | None = None
    timestamp_required: bool = True
    openlineage: OpenLineageSettings | None = None

    def __post_init__(self) -> None:
        if self.openlineage is not None and not isinstance(self.openlineage, OpenLineageSettings):
            raise InvalidSettingsError(
                f"openlineage must be None or OpenLineageSettings, got {self.openlineage!r}"
            )
        if type(self.include_payloads) is not bool:
            raise InvalidSettingsError(
                f"include_payloads must be a bool, got {self.include_payloads!r}"
            )
        size = self.chunk_size_bytes
        if size is not None and (type(size) is not int or size < _MIN_CHUNK):
            raise InvalidSettingsError(
                f"chunk_size_bytes must be None or an int >= {_MIN_CHUNK}, got {size!r}"
            )
        every = self.checkpoint_every_records
        if every is not None and (type(every) is not int or every < 1):
            raise InvalidSettingsError(
                f"checkpoint_every_records must be None or an int >= 1, got {every!r}"
            )
        url = self.timestamp_url
        if url is not None and (
            type(url) is not str or not url.startswith(("http://", "https://"))
        ):
            raise InvalidSettingsError(f"timestamp_url must be None or an http(s) URL, got {url!r}")
        if type(self.timestamp_required) is not bool:
            raise InvalidSettingsError(
                f"timestamp_required must be a bool, got {self.timestamp_required!r}"
            )
        if self.sign is not None and self.sign not in SIGNING_ALGORITHMS:
            raise InvalidSettingsError(
                f"sign must be None or one of {list(SIGNING_ALGORITHMS)}, got {self.sign!r}"
            )
        for name in ("path_prefix", "signing_key_file"):
            value = getattr(self, name)
            if value is not None:
                # a pathlib.Path is welcome; it is kept as its str, the declared type
                text = os.fspath(value) if isinstance(value, os.PathLike) else value
                if type(text) is not str or not text or "\x00" in text:
                    raise InvalidSettingsError(
                        f"{name} must be None or a non-empty path (str or os.PathLike), "
                        f"got {value!r}"
                    )
                msgspec.structs.force_setattr(self, name, text)
        if self.sign == "ed25519" and not self.signing_key_file:
            raise InvalidSettingsError("sign='ed25519' needs signing_key_file (a PEM PKCS#8 key)")

    def describe(self) -> dict[str, object]:
        """The settings as recorded in run_started and the export checkpoint (no key material).
        The settings added by issue 16 appear only when they differ from their defaults, so a
        run with the defaults records exactly what it did before them."""
        described: dict[str, object] = {
            "include_payloads": self.include_payloads,
            "chunk_size_bytes": self.chunk_size_bytes,
            "sign": self.sign,
            "signing_key_file": self.signing_key_file,
        }
        if self.checkpoint_every_records != DEFAULT_CHECKPOINT_EVERY_RECORDS:
            described["checkpoint_every_records"] = self.checkpoint_every_records
        if self.timestamp_url is not None:
            described["timestamp_url"] = self.timestamp_url
            described["timestamp_required"] = self.timestamp_required
        return described
