"""The report page in a real headless Chromium (Debian's ``chromium``; skipped without it).

The page loads without errors or requests, shows the export's numbers, finds
rows by id, index and field value and tells their story, re-hashes its
embedded records, and checks chunk files given to it with WebCrypto: valid
for the real ones, INVALID for a tampered one. Values built to break out of
the page (``</script>``, ``onerror=``) stay text.
"""

from __future__ import annotations

import base64
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from auditjournal import ExportSettings
from auditjournal.demo import run_demo
from auditjournal.report import write_report
from browser import Page, chromium, open_page
from report_runs import XSS, XssRun, read_records, record_xss_run


@dataclass(frozen=True)
class Demo:
    export: Path
    report: Path
    records: list[dict[str, Any]]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    base = tmp_path_factory.mktemp("demo")
    run = run_demo(base / "audit", rows=60, export=ExportSettings(chunk_size_bytes=50_000))
    assert run.report.ok
    report = base / "report.html"
    write_report(run.export_dir, report)
    return Demo(run.export_dir, report, read_records(run.export_dir))


def export_files(export: Path) -> list[Path]:
    return sorted(p for p in export.iterdir() if not p.name.startswith("."))


def no_problems(seen: Page) -> None:
    assert seen.problems == [] and seen.dialogs == []


def text(seen: Page, selector: str) -> str:
    return str(seen.page.locator(selector).first.text_content()).strip()


def expected_tokens(records: list[dict[str, Any]], edge: dict[str, Any]) -> int:
    """Tokens along an edge of the demo's chain: its routing events, else the tokens
    that reached its target node (every node but the gate's targets has one way in)."""
    routed = sum(
        1
        for r in records
        if r["record_type"] == "routing_event" and r["edge_id"] == edge["edge_id"]
    )
    if routed:
        return routed
    return len(
        {
            r["token_id"]
            for r in records
            if r["record_type"] == "node_state" and r["node_id"] == edge["to_node_id"]
        }
    )


def test_page_loads_clean_and_shows_the_exports_numbers(browser: Any, demo: Demo) -> None:
    seen = open_page(browser, demo.report)
    page = seen.page
    page.wait_for_selector("[data-embedded-check=valid]", timeout=30_000)
    no_problems(seen)
    assert page.locator("#verdict").get_attribute("data-verdict") == "VALID"
    kinds = Counter(r["record_type"] for r in demo.records)
    assert text(seen, "[data-count=records] .n") == f"{len(demo.records):,}"
    for kind, count in kinds.items():
        assert text(seen, f"[data-count={kind}] .n") == f"{count:,}", kind
    outcomes = Counter(r["outcome"] for r in demo.records if r["record_type"] == "token_outcome")
    for outcome, count in outcomes.items():
        assert text(seen, f"[data-outcome={outcome}]") == f"{count:,}"
    edges = [r for r in demo.records if r["record_type"] == "edge"]
    assert page.locator("#graph g.edge").count() == len(edges)
    assert page.locator("#graph g.node").count() == kinds["node"]
    for edge in edges:
        drawn = page.locator(f'[data-edge="{edge["edge_id"]}"]')
        assert drawn.get_attribute("data-tokens") == str(expected_tokens(demo.records, edge))
        assert edge["label"] in str(drawn.text_content())
    nodes = {r["node_id"] for r in demo.records if r["record_type"] == "node_state"}
    assert page.locator("#timeline [data-lane]").count() == len(nodes)
    chunks = [f for f in export_files(demo.export) if f.name[-8:-5].isdigit()]
    assert page.locator("#verification [data-file]").count() == len(chunks) + 2


