"""Daemon layer: ACP's own remote transport at ``/acp``, the Streamable HTTP & WebSocket transport
that the official ACP SDKs speak (``create_http_stream``, ``create_websocket_stream``, the
TypeScript SDK's ``createHttpStream``).

One endpoint. ``POST`` carries one JSON-RPC message: an ``initialize`` without ``Acp-Connection-Id``
opens a connection (200, its answer in the body, the id in the header); everything else names its
connection and gets 202 at once, the answer coming on a stream. ``GET`` with ``Accept:
text/event-stream`` is the connection's stream, or, with ``Acp-Session-Id``, one session's stream;
``GET`` with ``Upgrade: websocket`` runs the same conversation on a socket; ``DELETE`` ends the
connection (its sessions, the daemon's, live on).

A connection is an ACP-over-HTTP connection (``acp_http``) whose log records, with each message,
the stream it belongs to (the record's ``turn``): so every stream is served from the store, from
any ``Last-Event-ID``, and a slow reader loses nothing. A session's messages go to its stream once
the client opened it (or once ``session/new`` or ``session/fork`` named the session); before, to
the connection's stream, where a client that opens a session's stream only when it first sees the
session named (the Python SDK, after ``session/load``) still finds them; and they stay there, so a
client merging its streams never sees one session's messages out of order.

This module routes messages; it must not answer ACP methods (the face does) nor know the
sandbox-agent routes.
"""

from __future__ import annotations

import time
import uuid
from array import array
from typing import Final

import anyio
from anyio.abc import TaskStatus
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from acpd.errors import AgentNotFound, InvalidInput, SessionNotFound, UnsupportedMediaType
from acpd.protocol import jsonio, jsonrpc, methods
from acpd.protocol.jsonio import JsonObject
from acpd.protocol.jsonrpc import Kind
from acpd.protocol.methods import CONNECTION_HEADER, SESSION_HEADER

from . import sse
from .acp_face import AcpConnection
from .acp_http import AcpNotFound, HttpAcpConnection
from .http import json_response, read_body, replay_after
from .manager import SessionManager
from .problems import problem
from .ws import WebSocketTransport

PATH: Final = "/acp"
ANSWERED: Final = 0
"""The stream of the ``initialize`` answer, which its POST's body carries: none."""
CONNECTION_STREAM: Final = 1
"""The connection's own stream; a session's stream is numbered from 2 as the client opens it."""
FORGET_SECONDS: Final = 5.0
"""How long a stopping daemon waits to delete a connection's log (a stuck disk leaves it behind)."""
SESSION_SCOPED: Final = frozenset(
    {
        methods.SESSION_PROMPT,
        methods.SESSION_CANCEL,
        methods.SESSION_SET_MODE,
        methods.SESSION_SET_CONFIG_OPTION,
        methods.SESSION_CLOSE,
    }
)
"""Methods a POST must name the session of in ``Acp-Session-Id``: those every SDK sends it with
(the TypeScript SDK also sends it with load, resume, fork, delete and set_model; the Python SDK
does not, so those may come without it)."""


