"""Adapters layer: one daemon session on an ACP agent, an agent process that speaks ACP over stdio.

The daemon is the agent's ACP client. An ``AcpBackend`` takes a connection (an agent process,
shared with other sessions or its own, see ``acp_pool``), opens its session there
(``session/load`` or ``session/resume`` when the agent offers them and there is one to continue),
forwards turns and settings, and hands everything the agent says for its session to the
``SessionHost``. It must not decide policy (permissions, limits) nor persist anything: that is the
daemon's job. What it does bound is what a misbehaving agent costs: a start that hangs
(``startTimeoutSeconds``), messages nobody asked for (``floods``, counted per session). Where a
containment step would stop a process other sessions use, it records ``CONTAINMENT_SHARED`` and
detaches this session instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import anyio
from anyio.abc import TaskStatus

from acpd.adapters.acp_pool import AgentConnection, AgentPool
from acpd.adapters.base import BackendState, SessionHost, TextEnvelope
from acpd.adapters.chunks import TEXT_KINDS, learn
from acpd.adapters.floods import FLOOD_WINDOW_SECONDS, MAX_UNSOLICITED_FRAMES, FrameRate
from acpd.adapters.toolcalls import ToolCallLedger, usage_of, usage_update_for
from acpd.config import AgentConfig
from acpd.errors import AgentError, AgentExited, ConnectionClosed, RpcError
from acpd.protocol import jsonrpc, methods
from acpd.protocol.jsonio import JsonObject, JsonValue, object_of
from acpd.rpc.peer import JsonRpcPeer
from acpd.transports.process import process_mark

logger = logging.getLogger(__name__)

SESSION_CLOSE_SECONDS: Final = 2.0
"""How long a session leaving a shared process waits for the agent's answer to ``session/close``."""


