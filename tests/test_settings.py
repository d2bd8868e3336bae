"""Bad settings are refused when they are given, with InvalidSettingsError, before anything is
created (issue 10, item 8)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from auditjournal import (
    AuditStore,
    ExportSettings,
    InvalidEventError,
    InvalidSettingsError,
)
from auditjournal.journal.files import MIN_SEGMENT_BYTES


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("segment_bytes", 0),
        ("segment_bytes", -1),
        ("segment_bytes", MIN_SEGMENT_BYTES - 1),
        ("segment_bytes", 4096.0),
        ("segment_bytes", True),
        ("segment_bytes", "64M"),
        ("max_payload_bytes", -1),
        ("max_payload_bytes", 0),
        ("max_payload_bytes", 1.5),
        ("max_payload_bytes", None),
        ("flush_interval", 0),
        ("flush_interval", -0.01),
        ("flush_interval", math.nan),
        ("flush_interval", math.inf),
        ("flush_interval", "0.01"),
        ("flush_interval", True),
        ("durability", "fast"),
        ("durability", ["batch"]),
        ("database_url", 5),
        ("database_url", ""),
    ],
)
def test_bad_store_setting_is_refused_before_anything_is_created(
    tmp_path: Path, option: str, value: Any
) -> None:
    root = tmp_path / "audit"
    with pytest.raises(InvalidSettingsError, match=option):
        AuditStore.open(root, **{option: value})
    assert not root.exists()


def test_bad_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidSettingsError, match="root"):
        AuditStore.open(5)  # type: ignore[arg-type]


def test_smallest_settings_are_accepted(tmp_path: Path) -> None:
    store = AuditStore.open(
        tmp_path / "audit",
        segment_bytes=MIN_SEGMENT_BYTES,
        max_payload_bytes=1,
        flush_interval=1,
    )
    with store:
        assert store.segment_bytes == MIN_SEGMENT_BYTES


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("path_prefix", 5),
        ("path_prefix", ""),
        ("path_prefix", b"out/a"),
        ("path_prefix", "out/\x00a"),
        ("signing_key_file", ["key.pem"]),
        ("include_payloads", 1),
        ("include_payloads", "yes"),
        ("chunk_size_bytes", 63),
        ("chunk_size_bytes", 1e7),
        ("chunk_size_bytes", True),
        ("sign", "rsa"),
        ("sign", 5),
    ],
)
def test_bad_export_setting_is_refused_at_construction(option: str, value: Any) -> None:
    with pytest.raises(InvalidSettingsError, match=option):
        ExportSettings(**{option: value})


def test_export_settings_take_a_path_as_its_str(tmp_path: Path) -> None:
    settings = ExportSettings(path_prefix=tmp_path / "out" / "a")  # type: ignore[arg-type]
    assert settings.path_prefix == str(tmp_path / "out" / "a")
    assert type(settings.path_prefix) is str


def test_settings_errors_stay_catchable_as_invalid_event_errors() -> None:
    # InvalidEventError was raised for bad settings before InvalidSettingsError existed
    assert issubclass(InvalidSettingsError, InvalidEventError)
    with pytest.raises(InvalidEventError):
        ExportSettings(chunk_size_bytes=1)


def test_ed25519_needs_a_key_file() -> None:
    with pytest.raises(InvalidSettingsError, match="signing_key_file"):
        ExportSettings(sign="ed25519")


def test_bad_export_and_sql_arguments_of_start_run(tmp_path: Path) -> None:
    with AuditStore.open(tmp_path / "audit") as store:
        with pytest.raises(InvalidSettingsError, match="export"):
            store.start_run(run_id="r1", export={"chunk_size_bytes": 100})  # type: ignore[arg-type]
        with pytest.raises(InvalidSettingsError, match="sql"):
            store.start_run(run_id="r1", export=None, sql="yes")  # type: ignore[arg-type]
        assert store.run_ids() == []
