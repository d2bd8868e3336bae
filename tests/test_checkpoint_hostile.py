"""A damaged export checkpoint is ignored and the export rebuilt (issue 10, item 6;
docs/durability.md): wrong types, a member named twice, a chunk name that leaves the
export, a journal position the journal does not have, a FIFO. Never a crash, never a
write outside the export, and the rebuilt export is byte-identical to a clean one."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from auditjournal import AuditStore, ExportSettings, replay_export
from auditjournal.export.checkpoint import encode_checkpoint

RUN = "run-1"
SETTINGS = ExportSettings(chunk_size_bytes=2000)
Edit = Callable[[dict[str, Any]], None]


def record(root: Path) -> None:
    with AuditStore.open(root) as store:
        run = store.start_run(run_id=RUN, config={"a": 1}, export=None, sql=False)
        src = run.register_node(plugin_name="src", node_type="source")
        for i in range(12):
            run.create_row(source_node_id=src, row_index=i, data={"i": i, "text": "x" * 200})
        run.complete()


def project(store: AuditStore, steps: int | None = None) -> None:
    projector = store.export_projector(RUN, SETTINGS)
    try:
        if steps is None:
            assert projector.run(follow=False) is not None
        else:
            for _ in range(steps):
                projector.step(limit=4)
            projector._write_checkpoint()
    finally:
        projector.close()


def files(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in sorted(directory.iterdir()) if not p.name.startswith(".")
    }


@pytest.fixture
def half_done(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A root whose export is half projected, with its checkpoint; and the clean export."""
    root = tmp_path / "audit"
    record(root)
    with AuditStore.open(root) as store:
        prefix = tmp_path / "clean" / "audit_trail"
        replay_export(
            journal_dir=store.journal_dir(RUN),
            run_id=RUN,
            payloads=store.payloads,
            settings=SETTINGS,
            prefix=prefix,
        )
        project(store, steps=2)
    return root, files(prefix.parent)


def checkpoint_of(root: Path) -> Path:
    return root / "runs" / RUN / "export.state" / "audit_trail.checkpoint.json"


