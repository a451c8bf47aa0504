"""The browser tests' kit: a missing browser skips them here and fails them in CI."""

from __future__ import annotations

import pytest

from . import browser


def test_a_missing_browser_skips_the_browser_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(browser.REQUIRE_ENV, raising=False)
    monkeypatch.setenv(browser.CHROMIUM_ENV, "/nonexistent/chromium")
    monkeypatch.setenv("PATH", "/nonexistent")

    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        browser.chromium()


def test_a_missing_browser_fails_the_browser_tests_where_they_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(browser.REQUIRE_ENV, "1")
    monkeypatch.setenv(browser.CHROMIUM_ENV, "/nonexistent/chromium")
    monkeypatch.setenv("PATH", "/nonexistent")

    with pytest.raises(pytest.fail.Exception, match="need a browser"):
        browser.chromium()
