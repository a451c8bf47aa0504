"""The browser tests' kit: a missing browser skips them here and fails them in CI."""

from __future__ import annotations

import pytest

from . import browser

pytestmark = pytest.mark.anyio


async def test_a_missing_browser_skips_the_browser_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(browser.REQUIRE_ENV, raising=False)
    monkeypatch.setenv(browser.CHROMIUM_ENV, "/nonexistent/chromium")
    monkeypatch.setenv("PATH", "/nonexistent")

    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        async with browser.open_browser():
            pass


async def test_a_missing_browser_fails_the_browser_tests_where_they_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(browser.REQUIRE_ENV, "1")
    monkeypatch.setenv(browser.CHROMIUM_ENV, "/nonexistent/chromium")
    monkeypatch.setenv("PATH", "/nonexistent")

    with pytest.raises(pytest.fail.Exception, match="need a browser"):
        async with browser.open_browser():
            pass