class RemoteConnection(HttpAcpConnection):
    """One connection on ``/acp``: its ACP face, and the log of what it sent, by stream."""

    log_prefix = "acp-remote/"
    link_prefix = "acp"

    def __init__(self, manager: SessionManager, connection_id: str, agent: str | None) -> None:
        super().__init__(manager, connection_id, agent, 0, array("q"))
        self._streams: dict[str, int] = {}  # session id -> its stream, once opened
        self._opened = CONNECTION_STREAM  # the last stream number given out
        self._pinned: set[str] = set()  # sessions whose messages went on the connection's stream
        self._asked: dict[jsonrpc.RequestId, str | None] = {}  # POSTed requests -> the session they name
        self._known: set[str] = set()  # sessions found in the daemon for this connection's headers
        self._calls: dict[jsonrpc.RequestId, int] = {}  # the face's open requests -> their stream

    def open_stream(self, session_id: str) -> int:
        """The session's stream (opened now if it was not): its messages go there from now on,
        unless some already went on the connection's stream: they stay there then, so that a
        client reading both streams never sees the session's messages out of order (the new
        stream stays empty)."""
        stream = self._streams.get(session_id)
        if stream is None:
            self._opened += 1
            stream = self._opened
            if session_id not in self._pinned:
                self._streams[session_id] = stream
        return stream

    def _stream_of(self, session_id: object) -> int:
        if not isinstance(session_id, str):
            return CONNECTION_STREAM
        stream = self._streams.get(session_id)
        if stream is None:
            self._pinned.add(session_id)
            return CONNECTION_STREAM
        return stream

    async def check_session(self, session_id: str) -> None:
        """Raises ``SessionNotFound`` if the daemon has no such session (checked once per connection)."""
        if session_id in self._known:
            return
        if (
            session_id not in self._manager.live_sessions()
            and await self._manager.store.get_session(session_id) is None
        ):
            raise SessionNotFound(session_id)
        self._known.add(session_id)

    # -- what the face sends: logged on its stream ------------------------------------------------

    def sent(self, frame: bytes) -> None:
        """Log a message the face sent on the stream it belongs to; hand ``initialize``'s answer
        to its POST."""
        message = jsonio.loads(frame)
        assert isinstance(message, dict), "the face sends JSON-RPC objects"
        if "method" in message:
            self._log(self._stream_of_call(message), frame)
            return
        request_id = message.get("id")
        named = self._asked.pop(request_id, None)  # type: ignore[arg-type]
        result = message.get("result")
        opened = result.get("sessionId") if isinstance(result, dict) else None
        if request_id in self._waiting:
            stream = ANSWERED
        elif isinstance(opened, str):
            stream = CONNECTION_STREAM  # the client has no stream of that session yet
        else:
            stream = self._stream_of(named)  # after the request's updates, on their stream
        seq = self._log(stream, frame)
        self._hand_over(message, seq)
        if isinstance(opened, str):
            # before the face forwards the session's first update (it waits for this answer)
            self.open_stream(opened)

    def _stream_of_call(self, message: JsonObject) -> int:
        """A request or notification of the face goes on its session's stream; a withdrawal
        (``$/cancel_request``) follows the request it withdraws."""
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        if message.get("method") == methods.CANCEL_REQUEST:
            withdrawn = self._calls.pop(params.get("requestId"), None)  # type: ignore[arg-type]
            return CONNECTION_STREAM if withdrawn is None else withdrawn
        stream = self._stream_of(params.get("sessionId"))
        if "id" in message:
            self._calls[message["id"]] = stream
        return stream

    def _log(self, stream: int, frame: bytes) -> int:
        record = self.log.append("agent", stream, frame.decode())
        self._counted(record.seq, 1)
        return record.seq

    def refer(self, session_id: str, first: int, last: int) -> None:
        self._refer_on(self._stream_of(session_id), session_id, first, last)

    # -- POST ------------------------------------------------------------------------------------

    async def accept(self, message: JsonObject) -> None:
        """Deliver one message; its answer, if any, comes on a stream.

        Raises:
            InvalidInput: not a JSON-RPC message. AcpConnectionClosed: the connection was deleted.
        """
        kind = jsonrpc.classify(message)
        if not isinstance(kind, Kind):
            raise InvalidInput(f"not a JSON-RPC 2.0 message: {kind.reason}")
        if kind is Kind.REQUEST:
            params = message.get("params")
            named = params.get("sessionId") if isinstance(params, dict) else None
            self._asked[message["id"]] = named if isinstance(named, str) else None
        elif kind is Kind.RESPONSE:
            self._calls.pop(message.get("id"), None)  # type: ignore[arg-type]
        await self._wire.deliver(jsonio.dumps(message))


class AcpRemoteHub:
    """Every ``/acp`` connection of the daemon (they do not outlive it: ACP v1 clients reconnect
    with ``initialize`` and ``session/load``)."""

    def __init__(self, manager: SessionManager) -> None:
        self._manager = manager
        self._connections: dict[str, RemoteConnection] = {}
        self._idle_seconds = manager.config.acp_http_idle_seconds
        self._reaping = False

    async def create(self, agent: str | None) -> RemoteConnection:
        """A new connection, its face running. Raises ``AgentNotFound``."""
        if agent is not None and agent not in self._manager.config.all_agents():
            raise AgentNotFound(f"no agent named {agent!r}; known agents: {sorted(self._manager.config.all_agents())}")
        connection = RemoteConnection(self._manager, uuid.uuid4().hex, agent)
        await self._manager.task_group.start(self._run, connection)
        if not self._reaping:
            self._reaping = True
            self._manager.task_group.start_soon(self._reap)
        return connection

    def get(self, connection_id: str | None) -> RemoteConnection:
        """Raises ``InvalidInput`` (no id given), ``AcpNotFound`` (no such connection, or no longer)."""
        if connection_id is None:
            raise InvalidInput(f"the {CONNECTION_HEADER} header is required: POST initialize first to get one")
        connection = self._connections.get(connection_id)
        if connection is None:
            raise AcpNotFound(f"no ACP connection {connection_id!r} (it was deleted, or expired, or never was)")
        return connection

    async def _run(self, connection: RemoteConnection, *, task_status: TaskStatus[None]) -> None:
        self._connections[connection.id] = connection
        try:
            await connection.run(task_status=task_status)
        finally:
            if self._connections.get(connection.id) is connection:
                # the daemon stops (DELETE forgets a connection before it ends): its log goes too,
                # as nothing could read it after a restart; the store is still open here
                del self._connections[connection.id]
                with anyio.CancelScope(shield=True), anyio.move_on_after(FORGET_SECONDS):
                    await self._manager.store.delete_session(RemoteConnection.log_prefix + connection.id)

    async def _reap(self) -> None:
        # a client that goes away without DELETE leaves its connection behind
        while True:
            await anyio.sleep(min(self._idle_seconds / 4, 60.0))
            await self.expire_idle(time.monotonic())

    async def expire_idle(self, now: float) -> tuple[str, ...]:
        """Delete every connection idle for the configured time at ``now``; the ids deleted."""
        idle = tuple(cid for cid, c in self._connections.items() if c.idle_since(now) >= self._idle_seconds)
        for connection_id in idle:
            await self.delete(connection_id)
        return idle

    async def delete(self, connection_id: str) -> None:
        """Close the connection now and forget its log (its sessions live on)."""
        connection = self._connections.pop(connection_id, None)
        if connection is not None:
            await connection.aclose()
            await connection.log.finished.wait()
            await self._manager.store.delete_session(RemoteConnection.log_prefix + connection_id)


