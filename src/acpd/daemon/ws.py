"""Daemon layer: the ACP face over WebSocket: ``GET /v1/rpc`` upgraded, one JSON-RPC message per
text frame. A Starlette WebSocket as a Transport, and the route that serves an ``AcpConnection`` on
it. The security middleware has already checked Host, Origin and the token.

``?framing=lines`` (what ``acpd acp``'s relay asks for): the daemon's text frames carry one or
more JSON-RPC messages, each ended by a newline (NDJSON, as on stdio), so a batch of logged
updates is one frame, and a relay writes it to its stdout as it is, with no work per message.
What the client sends stays one message per frame."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Final

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from acpd.errors import ConnectionClosed
from acpd.protocol.framing import Frame, FrameTooLong

from .acp_face import AcpConnection
from .http_protocol import MAX_MESSAGE_BYTES, TEXT_FRAMES_EXTENSION
from .manager import SessionManager
from .problems import problem

LINES_FRAME_BYTES: Final = 1024 * 1024
"""With ``framing=lines``, messages are gathered into a frame up to about this size (a longer
message is a frame of its own), well under the 32 MiB a client accepts."""


class WebSocketTransport:
    """A server-side WebSocket carrying one JSON-RPC message per text (or binary) frame."""

    def __init__(self, websocket: WebSocket, *, lines: bool = False) -> None:
        self._ws = websocket
        self._lines = lines
        self._closed = False
        extension = websocket.scope.get("extensions", {}).get(TEXT_FRAMES_EXTENSION)
        self._write_text: Callable[[bytes], bool] | None = extension.get("write") if extension else None

    async def send(self, frame: bytes) -> None:
        await self._send_frame(frame + b"\n" if self._lines else frame)

    async def send_many(self, frames: list[bytes]) -> None:
        """``send`` of each, in order: with ``framing=lines``, as few frames as their size allows."""
        if not self._lines:
            for frame in frames:
                await self._send_frame(frame)
            return
        batch: list[bytes] = []
        size = 0
        for frame in frames:
            if batch and size + len(frame) > LINES_FRAME_BYTES:
                await self._send_frame(b"".join(batch))
                batch, size = [], 0
            batch += (frame, b"\n")
            size += len(frame) + 1
        if batch:
            await self._send_frame(b"".join(batch))

    async def _send_frame(self, frame: bytes) -> None:
        # No lock: one ASGI send writes a whole message, so concurrent senders cannot tear one;
        # and no yield per message, so the messages of a batch leave in one write (ws_protocol).
        if self._closed:
            raise ConnectionClosed("the WebSocket is closed")
        if self._write_text is not None and self._write_text(frame):
            return  # frames are the daemon's own JSON: valid UTF-8 text
        try:
            await self._ws.send_text(frame.decode())
        except (WebSocketDisconnect, RuntimeError) as exc:  # starlette raises RuntimeError after close
            self._closed = True
            raise ConnectionClosed("the WebSocket is closed") from exc

    async def receive(self) -> list[Frame]:
        if self._closed:
            raise anyio.EndOfStream
        try:
            message = await self._ws.receive()
        except RuntimeError:
            message = {"type": "websocket.disconnect"}
        if message["type"] == "websocket.disconnect":
            self._closed = True
            raise anyio.EndOfStream
        data: bytes = message.get("bytes") or (message.get("text") or "").encode()
        if len(data) > MAX_MESSAGE_BYTES:
            return [FrameTooLong(len(data))]
        return [data]

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(RuntimeError):  # already closed by the client
                await self._ws.close()


async def rpc_endpoint(websocket: WebSocket) -> None:
    manager = websocket.app.state.manager
    assert isinstance(manager, SessionManager)
    agent = websocket.query_params.get("agent") or None
    lines = websocket.query_params.get("framing") == "lines"
    await websocket.accept()
    transport = WebSocketTransport(websocket, lines=lines)
    connection = AcpConnection(manager, transport, default_agent=agent, name="ws")
    await connection.serve()


async def rpc_without_upgrade(request: Request) -> Response:
    """A plain HTTP request on the WebSocket route: say what it takes instead of a 404."""
    response = problem(426, "upgrade-required", "/v1/rpc speaks ACP JSON-RPC over a WebSocket: upgrade the connection")
    response.headers["Upgrade"] = "websocket"
    return response


ROUTES: Final = [WebSocketRoute("/v1/rpc", rpc_endpoint), Route("/v1/rpc", rpc_without_upgrade, methods=["GET"])]
