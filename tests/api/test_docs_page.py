"""The /docs page: served by the daemon with its own script and style sheet, open like the spec
(no token: it holds no data) but behind the Host and Origin checks like every route."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import anyio
import httpx
import pytest

from acpd.daemon import docs

pytestmark = pytest.mark.anyio


async def test_the_docs_page_and_every_asset_it_names_are_served_from_the_daemon(anonymous: httpx.AsyncClient) -> None:
    page = await anonymous.get("/docs")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    named = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(named) == ["/docs/docs.css", "/docs/docs.js", "/v1/openapi.json"]
    for url in named:
        asset = await anonymous.get(url)
        assert asset.status_code == 200, url
        assert asset.content
    script = (await anonymous.get("/docs/docs.js")).text
    assert '"/v1/openapi.json"' in script
    assert (await anonymous.get("/docs/docs.css")).headers["content-type"].startswith("text/css")


async def test_the_docs_page_loads_nothing_from_another_host(anonymous: httpx.AsyncClient) -> None:
    for url in ("/docs", "/docs/docs.js", "/docs/docs.css"):
        text = (await anonymous.get(url)).text
        assert re.findall(r"https?://", text) == [], url


async def test_a_name_that_is_not_a_docs_asset_is_not_served(client: httpx.AsyncClient) -> None:
    for name in ("index.html", "..%2Fhttp.py", "nope.js"):
        response = await client.get(f"/docs/{name}")
        assert response.status_code == 404, name
        assert response.json()["type"] == "urn:acpd:problem:not-found"


async def test_the_open_pages_still_refuse_a_foreign_origin_and_host(anonymous: httpx.AsyncClient) -> None:
    for url in ("/docs", "/v1/openapi.json", "/docs/docs.js"):
        origin = await anonymous.get(url, headers={"Origin": "http://evil.example"})
        host = await anonymous.get(url, headers={"Host": "evil.example"})
        assert (origin.status_code, origin.json()["type"]) == (403, "urn:acpd:problem:origin-not-allowed")
        assert (host.status_code, host.json()["type"]) == (421, "urn:acpd:problem:host-not-allowed")


async def test_the_data_routes_still_need_the_token(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/v1/sessions")

    assert (response.status_code, response.json()["type"]) == (401, "urn:acpd:problem:unauthorized")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
async def test_the_docs_script_renders_every_operation_problem_type_and_schema_of_the_spec(
    anonymous: httpx.AsyncClient,
) -> None:
    spec = (await anonymous.get("/v1/openapi.json")).content
    script = Path(docs.__file__).parent / "docs_assets" / "docs.js"

    with anyio.fail_after(60):
        done = await anyio.run_process(["node", str(Path(__file__).parent / "render_docs.js"), str(script)], input=spec)

    rendered = json.loads(done.stdout)
    parsed = json.loads(spec)
    operations = {op["operationId"] for item in parsed["paths"].values() for op in item.values()}
    assert {f"op-{name}" for name in operations} <= set(rendered["ids"])
    assert {f"schema-{name}" for name in parsed["components"]["schemas"]} <= set(rendered["ids"])
    assert rendered["problemRows"] == len(parsed["x-problem-types"])
    assert rendered["intro"] == parsed["info"]["description"]
