"""Settings shared by the recorder and the projectors."""

from __future__ import annotations

import os
from typing import Final, Literal

import msgspec

from ..errors import InvalidSettingsError

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY_RECORDS",
    "DEFAULT_CHUNK_SIZE_BYTES",
    "SIGNING_ALGORITHMS",
    "ExportSettings",
]

DEFAULT_CHUNK_SIZE_BYTES: Final = 10_000_000
DEFAULT_CHECKPOINT_EVERY_RECORDS: Final = 10_000
SIGNING_ALGORITHMS: Final = ("hmac-sha256", "ed25519")
_MIN_CHUNK: Final = 64

SignAlgorithm = Literal["hmac-sha256", "ed25519"]


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
      token (logged, and in ``export_sealed``) instead of failing the seal.

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

    def __post_init__(self) -> None:
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
