"""Daemon layer: the routes of the API's own description, ``GET /v1/openapi.json`` and the ``/docs``
page with its script and style sheet. The page's files ship inside the package (``docs_assets``):
nothing is fetched from elsewhere, so the page works offline. No business logic here.

The three are open routes (no bearer token; they hold no data), still behind the Host and Origin checks.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from acpd.errors import NotFound

ASSETS: Final = {"docs.js": "text/javascript; charset=utf-8", "docs.css": "text/css; charset=utf-8"}
PAGE: Final = "index.html"
CACHE: Final = {"Cache-Control": "no-cache"}


def _asset(name: str) -> bytes:
    from importlib import resources  # at the first page asked for: ~1 ms of the start otherwise

    return resources.files(__package__).joinpath("docs_assets", name).read_bytes()


async def openapi(request: Request) -> Response:
    from .openapi import spec_json  # the models and pydantic: at the first request, not at start

    return Response(spec_json(), media_type="application/json", headers=CACHE)


async def page(request: Request) -> Response:
    return Response(_asset(PAGE), media_type="text/html; charset=utf-8", headers=CACHE)


async def asset(request: Request) -> Response:
    name = request.path_params["asset"]
    media_type = ASSETS.get(name)
    if media_type is None:  # only the listed files: a name is never a path
        raise NotFound(f"no docs asset {name!r}")
    return Response(_asset(name), media_type=media_type, headers=CACHE)


ROUTES: Final = [
    Route("/v1/openapi.json", openapi, methods=["GET"]),
    Route("/docs", page, methods=["GET"]),
    Route("/docs/{asset}", asset, methods=["GET"]),
]