def test_search_finds_rows_and_tells_their_story(browser: Any, demo: Demo) -> None:
    seen = open_page(browser, demo.report)
    page = seen.page
    page.wait_for_selector("#row-status[data-ready]")
    rows = [r for r in demo.records if r["record_type"] == "row"]

    def find(query: str) -> None:
        page.fill("#row-query", query)
        page.press("#row-query", "Enter")

    target = rows[7]
    find(target["row_id"])
    page.wait_for_selector(f'#row-story [data-story="{target["row_id"]}"]')
    find(str(rows[3]["row_index"]))
    page.wait_for_selector(f'#row-story [data-story="{rows[3]["row_id"]}"]')
    customer = rows[5]["source_data"]["customer_id"]
    find(f"customer_id={customer}")
    page.wait_for_selector(f'#row-story [data-story="{rows[5]["row_id"]}"]')
    assert page.locator("#row-status").get_attribute("data-matches") == "1"

    # the story: every state of the row, the normalizer's diff, the LLM call, the route
    states = [
        r
        for r in demo.records
        if r["record_type"] == "node_state" and r["row_id"] == rows[5]["row_id"]
    ]
    assert page.locator("#row-story [data-state]").count() == len(states)
    normalize = next(
        s for s in states if s["input_data"]["name"] != (s.get("output_data") or {}).get("name")
    )
    card = page.locator(f'[data-state="{normalize["state_id"]}"]')
    changed = card.locator('[data-diff=changed][data-field="name"]')
    assert changed.count() == 1
    assert normalize["output_data"]["name"] in str(changed.text_content())
    calls = [
        r for r in demo.records if r["record_type"] == "call" and r["row_id"] == rows[5]["row_id"]
    ]
    assert page.locator("#row-story [data-call]").count() == len(calls) >= 1
    assert page.locator("#row-story [data-routing]").count() in (0, 1)

    find("no such thing anywhere")
    page.wait_for_selector("#row-status[data-matches='0']")
    no_problems(seen)


def test_webcrypto_check_of_the_real_and_a_tampered_export(
    browser: Any, demo: Demo, tmp_path: Path
) -> None:
    seen = open_page(browser, demo.report)
    page = seen.page
    files = export_files(demo.export)
    chunks = [f for f in files if f.name[-8:-5].isdigit()]
    assert len(chunks) >= 3
    page.set_input_files("#check-files", [str(f) for f in files])
    page.wait_for_selector("#check-status[data-check]", timeout=60_000)
    assert page.locator("#check-status").get_attribute("data-check") == "VALID"
    for chunk in chunks:
        row = page.locator(f'[data-check-file="{chunk.name}"]')
        assert row.get_attribute("data-check-result") == "valid", row.text_content()
    assert page.locator("[data-check=merkle]").get_attribute("data-check-result") == "valid"

    tampered = tmp_path / "tampered"
    shutil.copytree(demo.export, tampered)
    victim = tampered / chunks[1].name
    data = victim.read_bytes()
    assert b'"status":"completed"' in data
    victim.write_bytes(data.replace(b'"status":"completed"', b'"status":"completeD"', 1))
    page.set_input_files("#check-files", [str(f) for f in export_files(tampered)])
    page.wait_for_selector("#check-status[data-check=INVALID]", timeout=60_000)
    for chunk in chunks:
        row = page.locator(f'[data-check-file="{chunk.name}"]')
        want = "INVALID" if chunk.name == victim.name else "valid"
        assert row.get_attribute("data-check-result") == want, chunk.name
    assert "sha256" in str(page.locator(f'[data-check-file="{victim.name}"]').text_content())
    assert page.locator("[data-check=merkle]").get_attribute("data-check-result") == "INVALID"

    # without the manifest file the report's own copy is the reference; a chunk left out
    # means the root cannot be computed
    page.set_input_files("#check-files", [str(c) for c in chunks[1:]])
    page.wait_for_selector("#check-status[data-check=INCOMPLETE]", timeout=60_000)
    assert (
        page.locator(f'[data-check-file="{chunks[0].name}"]').get_attribute("data-check-result")
        == "not given"
    )
    assert (
        page.locator(f'[data-check-file="{chunks[1].name}"]').get_attribute("data-check-result")
        == "valid"
    )
    no_problems(seen)


