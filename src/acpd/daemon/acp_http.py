"""Daemon layer: ACP over HTTP + SSE, compatible with rivet-dev/sandbox-agent's ``/v1/acp`` routes.

A connection (the client picks its id) is an ``AcpConnection`` whose transport logs what it sends:
POSTed envelopes go in; everything the connection sends out is appended to the connection's own
log in the store (a copy, or a reference to the session records it forwards as stored), which
``GET /v1/acp/{id}`` streams as SSE from any ``Last-Event-ID`` (no ring to fall out of; the id is
the message's number on the connection). The face hands the connection a session's records as they
are appended, not once committed: the connection's log commits after them (``commit_after``), in
the same transaction when the committer takes both in one round, so a turn's answer, its copy here
and the references to its updates cost one commit. A POSTed request is answered in the POST's body
(200) once its response is committed to that log, so the SSE copy is there too, and what it answers
from is durable; notifications and replies get 202. DELETE
closes the connection at once: sessions belong to the daemon and live on. No REST routing of
sessions here.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import time
from array import array
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Final

import anyio
from anyio.abc import TaskStatus
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from acpd.errors import AgentNotFound, Conflict, ConnectionClosed, InvalidInput, NotFound, StoreError
from acpd.protocol import jsonio, jsonrpc
from acpd.protocol.events import EventRecord
from acpd.protocol.framing import Frame
from acpd.protocol.jsonio import JsonObject
from acpd.protocol.jsonrpc import Kind

from . import sse
from .acp_face import AcpConnection
from .http import json_response, read_json, replay_after
from .log import SessionLog
from .manager import SessionManager, check_id
from .sharing import shared_store

LOG_PREFIX: Final = "acp-connection/"
"""Connection logs share the event store with sessions; ``/`` cannot occur in a session id."""


MAX_REAP_INTERVAL_SECONDS: Final = 60.0
"""How often, at most, idle connections are looked for."""

INBOX_FRAMES: Final = 64
"""POSTed envelopes queued for the ACP face before a POST waits."""

NOT_A_RESPONSE: Final = b'{"jsonrpc":"2.0","method":'
"""How the daemon's encoder starts every notification (key order kept); never a response."""


class AcpNotFound(NotFound):
    kind = "acp-connection-not-found"


class AcpConnectionClosed(Conflict):
    """The connection was deleted (or expired) while a POST on it waited for its answer."""

    kind = "acp-connection-closed"


class _Wire:
    """The ACP face's transport on an HTTP connection: what it sends is logged at once, in wire
    order (``HttpAcpConnection.sent``); POSTed envelopes wait in an inbox of ``INBOX_FRAMES``.

    The inbox is a deque and asyncio events, not an anyio memory stream: a delivery that has room
    costs no turn of the event loop (a memory stream's send yields one first), and the face's
    reader takes every envelope waiting at once."""

    def __init__(self, connection: HttpAcpConnection) -> None:
        self._connection = connection
        self._inbox: deque[bytes] = deque()
        self._arrived: asyncio.Event | None = None  # made when the reader waits
        self._room: asyncio.Event | None = None  # made when a delivery waits for room
        self._closed = False
        self._idle = False  # the reader waits for envelopes: it handled every one delivered

    @property
    def idle(self) -> bool:
        """The face's reader has handled everything delivered so far (none is waiting, nor being
        handled): a request may be served at once without overtaking an earlier envelope."""
        return self._idle and not self._inbox

    async def send(self, frame: bytes) -> None:
        if self._connection.log.closed:
            raise ConnectionClosed("the ACP connection is closed")
        self._connection.sent(frame)

    async def deliver(self, frame: bytes) -> None:
        while len(self._inbox) >= INBOX_FRAMES and not self._closed:
            if self._room is None:
                self._room = asyncio.Event()
            await self._room.wait()
        if self._closed:
            raise AcpConnectionClosed("the ACP connection is closed")
        self._inbox.append(frame)
        if self._arrived is not None:
            self._arrived.set()
            self._arrived = None

    async def receive(self) -> list[Frame]:
        while not self._inbox:
            if self._closed:
                raise anyio.EndOfStream
            if self._arrived is None:
                self._arrived = asyncio.Event()
            self._idle = True
            try:
                await self._arrived.wait()
            finally:
                self._idle = False
        frames: list[Frame] = list(self._inbox)
        self._inbox.clear()
        if self._room is not None:
            self._room.set()
            self._room = None
        return frames

    async def aclose(self) -> None:
        self._closed = True
        for event in (self._arrived, self._room):
            if event is not None:
                event.set()


