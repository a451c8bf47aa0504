"""Daemon layer: ACP over HTTP + SSE, compatible with rivet-dev/sandbox-agent's ``/v1/acp`` routes.

A connection (the client picks its id) is an ``AcpConnection`` whose transport is a memory pair:
POSTed envelopes go in; everything the connection sends out is appended to the connection's own
log in the store, which ``GET /v1/acp/{id}`` streams as SSE from any ``Last-Event-ID`` (no ring
to fall out of). A POSTed request is answered in the POST's body (200) once its response is
committed to that log, so the SSE copy is there too; notifications and replies get 202. DELETE
closes the connection at once: sessions belong to the daemon and live on. No REST routing of
sessions here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Final

import anyio
from anyio.abc import TaskStatus
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from acpd.errors import AgentNotFound, Conflict, InvalidInput, NotFound, StoreError
from acpd.protocol import jsonio, jsonrpc
from acpd.protocol.jsonio import JsonObject
from acpd.protocol.jsonrpc import Kind
from acpd.transports.memory import MemoryTransport, create_memory_transport_pair

from . import sse
from .acp_face import AcpConnection
from .http import json_response, read_json, replay_after
from .log import SessionLog
from .manager import SessionManager, check_id

LOG_PREFIX: Final = "acp-connection/"
"""Connection logs share the event store with sessions; ``/`` cannot occur in a session id."""


MAX_REAP_INTERVAL_SECONDS: Final = 60.0
"""How often, at most, idle connections are looked for."""

NOT_A_RESPONSE: Final = b'{"jsonrpc":"2.0","method":'
"""How the daemon's encoder starts every notification (key order kept); never a response."""


class AcpNotFound(NotFound):
    kind = "acp-connection-not-found"


class AcpConnectionClosed(Conflict):
    """The connection was deleted (or expired) while a POST on it waited for its answer."""

    kind = "acp-connection-closed"


class HttpAcpConnection:
    """One ACP-over-HTTP connection: its ACP face, and the log of what it sent."""

    def __init__(self, manager: SessionManager, connection_id: str, agent: str | None, last_seq: int) -> None:
        self.id = connection_id
        self.agent = agent
        self.created_at_ms = int(time.time() * 1000)
        self.log = SessionLog(manager.store, LOG_PREFIX + connection_id, last_seq, committer=manager.committer)
        self._server_end, self._client_end = create_memory_transport_pair()
        self.acp = AcpConnection(
            manager,
            self._server_end,
            default_agent=agent,
            link_id=f"http:{connection_id}",
            name=f"http:{connection_id}",
        )
        self._waiting: dict[jsonrpc.RequestId, tuple[anyio.Event, list[JsonObject | StoreError]]] = {}
        self._users = 0
        self.last_used = anyio.current_time()

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Mark the connection used while a POST waits or an SSE reader reads: it does not expire."""
        self._users += 1
        try:
            yield
        finally:
            self._users -= 1
            self.last_used = anyio.current_time()

    def idle_since(self, now: float) -> float:
        """Seconds without a request or a reader (0 while one is there)."""
        return 0.0 if self._users else now - self.last_used

    def wire(self) -> JsonObject:
        return {"serverId": self.id, "agent": self.agent, "createdAtMs": self.created_at_ms}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pump, self._client_end)
                task_status.started()
                await self.acp.serve()
                self._shut()
        finally:
            self._shut()
            with anyio.CancelScope(shield=True):
                await self._client_end.aclose()
                await self._server_end.aclose()

    async def _pump(self, client_end: MemoryTransport) -> None:
        """Log each outgoing message; hand a response to the POST that waits for it."""
        while True:
            try:
                frames = await client_end.receive()
            except anyio.EndOfStream:
                return
            for frame in frames:
                if not isinstance(frame, bytes):
                    continue
                record = self.log.append("agent", 0, frame.decode())
                if frame.startswith(NOT_A_RESPONSE):
                    continue  # most frames are updates: no need to parse them to know that
                message = jsonio.loads(frame)
                if isinstance(message, dict) and "method" not in message:
                    waiting = self._waiting.pop(message.get("id"), None)  # type: ignore[arg-type]
                    if waiting is not None:
                        waiting[1].append(await self._committed(record.seq, message))
                        waiting[0].set()

    async def _committed(self, seq: int, message: JsonObject) -> JsonObject | StoreError:
        """``message`` once it is committed, or the store's error while it fails (a full disk)."""
        try:
            await self.log.wait_committed(seq)
        except StoreError as exc:
            return exc
        return message

    async def post(self, message: JsonObject) -> JsonObject | None:
        """Deliver one envelope; a request's response is returned, anything else gives None.

        Raises:
            InvalidInput: not a JSON-RPC message. Conflict: that request id is already pending.
            AcpConnectionClosed: the connection was deleted meanwhile. StoreError: the response
            could not be committed (a full disk); it follows on the SSE stream once it is.
        """
        kind = jsonrpc.classify(message)
        if not isinstance(kind, Kind):
            raise InvalidInput(f"not a JSON-RPC 2.0 message: {kind.reason}")
        if kind is not Kind.REQUEST:
            await self._client_end.send(jsonio.dumps(message))
            return None
        request_id = message["id"]
        if request_id in self._waiting:
            raise Conflict(f"a request with id {request_id!r} is already pending on this connection")
        done: tuple[anyio.Event, list[JsonObject | StoreError]] = (anyio.Event(), [])
        self._waiting[request_id] = done
        try:
            await self._client_end.send(jsonio.dumps(message))
            await done[0].wait()
        finally:
            # the answer's pump already removed this waiter, and a newer request may reuse the id
            if self._waiting.get(request_id) is done:
                del self._waiting[request_id]
        if not done[1]:
            raise AcpConnectionClosed(f"ACP connection {self.id!r} was closed before it answered")
        if isinstance(done[1][0], StoreError):
            raise done[1][0]
        return done[1][0]

    def _shut(self) -> None:
        for event, _ in self._waiting.values():
            event.set()
        self.log.close()

    async def aclose(self) -> None:
        await self.acp.aclose()
        await self._client_end.aclose()
        self._shut()


