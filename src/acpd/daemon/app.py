"""Daemon layer: ``create_app`` assembles the Starlette application around a running SessionManager.

It wires routes, error handlers and middleware; it owns no state of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from acpd.errors import AcpdError, StoreLocked
from acpd.imports import freeze_imported
from acpd.protocol.methods import CONNECTION_HEADER, SESSION_HEADER

from . import forward, http, ui
from .http import ROUTES
from .lazy_routes import LazyRoutes
from .manager import SessionManager
from .problems import (
    from_error,
    handle_acpd_error,
    handle_exception_group,
    handle_http_exception,
    handle_unexpected,
    problem,
)
from .security import SecurityMiddleware, allowed_origins


def create_app(manager: SessionManager, *, port: int | None = None) -> Starlette:
    """The HTTP app for ``manager`` (which the caller keeps running). ``port`` is the bound port,
    used for the Host/Origin allow-lists; default: the configured one."""
    config = manager.config
    bound_port = config.port if port is None else port
    app = _CorsOutside(
        cors={
            "allow_origins": sorted(allowed_origins(config, bound_port)),
            "allow_methods": ["GET", "POST", "PATCH", "DELETE"],
            "allow_headers": [
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "Last-Event-ID",
                CONNECTION_HEADER,
                SESSION_HEADER,
            ],
            "expose_headers": [CONNECTION_HEADER],
        },
        routes=[
            *ROUTES,
            # Imported at the first request under their prefixes (``lazy_routes``).
            LazyRoutes("acpd.daemon.agent_install", "/v1/agents/"),
            LazyRoutes("acpd.daemon.records", "/v1/gc", "/v1/sessions/"),
            LazyRoutes("acpd.daemon.audit", "/v1/usage", "/v1/audit/"),
            LazyRoutes("acpd.daemon.acp_http", "/v1/acp"),
            LazyRoutes("acpd.daemon.acp_remote", "/acp"),
            LazyRoutes("acpd.daemon.ws", "/v1/rpc"),
            LazyRoutes("acpd.daemon.client_links", "/v1/sessions/"),
            LazyRoutes("acpd.daemon.docs", "/v1/openapi.json", "/docs"),
            *ui.ROUTES,
        ],
        middleware=[Middleware(SecurityMiddleware, config=config, port=bound_port), Middleware(_HotRoutes)],
        exception_handlers={
            StoreLocked: forward_to_owner,
            AcpdError: handle_acpd_error,
            HTTPException: handle_http_exception,
            ExceptionGroup: handle_exception_group,
            Exception: handle_unexpected,
        },
    )
    # /v1/sessions/ is not /v1/sessions: a redirect would only lead a client to a 404 or a
    # different resource (/v1/sessions/%2E%2E%2F redirected to /v1/sessions/..)
    app.router.redirect_slashes = False
    app.state.manager = manager  # the ACP hubs join it at their first request (``acp_http.hub_of``)
    app.state.max_body_bytes = config.max_body_bytes
    return app


async def forward_to_owner(request: Request, exc: Exception) -> Response:
    """A request for a session another daemon serves goes on to it (``forward``); the route's
    endpoint serves it here if that daemon has died and its lock goes."""
    assert isinstance(exc, StoreLocked)
    endpoint = request.scope.get("endpoint")
    return await forward.forwarded(request, exc, endpoint if request.scope["type"] == "http" else None)


class _CorsOutside(Starlette):
    """A Starlette app with CORS around everything, even the 500 error handler: a browser's
    preflight carries no token and must be answered before the security edge, and every answer
    to an allowed origin, a refusal (401, 403, 413) or a 500 included, must carry the CORS
    headers for the page to be able to read it."""

    def __init__(self, *, cors: dict[str, Any], **options: Any) -> None:
        self._cors = cors
        super().__init__(**options)

    def build_middleware_stack(self) -> ASGIApp:
        return _ProblemCors(super().build_middleware_stack(), **self._cors)


class _ProblemCors(CORSMiddleware):
    """Starlette's CORS, whose refused preflight is a problem like every other refusal (it answers
    ``400 text/plain`` itself)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        detail = f"this cross-origin request is not allowed: its {refused} (see allowed_origins)"
        answer = problem(response.status_code, "cors-refused", detail)
        answer.headers.update({k: v for k, v in response.headers.items() if k.startswith("access-control-")})
        return answer


Endpoint = Callable[[Request], Awaitable[Response]]


class _HotRoutes:
    """The two routes every prompt takes, ``POST /v1/sessions/{id}/prompt`` and ``POST
    /v1/acp/{id}``, handed straight to their endpoints, inside the security edge and CORS like
    every route: no walk through the route table's patterns, no exception middleware and request
    wrappers around them (about 5 % of a prompt's daemon CPU). An error raised on purpose is
    answered as the exception handlers answer it; anything else goes on to the 500 handler, as
    from the router. Every other request goes through the router."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = _hot_route(scope)
        if hot is None:
            await self.app(scope, receive, send)
        else:
            await self._hot(*hot, scope, receive, send)
        # what a first use imported: a route's module, the agents' configuration, the model SDK
        freeze_imported()

    async def _hot(self, endpoint: Endpoint, item_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        scope["path_params"] = {"id": item_id}
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except StoreLocked as exc:
            response = await forward.forwarded(request, exc, endpoint)  # another daemon serves the session
        except AcpdError as exc:
            response = from_error(exc)
        except ExceptionGroup as exc:
            response = await handle_exception_group(request, exc)
        await response(scope, receive, send)


def _hot_route(scope: Scope) -> tuple[Endpoint, str] | None:
    """The endpoint and ``{id}`` of a hot route, matched as the router would (``{id}`` has no
    ``/``; a path under a root path is left to the router)."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if path.startswith("/v1/sessions/") and path.endswith("/prompt"):
        endpoint: Endpoint = http.prompt
        item_id = path[len("/v1/sessions/") : -len("/prompt")]
    elif path.startswith("/v1/acp/"):
        endpoint = _acp_post_envelope()
        item_id = path[len("/v1/acp/") :]
    else:
        return None
    if not item_id or "/" in item_id:
        return None
    return endpoint, item_id


@cache
def _acp_post_envelope() -> Endpoint:
    """ACP-over-HTTP's POST, imported at its first request (``lazy_routes``)."""
    from .acp_http import post_envelope

    return post_envelope