class _Waiter:
    __slots__ = ("answered", "message", "seq")

    def __init__(self) -> None:
        self.answered = asyncio.Event()  # asyncio's: anyio's looks its backend up at each
        self.message: JsonObject | None = None
        self.seq = 0


class HttpAcpConnection:
    """One ACP-over-HTTP connection: its ACP face, and the log of what it sent.

    The log holds a copy of each message the face composed (answers, requests, rewritten
    updates), and, for the updates it forwards as a session logged them (nearly all), a
    *reference*: a ``daemon`` record naming the session and a seq range, read back from the
    session's log when streamed. A turn of 100,000 chunks is then a few dozen records here
    instead of 100,000 copies. Messages are numbered from 1 across both kinds: the SSE id.
    """

    log_prefix = LOG_PREFIX
    link_prefix = "http"

    def __init__(
        self, manager: SessionManager, connection_id: str, agent: str | None, last_seq: int, firsts: array[int]
    ) -> None:
        self.id = connection_id
        self.agent = agent
        self.created_at_ms = int(time.time() * 1000)
        self._manager = manager
        log_id = self.log_prefix + connection_id
        self.log = SessionLog(manager.store, log_id, last_seq, committer=manager.committer)
        # the number of the first message of each record, record seq - 1 as index: an array of
        # machine ints, 8 bytes a record (a list of ints held ~36, for as long as the connection lives)
        self._firsts = firsts
        self._messages = 0  # numbered so far (``revive`` counts a stored log's)
        self._open_ref: tuple[int, int, str, int, int] | None = None  # the last reference: seq, turn, session, to, from
        self._wire = _Wire(self)
        # a session another daemon may take over (a shared database) drops what it has not committed
        self.unsettled = shared_store(manager.store) is None
        self.acp = AcpConnection(
            manager,
            self._wire,
            default_agent=agent,
            link_id=f"{self.link_prefix}:{connection_id}",
            name=f"{self.link_prefix}:{connection_id}",
            sent_log=self,
        )
        self._waiting: dict[jsonrpc.RequestId, _Waiter] = {}
        self._users = 0
        self.last_used = time.monotonic()  # the event loop's clock, without anyio's backend lookup

    @classmethod
    async def revive(
        cls, manager: SessionManager, connection_id: str, agent: str | None, last_seq: int
    ) -> HttpAcpConnection:
        """The connection over its stored log (after a restart, or an expiry): its message numbers
        are counted again from its records."""
        firsts = array("q")
        count = 0
        async for records in _stored(manager, cls.log_prefix + connection_id, last_seq):
            for record in records:
                firsts.append(count + 1)
                count += _message_count(record)
        connection = cls(manager, connection_id, agent, last_seq, firsts)
        connection._messages = count
        return connection

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Mark the connection used while a POST waits or an SSE reader reads: it does not expire."""
        self.begin_use()
        try:
            yield
        finally:
            self.end_use()

    def begin_use(self) -> None:
        """``in_use`` without a generator, for the path of every POST; ``end_use`` must follow."""
        self._users += 1

    def end_use(self) -> None:
        self._users -= 1
        self.last_used = time.monotonic()

    def idle_since(self, now: float) -> float:
        """Seconds without a request or a reader (0 while one is there)."""
        return 0.0 if self._users else now - self.last_used

    def wire(self) -> JsonObject:
        return {"serverId": self.id, "agent": self.agent, "createdAtMs": self.created_at_ms}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            # the log commits through the manager's group committer: no flusher of its own
            task_status.started()
            await self.acp.serve()
        finally:
            self._shut()
            with anyio.CancelScope(shield=True):
                await self._wire.aclose()

    # -- what the face sends: logged in wire order -------------------------------------------------

    def sent(self, frame: bytes) -> None:
        """Log a message the face sent; hand a response to the POST that waits for it."""
        record = self.log.append("agent", 0, frame.decode())
        self._counted(record.seq, 1)
        if frame.startswith(NOT_A_RESPONSE):
            return  # no need to parse a notification to know it answers nothing
        message = jsonio.loads(frame)
        if isinstance(message, dict) and "method" not in message:
            self._hand_over(message, record.seq)

    def _hand_over(self, response: JsonObject, seq: int) -> None:
        """Give a response to the POST waiting for it, if one is."""
        waiter = self._waiting.pop(response.get("id"), None)  # type: ignore[arg-type]
        if waiter is not None:
            waiter.message, waiter.seq = response, seq
            waiter.answered.set()

    def commit_after(self, log: SessionLog, seq: int, *, doc_version: int = 0) -> None:
        """What is logged from now on commits no earlier than record ``seq`` of ``log`` (the
        session's records it refers to, or answers from) and its document of ``doc_version``, in
        the same transaction at the earliest."""
        self.log.commit_after(log, seq, doc_version=doc_version)

    def refer(self, session_id: str, first: int, last: int) -> None:
        """Log a reference to records ``first``..``last`` of a session, sent as stored."""
        self._refer_on(0, session_id, first, last)

    def _refer_on(self, turn: int, session_id: str, first: int, last: int) -> None:
        """Log a reference; one that goes on from the newest record, a reference not taken by the
        committer yet, grows instead (``SessionLog.amend_last``): a burst passed on a read at a
        time is a reference a transaction, not one a read."""
        ref = self._open_ref
        if ref is not None and ref[0] == self.log.last_seq and ref[1:4] == (turn, session_id, first - 1):
            payload = jsonio.dumps_str({"session": session_id, "from": ref[4], "to": last})
            if self.log.amend_last(payload):
                self._messages += last - first + 1
                self._open_ref = (ref[0], turn, session_id, last, ref[4])
                return
        payload = jsonio.dumps_str({"session": session_id, "from": first, "to": last})
        record = self.log.append_scrubbed("daemon", turn, payload)  # ids the daemon made: nothing to mask
        self._counted(record.seq, last - first + 1)
        self._open_ref = (record.seq, turn, session_id, last, first)

    def _counted(self, seq: int, messages: int) -> None:
        if seq != len(self._firsts) + 1:
            return  # the log is closed: nothing was appended
        self._firsts.append(self._messages + 1)
        self._messages += messages

    # -- POST ------------------------------------------------------------------------------------

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
            await self._wire.deliver(jsonio.dumps(message))
            return None
        request_id = message["id"]
        if request_id in self._waiting:
            raise Conflict(f"a request with id {request_id!r} is already pending on this connection")
        waiter = self._waiting[request_id] = _Waiter()
        try:
            if self._wire.idle:
                # nothing delivered before it is still to be handled: served here, answered (and
                # logged) before ``serve`` returns, without a task or a turn of the loop
                await self.acp.peer.serve(message)
            else:
                await self._wire.deliver(jsonio.dumps(message))
                await waiter.answered.wait()
        except ConnectionClosed as exc:
            raise AcpConnectionClosed(f"ACP connection {self.id!r} is closed") from exc
        finally:
            # the answer already removed this waiter, and a newer request may reuse the id
            if self._waiting.get(request_id) is waiter:
                del self._waiting[request_id]
        if waiter.message is None:
            raise AcpConnectionClosed(f"ACP connection {self.id!r} was closed before it answered")
        await self.log.wait_committed(waiter.seq)  # durable (and on the SSE stream) before answered
        return waiter.message

    # -- GET: the SSE stream ---------------------------------------------------------------------

    async def stream(self, after: int, *, channel: int | None = None) -> AsyncIterator[bytes]:
        """Every message after number ``after``, live, as SSE (``id`` = the message's number);
        references are read back from their session's log. Ends when the connection closes.
        ``channel``: only the records logged with that ``turn`` (the others are still counted)."""
        yield b"retry: 1000\n\n"
        index = bisect.bisect_right(self._firsts, after + 1) - 1  # the record holding message after + 1
        at = _Position(self._firsts[index] if index >= 0 else 1, time.monotonic())
        follow = self.log.follow(max(index, 0), batch=sse.BATCH_RECORDS, idle_seconds=sse.KEEPALIVE_SECONDS)
        try:
            with self.in_use():
                async for records in follow:
                    async for chunk in self._encoded(records, at, after, channel):
                        at.written = time.monotonic()
                        yield chunk
                    # idle, or only other streams' records for a while: a comment keeps proxies patient
                    if not records or time.monotonic() - at.written >= sse.KEEPALIVE_SECONDS:
                        at.written = time.monotonic()
                        yield sse.KEEPALIVE
        except StoreError as exc:
            yield sse.encode_problem(exc)

    async def _encoded(
        self, records: list[EventRecord], at: _Position, after: int, channel: int | None
    ) -> AsyncIterator[bytes]:
        """The SSE events of one batch of records, those of ``channel`` numbered past ``after``, in
        as few chunks as ``sse.BATCH_RECORDS`` events a chunk allows: a turn's batch (its answer,
        and a reference to its updates) is one chunk, so one trip through the HTTP stack and one
        system call, however many references it holds."""
        parts: list[str] = []
        for record in records:
            if record.sender != "daemon":
                if (channel is None or record.turn == channel) and at.number > after:
                    parts.append(_event(at.number, record.payload))
                at.number += 1
                continue
            session_id, first, last = _reference(record)
            if channel is None or record.turn == channel:
                async for events in self._referenced(session_id, first, last, at.number, after):
                    parts += events
                    if len(parts) >= sse.BATCH_RECORDS:
                        yield "".join(parts).encode()
                        parts = []
            at.number += last - first + 1
        if parts:
            yield "".join(parts).encode()

    async def _referenced(
        self, session_id: str, first: int, last: int, number: int, after: int
    ) -> AsyncIterator[list[str]]:
        """The events of records ``first``..``last`` of a session, numbered from ``number``, those
        numbered past ``after``, a page at a time."""
        skip = max(0, after + 1 - number)
        cursor = first - 1 + skip
        number += skip
        while cursor < last:
            stored = await self._manager.committed_records(
                session_id, after=cursor, limit=min(sse.BATCH_RECORDS, last - cursor)
            )
            if not stored:
                return  # the session was deleted since: its messages are gone with it
            yield [_event(number + i, r.payload) for i, r in enumerate(stored)]
            number += len(stored)
            cursor = stored[-1].seq

    def _shut(self) -> None:
        for waiter in self._waiting.values():
            waiter.answered.set()
        self.log.close()

    async def aclose(self) -> None:
        await self.acp.aclose()
        await self._wire.aclose()
        self._shut()


class _Position:
    """Where a stream is: the number of the next message, and when it last wrote."""

    __slots__ = ("number", "written")

    def __init__(self, number: int, written: float) -> None:
        self.number = number
        self.written = written


def _event(number: int, payload: str) -> str:
    return f"event: message\nid: {number}\ndata: {payload}\n\n"


def _message_count(record: EventRecord) -> int:
    """Messages a record of a connection log stands for: 1, or a reference's range."""
    if record.sender != "daemon":
        return 1
    _, first, last = _reference(record)
    return last - first + 1


def _reference(record: EventRecord) -> tuple[str, int, int]:
    """The session and the range of its records a reference stands for."""
    ref = jsonio.loads(record.payload)
    assert isinstance(ref, dict)
    return str(ref["session"]), int(ref["from"]), int(ref["to"])


async def _stored(manager: SessionManager, log_id: str, last_seq: int) -> AsyncIterator[list[EventRecord]]:
    after = 0
    while after < last_seq:
        records = await manager.store.read(log_id, after=after, limit=sse.BATCH_RECORDS)
        if not records:
            return
        yield records
        after = records[-1].seq


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
            connection = await HttpAcpConnection.revive(self._manager, connection_id, agent, last_seq)
            await self._manager.task_group.start(self._run, connection)
            if not self._reaping:
                self._reaping = True
                self._manager.task_group.start_soon(self._reap)
            return connection

    async def _reap(self) -> None:
        # clients of sandbox-agent's protocol rarely DELETE: idle connections would pile up
        while True:
            await anyio.sleep(min(self._idle_seconds / 4, MAX_REAP_INTERVAL_SECONDS))
            await self.expire_idle(time.monotonic())

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
    """The daemon's hub, made at the first request that needs it (this module is imported then)."""
    state = request.app.state
    hub = getattr(state, "acp_hub", None)
    if hub is None:
        hub = state.acp_hub = AcpHttpHub(state.manager)
    assert isinstance(hub, AcpHttpHub)
    return hub


async def list_connections(request: Request) -> Response:
    return json_response({"servers": hub_of(request).list()})


@functools.lru_cache(maxsize=64)
def _agent_in(query_string: bytes) -> str | None:
    """``?agent=`` of a query string: a client sends the same one with every POST (parsed once)."""
    return QueryParams(query_string).get("agent") or None


async def post_envelope(request: Request) -> Response:
    query_string = request.scope.get("query_string")
    agent = _agent_in(query_string) if query_string else None
    message = await read_json(request)
    connection = await hub_of(request).connection(request.path_params["id"], agent=agent, create=True)
    connection.begin_use()
    try:
        response = await connection.post(message)
    finally:
        connection.end_use()
    if response is None:
        return Response(status_code=202)
    return json_response(response)


async def stream(request: Request) -> Response:
    connection = await hub_of(request).connection(request.path_params["id"], agent=None, create=False)
    after = replay_after(request)
    return StreamingResponse(connection.stream(after), media_type="text/event-stream", headers=sse.HEADERS)


async def delete_connection(request: Request) -> Response:
    await hub_of(request).delete(request.path_params["id"])
    return Response(status_code=204)


ROUTES: Final = [
    Route("/v1/acp", list_connections, methods=["GET"]),
    Route("/v1/acp/{id}", post_envelope, methods=["POST"]),
    Route("/v1/acp/{id}", stream, methods=["GET"]),
    Route("/v1/acp/{id}", delete_connection, methods=["DELETE"]),
]
