"""Daemon layer: the web inspector's routes, ``GET /ui`` and its files ``GET /ui/{asset}``. The page
is a single-page app built only on the public API (REST and SSE); its hand-written ES modules and
style sheet ship inside the package (``ui_assets``): no build step, nothing fetched from elsewhere,
so it works offline. No business logic and no data here: the page asks for the token itself and
sends it on every API call, so these routes are open (like ``/docs``), still behind the Host and
Origin checks.

Every answer carries a strict Content-Security-Policy: scripts, styles and connections only from
this origin, no inline script or style, no frames, no plugins; whatever an agent wrote cannot run
in the page even if it reached the DOM as HTML.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from acpd.errors import NotFound

JS: Final = "text/javascript; charset=utf-8"
ASSETS: Final = {
    "app.js": JS,
    "api.js": JS,
    "dom.js": JS,
    "markdown.js": JS,
    "model.js": JS,
    "vlist.js": JS,
    "sessions.js": JS,
    "session.js": JS,
    "rows.js": JS,
    "agents.js": JS,
    "audit.js": JS,
    "ui.css": "text/css; charset=utf-8",
}
PAGE: Final = "index.html"
OPEN_PATHS: Final = frozenset({"/ui", *(f"/ui/{name}" for name in ASSETS)})
"""The paths served without the token (they hold no data), for the security edge."""
CSP: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    )
)
HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> bytes:
    from importlib import resources  # at the first page asked for: ~1 ms of the start otherwise

    return resources.files(__package__).joinpath("ui_assets", name).read_bytes()


async def page(request: Request) -> Response:
    return Response(_asset(PAGE), media_type="text/html; charset=utf-8", headers=HEADERS)


async def asset(request: Request) -> Response:
    name = request.path_params["asset"]
    media_type = ASSETS.get(name)
    if media_type is None:  # only the listed files: a name is never a path
        raise NotFound(f"no inspector asset {name!r}")
    return Response(_asset(name), media_type=media_type, headers=HEADERS)


ROUTES: Final = [
    Route("/ui", page, methods=["GET"]),
    Route("/ui/{asset}", asset, methods=["GET"]),
]
