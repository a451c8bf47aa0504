"""Daemon layer: the ACP face for a session another daemon serves (``--share-db``).

An ACP connection on this daemon attached to such a session is served from the database and the
owner's REST API: ``session/load`` replays the log from the table, the session's updates are
followed from the table live (as a stream through a daemon that does not hold the session is), and
prompts, cancels, settings and permission answers go to the owner over its REST API with the
daemon's token (the one the client presented: daemons sharing a database share it). A permission
the owner asks reaches this connection's client from the log (one asked before the client
attached, from the owner's list), and its answer goes back to the owner; when someone else
settles it first (the log records the reply), the client's request is withdrawn. A prompt goes
with an idempotency key of this connection's, so its own prompt is not echoed back to it as a
``user_message_chunk``, as on the owner.

It must not run agents nor write the session's log (the owner does), nor parse HTTP requests.
httpx is imported only when something is sent to the owner.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio

from acpd.errors import AcpdError, ConnectionClosed, InvalidInput, RpcError, SessionNotFound, StoreLocked
from acpd.protocol import jsonio, methods
from acpd.protocol.events import EventRecord
from acpd.protocol.jsonio import JsonObject, JsonValue, object_of
from acpd.rpc.peer import JsonRpcPeer

from . import acp_links
from .acp_views import AgentOptionSource, client_frame, parse_frame, session_state
from .bodies import checked
from .forward import CONNECT_SECONDS, FORWARDED, ORIGIN

if TYPE_CHECKING:
    from acpd.store.postgres import PostgresEventStore

    from .manager import SessionManager

METHODS: Final = frozenset(
    {
        methods.SESSION_LOAD,
        methods.SESSION_RESUME,
        methods.SESSION_PROMPT,
        methods.SESSION_CLOSE,
        methods.SESSION_SET_MODE,
        methods.SESSION_SET_MODEL,
        methods.SESSION_SET_CONFIG_OPTION,
        methods.SESSION_FORK,
        methods.SESSION_DELETE,
        methods.ACPD_SESSION_UPDATE,
    }
)
"""The session methods answered for a session another daemon serves: every one that writes it
(REST sends the same requests on to the owner: forward.py)."""
PAGE: Final = 1000


class Face(Protocol):
    """What this module needs of the ACP connection it serves (``AcpConnection``)."""

    peer: JsonRpcPeer

    @property
    def link_id(self) -> str: ...

    @property
    def client_capabilities(self) -> JsonObject: ...

    async def relay(self, method: str, params: JsonObject) -> JsonValue: ...

    def answer_gate(self, message: JsonObject) -> anyio.Event: ...

    def start(self, func: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None: ...


class _Followed:
    """One session this connection follows from the table, and how far it has been sent."""

    def __init__(self, session_id: str, doc: JsonObject, agents: AgentOptionSource) -> None:
        self.session_id = session_id
        self.doc = doc
        self.agent_option = agents
        self.forwarded = 0
        self.keys: set[str] = set()  # idempotency keys of this connection's prompts
        self.settled: dict[str, anyio.Event] = {}  # permission id → set when its reply is logged
        self.scope = anyio.CancelScope()
        self.link_scope = anyio.CancelScope()
        self.linked = anyio.Event()  # set once the client link (acp_links.py) was first tried
        self.ended = False
        self._progress = anyio.Event()

    def advance(self, seq: int) -> None:
        self.forwarded = seq
        progress, self._progress = self._progress, anyio.Event()
        progress.set()

    def end(self) -> None:
        self.ended = True
        self.scope.cancel()
        self.link_scope.cancel()
        self.linked.set()
        self._progress.set()

    async def caught_up(self, seq: int) -> None:
        while self.forwarded < seq and not self.ended:
            await self._progress.wait()

    def settled_event(self, permission_id: str) -> anyio.Event:
        return self.settled.setdefault(permission_id, anyio.Event())


class SharedSessions:
    """The sessions one ACP connection uses that another daemon serves."""

    def __init__(self, face: Face, manager: SessionManager, store: PostgresEventStore) -> None:
        self._face = face
        self._manager = manager
        self._store = store
        self._followed: dict[str, _Followed] = {}

    async def handle(self, method: str, params: JsonObject, message: JsonObject) -> JsonValue:
        session_id = _session_id(params)
        if method == methods.SESSION_LOAD:
            state = await self._load(session_id, message)
            await _linked(self._followed.get(session_id))
            return state
        if method == methods.SESSION_CLOSE:
            self.drop(session_id)
            return {}
        if method == methods.SESSION_DELETE:
            self.drop(session_id)
            await self._send(session_id, "DELETE", "", None)
            return {}
        if method == methods.SESSION_FORK:
            return await self._fork(session_id, params, message)
        if method == methods.ACPD_SESSION_UPDATE:
            patch = checked({key: value for key, value in params.items() if key != "sessionId"}, "SessionPatch")
            return {"session": await self._send(session_id, "PATCH", "", patch)}
        followed = await self._follow(session_id, message if method == methods.SESSION_RESUME else None)
        await _linked(followed)  # the agent's fs and terminal requests reach the client from now on
        if method == methods.SESSION_PROMPT:
            return await self._prompt(followed, params.get("prompt"))
        if method == methods.SESSION_SET_CONFIG_OPTION:
            return await self._set_config_option(followed, params)
        if method in (methods.SESSION_SET_MODE, methods.SESSION_SET_MODEL):
            name, field = ("modeId", "mode") if method == methods.SESSION_SET_MODE else ("modelId", "model")
            value = params.get(name)
            if not isinstance(value, str):
                raise InvalidInput(f'"{name}" must be a string')
            await self._send(session_id, "PATCH", "", {field: value})
            return {}
        return session_state(followed.doc, self._manager.config.all_agents())  # session/resume

    async def cancel(self, session_id: str) -> None:
        with contextlib.suppress(AcpdError):  # nothing to cancel, or nobody to tell
            await self._send(session_id, "POST", "/cancel", {})

    def drop(self, session_id: str) -> int | None:
        """Stop following the session; how far it was sent, if it was followed."""
        followed = self._followed.pop(session_id, None)
        if followed is None:
            return None
        followed.end()
        return followed.forwarded

    def drop_all(self) -> None:
        for session_id in list(self._followed):
            self.drop(session_id)

    # -- attaching --------------------------------------------------------------------------------

    async def _doc(self, session_id: str) -> JsonObject:
        doc = await self._store.get_session(session_id)
        if doc is None:
            raise SessionNotFound(f"session {session_id!r} not found")
        return dict(doc)

    async def _load(self, session_id: str, message: JsonObject) -> JsonValue:
        self.drop(session_id)
        doc = await self._doc(session_id)
        upto = await self._store.last_seq(session_id)
        agents = AgentOptionSource(doc, self._manager.config.all_agents())
        after = 0
        while after < upto:
            records = await self._store.read(session_id, after=after, limit=PAGE)
            for record in records:
                if record.seq > upto:
                    break
                frame = client_frame(record, link_id=self._face.link_id, replay=True, agent_option_for=agents)
                for replayed in frame.messages:
                    await self._face.peer.send_message(replayed)
            if not records:
                break
            after = records[-1].seq
        self._start_following(session_id, doc, upto, self._face.answer_gate(message))
        return session_state(doc, self._manager.config.all_agents())

    async def _follow(self, session_id: str, message: JsonObject | None) -> _Followed:
        followed = self._followed.get(session_id)
        if followed is not None and not followed.ended:
            return followed
        doc = await self._doc(session_id)
        gate = self._face.answer_gate(message) if message is not None else None
        return self._start_following(session_id, doc, await self._store.last_seq(session_id), gate)

    def follow_from(self, session_id: str, doc: JsonObject, after: int) -> None:
        """Follow from the table, after ``after``, a session this daemon served until another took it."""
        self._start_following(session_id, dict(doc), after, None)

    def _start_following(self, session_id: str, doc: JsonObject, after: int, gate: anyio.Event | None) -> _Followed:
        followed = _Followed(session_id, doc, AgentOptionSource(doc, self._manager.config.all_agents()))
        followed.forwarded = after
        self._followed[session_id] = followed
        self._face.start(self._forward, followed, after, gate)
        if acp_links.wants_link(self._face):
            self._face.start(self._link, followed)
        else:
            followed.linked.set()
        return followed

    async def _link(self, followed: _Followed) -> None:
        """Keep the client linked to the session's owner while it follows the session."""
        with followed.link_scope:
            token = self._manager.config.token
            await acp_links.keep_linked(self._store, token, followed.session_id, self._face, followed.linked)

    async def _forward(self, followed: _Followed, after: int, gate: anyio.Event | None) -> None:
        """Send the session's committed updates to the client from the table, in log order."""
        with followed.scope:
            try:
                if gate is not None:
                    await gate.wait()
                await self._ask_pending(followed, after)
                async for records in self._store.follow(followed.session_id, after=after):
                    for record in records:
                        await self._forward_record(followed, record)
                    followed.advance(records[-1].seq)
            except (ConnectionClosed, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the client went away
            finally:
                followed.end()
        if self._followed.get(followed.session_id) is followed:
            del self._followed[followed.session_id]

    async def _forward_record(self, followed: _Followed, record: EventRecord) -> None:
        method, message = parse_frame(record)
        if method is None:
            permission_id = _reply_permission_id(record)
            if permission_id is not None:
                followed.settled_event(permission_id).set()
            return
        if method == methods.SESSION_PROMPT and _prompt_key(message) in followed.keys:
            return  # this client's own prompt: not echoed, as on the owner
        frame = client_frame(record, link_id=self._face.link_id, replay=False, agent_option_for=followed.agent_option)
        if frame.action == "permission":
            self._face.start(self._ask_permission, followed, f"p{record.seq}", frame.messages[0])
            return
        for sent in frame.messages:
            await self._face.peer.send_message(sent)

    # -- writes, sent to the owner ----------------------------------------------------------------

    async def _prompt(self, followed: _Followed, prompt: object) -> JsonValue:
        key = f"{self._face.link_id}-{uuid.uuid4().hex[:12]}"
        followed.keys.add(key)
        try:
            answer = await self._send(followed.session_id, "POST", "/prompt", {"prompt": prompt}, key=key)
        except anyio.get_cancelled_exc_class():
            if not self._face.peer.closed:  # $/cancel_request cancels the turn
                with anyio.CancelScope(shield=True), anyio.move_on_after(CONNECT_SECONDS):
                    await self.cancel(followed.session_id)
            raise
        last_seq = answer.get("lastSeq")
        if isinstance(last_seq, int):
            # every update of the turn reaches the client before the turn's answer
            await followed.caught_up(last_seq)
        error = answer.get("error")
        if isinstance(error, dict):
            raise RpcError(int(error.get("code", -32603)), str(error.get("message", "error")), error.get("data"))
        result: JsonObject = {"stopReason": answer.get("stopReason") or "end_turn"}
        return result

    async def _fork(self, source: str, params: JsonObject, message: JsonObject) -> JsonValue:
        """The owner forks the session (the fork is its, too); this client follows the fork from
        its end, as a fork on this daemon would be followed."""
        from .acp_face import fork_body  # the face's own rule

        doc = await self._send(source, "POST", "/fork", fork_body(params))
        session_id = str(doc.get("id"))
        last_seq = doc.get("lastSeq")
        after = last_seq if isinstance(last_seq, int) else await self._store.last_seq(session_id)
        await _linked(self._start_following(session_id, doc, after, self._face.answer_gate(message)))
        return {"sessionId": session_id, **session_state(doc, self._manager.config.all_agents())}

    async def _set_config_option(self, followed: _Followed, params: JsonObject) -> JsonValue:
        from .acp_face import setting_change  # the face's own rule, for a doc read from the table

        config_id = params.get("configId")
        value = params.get("value")
        if not isinstance(config_id, str) or not isinstance(value, (str, bool)):
            raise InvalidInput('"configId" must be a string and "value" a string or a boolean')
        change = setting_change(followed.session_id, followed.doc, config_id, value)
        doc = await self._send(followed.session_id, "PATCH", "", change)
        followed.doc.update(doc)
        from .acp_views import config_options

        return {"configOptions": config_options(followed.doc, self._manager.config.all_agents())}

    async def _ask_pending(self, followed: _Followed, after: int) -> None:
        """Ask the client the permissions the owner asked before it attached, as the owner does."""
        try:
            listed = await self._send(followed.session_id, "GET", "/permissions", None)
        except AcpdError:
            return  # nobody to ask for them: they are answered elsewhere
        for item in jsonio.objects_in(listed.get("items")):
            seq = item.get("seq")
            if not isinstance(seq, int) or seq > after:
                continue  # asked after the client attached: the follow brings it
            records = await self._store.read(followed.session_id, after=seq - 1, limit=1)
            method, message = parse_frame(records[0]) if records else (None, {})
            if method == methods.SESSION_REQUEST_PERMISSION:
                self._face.start(self._ask_permission, followed, f"p{seq}", message)

    async def _ask_permission(self, followed: _Followed, permission_id: str, request: JsonObject) -> None:
        """Ask this client; its answer goes to the owner. When the log shows the request settled
        (by another client, a policy, a timeout, a cancel), the client's request is withdrawn."""
        settled = followed.settled_event(permission_id)
        result: JsonValue = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_when_set, settled, tg.cancel_scope)
            with contextlib.suppress(AcpdError):  # an error or a client gone: others may answer
                result = await self._face.peer.request(methods.SESSION_REQUEST_PERMISSION, request.get("params"))
            tg.cancel_scope.cancel()
        outcome = object_of(object_of(result).get("outcome"))
        option_id = outcome.get("optionId")
        if outcome.get("outcome") == "selected" and isinstance(option_id, str) and not settled.is_set():
            with contextlib.suppress(AcpdError):  # another answer came first
                await self._send(followed.session_id, "POST", f"/permissions/{permission_id}", {"optionId": option_id})

    async def _send(
        self, session_id: str, method: str, path: str, body: JsonObject | None, *, key: str | None = None
    ) -> JsonObject:
        """The owner's JSON answer to a REST request about the session.

        Raises:
            StoreLocked: no daemon holds the session, or its owner cannot be reached.
            AcpdError: the owner's refusal, as the error its problem names.
        """
        import httpx

        found = await self._store.owner_of(session_id)
        owner = found or {}
        url = owner.get("url")
        if not isinstance(url, str):
            raise StoreLocked(
                f"session {session_id!r} is served by no daemon that can be reached: try again",
                data={"sessionId": session_id, **owner},
                owner_gone=found is None,  # nobody holds it any more: it may be taken here
            )
        headers = {FORWARDED: "1", "content-type": "application/json"}
        if self._manager.config.token:
            headers["authorization"] = f"Bearer {self._manager.config.token}"
        if key is not None:
            headers["idempotency-key"] = key
            headers[ORIGIN] = self._face.link_id  # the owner prefers this client for the turn's fs and terminals
        timeout = httpx.Timeout(None, connect=CONNECT_SECONDS)
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                content = None if body is None else jsonio.dumps(body)
                answer = await client.request(
                    method, f"{url}/v1/sessions/{session_id}{path}", content=content, headers=headers
                )
        except httpx.HTTPError as exc:
            raise StoreLocked(
                f"session {session_id!r} is served by the daemon at {url}, which does not answer: {exc}",
                data={"sessionId": session_id, **owner},
                # nothing reached it: its lock goes with it, and the request may be served here
                owner_gone=isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout),
            ) from exc
        value = object_of(jsonio.loads(answer.content)) if answer.content else {}
        if answer.is_success:
            return value
        raise _refusal(answer.status_code, value)


