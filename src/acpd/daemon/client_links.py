"""Daemon layer: a client link, the owner's end (``--share-db``): an ACP client attached to one of
this daemon's sessions through another daemon, as one of the session's attached clients.

The other daemon (acp_shared.py) opens ``GET /v1/sessions/{id}/link`` as a WebSocket that speaks
JSON-RPC, and says who its client is in one ``_acpd/client_link`` request: the client's link id
and the capabilities it advertised in ``initialize``. From then on the session routes the agent's
``fs/*`` and ``terminal/*`` requests to it as to a client attached here (clients.py chooses), and
sends them down the link; the other daemon asks its client and answers. The link ends when the
WebSocket closes (the client went, or its daemon did: requests in flight fail, as when a client
here goes) or when the session leaves this daemon's memory (the other daemon links again to
whichever daemon serves it next). It must not write the session's log nor know the ACP face.
"""

from __future__ import annotations

from typing import Final

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from acpd.errors import InvalidInput, RpcError
from acpd.protocol import methods
from acpd.protocol.jsonio import JsonObject, JsonValue
from acpd.rpc.peer import JsonRpcPeer

from .manager import SessionManager
from .problems import problem
from .session import SessionRuntime
from .ws import WebSocketTransport

LINK_PATH: Final = "/v1/sessions/{id}/link"


class RemoteClient:
    """An ACP client on another daemon, attached to one session here through a link."""

    def __init__(self, manager: SessionManager, session_id: str, websocket: WebSocket) -> None:
        self._manager = manager
        self._session_id = session_id
        self._link_id = ""
        self._capabilities: JsonObject = {}
        self._runtime: SessionRuntime | None = None
        self._linked = anyio.Event()
        self.peer = JsonRpcPeer(WebSocketTransport(websocket), on_request=self._on_request, name="link")

    # -- ClientLink ------------------------------------------------------------------------------

    @property
    def link_id(self) -> str:
        return self._link_id

    @property
    def client_capabilities(self) -> JsonObject:
        return self._capabilities

    async def relay(self, method: str, params: JsonObject) -> JsonValue:
        return await self.peer.request(method, params)

    # -- the link --------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Serve the link until it closes or the session leaves this daemon's memory."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._end_with_session)
                await self.peer.run()
                tg.cancel_scope.cancel()
        finally:
            if self._runtime is not None:
                self._runtime.clients.detach_link(self)

    async def _end_with_session(self) -> None:
        await self._linked.wait()
        assert self._runtime is not None
        await self._runtime.log.finished.wait()
        await self.peer.aclose()

    async def _on_request(self, method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        if method != methods.ACPD_CLIENT_LINK:
            raise RpcError.method_not_found(method)  # a link takes only its one request
        if self._runtime is not None:
            raise InvalidInput("this link is linked already")
        link_id = params.get("linkId") if isinstance(params, dict) else None
        capabilities = params.get("clientCapabilities") if isinstance(params, dict) else None
        if not isinstance(link_id, str) or not link_id or not isinstance(capabilities, dict):
            raise InvalidInput('"linkId" must be a non-empty string and "clientCapabilities" an object')
        runtime = await self._manager.runtime(self._session_id)  # refused if another daemon serves it
        if self._runtime is not None or runtime.clients.is_attached(link_id):
            raise InvalidInput(f"a client {link_id!r} is attached to session {self._session_id!r} already")
        self._link_id, self._capabilities, self._runtime = link_id, capabilities, runtime
        runtime.clients.attach(self)
        self._linked.set()
        return {}


async def link_endpoint(websocket: WebSocket) -> None:
    manager = websocket.app.state.manager
    assert isinstance(manager, SessionManager)
    await websocket.accept()
    await RemoteClient(manager, websocket.path_params["id"], websocket).serve()


async def link_without_upgrade(request: Request) -> Response:
    """A plain HTTP request on the link's route: say what it takes instead of a 404."""
    response = problem(426, "upgrade-required", f"{request.url.path} is a client link: upgrade to a WebSocket")
    response.headers["Upgrade"] = "websocket"
    return response


ROUTES: Final = [WebSocketRoute(LINK_PATH, link_endpoint), Route(LINK_PATH, link_without_upgrade, methods=["GET"])]
