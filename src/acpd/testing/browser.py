"""Test kit: a headless Chromium for the web inspector's tests and benchmark, the system's own
(Debian's ``chromium``; ``ACPD_CHROMIUM`` names another) driven by playwright. Nothing is
downloaded: ``playwright install`` is never needed. playwright is a dev dependency, imported only
when a browser is launched.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from playwright.async_api import Browser

CHROMIUM_ENV: Final = "ACPD_CHROMIUM"
# what lets Chromium start as root, inside a network namespace with only loopback, and stay
# quiet: no sandbox (root), no GPU, no calls home
FLAGS: Final = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def find_chromium() -> str | None:
    """The Chromium to drive, or None."""
    return shutil.which(os.environ.get(CHROMIUM_ENV) or "chromium") or shutil.which("chromium-browser")


def missing_browser() -> str | None:
    """Why no browser can be driven here (no Chromium, no playwright), or None."""
    if find_chromium() is None:
        return f"no chromium on PATH (apt-get install chromium, or set {CHROMIUM_ENV})"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (scripts/setup installs the dev dependencies)"
    return None


@asynccontextmanager
async def headless_chromium() -> AsyncIterator[Browser]:
    """A headless Chromium with a new, empty profile of its own (playwright makes one per launch)."""
    from playwright.async_api import async_playwright

    path = find_chromium()
    if path is None:
        raise RuntimeError(missing_browser())
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=path, args=list(FLAGS), headless=True)
        try:
            yield browser
        finally:
            await browser.close()