def _refusal(status: int, problem: JsonObject) -> AcpdError:
    """The error a problem+json answer names, as acpd raises it."""
    kind = str(problem.get("type", "")).rpartition("/")[2]
    error_type = _error_types().get(kind, AcpdError)
    detail = str(problem.get("detail") or problem.get("title") or f"the owner answered {status}")
    if error_type is RpcError:
        return RpcError(-32603, detail)
    return error_type(detail, data=problem)


def _error_types() -> Mapping[str, type[AcpdError]]:
    found: dict[str, type[AcpdError]] = {}
    pending: list[type[AcpdError]] = [AcpdError]
    while pending:
        error_type = pending.pop()
        found.setdefault(error_type.kind, error_type)
        pending.extend(error_type.__subclasses__())
    return found


def _reply_permission_id(record: EventRecord) -> str | None:
    """The permission a logged reply to an agent's permission request settles, if it is one."""
    if '"permissionId"' not in record.payload:
        return None
    result = object_of(object_of(jsonio.loads(record.payload)).get("result"))
    permission_id = object_of(object_of(result.get("_meta")).get("acpd")).get("permissionId")
    return permission_id if isinstance(permission_id, str) else None


def _prompt_key(message: JsonObject) -> object:
    acpd = object_of(object_of(object_of(message.get("params")).get("_meta")).get("acpd"))
    return acpd.get("idempotencyKey")


async def _linked(followed: _Followed | None) -> None:
    """Wait, a bounded time, until the client's link to the owner was tried."""
    if followed is not None:
        with anyio.move_on_after(2 * CONNECT_SECONDS):
            await followed.linked.wait()


async def _cancel_when_set(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def _session_id(params: JsonObject) -> str:
    session_id = params.get("sessionId")
    if not isinstance(session_id, str) or not session_id:
        raise InvalidInput('"sessionId" must be a non-empty string')
    return session_id