class AcpHttpHub:
    """Every ACP-over-HTTP connection of the daemon."""

    def __init__(self, manager: SessionManager) -> None:
        self._manager = manager
        self._connections: dict[str, HttpAcpConnection] = {}
        self._lock = anyio.Lock()
        self._idle_seconds = manager.config.acp_http_idle_seconds
        self._reaping = False

    def list(self) -> list[JsonObject]:
        return [c.wire() for c in self._connections.values()]

    async def connection(self, connection_id: str, *, agent: str | None, create: bool) -> HttpAcpConnection:
        """The live connection; created (or revived from its stored log after a restart) if
        ``create`` or if its log exists.

        Raises:
            AcpNotFound, InvalidInput, AgentNotFound, Conflict (bound to another agent).
        """
        existing = self._connections.get(connection_id)
        if existing is not None:
            if agent is not None and existing.agent is not None and agent != existing.agent:
                raise Conflict(f"ACP connection {connection_id!r} is bound to agent {existing.agent!r}")
            return existing
        check_id(connection_id, "a connection id")
        if agent is not None and agent not in self._manager.config.all_agents():
            raise AgentNotFound(f"no agent named {agent!r}; known agents: {sorted(self._manager.config.all_agents())}")
        async with self._lock:
            if connection_id in self._connections:
                return self._connections[connection_id]
            last_seq = await self._manager.store.last_seq(LOG_PREFIX + connection_id)
            if not create and last_seq == 0:
                raise AcpNotFound(f"no ACP connection {connection_id!r}")
            connection = HttpAcpConnection(self._manager, connection_id, agent, last_seq)
            await self._manager.task_group.start(self._run, connection)
            if not self._reaping:
                self._reaping = True
                self._manager.task_group.start_soon(self._reap)
            return connection

    async def _reap(self) -> None:
        # clients of sandbox-agent's protocol rarely DELETE: idle connections would pile up
        while True:
            await anyio.sleep(min(self._idle_seconds / 4, MAX_REAP_INTERVAL_SECONDS))
            await self.expire_idle(anyio.current_time())

    async def expire_idle(self, now: float) -> tuple[str, ...]:
        """Close and forget every connection idle for the configured time at ``now``, as DELETE
        would (their sessions live on); the ids expired."""
        idle = tuple(cid for cid, c in self._connections.items() if c.idle_since(now) >= self._idle_seconds)
        for connection_id in idle:
            await self.delete(connection_id)
        return idle

    async def _run(self, connection: HttpAcpConnection, *, task_status: TaskStatus[None]) -> None:
        self._connections[connection.id] = connection
        try:
            await connection.run(task_status=task_status)
        finally:
            if self._connections.get(connection.id) is connection:
                del self._connections[connection.id]

    async def delete(self, connection_id: str) -> None:
        """Close the connection now (its sessions live on) and forget its log. Idempotent."""
        connection = self._connections.pop(connection_id, None)
        if connection is not None:
            await connection.aclose()
            await connection.log.finished.wait()
        await self._manager.store.delete_session(LOG_PREFIX + connection_id)


def hub_of(request: Request) -> AcpHttpHub:
    hub = request.app.state.acp_hub
    assert isinstance(hub, AcpHttpHub)
    return hub


async def list_connections(request: Request) -> Response:
    return json_response({"servers": hub_of(request).list()})


async def post_envelope(request: Request) -> Response:
    agent = request.query_params.get("agent") or None
    message = await read_json(request)
    connection = await hub_of(request).connection(request.path_params["id"], agent=agent, create=True)
    with connection.in_use():
        response = await connection.post(message)
    if response is None:
        return Response(status_code=202)
    return json_response(response)


async def stream(request: Request) -> Response:
    connection = await hub_of(request).connection(request.path_params["id"], agent=None, create=False)
    after = replay_after(request)
    body = _while_read(connection, sse.stream_log(connection.log, after, encoder=sse.encode_messages))
    return StreamingResponse(body, media_type="text/event-stream", headers=sse.HEADERS)


async def _while_read(connection: HttpAcpConnection, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    with connection.in_use():
        async for chunk in chunks:
            yield chunk


async def delete_connection(request: Request) -> Response:
    await hub_of(request).delete(request.path_params["id"])
    return Response(status_code=204)


ROUTES: Final = [
    Route("/v1/acp", list_connections, methods=["GET"]),
    Route("/v1/acp/{id}", post_envelope, methods=["POST"]),
    Route("/v1/acp/{id}", stream, methods=["GET"]),
    Route("/v1/acp/{id}", delete_connection, methods=["DELETE"]),
]
