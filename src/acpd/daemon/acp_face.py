"""Daemon layer: the ACP face: to one connected client, acpd is one ACP agent that can be any agent.

An ``AcpConnection`` serves the stable ACP v1 agent methods over any Transport (stdio, WebSocket,
ACP-over-HTTP) on top of the SessionManager. Sessions are the daemon's: ``session/load`` replays
the stored log for every backend, several connections may attach to one session, and each
attached connection receives that session's updates from the log (durable before visible) in
log order. A transport that logs what it sends (ACP over HTTP: a ``SentLog``) is handed a
session's records as they are appended, since its log commits no earlier than they do.
Permission requests go to every attached client; the first answer wins and the others' requests
are cancelled with ``$/cancel_request``. It must not know which transport it runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Final, Protocol

import anyio
from anyio.abc import TaskGroup

from acpd import __version__
from acpd.errors import (
    AcpdError,
    Conflict,
    ConnectionClosed,
    InvalidInput,
    NotFound,
    RpcError,
    StoreError,
    StoreLocked,
)
from acpd.protocol import methods
from acpd.protocol.events import EventRecord
from acpd.protocol.jsonio import JsonObject, JsonValue
from acpd.protocol.jsonrpc import RequestId
from acpd.rpc.peer import Direction, JsonRpcPeer
from acpd.transports.base import Transport

from . import acp_shared, sharing
from .acp_records import AcpRecords
from .acp_views import (
    AGENT_OPTION_ID,
    SETTING_FOR_CATEGORY,
    AgentOptionSource,
    Frame,
    client_frame,
    config_options,
    forwards_as_stored,
    session_info,
    session_state,
)
from .log import SessionLog
from .manager import SessionManager
from .session import SessionRuntime
from .sharing import shared_store

logger = logging.getLogger(__name__)

Handler = Callable[[JsonObject, JsonObject], Awaitable[JsonValue]]


class SentLog(Protocol):
    """What a transport that logs what it sends offers the face (ACP over HTTP): a client reads the
    log once it is committed, so the face passes a session's records on as they are appended and
    says which of them what it sends next comes from; the log commits no earlier than they do."""

    unsettled: bool
    """Records are passed on as appended (else once committed, as to any transport: a session
    another daemon may take over, with a database shared, may drop what it has not committed)."""

    def refer(self, session_id: str, first: int, last: int) -> None:
        """Records ``first``..``last`` of a session, which the client receives exactly as stored,
        handed over as a reference instead of sent. Called in wire order with the transport's
        writes; must not block."""

    def commit_after(self, log: SessionLog, seq: int, *, doc_version: int = 0) -> None:
        """What is sent from now on is durable no earlier than record ``seq`` of ``log``, and
        than its document of ``doc_version`` (0: none)."""


AGENT_CAPABILITIES: Final[JsonObject] = {
    "loadSession": True,
    # acpd passes prompt blocks through to whichever agent runs the session: it promises only what
    # every ACP agent must accept (text and resource links)
    "promptCapabilities": {"image": False, "audio": False, "embeddedContext": False},
    "mcpCapabilities": {"http": False, "sse": False},
    "sessionCapabilities": {
        "list": {},
        "resume": {},
        "close": {},
        "delete": {},
        "fork": {},
        "additionalDirectories": {},
    },
}
LIST_PAGE: Final = 100
FORWARD_BATCH: Final = 5_000
"""Records a forwarder takes at once (``SessionLog.follow``'s default batch)."""
ERROR_MESSAGE_CHARS: Final = 500


class _Attachment:
    """One session this connection is attached to, and how far its updates have been sent."""

    def __init__(self, runtime: SessionRuntime, agents: AgentOptionSource) -> None:
        self.runtime = runtime
        self.agent_option = agents
        self.forwarded = 0
        self.scope = anyio.CancelScope()
        self.ended = False
        self.idle = False  # the forwarder waits, everything before ``forwarded`` passed on
        self.hook: Callable[[bool], bool] | None = None  # in the session log's ``on_queued``
        self.passing_soon = False  # ``_pass_on`` is due in this turn of the loop
        # asyncio's, not anyio's: one a forwarded batch, and anyio's looks its backend up at each
        self._progress = asyncio.Event()

    def advance(self, seq: int) -> None:
        self.forwarded = seq
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

    def end(self) -> None:
        self.ended = True
        if self.hook is not None:
            with contextlib.suppress(ValueError):
                self.runtime.log.on_queued.remove(self.hook)
            self.hook = None
        self._progress.set()

    async def caught_up(self, seq: int) -> None:
        """Wait until everything up to ``seq`` was sent (or forwarding ended)."""
        while self.forwarded < seq and not self.ended:
            await self._progress.wait()


class AcpConnection:
    """acpd as an ACP agent to one client. Run ``serve()``; it returns when the client goes."""

    def __init__(
        self,
        manager: SessionManager,
        transport: Transport,
        *,
        default_agent: str | None = None,
        link_id: str | None = None,
        name: str = "acp",
        sent_log: SentLog | None = None,
        finish_on_input_end: bool = False,
    ) -> None:
        """``finish_on_input_end``: the client's input may end before its output (stdio), and what
        it asked is answered first (``JsonRpcPeer``)."""
        self._manager = manager
        self._sent_log = sent_log
        self._unsettled = sent_log is not None and sent_log.unsettled
        self._default_agent = default_agent
        self._link_id = link_id or f"acp-{uuid.uuid4().hex[:12]}"
        self.peer = JsonRpcPeer(
            transport,
            on_request=self._on_request,
            on_notification=self._on_notification,
            tap=self._tap,
            finish_on_input_end=finish_on_input_end,
            name=name,
        )
        self._client_capabilities: JsonObject = {}
        self.client_info: JsonObject | None = None
        self._attached: dict[str, _Attachment] = {}
        self._answered: dict[RequestId, anyio.Event] = {}
        self._tg: TaskGroup | None = None
        self._handlers: dict[str, Handler] = {
            methods.INITIALIZE: self._initialize,
            methods.AUTHENTICATE: self._nothing,
            methods.LOGOUT: self._nothing,
            methods.SESSION_NEW: self._new,
            methods.SESSION_LOAD: self._load,
            methods.SESSION_RESUME: self._resume,
            methods.SESSION_LIST: self._list,
            methods.SESSION_FORK: self._fork,
            methods.SESSION_CLOSE: self._close,
            methods.SESSION_DELETE: self._delete,
            methods.SESSION_PROMPT: self._prompt,
            methods.SESSION_SET_MODE: self._set_mode,
            methods.SESSION_SET_CONFIG_OPTION: self._set_config_option,
            methods.SESSION_SET_MODEL: self._set_model,
        }
        self._records = AcpRecords(manager).handlers()
        self._handlers.update(self._records)
        shared = shared_store(manager.store)
        # sessions another daemon serves (a database shared with --share-db): acp_shared.py
        self._shared = None if shared is None else acp_shared.SharedSessions(self, manager, shared)

    # -- ClientLink ------------------------------------------------------------------------------

    @property
    def link_id(self) -> str:
        return self._link_id

    @property
    def client_capabilities(self) -> JsonObject:
        return self._client_capabilities

    async def relay(self, method: str, params: JsonObject) -> JsonValue:
        return await self.peer.request(method, params)

    # -- lifecycle -------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Serve until the transport ends or ``aclose()``; then detach from every session."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self.peer.run()
                tg.cancel_scope.cancel()
        finally:
            for session_id in list(self._attached):
                self._detach(session_id)
            if self._shared is not None:
                self._shared.drop_all()

    async def aclose(self) -> None:
        await self.peer.aclose()

    def _tap(self, direction: Direction, message: JsonObject) -> None:
        # a session's updates may flow only once the answer that names it is on the wire
        if direction == "out" and "method" not in message:
            answered = self._answered.pop(message.get("id"), None)  # type: ignore[arg-type]
            if answered is not None:
                answered.set()

    # -- dispatch --------------------------------------------------------------------------------

    async def _on_request(self, method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        handler = self._handlers.get(method)
        if handler is None:
            raise RpcError.method_not_found(method)
        if not isinstance(params, dict):
            raise RpcError.invalid_params("params must be an object")
        try:
            return await handler(params, message)
        except StoreLocked as refusal:
            shared = self._shared
            if shared is None or method not in acp_shared.METHODS:
                raise
            # another daemon serves it; here again if that one has died and its lock goes
            return await sharing.after_refusal(
                refusal, lambda: handler(params, message), lambda _: shared.handle(method, params, message)
            )

    async def _on_notification(self, method: str, params: JsonValue, message: JsonObject) -> None:
        # ACP: unknown notifications are ignored; session/cancel is the only one an agent acts on
        if method == methods.SESSION_CANCEL and isinstance(params, dict):
            session_id = str(params.get("sessionId"))
            try:
                with contextlib.suppress(NotFound):  # unknown sessions: nothing to cancel
                    await self._manager.cancel(session_id)
            except StoreLocked:
                if self._shared is not None:
                    await self._shared.cancel(session_id)

    async def _nothing(self, params: JsonObject, message: JsonObject) -> JsonValue:
        return {}

    async def _initialize(self, params: JsonObject, message: JsonObject) -> JsonValue:
        if not isinstance(params.get("protocolVersion"), int):
            raise RpcError.invalid_params('"protocolVersion" must be an integer')
        caps = params.get("clientCapabilities")
        self._client_capabilities = caps if isinstance(caps, dict) else {}
        info = params.get("clientInfo")
        self.client_info = info if isinstance(info, dict) else None
        agents = self._manager.config.all_agents()
        capabilities = dict(AGENT_CAPABILITIES)
        # the blocks a prompt may carry are the agent's to take: promise what the connection's
        # agent said it takes when one of its sessions started, else only what every agent must
        known = await self._manager.prompt_capabilities(self._agent_name())
        if known is not None:
            capabilities["promptCapabilities"] = known
        return {
            "protocolVersion": methods.PROTOCOL_VERSION,
            "agentCapabilities": capabilities,
            "authMethods": [],
            "agentInfo": {"name": "acpd", "title": "acpd", "version": __version__},
            "_meta": {
                "acpd": {
                    "agents": sorted(agents),
                    "defaultAgent": self._agent_name(),
                    "methods": sorted(self._records),
                }
            },
        }

    def _agent_name(self) -> str:
        return self._default_agent or self._manager.config.default_agent

    # -- sessions --------------------------------------------------------------------------------

    async def _new(self, params: JsonObject, message: JsonObject) -> JsonValue:
        extra = _acpd_meta(params)
        body: JsonObject = {
            "agent": extra.get("agent") or self._agent_name(),
            "cwd": _absolute(params.get("cwd"), "cwd"),
            # the manager checks these as it checks a REST create's
            "mcpServers": params.get("mcpServers"),
            "additionalDirectories": params.get("additionalDirectories"),
        }
        for key in ("id", "title", "project", "model", "mode", "thoughtLevel", "policy", "config"):
            if key in extra:
                body[key] = extra[key]
        # With a log of what is sent, the answer commits after the new session, in its transaction
        # (one commit, not two in a row); a full disk is then that log's error, as for any answer.
        sent_log = self._sent_log if self._unsettled else None
        runtime = await self._manager.create(body, durable=sent_log is None)
        if sent_log is not None:
            sent_log.commit_after(runtime.log, runtime.log.last_seq, doc_version=runtime.log.doc_version)
        # a new session's log holds only what its agent said on start (e.g. its commands): send it all
        self._attach(runtime, after=0, answered=self.answer_gate(message))
        return {"sessionId": runtime.session_id, **self._state(runtime)}

    async def _load(self, params: JsonObject, message: JsonObject) -> JsonValue:
        runtime = await self._runtime(params)
        self._detach(runtime.session_id)
        upto = await runtime.log.settled_end()
        await self._replay(runtime, upto)
        self._attach(runtime, after=upto, answered=self.answer_gate(message))
        return self._state(runtime)

    async def _replay(self, runtime: SessionRuntime, upto: int) -> None:
        """The session's history as ``session/update``s, read from the log, whatever the backend."""
        agents = AgentOptionSource(runtime.doc, self._manager.config.all_agents())
        async for records in runtime.log.history(upto):
            for record in records:
                frame = client_frame(record, link_id=self._link_id, replay=True, agent_option_for=agents)
                for replayed in frame.messages:
                    await self.peer.send_message(replayed)

    async def _fork(self, params: JsonObject, message: JsonObject) -> JsonValue:
        runtime = await self._manager.fork(_session_id(params), fork_body(params))
        # the client has the conversation up to the fork: it follows the new session from its end
        self._attach(runtime, after=await runtime.log.settled_end(), answered=self.answer_gate(message))
        return {"sessionId": runtime.session_id, **self._state(runtime)}

    async def _resume(self, params: JsonObject, message: JsonObject) -> JsonValue:
        runtime = await self._runtime(params)
        if runtime.session_id not in self._attached:
            self._attach(runtime, after=await runtime.log.settled_end(), answered=self.answer_gate(message))
        return self._state(runtime)

    async def _list(self, params: JsonObject, message: JsonObject) -> JsonValue:
        cwd = params.get("cwd")
        cursor = params.get("cursor")
        if cwd is not None:
            _absolute(cwd, "cwd")
        if cursor is not None and not isinstance(cursor, str):
            raise InvalidInput('"cursor" must be a string')
        filters = _list_filters(_acpd_meta(params))
        q = filters.pop("q", None)
        filters.update(limit=LIST_PAGE, cursor=cursor, cwd=cwd)
        manager = self._manager
        page = await (manager.list_sessions(**filters) if q is None else manager.search_sessions(q, **filters))
        answer: JsonObject = {"sessions": [session_info(doc) for doc in page.items]}
        if page.next_cursor is not None:
            answer["nextCursor"] = page.next_cursor
        return answer

    async def _close(self, params: JsonObject, message: JsonObject) -> JsonValue:
        runtime = await self._runtime(params)
        self._detach(runtime.session_id)
        if len(runtime.clients) == 0:
            # nobody else is watching: end the turn, stop the agent, unload (history stays)
            await self._manager.close(runtime.session_id)
        return {}

    async def _delete(self, params: JsonObject, message: JsonObject) -> JsonValue:
        session_id = _session_id(params)
        self._detach(session_id)
        await self._manager.delete(session_id)
        return {}

    # -- turns and settings ----------------------------------------------------------------------

    async def _prompt(self, params: JsonObject, message: JsonObject) -> JsonValue:
        attachment = await self._attachment(params)
        runtime = attachment.runtime
        turn = await self._manager.prompt(runtime.session_id, params.get("prompt"), origin=self._link_id)
        try:
            # a log of what is sent commits after the turn's answer: it may be sent once recorded
            await (turn.answered if self._unsettled else turn.done).wait()
        except anyio.get_cancelled_exc_class():
            # $/cancel_request cancels the turn; a client that merely went away leaves it running
            if not self.peer.closed:
                runtime.cancel()
            raise
        # every update of the turn reaches the client before the turn's answer; while the store
        # fails (a full disk) they cannot, and the store's error is the answer (or, with a log of
        # what is sent, the error of waiting for that log)
        if self._sent_log is not None and self._unsettled:
            self._sent_log.commit_after(runtime.log, turn.last_seq)
        else:
            await runtime.log.wait_committed(turn.last_seq)
        await attachment.caught_up(turn.last_seq)
        response = turn.response or {}
        error = response.get("error")
        if isinstance(error, dict):
            raise RpcError(int(error.get("code", -32603)), str(error.get("message", "error")), error.get("data"))
        if isinstance(turn.error, StoreLocked):
            # another daemon took the session under the turn: said to the client, not sent there again
            error = turn.error
            raise RpcError(error.code, error.message, {"kind": error.kind, **(error.data or {})})
        if turn.error is not None:
            raise turn.error
        result = response.get("result")
        return result if isinstance(result, dict) else {"stopReason": "end_turn"}

    async def _set_mode(self, params: JsonObject, message: JsonObject) -> JsonValue:
        return await self._set_setting(params, "modeId", "mode")

    async def _set_model(self, params: JsonObject, message: JsonObject) -> JsonValue:
        return await self._set_setting(params, "modelId", "model")

    async def _set_setting(self, params: JsonObject, name: str, field: str) -> JsonValue:
        attachment = await self._attachment(params)
        value = params.get(name)
        if not isinstance(value, str):
            raise InvalidInput(f'"{name}" must be a string')
        await self._manager.update(attachment.runtime.session_id, {field: value})
        return {}

    async def _set_config_option(self, params: JsonObject, message: JsonObject) -> JsonValue:
        attachment = await self._attachment(params)
        runtime = attachment.runtime
        config_id = params.get("configId")
        value = params.get("value")
        if not isinstance(config_id, str) or not isinstance(value, (str, bool)):
            raise InvalidInput('"configId" must be a string and "value" a string or a boolean')
        await self._manager.update(
            runtime.session_id, setting_change(runtime.session_id, runtime.doc, config_id, value)
        )
        return {"configOptions": config_options(runtime.doc, self._manager.config.all_agents())}

    # -- attachments -----------------------------------------------------------------------------

    async def _runtime(self, params: JsonObject) -> SessionRuntime:
        return await self._manager.runtime(_session_id(params))

    async def _attachment(self, params: JsonObject) -> _Attachment:
        """This connection's attachment to the session; a session used without new, load or
        resume is attached as by resume (no replay), which clients that restarted rely on."""
        session_id = _session_id(params)
        attachment = self._attached.get(session_id)
        if attachment is not None and not attachment.ended:
            return attachment
        runtime = await self._manager.runtime(session_id)
        return self._attach(runtime, after=await runtime.log.settled_end(), answered=None)

    def answer_gate(self, message: JsonObject) -> anyio.Event:
        gate = anyio.Event()
        self._answered[message.get("id")] = gate  # type: ignore[index]
        return gate

    def _state(self, runtime: SessionRuntime) -> JsonObject:
        return session_state(runtime.doc, self._manager.config.all_agents())

    def _attach(self, runtime: SessionRuntime, *, after: int, answered: anyio.Event | None) -> _Attachment:
        """Start forwarding the session's updates after ``after``. A client has at most one
        forwarder per session: a pipelined request may attach it first (a prompt sent before the
        answer to the ``session/new`` that names it), and the later attach keeps that one."""
        assert self._tg is not None, "serve() is running"
        current = self._attached.get(runtime.session_id)
        if current is not None and not current.ended:
            return current
        if self._shared is not None:
            # it was another daemon's, and this one took it over: go on from where the table was sent
            after = min(after, self._shared.drop(runtime.session_id) or after)
        attachment = _Attachment(runtime, AgentOptionSource(runtime.doc, self._manager.config.all_agents()))
        attachment.forwarded = after
        if self._unsettled:
            attachment.hook = functools.partial(self._on_queued, attachment)
            runtime.log.on_queued.append(attachment.hook)
        self._attached[runtime.session_id] = attachment
        runtime.clients.attach(self)
        self._tg.start_soon(self._forward, attachment, after, answered)
        return attachment

    def _detach(self, session_id: str) -> None:
        attachment = self._attached.pop(session_id, None)
        if attachment is not None:
            attachment.scope.cancel()
            attachment.end()
            attachment.runtime.clients.detach(self._link_id)

    async def _forward(self, attachment: _Attachment, after: int, answered: anyio.Event | None) -> None:
        """Send the session's committed updates to the client, in log order, until it detaches."""
        runtime = attachment.runtime
        with attachment.scope:
            try:
                if answered is not None:
                    await answered.wait()
                await self._forward_log(attachment, after)
            except (ConnectionClosed, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the client went away
            except StoreError:
                if runtime.log.disowned is None or self._shared is None:
                    raise
                # another daemon took the session: its updates come from the table now, from here
                self._shared.follow_from(runtime.session_id, runtime.doc, attachment.forwarded)
            finally:
                attachment.end()
        if self._attached.get(runtime.session_id) is attachment:
            self._detach(runtime.session_id)

    async def _forward_log(self, attachment: _Attachment, after: int) -> None:
        runtime = attachment.runtime
        for pending in runtime.broker.pending():
            if pending.seq <= after:  # asked before this client attached: ask it too
                self.start(self._ask_permission, attachment, pending.seq, pending.message)
        sent_log = self._sent_log if self._unsettled else None
        follow = runtime.log.follow(
            after, batch=FORWARD_BATCH, unsettled=sent_log is not None, passed=lambda: attachment.forwarded
        )
        async for records in follow:
            attachment.idle = False
            if records[0].seq <= attachment.forwarded:  # passed on meanwhile (``_pass_on``)
                records = records[attachment.forwarded - records[0].seq + 1 :]
            if records:
                if sent_log is not None:
                    sent_log.commit_after(runtime.log, records[-1].seq)  # what this batch sends
                await self._forward_batch(attachment, records)
                attachment.advance(records[-1].seq)  # once a batch: waiters only need "sent up to"
            attachment.idle = sent_log is not None

    def _on_queued(self, attachment: _Attachment, hold_ended: bool) -> bool:
        """The session log queued records (its ``on_queued``; a transport that logs what it sends):
        passed on at once as a turn's hold ends, else once in this turn of the loop however many
        come (a burst: one reference for all), by a callback rather than by the forwarder's task.
        False when the forwarder is to do it."""
        if hold_ended:
            return self._safely_passed_on(attachment)
        if not attachment.idle:
            return False  # the forwarder is at work: it takes these as well
        if not attachment.passing_soon:
            attachment.passing_soon = True
            asyncio.get_running_loop().call_soon(self._pass_on_soon, attachment)
        return True

    def _pass_on_soon(self, attachment: _Attachment) -> None:
        attachment.passing_soon = False
        if not self._safely_passed_on(attachment):
            attachment.runtime.log.tell_followers()

    def _safely_passed_on(self, attachment: _Attachment) -> bool:
        # it runs in whoever appended to the session's log: a failure here is the forwarder's to meet
        try:
            return self._pass_on(attachment)
        except Exception:
            logger.exception("%s: could not pass records on at once; the forwarder will", self._link_id)
            return False

    def _pass_on(self, attachment: _Attachment) -> bool:
        """The forwarder's work on what the session log queued, without a turn of its task: a
        turn's answer finds its updates passed on. Only while the forwarder waits with all before
        passed on, and only for records that need no write of their own (updates sent as stored
        become a reference; permission requests are asked by a task of their own; what this
        client is not sent is skipped): anything else is left to the forwarder. True when all the
        log queued is passed on."""
        log = attachment.runtime.log
        if not attachment.idle or attachment.ended or self.peer.closed or log.disowned is not None:
            return False
        if attachment.forwarded < log.committed_seq:
            return False  # committed records to read first: the forwarder's
        records = log.unsettled(attachment.forwarded, FORWARD_BATCH)
        frames: list[Frame | None] = []
        for record in records:
            frame = None if forwards_as_stored(record) else self._frame(attachment, record)
            if frame is not None and frame.action == "notify":
                return False  # a write of its own
            frames.append(frame)
        if records:
            assert self._sent_log is not None
            self._sent_log.commit_after(log, records[-1].seq)
            run_start: int | None = None
            for record, frame in zip(records, frames, strict=True):
                if frame is None:
                    run_start = record.seq if run_start is None else run_start
                    continue
                if run_start is not None:
                    self._refer(log.session_id, run_start, record.seq - 1)
                    run_start = None
                if frame.action == "permission":
                    self.start(self._ask_permission, attachment, record.seq, frame.messages[0])
            if run_start is not None:
                self._refer(log.session_id, run_start, records[-1].seq)
            attachment.advance(records[-1].seq)
        return attachment.forwarded >= log.last_seq

    def _frame(self, attachment: _Attachment, record: EventRecord) -> Frame:
        return client_frame(record, link_id=self._link_id, replay=False, agent_option_for=attachment.agent_option)

    async def _forward_batch(self, attachment: _Attachment, records: list[EventRecord]) -> None:
        session_id = attachment.runtime.session_id
        run_start: int | None = None  # a run of records referenced instead of sent
        stored: list[bytes] = []  # a run of records sent as stored, in one write
        for record in records:
            if forwards_as_stored(record):
                if self._sent_log is None:
                    stored.append(record.payload.encode())
                elif run_start is None:
                    run_start = record.seq
                continue
            if stored:
                await self.peer.send_raw_many(stored)
                stored = []
            if run_start is not None:
                self._refer(session_id, run_start, record.seq - 1)
                run_start = None
            frame = self._frame(attachment, record)
            if frame.action == "permission":
                self.start(self._ask_permission, attachment, record.seq, frame.messages[0])
            else:
                for forwarded in frame.messages:
                    await self.peer.send_message(forwarded)
        if stored:
            await self.peer.send_raw_many(stored)
        if run_start is not None:
            self._refer(session_id, run_start, records[-1].seq)

    def _refer(self, session_id: str, first: int, last: int) -> None:
        assert self._sent_log is not None
        if self.peer.closed:
            raise ConnectionClosed("the connection is closed")
        self._sent_log.refer(session_id, first, last)

    def start(self, func: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        assert self._tg is not None
        self._tg.start_soon(func, *args)

    async def _ask_permission(self, attachment: _Attachment, seq: int, request: JsonObject) -> None:
        """Ask this client; the first answer from any client wins, and when another client (or a
        policy, a timeout, a cancel) settles it first, this client's request is cancelled."""
        runtime = attachment.runtime
        permission_id = f"p{seq}"
        try:
            pending = runtime.broker.get(permission_id)
        except NotFound:
            return  # settled already
        params = request.get("params")
        result: JsonValue = None
        pending.asking.add(self._link_id)
        try:
            async with anyio.create_task_group() as tg:
                # cancelling the request sends $/cancel_request: the client withdraws its prompt
                tg.start_soon(_cancel_when_set, pending.decided, tg.cancel_scope)
                try:
                    result = await self.peer.request(methods.SESSION_REQUEST_PERMISSION, params)
                except RpcError as exc:
                    logger.info("client %s answered permission %s with an error: %s", self._link_id, permission_id, exc)
                    runtime.permission_unanswerable(permission_id, self._link_id, _brief(exc))
                except AcpdError as exc:  # gone: it may come back, or REST may answer
                    logger.info("client %s could not answer permission %s: %s", self._link_id, permission_id, exc)
                tg.cancel_scope.cancel()
            if isinstance(result, dict):
                self._answer(runtime, permission_id, result.get("outcome"))
        finally:
            pending.asking.discard(self._link_id)

    def _answer(self, runtime: SessionRuntime, permission_id: str, outcome: object) -> None:
        try:
            runtime.answer_permission(permission_id, outcome)
        except (Conflict, NotFound):
            pass  # another answer came first
        except InvalidInput as exc:
            logger.warning("client %s answered permission %s wrongly: %s", self._link_id, permission_id, exc)
            runtime.permission_unanswerable(permission_id, self._link_id, _brief(exc))


def _brief(exc: AcpdError) -> JsonObject:
    """A client's error as the log keeps it: its code and the start of its message, not its data."""
    return {"code": exc.code, "message": exc.message[:ERROR_MESSAGE_CHARS]}


async def _cancel_when_set(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def setting_change(session_id: str, doc: Mapping[str, Any], config_id: str, value: str | bool) -> JsonObject:
    """A ``session/set_config_option`` as a session change: the agent, a typed setting, or a
    backend option passed through.

    Raises:
        InvalidInput: no such option.
    """
    if config_id == AGENT_OPTION_ID:
        return {"agent": value}
    for option in doc.get("configOptions") or []:
        if isinstance(option, dict) and option.get("id") == config_id:
            field = SETTING_FOR_CATEGORY.get(str(option.get("category")))
            if field is not None and isinstance(value, str):
                return {field: value}
            return {"config": {config_id: value}}
    raise InvalidInput(f"session {session_id} has no config option {config_id!r}")


def fork_body(params: JsonObject) -> JsonObject:
    """A ``session/fork``'s params as the body of a fork (REST's ``SessionFork``)."""
    body: JsonObject = {"cwd": _absolute(params.get("cwd"), "cwd")} if params.get("cwd") is not None else {}
    body.update({key: value for key, value in _acpd_meta(params).items() if key in ("id", "atSeq", "agent", "title")})
    return body


def _list_filters(extra: JsonObject) -> dict[str, Any]:
    """``session/list``'s own filters, in ``_meta.acpd``: ``archived`` (false by default: archived
    sessions are hidden; true: only them; ``"any"``: both), ``project``, ``agent`` and ``q`` (a
    full-text search over titles, prompts and replies, best match first)."""
    unknown = set(extra) - {"archived", "project", "agent", "q"}
    if unknown:
        raise InvalidInput(f"unknown _meta.acpd fields {sorted(unknown)}; use archived, project, agent, q")
    archived = extra.get("archived", False)
    if archived not in (True, False, "any"):
        raise InvalidInput('_meta.acpd.archived must be true, false or "any"')
    filters: dict[str, Any] = {"archived": None if archived == "any" else archived}
    for name in ("project", "agent", "q"):
        value = extra.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"_meta.acpd.{name} must be a string")
        if value is not None:
            filters[name] = value
    return filters


def _session_id(params: JsonObject) -> str:
    session_id = params.get("sessionId")
    if not isinstance(session_id, str) or not session_id:
        raise InvalidInput('"sessionId" must be a non-empty string')
    return session_id


def _absolute(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise InvalidInput(f'"{name}" must be an absolute path')
    return value


def _acpd_meta(params: JsonObject) -> JsonObject:
    """acpd's own session/new extras, in ``_meta.acpd`` (agent, id, title, policy, …)."""
    meta = params.get("_meta")
    acpd = meta.get("acpd") if isinstance(meta, dict) else None
    return acpd if isinstance(acpd, dict) else {}
