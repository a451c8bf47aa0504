"""Routes whose module is imported at the first request under their prefixes: they match as the
module's routes would in the router (fully, partly for a 405, not at all), the module is imported
only by a request under a prefix, and every lazily routed module's routes lie under its prefixes."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route

from acpd.daemon.app import create_app
from acpd.daemon.lazy_routes import LazyRoutes
from acpd.daemon.manager import SessionManager

pytestmark = pytest.mark.anyio

SAMPLE = """
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def thing(request):
    return PlainTextResponse("thing " + request.path_params["id"])


async def other(request):
    return PlainTextResponse("other")


ROUTES = [
    Route("/lazy/things/{id}", thing, methods=["GET"], name="thing"),
    Route("/lazy/other", other, methods=["POST"]),
]
"""


@pytest.fixture
def sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module with ROUTES, importable and not imported yet."""
    name = f"lazy_sample_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(SAMPLE)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield name
    sys.modules.pop(name, None)


async def eager(request: Request) -> Response:
    return PlainTextResponse("eager")


def app_with(group: BaseRoute) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/lazy/things/fixed", eager, methods=["GET"]), group])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_a_lazy_module_is_imported_only_by_a_request_under_its_prefixes(sample: str) -> None:
    async with app_with(LazyRoutes(sample, "/lazy/things/", "/lazy/other")) as client:
        assert (await client.get("/elsewhere")).status_code == 404
        assert (await client.get("/lazy/things/fixed")).text == "eager"  # an earlier route still wins
        assert sample not in sys.modules
        answer = await client.get("/lazy/things/7")
        assert (answer.status_code, answer.text) == (200, "thing 7")
        assert sample in sys.modules


async def test_a_lazy_group_matches_as_its_routes_do_in_the_router(sample: str) -> None:
    async with app_with(LazyRoutes(sample, "/lazy/")) as client:
        assert (await client.post("/lazy/other")).text == "other"
        wrong = await client.delete("/lazy/things/7")
        assert (wrong.status_code, sorted(wrong.headers["allow"].split(", "))) == (405, ["GET", "HEAD"])
        assert (await client.get("/lazy/nothing")).status_code == 404


async def test_the_route_that_matched_is_the_scopes_route(sample: str) -> None:
    group = LazyRoutes(sample, "/lazy/")
    scope = {"type": "http", "path": "/lazy/things/7", "method": "GET", "root_path": ""}
    match, child_scope = group.matches(scope)
    assert match is Match.FULL
    assert child_scope["path_params"] == {"id": "7"}
    assert group.url_path_for("thing", id="8") == "/lazy/things/8"
    with pytest.raises(NoMatchFound):
        group.url_path_for("no-such-route")
    routes = [r for r in group.routes if isinstance(r, Route)]
    assert [r.path for r in routes] == ["/lazy/things/{id}", "/lazy/other"]


async def test_every_lazily_routed_module_has_its_routes_under_its_prefixes(manager: SessionManager) -> None:
    app = create_app(manager)
    groups = [route for route in app.routes if isinstance(route, LazyRoutes)]
    assert len(groups) >= 8
    for group in groups:
        paths = [getattr(route, "path", "") for route in group.routes]
        assert paths, group
        assert [path for path in paths if not path.startswith(group.prefixes)] == [], group
