"""Browser test kit: Debian's headless Chromium driven by playwright, against a real ``acpd serve``.

No browser is downloaded (``acpd.testing.browser`` drives the system's ``chromium``). Without it,
or without playwright, the browser tests skip, unless ``ACPD_REQUIRE_BROWSER`` is set (CI sets it):
then they fail.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pytest

from acpd.testing import browser as browser_kit
from acpd.testing.daemon import Daemon, running_daemon

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

REQUIRE_ENV: Final = "ACPD_REQUIRE_BROWSER"
CHROMIUM_ENV: Final = browser_kit.CHROMIUM_ENV
WAIT_MS: Final = 20_000
"""The longest any one wait in a page may take."""
SECOND_AGENT: Final = "mock-two"


@asynccontextmanager
async def open_browser() -> AsyncIterator[Browser]:
    """The headless Chromium; skips (fails under ACPD_REQUIRE_BROWSER) when it or playwright is missing."""
    missing = browser_kit.missing_browser()
    if missing is not None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"the browser tests need a browser: {missing}")
        pytest.skip(missing)
    async with browser_kit.headless_chromium() as browser:
        yield browser


@asynccontextmanager
async def inspector_daemon(home: Path, *extra: str, env: dict[str, str] | None = None) -> AsyncIterator[Daemon]:
    """``acpd serve [extra…]`` with the mock agent and a second one (to switch to), with a token."""
    config = _config(home)
    args = ("--config", str(config), "--db", str(home / "acpd.db"), *extra)
    async with running_daemon(home, *args, env=env) as daemon:
        yield daemon


def _config(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "config.toml"
    args = f'["-m", "acpd.testing.mock_agent", "--name", "{SECOND_AGENT}"]'
    config.write_text(f'[agents.{SECOND_AGENT}]\ncommand = "{sys.executable}"\nargs = {args}\n')
    return config


@dataclass
class Inspector:
    """A page of the inspector, with what it reported: page errors and CSP violations."""

    page: Page
    daemon: Daemon
    shots: Path
    errors: list[str] = field(default_factory=list)

    async def open(self, fragment: str = "#/") -> None:
        await self.page.goto(f"{self.daemon.url}/ui{fragment}")

    async def wait(self, expression: str, arg: Any = None) -> Any:
        # as a function: a bare expression would be eval'ed in the page, which its CSP forbids
        handle = await self.page.wait_for_function(f"() => ({expression})", arg=arg, timeout=WAIT_MS)
        return await handle.json_value()

    async def value(self, expression: str, arg: Any = None) -> Any:
        return await self.page.evaluate(expression, arg)

    async def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await self.page.screenshot(path=str(path))
        return path

    async def violations(self) -> list[str]:
        found: list[str] = await self.page.evaluate("window.__cspViolations")
        return found


def _made(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)


@asynccontextmanager
async def inspector(browser: Browser, daemon: Daemon, shots: Path) -> AsyncIterator[Inspector]:
    """A new page on /ui that has been given the token once (as a user types it in the dialog)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    _made(shots)
    view = Inspector(page, daemon, shots)
    page.on("pageerror", lambda error: view.errors.append(str(error)))
    await page.add_init_script(
        "window.__cspViolations = [];"
        "document.addEventListener('securitypolicyviolation', e => window.__cspViolations.push(e.violatedDirective));"
    )
    await view.open()
    assert daemon.token is not None
    await page.fill("#token-input", daemon.token)
    await page.click("#token-form button")
    await page.wait_for_selector("#new-session")
    try:
        yield view
    finally:
        await context.close()