def hub_of(request: Request) -> AcpRemoteHub:
    """The daemon's hub, made at the first request that needs it (this module is imported then)."""
    state = request.app.state
    hub = getattr(state, "acp_remote", None)
    if hub is None:
        hub = state.acp_remote = AcpRemoteHub(state.manager)
    assert isinstance(hub, AcpRemoteHub)
    return hub


async def post_message(request: Request) -> Response:
    body = await _read_message(request)
    if isinstance(body, Response):
        return body
    hub = hub_of(request)
    connection_id = request.headers.get(CONNECTION_HEADER)
    if connection_id is None and body.get("method") == methods.INITIALIZE and "id" in body:
        connection = await hub.create(request.query_params.get("agent") or None)
        with connection.in_use():
            answer = await connection.post(body)
        return json_response(answer, headers={CONNECTION_HEADER: connection.id})
    connection = hub.get(connection_id)
    await _check_session_header(connection, body, request.headers.get(SESSION_HEADER))
    with connection.in_use():
        await connection.accept(body)
    return Response(status_code=202)


async def _read_message(request: Request) -> JsonObject | Response:
    """The body as one JSON-RPC message object; a batch is answered 501.

    Raises:
        UnsupportedMediaType: not sent as ``application/json``. PayloadTooLarge. InvalidInput.
    """
    media_type = (request.headers.get("content-type") or "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(f"POST {PATH} takes one JSON-RPC message as application/json, not {media_type!r}")
    raw = await read_body(request)
    try:
        value = jsonio.loads(raw)
    except jsonio.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from exc
    if isinstance(value, list):
        return problem(501, "batch-not-supported", "JSON-RPC batches are not supported: POST one message at a time")
    if not isinstance(value, dict):
        raise InvalidInput("the body must be a JSON-RPC message (an object)")
    if jsonio.nesting_exceeds(raw, value):
        raise InvalidInput(f"the body nests arrays and objects deeper than {jsonio.MAX_NESTING} levels")
    return value


async def _check_session_header(connection: RemoteConnection, message: JsonObject, session_id: str | None) -> None:
    """A session-scoped method names its session in ``Acp-Session-Id`` too, and the two agree.

    Raises:
        InvalidInput: the header is missing or names another session. SessionNotFound.
    """
    method = message.get("method")
    if session_id is None:
        if method in SESSION_SCOPED:
            raise InvalidInput(f"{method} is session-scoped: send the session's id in the {SESSION_HEADER} header")
        return
    params = message.get("params")
    named = params.get("sessionId") if isinstance(params, dict) else None
    if isinstance(named, str) and named != session_id:
        raise InvalidInput(f"{SESSION_HEADER} names session {session_id!r} but the message names {named!r}")
    await connection.check_session(session_id)


async def open_stream(request: Request) -> Response:
    accept = request.headers.get("accept", "*/*")
    if "text/event-stream" not in accept and "*/*" not in accept:
        return problem(406, "not-acceptable", f"GET {PATH} answers with text/event-stream only (Accept: {accept!r})")
    connection = hub_of(request).get(request.headers.get(CONNECTION_HEADER))
    session_id = request.headers.get(SESSION_HEADER)
    stream = CONNECTION_STREAM
    if session_id is not None:
        await connection.check_session(session_id)
        stream = connection.open_stream(session_id)
    after = replay_after(request)
    body = connection.stream(after, channel=stream)  # in use while it is read
    return StreamingResponse(body, media_type="text/event-stream", headers=sse.HEADERS)


async def delete_connection(request: Request) -> Response:
    hub = hub_of(request)
    connection = hub.get(request.headers.get(CONNECTION_HEADER))
    await hub.delete(connection.id)
    return Response(status_code=202)


async def websocket_endpoint(websocket: WebSocket) -> None:
    """The same conversation over a WebSocket: one JSON-RPC message per text frame, every stream
    on the one socket. The face forwards from the session logs at the socket's pace."""
    manager = websocket.app.state.manager
    assert isinstance(manager, SessionManager)
    connection_id = uuid.uuid4().hex
    await websocket.accept(headers=[(CONNECTION_HEADER.lower().encode(), connection_id.encode())])
    face = AcpConnection(
        manager,
        WebSocketTransport(websocket),
        default_agent=websocket.query_params.get("agent") or None,
        link_id=f"acp-ws:{connection_id}",
        name=f"acp-ws:{connection_id}",
    )
    await face.serve()


ROUTES: Final = [
    Route(PATH, post_message, methods=["POST"]),
    Route(PATH, open_stream, methods=["GET"]),
    Route(PATH, delete_connection, methods=["DELETE"]),
    WebSocketRoute(PATH, websocket_endpoint),
]
