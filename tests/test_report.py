"""The report page's data and HTML, without a browser (test_report_browser.py opens it).

Checked here: the numbers the page is given equal what the export's records
say (read independently with ``json``); tokens per edge through forks, joins
and retries; the layered layout; that no data can end a ``<script>`` block;
the Content-Security-Policy allows exactly the page's own script and style;
the embedding limit; reports of tampered exports; the CLI's wiring.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from auditjournal.errors import OutputPathError, StorageError
from auditjournal.report import write_report
from auditjournal.report.html import script_json
from auditjournal.report.layout import NODE_WIDTH, layers, layout
from auditjournal.report.summarize import summarize
from report_runs import XSS, ForkRun, XssRun, read_records, record_fork_run, record_xss_run
from shared import run_cli


@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory) -> ForkRun:
    return record_fork_run(tmp_path_factory.mktemp("fork") / "audit")


@pytest.fixture(scope="module")
def xss(tmp_path_factory: pytest.TempPathFactory) -> XssRun:
    return record_xss_run(tmp_path_factory.mktemp("xss") / "audit")


def data_blocks(page: str) -> dict[str, Any]:
    """The page's JSON blocks, parsed as a browser's JSON.parse would."""
    found = re.findall(r'<script type="application/json" id="([a-z-]+)">(.*?)</script>', page, re.S)
    return {name: json.loads(text) for name, text in found}


# -- the data -------------------------------------------------------------------------------


def test_counts_match_the_records(fork: ForkRun, tmp_path: Path) -> None:
    records = read_records(fork.export)
    result = write_report(fork.export, tmp_path / "r.html")
    data = result.data
    assert result.ok and data.verification.ok
    assert data.counts == dict(Counter(r["record_type"] for r in records))
    states = [r for r in records if r["record_type"] == "node_state"]
    assert data.states_by_status == dict(Counter(r["status"] for r in states))
    outcomes = [r for r in records if r["record_type"] == "token_outcome"]
    assert data.outcomes == dict(Counter(r["outcome"] for r in outcomes))
    assert data.run.run_id == fork.run_id and data.run.status == "completed"
    assert data.run.config == {"pipeline": "fork-join", "secret_hint": "see vault"}
    for node in data.graph.nodes:
        mine = Counter(r["status"] for r in states if r["node_id"] == node.node_id)
        assert node.states == dict(mine)
    assert result.records_embedded and result.record_count == len(records)


def test_tokens_per_edge_through_fork_join_and_retry(fork: ForkRun, tmp_path: Path) -> None:
    data = write_report(fork.export, tmp_path / "r.html").data
    by_id = {e.edge_id: e for e in data.graph.edges}
    for name, edge_id in fork.edges.items():
        assert by_id[edge_id].tokens == 3, name  # three rows, each along every edge once
    routed = {name: by_id[fork.edges[name]].routing_events for name in fork.edges}
    assert routed == {
        "src-split": 0,
        "split-left": 3,
        "split-right": 3,
        "left-join": 0,
        "right-join": 0,
        "join-out": 0,
    }
    assert data.graph.unattributed == 0


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()


def test_ambiguous_moves_are_counted_apart() -> None:
    """Two edges between the same nodes and no routing event: the move is unattributed."""
    run = [
        {"record_type": "node", "node_id": "a", "node_type": "source"},
        {"record_type": "node", "node_id": "b", "node_type": "transform"},
        {"record_type": "edge", "edge_id": "e1", "from_node_id": "a", "to_node_id": "b"},
        {"record_type": "edge", "edge_id": "e2", "from_node_id": "a", "to_node_id": "b"},
        {"record_type": "row", "row_id": "r", "source_node_id": "a"},
        {"record_type": "token", "token_id": "t", "row_id": "r"},
        {"record_type": "node_state", "state_id": "s", "token_id": "t", "node_id": "b"},
    ]
    summary = summarize([_line(r) for r in run], end=None)
    assert summary.unattributed == 1
    assert [e.tokens for e in summary.edges.values()] == [0, 0]
    assert summary.unreadable_lines == 0
    assert summarize([b"{not json", *(_line(r) for r in run)], end=None).unreadable_lines == 1


def test_timeline_bins_hold_every_state(fork: ForkRun, tmp_path: Path) -> None:
    data = write_report(fork.export, tmp_path / "r.html").data
    timeline = data.timeline
    assert timeline.start is not None and timeline.end == data.run.sealed_at
    nodes = {n.node_id: n for n in data.graph.nodes}
    assert {lane.node_id for lane in timeline.lanes} == {
        n.node_id for n in data.graph.nodes if n.states
    }
    for lane in timeline.lanes:
        binned = {status: sum(counts) for status, counts in lane.bins.items()}
        assert binned == nodes[lane.node_id].states
        assert all(len(counts) == timeline.bin_count for counts in lane.bins.values())


# -- the layout -----------------------------------------------------------------------------


def test_layers_follow_the_longest_path() -> None:
    edges = [("s", "a"), ("a", "b"), ("s", "b"), ("b", "k")]
    assert layers(["s", "a", "b", "k"], edges) == {"s": 0, "a": 1, "b": 2, "k": 3}
    # a cycle goes one layer past the rest instead of looping forever
    assert layers(["x", "y", "z"], [("x", "y"), ("y", "z"), ("z", "y")]) == {
        "x": 0,
        "y": 1,
        "z": 1,
    }


def test_layout_places_layers_left_to_right_without_overlap() -> None:
    nodes = ["src", "gate", "s1", "s2", "s3"]
    edges = [("src", "gate"), ("gate", "s1"), ("gate", "s2"), ("gate", "s3"), ("gate", "s1")]
    shape = layout(nodes, edges)
    xs = {n: shape.position[n][0] for n in nodes}
    assert xs["src"] < xs["gate"] < xs["s1"] == xs["s2"] == xs["s3"]
    ys = sorted(shape.position[n][1] for n in ("s1", "s2", "s3"))
    assert ys[0] < ys[1] < ys[2]
    assert all(x >= 0 and x + NODE_WIDTH <= shape.width for x, _ in shape.position.values())
    assert all(e.path.startswith("M") for e in shape.edges)
    # two edges between gate and s1: their labels do not sit on each other
    assert shape.edges[1].label_y != shape.edges[4].label_y


# -- the page -------------------------------------------------------------------------------


def test_no_value_can_end_a_script_block(xss: XssRun, tmp_path: Path) -> None:
    out = tmp_path / "xss.html"
    write_report(xss.export, out)
    page = out.read_text(encoding="utf-8")
    # the page's own three script elements, and no other
    assert page.count("<script") == 3
    assert page.count("</script>") == 3
    assert "<!--" not in page and "onerror" in page  # the payload is there, inert
    blocks = data_blocks(page)
    assert blocks["aj-data"]["run"]["config"] == {"pipeline": XSS}
    lines = blocks["aj-records"]
    assert lines == [line.decode() for line in _export_lines(xss.export)]
    rows = [json.loads(line) for line in lines if '"record_type":"row"' in line]
    assert rows[0]["source_data"] == {"name": XSS, "n": 1}


def _export_lines(export: Path) -> list[bytes]:
    return [_line(r) for r in read_records(export)]


def test_embedded_lines_are_the_chunk_lines_byte_for_byte(fork: ForkRun, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    write_report(fork.export, out)
    lines = data_blocks(out.read_text(encoding="utf-8"))["aj-records"]
    raw = []
    for chunk in sorted(fork.export.glob("audit_trail.[0-9]*.json")):
        for line in chunk.read_bytes().split(b"\n")[1:-2]:
            raw.append(line[1:] if line.startswith(b",") else line)
    assert [line.encode("utf-8") for line in lines] == raw


def test_script_json_escapes_every_angle_bracket() -> None:
    encoded = json.dumps({"k": "</script><!--<script>", "<": 1}).encode()
    text = script_json(encoded)
    assert "<" not in text
    assert json.loads(text) == {"k": "</script><!--<script>", "<": 1}


def test_csp_allows_exactly_the_inline_script_and_style(fork: ForkRun, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    write_report(fork.export, out)
    page = out.read_text(encoding="utf-8")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None
    policy = csp.group(1).replace("&#x27;", "'")
    script = re.findall(r"<script>(.*?)</script>", page, re.S)
    style = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert len(script) == 1 and len(style) == 1

    def sha(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    assert f"script-src {sha(script[0])};" in policy
    assert f"style-src {sha(style[0])};" in policy
    assert policy.startswith("default-src 'none';")
    # nothing in the page reaches the network
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    assert "innerHTML" not in script[0] and "eval(" not in script[0]


def test_above_the_embed_limit_the_page_is_a_summary(fork: ForkRun, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = write_report(fork.export, out, embed_limit_bytes=1000)
    assert not result.records_embedded
    blocks = data_blocks(out.read_text(encoding="utf-8"))
    assert "aj-records" not in blocks
    data = blocks["aj-data"]
    assert data["records"]["embedded"] is False
    assert "1,000 bytes" in data["records"]["note"]
    records = read_records(fork.export)
    assert data["counts"] == dict(Counter(r["record_type"] for r in records))
    assert all(e["tokens"] == 3 for e in data["graph"]["edges"])


def test_a_tampered_export_gets_a_report_that_says_so(fork: ForkRun, tmp_path: Path) -> None:
    damaged = tmp_path / "export"
    shutil.copytree(fork.export, damaged)
    chunk = damaged / "audit_trail.001.json"
    chunk.write_bytes(chunk.read_bytes().replace(b'"seq":', b'"seq": ', 1))
    (damaged / "audit_trail.003.json").unlink()
    result = write_report(damaged, tmp_path / "r.html")
    assert not result.ok and result.summary.endswith("INVALID")
    verdicts = {f.file: f for f in result.data.verification.files}
    assert not verdicts["audit_trail.001.json"].valid
    assert verdicts["audit_trail.003.json"].reason == "missing"
    assert verdicts["audit_trail.000.json"].valid
    assert (tmp_path / "r.html").stat().st_size == result.bytes


def test_the_report_never_replaces_a_file_of_the_export(fork: ForkRun, tmp_path: Path) -> None:
    copy = tmp_path / "export"
    shutil.copytree(fork.export, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    for name in ("audit_trail.manifest.json", "audit_trail.000.json", "audit_trail.sha256"):
        with pytest.raises(OutputPathError, match="file of the export"):
            write_report(copy, copy / ".." / "export" / name)
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before
    write_report(copy, copy / "report.html")  # beside the files is fine
    assert write_report(copy, tmp_path / "r.html").ok


def test_an_unwritable_target_is_a_storage_error(fork: ForkRun, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot write"):
        write_report(fork.export, tmp_path / "missing" / "r.html")


# -- the command ----------------------------------------------------------------------------


def test_cli_report(fork: ForkRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.html"
    code, stdout, err = run_cli(capsys, "report", fork.export, "--out", out)
    assert code == 0, err
    assert stdout.splitlines()[0].startswith(f"{out}: ") and "records embedded" in stdout
    assert stdout.splitlines()[1].endswith(": VALID")
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")

    code, stdout, _ = run_cli(
        capsys,
        "report",
        fork.export / "audit_trail.manifest.json",
        "--out",
        out,
        "--embed-limit",
        "0",
    )
    assert code == 0 and "summary only" in stdout

    damaged = tmp_path / "export"
    shutil.copytree(fork.export, damaged)
    (damaged / "audit_trail.000.json").write_bytes(b"[\n]\n")
    code, stdout, _ = run_cli(capsys, "report", damaged, "--out", tmp_path / "bad.html")
    assert code == 1 and stdout.splitlines()[-1].endswith(": INVALID")
    assert (tmp_path / "bad.html").exists()

    for args, fragment in (
        (("report", tmp_path / "nope", "--out", out), "does not exist"),
        (("report", tmp_path, "--out", out), "manifest"),
        (("report", fork.export), "--out"),
    ):
        code, _, err = run_cli(capsys, *args)
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in err

    manifest = fork.export / "audit_trail.manifest.json"
    code, _, err = run_cli(capsys, "report", fork.export, "--out", manifest)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "file of the export" in err

    code, _, err = run_cli(capsys, "report", fork.export, "--out", tmp_path / "missing" / "r.html")
    # a missing directory is the caller's mistake, found before any work (issue 15 item 1)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "does not exist" in err