def test_edited_embedded_records_fail_the_in_page_check(
    browser: Any, demo: Demo, tmp_path: Path
) -> None:
    page_text = demo.report.read_text(encoding="utf-8")
    edited = tmp_path / "edited.html"
    assert page_text.count('\\"outcome\\":\\"routed\\"') >= 1
    edited.write_text(
        page_text.replace('\\"outcome\\":\\"routed\\"', '\\"outcome\\":\\"completed\\"', 1),
        encoding="utf-8",
    )
    seen = open_page(browser, edited)
    seen.page.wait_for_selector("[data-embedded-check=INVALID]", timeout=30_000)
    no_problems(seen)


def test_hostile_values_stay_text(browser: Any, tmp_path: Path) -> None:
    run: XssRun = record_xss_run(tmp_path / "audit")
    report = tmp_path / "xss.html"
    write_report(run.export, report)
    seen = open_page(browser, report)
    page = seen.page
    page.wait_for_selector("[data-embedded-check=valid]", timeout=30_000)
    page.wait_for_selector("#row-status[data-ready]")
    page.fill("#row-query", run.row_id)
    page.press("#row-query", "Enter")
    page.wait_for_selector(f'#row-story [data-story="{run.row_id}"]')
    story = str(page.locator("#row-story").text_content())
    assert XSS in story
    assert XSS in str(page.locator("#graph").text_content())
    assert page.evaluate("document.scripts.length") == 3
    assert page.evaluate("document.images.length") == 0
    assert page.evaluate("typeof window.__xss") == "undefined"
    no_problems(seen)


def test_summary_only_page(browser: Any, demo: Demo, tmp_path: Path) -> None:
    report = tmp_path / "summary.html"
    write_report(demo.export, report, embed_limit_bytes=0)
    seen = open_page(browser, report)
    page = seen.page
    assert page.locator("#rows-omitted").is_visible()
    assert "row browser" in text(seen, "#rows-omitted")
    rows = sum(1 for r in demo.records if r["record_type"] == "row")
    assert text(seen, "[data-count=row] .n") == f"{rows:,}"
    page.set_input_files("#check-files", [str(f) for f in export_files(demo.export)])
    page.wait_for_selector("#check-status[data-check]", timeout=60_000)
    assert page.locator("#check-status").get_attribute("data-check") == "VALID"
    no_problems(seen)


def test_files_dropped_on_the_page_are_checked(browser: Any, demo: Demo) -> None:
    seen = open_page(browser, demo.report)
    page = seen.page
    files = [
        {"name": f.name, "data": base64.b64encode(f.read_bytes()).decode()}
        for f in export_files(demo.export)
    ]
    transfer = page.evaluate_handle(
        """(files) => {
            const t = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
                t.items.add(new File([bytes], f.name));
            }
            return t;
        }""",
        files,
    )
    page.dispatch_event("#check-drop", "drop", {"dataTransfer": transfer})
    page.wait_for_selector("#check-status[data-check]", timeout=60_000)
    assert page.locator("#check-status").get_attribute("data-check") == "VALID"
    no_problems(seen)


def test_an_export_without_payloads(browser: Any, tmp_path: Path) -> None:
    run = run_demo(tmp_path / "audit", rows=8, export=ExportSettings(include_payloads=False))
    report = tmp_path / "report.html"
    write_report(run.export_dir, report)
    seen = open_page(browser, report)
    page = seen.page
    page.wait_for_selector("[data-embedded-check=valid]", timeout=30_000)
    page.fill("#row-query", run.first_row_id)
    page.press("#row-query", "Enter")
    page.wait_for_selector(f'#row-story [data-story="{run.first_row_id}"]')
    assert "Payloads are not inlined" in str(page.locator("#row-story").text_content())
    no_problems(seen)
