#!/usr/bin/env python3
"""The report page in headless Chromium: the README's screenshot, and how long the page takes.

    python tools/report_page.py screenshot docs/report.png
        records the demo run (120 rows) into a temporary root, writes its report
        and saves the first screen (1280x900) as a PNG.

    python tools/report_page.py timing --rows 5000 [--repeat 3]
        records a demo run of that many rows and reports, for the report of its
        export: the time to write it, to load and draw the page, to re-hash the
        embedded records, and to check all chunk files given to the page (median
        and spread over --repeat page loads).

Needs Debian's chromium and the test extra (playwright); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from auditjournal import ExportSettings
from auditjournal.demo import run_demo
from auditjournal.report import write_report

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser(playwright: Any) -> Any:
    binary = shutil.which("chromium")
    if binary is None:
        sys.exit("no chromium on PATH (Debian: apt-get install chromium)")
    return playwright.chromium.launch(executable_path=binary, headless=True, args=FLAGS)


def _demo(base: Path, rows: int) -> tuple[Path, Path, float]:
    run = run_demo(base / "audit", rows=rows, export=ExportSettings())
    report = base / "report.html"
    started = time.perf_counter()
    write_report(run.export_dir, report)
    return run.export_dir, report, time.perf_counter() - started


def screenshot(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        _export, report, _ = _demo(Path(tmp), 120)
        with sync_playwright() as playwright:
            browser = _browser(playwright)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(report.as_uri())
            page.wait_for_selector("[data-embedded-check=valid]", timeout=60_000)
            page.screenshot(path=str(out))
            browser.close()
    print(f"wrote {out}")


def _spread(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.2f} s "
        f"(min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"
    )


def timing(rows: int, repeat: int) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        export, report, written = _demo(Path(tmp), rows)
        chunk_bytes = sum(p.stat().st_size for p in export.glob("audit_trail.[0-9]*.json"))
        files = [str(p) for p in sorted(export.iterdir()) if not p.name.startswith(".")]
        page_mb = report.stat().st_size / 1e6
        print(f"{rows} rows: chunks {chunk_bytes / 1e6:.1f} MB, page {page_mb:.1f} MB")
        print(f"write_report: {written:.2f} s")
        loads, hashes, checks = [], [], []
        with sync_playwright() as playwright:
            browser = _browser(playwright)
            for _ in range(repeat):
                page = browser.new_page()
                started = time.perf_counter()
                page.goto(report.as_uri())
                page.wait_for_selector("#row-status[data-ready]", timeout=600_000)
                loaded = time.perf_counter()
                page.wait_for_selector("[data-embedded-check=valid]", timeout=600_000)
                hashed = time.perf_counter()
                page.set_input_files("#check-files", files)
                page.wait_for_selector("#check-status[data-check=VALID]", timeout=600_000)
                checked = time.perf_counter()
                loads.append(loaded - started)
                hashes.append(hashed - loaded)
                checks.append(checked - hashed)
                page.close()
            browser.close()
        print(f"page load, drawn and rows indexed: {_spread(loads)}")
        print(f"embedded records re-hashed:        {_spread(hashes)}")
        print(f"all chunk files checked:           {_spread(checks)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    shot = sub.add_parser("screenshot")
    shot.add_argument("out", type=Path)
    timed = sub.add_parser("timing")
    timed.add_argument("--rows", type=int, default=5000)
    timed.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.what == "screenshot":
        screenshot(args.out)
    else:
        timing(args.rows, args.repeat)


if __name__ == "__main__":
    main()
