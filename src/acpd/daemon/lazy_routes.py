"""Daemon layer: a module's routes in the route table, the module imported at the first request
whose path they may answer. For what a daemon seldom serves soon after its start (ACP over HTTP
and WebSocket, the records, the audit, installs, the docs): their modules, and the ACP face and
JSON-RPC peer under them, are about a tenth of a daemon's start. It knows no route itself: each
module keeps its ``ROUTES``; the table gives the path prefixes they all lie under
(tests/daemon/test_lazy_routes.py checks that they do).

Matching is the router's, in the same order: the first route that matches fully answers, else the
first that matches partly (a 405). A group whose prefixes a path lies under matches as its first
fully matching route, else as its first partly matching one, else not at all; the route that
matched answers, as ``scope["route"]``.
"""

from __future__ import annotations

import importlib
from typing import Final

from starlette._utils import get_route_path
from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

MATCHED: Final = "acpd.matched_route"
"""The scope key through which ``matches`` hands ``handle`` the route that matched."""


class LazyRoutes(BaseRoute):
    """The ``ROUTES`` of module ``module``, all under one of ``prefixes`` (paths the module's routes
    start with), imported at the first request under one of them."""

    def __init__(self, module: str, *prefixes: str) -> None:
        self.module = module
        self.prefixes = prefixes
        self._routes: list[BaseRoute] | None = None

    @property
    def routes(self) -> list[BaseRoute]:
        """The module's routes (imported at the first call: a blocking import, once)."""
        if self._routes is None:
            self._routes = list(importlib.import_module(self.module).ROUTES)
        return self._routes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if not get_route_path(scope).startswith(self.prefixes):
            return Match.NONE, {}
        partial: Scope | None = None
        for route in self.routes:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return Match.FULL, {**child_scope, MATCHED: route}
            if match is Match.PARTIAL and partial is None:
                partial = {**child_scope, MATCHED: route}
        return (Match.NONE, {}) if partial is None else (Match.PARTIAL, partial)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: BaseRoute = scope.pop(MATCHED)
        scope["route"] = route
        await route.handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: object) -> URLPath:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                pass
        raise NoMatchFound(name, path_params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.module!r}, {', '.join(map(repr, self.prefixes))})"
