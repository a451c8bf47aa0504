"""The /ui inspector's page and files: served from the package, open (they hold no data) but behind
the Host and Origin checks, every answer with a strict Content-Security-Policy, and nothing in them
that could load from elsewhere or turn text into markup."""

from __future__ import annotations

import re
from importlib import resources

import httpx
import pytest

from acpd.daemon import ui

pytestmark = pytest.mark.anyio


async def test_the_page_and_every_file_it_names_are_served_without_the_token(anonymous: httpx.AsyncClient) -> None:
    page = await anonymous.get("/ui")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    named = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
    assert sorted(named) == ["/ui/app.js", "/ui/ui.css"]
    for name in ui.ASSETS:
        asset = await anonymous.get(f"/ui/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["content-type"] == ui.ASSETS[name]


async def test_every_answer_carries_a_csp_that_allows_no_inline_script_and_no_other_origin(
    anonymous: httpx.AsyncClient,
) -> None:
    for url in ("/ui", "/ui/app.js", "/ui/ui.css"):
        headers = (await anonymous.get(url)).headers
        policy = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
        assert policy["default-src"] == "'none'", url
        assert policy["script-src"] == policy["style-src"] == policy["connect-src"] == "'self'", url
        assert policy["frame-ancestors"] == policy["object-src"] == policy["base-uri"] == "'none'", url
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


async def test_the_files_load_nothing_from_another_host_and_hold_no_inline_script(anonymous: httpx.AsyncClient) -> None:
    page = (await anonymous.get("/ui")).text

    assert re.findall(r"<script(?![^>]*\bsrc=)", page) == []
    assert re.findall(r"\son\w+=|\sstyle=", page) == []
    for name in ui.ASSETS:
        text = (await anonymous.get(f"/ui/{name}")).text
        assert re.findall(r"https?://|//cdn|@import", text) == [], name


def test_no_script_turns_a_string_into_markup_or_code() -> None:
    """The renderer builds nodes with textContent: no HTML parsing sink exists to misuse."""
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|srcdoc")
    for name in ui.ASSETS:
        text = resources.files("acpd.daemon").joinpath("ui_assets", name).read_text()
        assert sinks.findall(text) == [], name


def test_every_file_shipped_in_the_package_is_a_listed_asset() -> None:
    shipped = {entry.name for entry in resources.files("acpd.daemon").joinpath("ui_assets").iterdir()}

    assert shipped == {*ui.ASSETS, ui.PAGE}


async def test_a_name_that_is_not_an_inspector_file_is_not_served(client: httpx.AsyncClient) -> None:
    for name in ("index.html", "..%2Fui.py", "nope.js"):
        response = await client.get(f"/ui/{name}")
        assert response.status_code == 404, name
        assert response.json()["type"] == "urn:acpd:problem:not-found"


async def test_the_page_still_refuses_a_foreign_origin_and_host(anonymous: httpx.AsyncClient) -> None:
    for url in ("/ui", "/ui/app.js"):
        origin = await anonymous.get(url, headers={"Origin": "http://evil.example"})
        host = await anonymous.get(url, headers={"Host": "evil.example"})
        assert (origin.status_code, origin.json()["type"]) == (403, "urn:acpd:problem:origin-not-allowed")
        assert (host.status_code, host.json()["type"]) == (421, "urn:acpd:problem:host-not-allowed")
