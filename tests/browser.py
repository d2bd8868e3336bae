"""A real headless Chromium for tests of pages, driven by Playwright.

Debian's ``chromium`` package is used (Playwright's own browser builds are
never downloaded): ``.ci/run`` installs it when apt is available. Where it,
or the ``playwright`` package, is missing, the tests that need a browser are
skipped with the reason. ``AUDITJOURNAL_CHROMIUM`` names another binary.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    configured = os.environ.get("AUDITJOURNAL_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (a Playwright ``Browser``) with a fresh profile, or a skip."""
    binary = chromium_path()
    if binary is None:
        pytest.skip("no Chromium here (Debian: apt-get install chromium); .ci/run installs it")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed (test extra)"
    )
    with sync_api.sync_playwright() as playwright:
        # launch() gives every browser a new temporary profile (--user-data-dir)
        browser = playwright.chromium.launch(executable_path=binary, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Page:
    """A page with everything it complained about collected."""

    page: Any
    problems: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def open_page(browser: Any, path: Path, *, width: int = 1280, height: int = 900) -> Page:
    page = browser.new_page(viewport={"width": width, "height": height})
    seen = Page(page)
    page.on("pageerror", lambda exc: seen.problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            seen.problems.append(f"console {msg.type}: {msg.text}")
            if msg.type in ("error", "warning")
            else None
        ),
    )

    def on_dialog(dialog: Any) -> None:
        seen.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    # no request may leave the page: it must be self-contained
    page.route("**/*", lambda route: _only_the_file(route, path, seen))
    page.goto(path.resolve().as_uri())
    page.wait_for_selector("body[data-rendered]")
    return seen


def _only_the_file(route: Any, path: Path, seen: Page) -> None:
    if route.request.url == path.resolve().as_uri():
        route.continue_()
    else:
        seen.problems.append(f"request: {route.request.url}")
        route.abort()