def read_state(checkpoint: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(checkpoint.read_text())
    del state["checksum"]
    return state


def write_state(checkpoint: Path, state: dict[str, Any]) -> None:
    """As a forger would: with a checksum that holds, so only the values can tell."""
    checkpoint.write_bytes(encode_checkpoint(state))


def seal_text(body: bytes) -> bytes:
    """A checkpoint's text (a JSON object) with a checksum that holds over these bytes."""
    digest = hashlib.sha256(body).hexdigest().encode()
    return body[:-1] + b',"checksum":"' + digest + b'"}'


def set_path(state: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        state = state[key]
    state[last] = value


WRONG_TYPES = [
    ("position", "x"),
    ("position.chain", 5),
    ("position.offset", "10"),
    ("writer", []),
    ("writer.closed", 5),
    ("writer.merkle", [[1, 2, 3]]),
    ("writer.current", {"file": 1}),
    ("records", None),
    ("records.open_states", [1]),
    ("records.run", {"started_seq": "1"}),
    ("sealed", 5),
    ("sealed", {"manifest_path": 1}),
]
IMPLAUSIBLE = [
    ("writer.current.file", "../../../outside.json"),
    ("writer.current.bytes", -5),
    ("writer.current_sha256", "zz"),
    ("writer.records", 10**6),
    ("writer.merkle", [[3, "00" * 32]]),
    ("position.chain", "00" * 32),
    ("position.offset", 7),
    ("position.next_seq", 2),
]


@pytest.mark.parametrize(("where", "value"), WRONG_TYPES + IMPLAUSIBLE)
def test_a_checkpoint_the_projector_cannot_have_written_rebuilds(
    half_done: tuple[Path, dict[str, bytes]], where: str, value: Any
) -> None:
    root, clean = half_done
    checkpoint = checkpoint_of(root)
    state = read_state(checkpoint)
    set_path(state, where, value)
    write_state(checkpoint, state)
    outside = root / "runs" / "outside.json"  # where "../../../outside.json" points
    outside.write_text("untouched")
    with AuditStore.open(root) as store:
        project(store)
        assert files(store.export_dir(RUN)) == clean
    assert outside.read_text() == "untouched"


def test_a_checkpoint_naming_a_member_twice_rebuilds(
    half_done: tuple[Path, dict[str, bytes]],
) -> None:
    root, clean = half_done
    checkpoint = checkpoint_of(root)
    body = msgspec.json.encode(read_state(checkpoint))
    assert body.startswith(b'{"version":3,')
    forged = b'{"version":3,"version":3,' + body[len(b'{"version":3,') :]
    checkpoint.write_bytes(seal_text(forged))  # a checksum that holds over the repeat
    with AuditStore.open(root) as store:
        projector = store.export_projector(RUN, SETTINGS)
        try:
            assert projector.position.next_seq == 1, "the checkpoint must not be used"
            assert projector.run(follow=False) is not None
        finally:
            projector.close()
        assert files(store.export_dir(RUN)) == clean


def test_a_fifo_checkpoint_rebuilds(half_done: tuple[Path, dict[str, bytes]]) -> None:
    root, clean = half_done
    checkpoint = checkpoint_of(root)
    checkpoint.unlink()
    os.mkfifo(checkpoint)
    done = subprocess.run(
        [sys.executable, "-m", "auditjournal", "project", str(root), "--run", RUN],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    # the library does the same with the test's settings: a clean export
    os.unlink(checkpoint_of(root))
    os.mkfifo(checkpoint_of(root))
    for name in files(root / "runs" / RUN / "export"):
        (root / "runs" / RUN / "export" / name).unlink()
    with AuditStore.open(root) as store:
        project(store)
    assert files(root / "runs" / RUN / "export") == clean


def test_a_checkpoint_pointing_at_a_copy_outside_the_export_is_not_followed(
    half_done: tuple[Path, dict[str, bytes]],
) -> None:
    """Size and hash match the copy, so only the name tells: records must not be appended
    to a file outside the export."""
    root, clean = half_done
    checkpoint = checkpoint_of(root)
    state = read_state(checkpoint)
    current = root / "runs" / RUN / "export" / state["writer"]["current"]["file"]
    outside = root / "runs" / "outside.json"
    outside.write_bytes(current.read_bytes()[: state["writer"]["current"]["bytes"]])
    before = outside.read_bytes()
    state["writer"]["current"]["file"] = "../../outside.json"
    write_state(checkpoint, state)
    with AuditStore.open(root) as store:
        project(store)
        assert files(store.export_dir(RUN)) == clean
    assert outside.read_bytes() == before


def test_project_rebuilds_after_a_checkpoint_of_wrong_types(tmp_path: Path) -> None:
    """Through the command line, as the issue found it (it crashed with a TypeError)."""
    root = tmp_path / "audit"
    record(root)
    with AuditStore.open(root) as store:
        projector = store.export_projector(RUN, ExportSettings())  # what project uses
        try:
            projector.step(limit=5)
            projector._write_checkpoint()
        finally:
            projector.close()
    checkpoint = checkpoint_of(root)
    state = read_state(checkpoint)
    state["writer"]["closed"] = 5
    write_state(checkpoint, state)
    done = subprocess.run(
        [sys.executable, "-m", "auditjournal", "project", str(root), "--run", RUN, "--no-sql"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    verified = subprocess.run(
        [sys.executable, "-m", "auditjournal", "verify", str(root / "runs" / RUN / "export")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stdout


def test_a_checkpoint_whose_checksum_fails_rebuilds(
    half_done: tuple[Path, dict[str, bytes]],
) -> None:
    """A flipped hex digit in a Merkle node is a plausible value: only the checksum tells
    (without it the export was sealed with a wrong Merkle root; found by fuzzing)."""
    root, clean = half_done
    checkpoint = checkpoint_of(root)
    raw = checkpoint.read_bytes()
    node = json.loads(raw)["writer"]["merkle"][0][1].encode()
    flipped = node[:-1] + (b"0" if node[-1:] != b"0" else b"1")
    checkpoint.write_bytes(raw.replace(node, flipped, 1))
    with AuditStore.open(root) as store:
        project(store)
        assert files(store.export_dir(RUN)) == clean


def test_a_checkpoint_naming_a_payload_the_store_never_held_rebuilds(tmp_path: Path) -> None:
    """An open state's input ref (checksum and all consistent) that the payload store does
    not hold cannot come from this store's journal: rebuild instead of failing at the seal."""
    root = tmp_path / "audit"
    with AuditStore.open(root) as store:
        run = store.start_run(run_id=RUN, export=None, sql=False)
        src = run.register_node(plugin_name="src", node_type="source")
        t = run.register_node(plugin_name="t", node_type="transform")
        states = []
        for i in range(3):
            row = run.create_row(source_node_id=src, row_index=i, data={"i": i})
            tok = run.create_token(row_id=row)
            states.append(
                run.begin_node_state(token_id=tok, node_id=t, step_index=1, input_data={"in": i})
            )
        for st in states:
            run.complete_node_state(st, status="completed", output_data={"out": 1}, duration_ms=1.0)
        run.complete()
    with AuditStore.open(root) as store:
        prefix = tmp_path / "clean" / "audit_trail"
        replay_export(
            journal_dir=store.journal_dir(RUN),
            run_id=RUN,
            payloads=store.payloads,
            settings=SETTINGS,
            prefix=prefix,
        )
        project(store, steps=3)  # 12 events: every state started, none completed
    clean = files(prefix.parent)
    checkpoint = checkpoint_of(root)
    for ref in ("ab" * 32, "zz"):
        state = read_state(checkpoint)
        assert state["records"]["open_states"], "the checkpoint holds open states"
        for open_state in state["records"]["open_states"].values():
            open_state["input_data_ref"] = ref
        write_state(checkpoint, state)
        with AuditStore.open(root) as store:
            project(store)
        assert files(root / "runs" / RUN / "export") == clean
        with AuditStore.open(root) as store:  # back to a half-done export for the next ref
            for path in (root / "runs" / RUN / "export").iterdir():
                path.unlink()
            project(store, steps=3)