class AcpBackend:
    """One daemon session on an ACP agent process (its own, or shared with other sessions)."""

    def __init__(
        self,
        name: str,
        config: AgentConfig,
        *,
        cwd: str,
        mcp_servers: Sequence[JsonObject] = (),
        record_dir: str | None = None,
        pool: AgentPool,
    ) -> None:
        self.name = name
        self._record_dir = record_dir
        self._config = config
        self._cwd = cwd
        self._mcp_servers = list(mcp_servers)
        self._pool = pool
        self._connection: AgentConnection | None = None
        self._host: SessionHost | None = None
        self._backend_session_id: str | None = None
        self._replaying = False
        self._cancelled = False  # during a turn: a cancel was sent, so stop what the turn left running
        self._ledger = ToolCallLedger()
        self._usage_reported = False  # during a turn: the agent sent a usage_update
        self._context_size: int | None = None  # the window its last usage_update named
        self._ended = anyio.Event()  # the session is over here: closed, stopped, or the process ended
        self._stopped = anyio.Event()  # run() has returned
        self._unsolicited = FrameRate(MAX_UNSOLICITED_FRAMES)  # what it sends for this session outside a turn
        self._in_turn = False
        self._turn_scope: anyio.CancelScope | None = None
        self._left_in_turn = False  # closed while its turn still ran (the agent ignored a cancel)
        self._stop_reason: str | None = None  # why the daemon stopped this session's agent
        self._texts_seen = 0  # text chunks parsed (not taken by a template): when to learn one

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self, host: SessionHost, *, resume_id: str | None, task_status: TaskStatus[BackendState]) -> None:
        self._host = host
        record = Path(self._record_dir) / f"{host.session_id}.{self.name}.jsonl" if self._record_dir else None
        connection = await self._pool.acquire(
            self.name,
            self._config,
            cwd=self._cwd,
            mcp_servers=self._mcp_servers,
            dedicated=self._config.dedicated_processes(),
            record_path=record,
        )
        self._connection = connection
        started = False
        try:
            state = await self._start(connection, resume_id)
            started = True
            task_status.started(state)
            await self._ended.wait()
        finally:
            with anyio.CancelScope(shield=True):
                await self._leave(connection, started)
            self._stopped.set()
            if started:
                gone = connection.stopped.is_set()
                host.backend_exited(connection.returncode if gone else None, connection.stderr_tail if gone else "")

    async def _start(self, connection: AgentConnection, resume_id: str | None) -> BackendState:
        """Open this session on the connection, within the agent's start timeout.

        Raises:
            AgentStartTimeout: no session in time; AgentError: the agent refused or went away.
        """
        try:
            with anyio.move_on_after(connection.timeout):
                return await self._open_session(connection, resume_id)
            raise connection.timed_out()
        except AgentError as exc:
            if connection.sole(self):
                # as before pooling: a process that failed its only session's start is stopped
                await connection.wait_exit_after(exc)
                await connection.aclose()
            raise connection.start_failure(exc, self._stop_reason) from exc

    async def _leave(self, connection: AgentConnection, started: bool) -> None:
        """Take this session off its connection: stop the process if it is this session's alone
        (dedicated), else tell the agent the session is closed and leave the process to the others."""
        connection.unregister(self._backend_session_id, self)
        if connection.peer is None or connection.peer.closed:
            await connection.stopped.wait()  # the process is ending: its exit status is this session's too
            return
        if connection.key.dedicated:
            await connection.aclose()
            return
        if self._left_in_turn and connection.sole(self):
            await connection.aclose()  # a turn that ignored its cancel: nobody else is on the process
            return
        if self._left_in_turn:
            self._record(
                "CONTAINMENT_SHARED",
                f"agent {self.name!r} serves other sessions from this process: it was not stopped, and what "
                "this session's turn started may still run",
                {"agent": self.name},
            )
        if started and self._backend_session_id is not None and _offers_close(connection.capabilities):
            peer = connection.peer
            with anyio.move_on_after(SESSION_CLOSE_SECONDS):
                try:
                    if peer is not None:
                        await peer.request(methods.SESSION_CLOSE, {"sessionId": self._backend_session_id})
                except (RpcError, ConnectionClosed) as exc:
                    logger.debug("agent %s did not close session %s: %s", self.name, self._backend_session_id, exc)

    async def _open_session(self, connection: AgentConnection, resume_id: str | None) -> BackendState:
        caps = connection.capabilities
        try:
            peer = self._peer_of(connection)
            resumable = resume_id if self._config.continue_sessions else None
            connection.starting = "continue its session"
            state = await self._continue_session(connection, peer, caps, resumable) if resumable else None
            if state is None:
                state = await self._new_session(connection, peer)
        except (RpcError, ConnectionClosed) as exc:
            raise AgentError(f"agent {self.name!r} failed to open a session: {exc}") from exc
        finally:
            if self._backend_session_id is None:
                connection.unreserve()
        state.agent_info = object_of(connection.init.get("agentInfo"))
        state.capabilities = caps
        return state

    async def _new_session(self, connection: AgentConnection, peer: JsonRpcPeer) -> BackendState:
        connection.starting = "answer session/new"
        connection.opening += 1
        try:
            result = object_of(
                await peer.request(methods.SESSION_NEW, {"cwd": self._cwd, "mcpServers": self._mcp_servers})
            )
            session_id = result.get("sessionId")
            if not isinstance(session_id, str) or not session_id:
                raise AgentError(f"agent {self.name!r} answered session/new without a sessionId")
            await self._register(connection, session_id)
        finally:
            connection.opening -= 1
        return _state(result, "new", session_id)

    async def _register(self, connection: AgentConnection, session_id: str) -> None:
        if session_id in connection.sessions:
            raise AgentError(f"agent {self.name!r} gave session id {session_id!r}, already open on its process")
        self._backend_session_id = session_id
        connection.unreserve()
        await connection.register(session_id, self)

    async def _continue_session(
        self, connection: AgentConnection, peer: JsonRpcPeer, caps: JsonObject, resume_id: str
    ) -> BackendState | None:
        """Resume (no replay) or load (replay suppressed) the earlier backend session, if offered."""
        params = {"sessionId": resume_id, "cwd": self._cwd, "mcpServers": self._mcp_servers}
        if "resume" in object_of(caps.get("sessionCapabilities")):
            how = methods.SESSION_RESUME
        elif caps.get("loadSession"):
            how = methods.SESSION_LOAD
        else:
            return None
        if resume_id in connection.sessions:
            return None  # open here already (another daemon session's): never two handlers for one
        # Our log already has the history; what the agent replays while loading must not be recorded twice.
        self._replaying = how == methods.SESSION_LOAD
        await self._register(connection, resume_id)
        try:
            result = object_of(await peer.request(how, params))
        except RpcError as exc:
            logger.info("agent %s could not %s session %s (%s); starting a new one", self.name, how, resume_id, exc)
            connection.unregister(resume_id, self)
            self._backend_session_id = None
            connection.reserve()
            return None
        finally:
            self._replaying = False
        return _state(result, how.removeprefix("session/"), resume_id)

    async def aclose(self) -> None:
        self._left_in_turn = self._in_turn and not self._ended.is_set()
        self._ended.set()
        if self._turn_scope is not None:
            self._turn_scope.cancel()
        if self._connection is not None:
            with anyio.CancelScope(shield=True):
                await self._stopped.wait()

    @property
    def process_id(self) -> int | None:
        """The pid of the agent process serving this session (shared or its own), while it runs."""
        connection = self._connection
        return connection.proc.pid if connection is not None and connection.proc is not None else None

    def connection_lost(self) -> None:
        """The process ended: the turn under way fails, and the session's run ends."""
        self._ended.set()

    # -- calls from the daemon -------------------------------------------------------------------

    def _peer_of(self, connection: AgentConnection) -> JsonRpcPeer:
        peer = connection.peer
        if peer is None or peer.closed or self._ended.is_set():
            raise AgentExited(self._stop_reason or connection.stop_reason or self._not_running(connection))
        return peer

    def _not_running(self, connection: AgentConnection) -> str:
        if connection.stopped.is_set() or connection.closed:
            return f"agent {self.name!r} is not running{connection.stderr_hint()}"
        return f"agent {self.name!r} no longer serves this session"

    def _live_peer(self) -> JsonRpcPeer:
        if self._connection is None:
            raise AgentExited(f"agent {self.name!r} is not running")
        return self._peer_of(self._connection)

    async def prompt(self, prompt: list[JsonObject]) -> JsonObject:
        peer = self._live_peer()
        connection = self._connection
        assert connection is not None
        mark = process_mark()
        self._cancelled = False
        self._usage_reported = False
        result: JsonObject = {}
        self._in_turn = True
        try:
            with anyio.CancelScope() as self._turn_scope:
                result = object_of(
                    await peer.request(
                        methods.SESSION_PROMPT, {"sessionId": self._backend_session_id, "prompt": prompt}
                    )
                )
            if self._turn_scope.cancelled_caught:
                raise AgentExited(self._stop_reason or f"agent {self.name!r} no longer serves this session")
        except ConnectionClosed as exc:
            raise AgentExited(
                self._stop_reason
                or connection.stop_reason
                or f"agent {self.name!r} exited during the turn{connection.stderr_hint()}"
            ) from exc
        finally:
            self._turn_scope = None
            self._in_turn = False
            with anyio.CancelScope(shield=True):
                # codex-acp answers a cancel but leaves the command running in its own session. On
                # a shared process, what was detached since cannot be told from other sessions'
                # work: ``processPerSession`` is the choice for agents that detach commands.
                proc = connection.proc
                if (
                    self._cancelled
                    and self._config.stop_detached_on_cancel
                    and proc is not None
                    and connection.sole(self)
                ):
                    await proc.stop_detached_since(mark)
                stop_reason = result.get("stopReason")
                for update in self._ledger.close_open(stop_reason if isinstance(stop_reason, str) else None):
                    await self._emit_update(update)
        return await self._with_usage(result)

    async def _with_usage(self, result: JsonObject) -> JsonObject:
        """Every turn's tokens reported the same way: the answer's ``usage`` (from the agent's own
        ``_meta`` when it puts them there) and, if the agent sent none, a ``usage_update`` built
        from it, recorded before the answer."""
        if "usage" not in result and (derived := usage_of(result)) is not None:
            result = {**result, "usage": derived}
        usage = result.get("usage")
        if isinstance(usage, dict) and not self._usage_reported:
            update = usage_update_for(usage, self._context_size)
            if update is not None:
                await self._emit_update(update)
        return result

    async def cancel(self) -> None:
        self._cancelled = True
        peer = self._connection.peer if self._connection is not None else None
        if peer is not None and not peer.closed and not self._ended.is_set():
            await peer.notify(methods.SESSION_CANCEL, {"sessionId": self._backend_session_id})

    async def set_mode(self, mode_id: str) -> None:
        await self._live_peer().request(
            methods.SESSION_SET_MODE, {"sessionId": self._backend_session_id, "modeId": mode_id}
        )

    async def set_config_option(self, config_id: str, value: Any) -> list[JsonObject] | None:
        params: JsonObject = {"sessionId": self._backend_session_id, "configId": config_id, "value": value}
        if isinstance(value, bool):
            params["type"] = "boolean"
        result = object_of(await self._live_peer().request(methods.SESSION_SET_CONFIG_OPTION, params))
        options = result.get("configOptions")
        return options if isinstance(options, list) else None

    async def set_model(self, model_id: str) -> None:
        await self._live_peer().request(
            methods.SESSION_SET_MODEL, {"sessionId": self._backend_session_id, "modelId": model_id}
        )

    # -- calls from the agent --------------------------------------------------------------------

    async def on_notification(self, method: str, params: JsonValue, message: JsonObject) -> None:
        if self._replaying and method == methods.SESSION_UPDATE:
            return
        if not self._solicited(method):
            return
        host = self._require_host()
        if isinstance(params, dict) and "sessionId" in params:
            # as the agent sent it, for this session: a template may be learned from it
            learnable = params["sessionId"] == self._backend_session_id and self._connection is not None
            kind = params["update"].get("sessionUpdate") if isinstance(params.get("update"), dict) else None
            if learnable and kind in TEXT_KINDS:
                self._learn_texts(message)
            params["sessionId"] = host.session_id
        update = params.get("update") if isinstance(params, dict) else None
        if method != methods.SESSION_UPDATE or not isinstance(update, dict):
            await host.emit(message)
            return
        if update.get("sessionUpdate") == "usage_update":
            self._note_usage(update)
        for normalized in self._ledger.on_update(update):
            if normalized is update:
                await host.emit(message)  # unchanged: recorded as the agent sent it
            else:
                await self._emit_update(normalized)

    def _learn_texts(self, message: JsonObject) -> None:
        """Learn the template of a text chunk (``chunks``) from the 1st, 2nd, 4th, 8th… chunk that
        reached the parser (one that matched no template learned before): an agent whose envelopes
        vary is learned from again, but seldom, since learning each time would cost more."""
        connection = self._connection
        assert connection is not None and self._backend_session_id is not None
        self._texts_seen += 1
        if self._texts_seen & (self._texts_seen - 1):
            return  # the 1st, 2nd, 4th, 8th… such chunk: an agent whose envelopes vary costs little
        template = learn(message, self._backend_session_id, self._require_host().session_id)
        if template is not None:
            connection.learn_texts(template, self)

    def takes_texts(self) -> bool:
        return self._in_turn and not self._replaying and self._stop_reason is None and not self._ended.is_set()

    async def on_texts(self, envelope: TextEnvelope, texts: list[str]) -> None:
        await self._require_host().emit_texts(envelope, texts)

    def _note_usage(self, update: JsonObject) -> None:
        self._usage_reported = True
        size = update.get("size")
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            self._context_size = size

    async def _emit_update(self, update: JsonObject) -> None:
        host = self._require_host()
        await host.emit(jsonrpc.notification(methods.SESSION_UPDATE, {"sessionId": host.session_id, "update": update}))

    async def on_request(self, method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        host = self._require_host()
        if not self._solicited(method):
            raise AgentExited(self._stop_reason or "stopped")
        if method == methods.SESSION_REQUEST_PERMISSION:
            if isinstance(params, dict):
                params["sessionId"] = host.session_id
                announced = self._ledger.on_permission(params.get("toolCall"))
                if announced is not None:
                    await self._emit_update(announced)
            return await host.request_permission(message)
        if method.startswith(("fs/", "terminal/")) and self._config.client_capabilities.offers(method):
            if not isinstance(params, dict):
                raise RpcError.invalid_params("params must be an object")
            return await host.client_request(method, params)
        raise RpcError.method_not_found(method)

    def _solicited(self, method: str) -> bool:
        """False for what an agent being stopped still sends, and for the message that makes what
        it sends outside a turn (when nobody asked it anything) a flood; that one stops it."""
        if self._stop_reason is not None:
            return False
        if self._in_turn or not self._unsolicited.add():
            return True
        self._stop_flooding(
            f"it sent more than {MAX_UNSOLICITED_FRAMES} messages outside a turn within {FLOOD_WINDOW_SECONDS:g} s",
            {
                "kind": "unsolicited",
                "method": method,
                "count": self._unsolicited.count,
                "windowSeconds": FLOOD_WINDOW_SECONDS,
                "maxFrames": MAX_UNSOLICITED_FRAMES,
            },
        )
        return False

    def _stop_flooding(self, what: str, data: JsonObject) -> None:
        """Record why, and stop the agent: the turn (or the start) under way fails with the reason."""
        self._stop_reason = f"agent {self.name!r} was stopped: {what}"
        self._record("AGENT_OUTPUT_FLOOD", self._stop_reason, data)
        connection = self._connection
        if connection is not None and connection.sole(self):
            connection.stop_soon()
            return
        if connection is not None:
            self._record(
                "CONTAINMENT_SHARED",
                f"agent {self.name!r} serves other sessions from this process: this session left it, "
                "the process runs on",
                {"agent": self.name},
            )
        self.connection_lost()
        if self._turn_scope is not None:
            self._turn_scope.cancel()

    def record_error(self, code: str, message: str, data: JsonObject) -> None:
        """What the connection records in every session on it (invalid output, its flood)."""
        self._record(code, message, data)

    def _record(self, code: str, message: str, data: JsonObject) -> None:
        if self._host is not None:
            self._host.record_error(code, message, data)

    def _require_host(self) -> SessionHost:
        assert self._host is not None, "run() sets the host before the peer starts"
        return self._host


def _offers_close(capabilities: JsonObject) -> bool:
    return "close" in object_of(capabilities.get("sessionCapabilities"))


def _object_or_none(value: JsonValue) -> JsonObject | None:
    return value if isinstance(value, dict) else None


def _state(result: JsonObject, how: str, session_id: str | None) -> BackendState:
    options = result.get("configOptions")
    return BackendState(
        backend_session_id=session_id or None,
        how=how,
        modes=_object_or_none(result.get("modes")),
        config_options=options if isinstance(options, list) else None,
        models=_object_or_none(result.get("models")),
    )
