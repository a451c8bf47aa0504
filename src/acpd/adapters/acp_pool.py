"""Adapters layer: ACP agent processes shared by sessions, and the pool that hands them out.

An ACP agent serves many sessions over one connection (editors run agents that way). An
``AgentConnection`` is one agent process and its JSON-RPC peer, initialized once; it routes what
the agent sends by ``params.sessionId`` to that session's handler (an ``AcpBackend``), so each
session's updates, permission requests, files and terminals stay its own. The ``AgentPool`` keeps
the connections by key (the agent and every setting that requires a process of its own), starts
a warm spare ahead of demand, and stops a process that has served no session for ``idleSeconds``.

It must not decide policy nor persist anything; a session's handler records what is recorded.
What a connection bounds is what the agent costs: a start that hangs, invalid output (counted per
process, recorded in every session on it), and what it sends for a session not yet known.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Protocol

import anyio
from anyio.abc import TaskGroup

from acpd import __version__
from acpd.adapters.base import TextEnvelope
from acpd.adapters.chunks import TextTemplate, prefix_of, take_texts
from acpd.adapters.floods import (
    FLOOD_WINDOW_SECONDS,
    MAX_INVALID_BYTES,
    MAX_INVALID_FRAMES,
    InvalidFrames,
    Verdict,
)
from acpd.adapters.homes import prepare_home
from acpd.adapters.secrets import Redactor
from acpd.config import AgentConfig
from acpd.errors import (
    AgentError,
    AgentExited,
    AgentStartTimeout,
    AgentUnavailable,
    ConnectionClosed,
    RpcError,
)
from acpd.protocol import jsonio, methods
from acpd.protocol.framing import Frame, FrameTooLong
from acpd.protocol.jsonio import JsonObject, JsonValue, object_of
from acpd.rpc.peer import JsonRpcPeer
from acpd.transports.base import Transport
from acpd.transports.process import (
    STDIN_CLOSE_GRACE_SECONDS,
    ProcessSpec,
    ProcessTransport,
    open_process_transport,
)
from acpd.transports.recording import RecordingTransport

logger = logging.getLogger(__name__)

EXCERPT_CHARS: Final = 200
STDERR_DETAIL_CHARS: Final = 2000
"""How much of a failed agent's stderr its start error shows (redacted)."""
MAX_SESSION_REQUESTS: Final = 128
"""Requests an agent may have waiting on the daemon at once for one session (permissions, fs,
terminals); more are refused, so that one session's flood cannot starve the others on its process."""
MAX_AGENT_REQUESTS: Final = 4096
"""The same across all the sessions of one process: what an agent sending requests without waiting
for answers may cost (a task each)."""
EXIT_WAIT_SECONDS: Final = 1.0
"""After an agent closed its output during its start, how long to wait for its exit status."""
MAX_HELD_BYTES: Final = 16 * 1024 * 1024
"""What an agent may send for a session whose ``session/new`` has not answered yet, per session id."""
NO_SESSION: Final = ""
"""Where what an agent sends for no session before its first session opened is held."""
MAX_TEXT_TEMPLATES: Final = 64
"""Text chunk templates a connection keeps (a few per session: a message's, a thought's)."""
DAEMON_ONLY_VARIABLES: Final = ("ACPD_TOKEN", "ACPD_TOKEN_FILE")
"""The daemon's own credentials: an agent (and every command it runs itself) has no use for them."""


class SessionHandler(Protocol):
    """One session on a connection, as the connection sees it (``AcpBackend``)."""

    async def on_notification(self, method: str, params: JsonValue, message: JsonObject) -> None: ...

    async def on_request(self, method: str, params: JsonValue, message: JsonObject) -> JsonValue: ...

    def record_error(self, code: str, message: str, data: JsonObject) -> None:
        """Record an ``_acpd/error`` in the session (the process misbehaved)."""
        ...

    def connection_lost(self) -> None:
        """The process ended (its exit status is on the connection)."""
        ...


class TextSink(SessionHandler, Protocol):
    """A session handler that takes text chunks without their parse (``chunks``)."""

    def takes_texts(self) -> bool:
        """True while text chunks may be handed over with ``on_texts`` (during a turn)."""
        ...

    async def on_texts(self, envelope: TextEnvelope, texts: list[str]) -> None:
        """Text chunks of one learned template, in order: what ``on_notification`` would do with each."""
        ...


@dataclass(frozen=True, slots=True)
class PoolKey:
    """What makes two sessions need different processes: the agent and its resolved configuration
    (command, env, model URL, home, files), the process's cwd, the session's MCP servers, and
    whether the process is the session's own."""

    agent: str
    config: str
    process_cwd: str
    mcp_servers: str
    dedicated: bool


def pool_key(
    name: str, config: AgentConfig, *, cwd: str, mcp_servers: Sequence[JsonObject], dedicated: bool
) -> PoolKey:
    return PoolKey(
        agent=name,
        config=_config_text(config),
        process_cwd=config.cwd or cwd,
        mcp_servers=jsonio.dumps_str(list(mcp_servers)),
        dedicated=dedicated,
    )


_config_texts: dict[int, tuple[AgentConfig, str]] = {}
"""Each resolved configuration's JSON (``all_agents`` hands out the same objects while nothing
changes): every create keys the pool by it. The config is kept with its text so its id stays its own."""
MAX_CONFIG_TEXTS: Final = 64


def _config_text(config: AgentConfig) -> str:
    cached = _config_texts.get(id(config))
    if cached is not None and cached[0] is config:
        return cached[1]
    if len(_config_texts) >= MAX_CONFIG_TEXTS:
        _config_texts.clear()  # resolved afresh after changes of the environment: the old ones go
    text = config.model_dump_json()
    _config_texts[id(config)] = (config, text)
    return text


class AgentConnection:
    """One agent process, initialized once, serving the sessions registered on it."""

    def __init__(
        self,
        name: str,
        config: AgentConfig,
        key: PoolKey,
        *,
        record_path: Path | None = None,
        prepare_lock: anyio.Lock | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.key = key
        self._record_path = record_path
        self._prepare_lock = prepare_lock or anyio.Lock()
        self._env = {**os.environ, **config.env}
        self.redact = Redactor(self._env)  # its stderr and recordings keep none of these secrets
        self.sessions: dict[str, SessionHandler] = {}
        self._held: dict[str, deque[tuple[str, JsonValue, JsonObject]]] = {}
        self._held_bytes: dict[str, int] = {}
        self._requests: dict[SessionHandler, int] = {}  # requests being served, by their session's handler
        self._templates: dict[bytes, tuple[TextTemplate, TextSink]] = {}  # by prefix (``chunks``)
        self.opening = 0  # session/new requests in flight: what they answer is not known yet
        self.reserved = 0  # sessions promised this connection, not yet registered
        self.claimed = False  # a dedicated connection handed to its session
        self.peer: JsonRpcPeer | None = None
        self.proc: ProcessTransport | None = None
        self.init: JsonObject = {}
        self.capabilities: JsonObject = {}
        self.ready = anyio.Event()  # initialized, or failed (``start_error``)
        self.stopped = anyio.Event()
        self.start_error: AgentError | None = None
        self.stop_reason: str | None = None  # why the daemon stopped a misbehaving agent
        self.returncode: int | None = None
        self.stderr_tail = ""
        self.starting = "start"
        self._changed = anyio.Event()  # set when the sessions or reservations change
        self._invalid = InvalidFrames()
        self._invalid_held = anyio.Event()
        self._task_group: TaskGroup | None = None
        self._start_scope = anyio.CancelScope()

    # -- state -----------------------------------------------------------------------------------

    @property
    def load(self) -> int:
        return len(self.sessions) + self.reserved

    @property
    def closed(self) -> bool:
        return self.stopped.is_set() or self.start_error is not None or (self.peer is not None and self.peer.closed)

    def sole(self, handler: SessionHandler) -> bool:
        """True when ``handler``'s session is the only one this process serves or will serve: what
        stops the process stops nobody else."""
        if self.key.dedicated:
            return True
        return self.reserved == 0 and self.opening == 0 and all(h is handler for h in self.sessions.values())

    def _note_change(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def reserve(self) -> None:
        self.reserved += 1
        self._note_change()

    def unreserve(self) -> None:
        self.reserved -= 1
        self._note_change()

    # -- life ------------------------------------------------------------------------------------

    async def run(self, idle_seconds: float | None) -> None:
        """Start the agent and initialize it, then serve until it ends or is closed; with
        ``idle_seconds``, close it once it has served no session for that long."""
        spec = ProcessSpec(
            command=self.config.command,
            args=tuple(self.config.args),
            env=agent_env(self._env, self.config.env),
            cwd=self.key.process_cwd,
            stdin_close_grace_seconds=STDIN_CLOSE_GRACE_SECONDS if self.config.exits_on_stdin_close else 0.0,
        )
        try:
            with self._start_scope:
                await self._serve(spec, idle_seconds)
            if self._start_scope.cancelled_caught:
                self.start_error = AgentUnavailable(f"agent {self.name!r}: its start was abandoned")
        except AgentError as exc:  # it could not even be spawned
            self.start_error = exc
        finally:
            self.stopped.set()
            self.ready.set()
            for handler in list(self.sessions.values()):
                handler.connection_lost()

    async def abandon(self) -> None:
        """Stop a process still starting that no session waits for any more; wait until it is gone."""
        if not self.ready.is_set():
            self._start_scope.cancel()
            await self.stopped.wait()

    async def _serve(self, spec: ProcessSpec, idle_seconds: float | None) -> None:
        failure: AgentError | None = None
        async with self._prepare_lock:  # a spare starting beside must not rewrite a file being read
            await anyio.to_thread.run_sync(write_files, self.config.files)
            await anyio.to_thread.run_sync(prepare_home, self.config.home)
        async with open_process_transport(spec) as proc:
            self.proc = proc
            peer = JsonRpcPeer(
                self._recorded(proc),
                on_request=self._route_request,
                on_notification=self._route_notification,
                on_invalid=self._on_invalid,
                on_frames=self._claim_texts,
                answer_invalid=False,
                max_incoming=min(MAX_AGENT_REQUESTS, MAX_SESSION_REQUESTS * self.config.max_sessions_per_process),
                name=f"agent:{self.name}",
            )
            self.peer = peer
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                tg.start_soon(peer.run)
                tg.start_soon(self._summarize_invalid)
                try:
                    await self._initialize(peer)
                except AgentError as exc:
                    failure = exc
                    await self.wait_exit_after(exc)
                else:
                    self.ready.set()
                    if idle_seconds is not None:
                        tg.start_soon(self._close_when_idle, idle_seconds)
                    await peer.wait_closed()
                self._flush_invalid()
                tg.cancel_scope.cancel()
        self.returncode, self.stderr_tail = proc.returncode, self.redact(proc.stderr_tail())
        if failure is not None:
            self.start_error = self.start_failure(failure)

    async def aclose(self) -> None:
        """Stop the process (every session on it ends); returns once it is gone."""
        if not self.ready.is_set():
            self._start_scope.cancel()
        elif self.peer is not None:
            await self.peer.aclose()
        with anyio.CancelScope(shield=True):
            await self.stopped.wait()

    def _recorded(self, transport: Transport) -> Transport:
        if self._record_path is None:
            return transport
        return RecordingTransport(transport, self._record_path, scrub=self.redact)

    async def _initialize(self, peer: JsonRpcPeer) -> None:
        self.starting = "answer initialize"
        with anyio.move_on_after(self.timeout):
            try:
                self.init = object_of(
                    await peer.request(
                        methods.INITIALIZE,
                        {
                            "protocolVersion": methods.PROTOCOL_VERSION,
                            "clientCapabilities": self.config.client_capabilities.to_wire(),
                            "clientInfo": {"name": "acpd", "version": __version__},
                        },
                    )
                )
            except (RpcError, ConnectionClosed) as exc:
                raise AgentError(f"agent {self.name!r} failed to open a session: {exc}") from exc
            self.capabilities = object_of(self.init.get("agentCapabilities"))
            return
        raise self.timed_out()

    @property
    def timeout(self) -> float:
        timeout = self.config.start_timeout_seconds
        return timeout if timeout is not None else math.inf

    def timed_out(self) -> AgentStartTimeout:
        timeout = self.config.start_timeout_seconds
        return AgentStartTimeout(
            f"agent {self.name!r} did not {self.starting} within {timeout:g} s",
            data={"agent": self.name, "startTimeoutSeconds": timeout},
        )

    async def wait_exit_after(self, failure: AgentError) -> None:
        """An agent that closed its output is usually exiting: let its exit status be known."""
        if isinstance(failure.__cause__, ConnectionClosed) and self.proc is not None:
            with anyio.move_on_after(EXIT_WAIT_SECONDS):
                await self.proc.exited.wait()

    def start_failure(self, failure: AgentError, stop_reason: str | None = None) -> AgentError:
        """The error a failed start answers with: why, and the end of what the agent printed."""
        tail = self._stderr().strip()[-STDERR_DETAIL_CHARS:]
        hint = f"; its stderr ends with: {tail}" if tail else "; it wrote nothing to stderr"
        data = {**(failure.data if isinstance(failure.data, dict) else {}), "agent": self.name, "stderrTail": tail}
        reason = stop_reason or self.stop_reason
        if reason is not None:
            return AgentError(reason + hint, data=data)
        if isinstance(failure, AgentStartTimeout):
            return AgentStartTimeout(failure.message + hint, data=data)
        exited = self.proc is not None and self.proc.exited.is_set()
        if exited and isinstance(failure.__cause__, ConnectionClosed):
            assert self.proc is not None
            data["exitCode"] = self.proc.returncode
            return AgentExited(
                f"agent {self.name!r} exited with status {self.proc.returncode} before it could {self.starting}{hint}",
                data=data,
            )
        return AgentError(failure.message + hint, data=data)

    def stderr_hint(self) -> str:
        tail = self._stderr().strip()
        return f"; its stderr ends with: {tail[-EXCERPT_CHARS:]}" if tail else ""

    def _stderr(self) -> str:
        """What the agent last wrote to stderr, redacted: its final tail once it has stopped."""
        if self.stopped.is_set() or self.proc is None:
            return self.stderr_tail
        return self.redact(self.proc.stderr_tail())

    async def _close_when_idle(self, idle_seconds: float) -> None:
        while True:
            changed = self._changed
            if self.load == 0:
                with anyio.move_on_after(idle_seconds):
                    await changed.wait()
                if not changed.is_set():
                    logger.debug("agent %s: no session for %g s; stopping its process", self.name, idle_seconds)
                    if self.peer is not None:
                        await self.peer.aclose()
                    return
            else:
                await changed.wait()

    # -- sessions --------------------------------------------------------------------------------

    async def register(self, session_id: str, handler: SessionHandler) -> None:
        """Route ``session_id``'s messages to ``handler``, first those held while it opened."""
        self.sessions[session_id] = handler
        self._note_change()
        # What arrives meanwhile is appended to the held list while it exists: the order stays.
        for held_for in (NO_SESSION, session_id):  # what came before any session: the first one's
            held = self._held.get(held_for)
            while held:
                method, params, message = held.popleft()
                await handler.on_notification(method, params, message)
            self._held.pop(held_for, None)
            self._held_bytes.pop(held_for, None)

    def unregister(self, session_id: str | None, handler: SessionHandler) -> None:
        if session_id is not None and self.sessions.get(session_id) is handler:
            del self.sessions[session_id]
            self._note_change()
            for prefix in [p for p, (template, _) in self._templates.items() if template.session_id == session_id]:
                del self._templates[prefix]

    def learn_texts(self, template: TextTemplate, handler: TextSink) -> None:
        """Take the session's later text chunks of ``template`` without parsing them (``chunks``)."""
        if template.prefix not in self._templates and len(self._templates) >= MAX_TEXT_TEMPLATES:
            del self._templates[next(iter(self._templates))]  # the oldest
        self._templates[template.prefix] = (template, handler)

    async def _claim_texts(self, frames: list[Frame], start: int, stop: int) -> int:
        """The peer's ``on_frames``: a run of text chunks of a learned template goes to its session
        at once; anything else (or anything while messages are held) is parsed as usual."""
        if not self._templates or self._held:
            return 0
        prefix = prefix_of(frames[start])
        found = self._templates.get(prefix) if prefix is not None else None
        if found is None:
            return 0
        template, handler = found
        if self.sessions.get(template.session_id) is not handler or not handler.takes_texts():
            return 0
        texts = take_texts(template, frames, start, stop)
        if texts:
            try:
                await handler.on_texts(template.envelope, texts)
            except Exception:
                # taken all the same: parsing them again would record those already recorded twice
                # (a failing notification handler loses its message, as the peer does for one)
                logger.exception("agent %s: failed to handle %d text chunks", self.name, len(texts))
        return len(texts)

    async def _route_notification(self, method: str, params: JsonValue, message: JsonObject) -> None:
        session_id = params.get("sessionId") if isinstance(params, dict) else None
        handler = self.sessions.get(session_id) if isinstance(session_id, str) else None
        if isinstance(session_id, str) and session_id in self._held and session_id != NO_SESSION:
            self._hold(session_id, method, params, message)
        elif handler is not None:
            await handler.on_notification(method, params, message)
        elif isinstance(session_id, str) and self.opening:
            self._hold(session_id, method, params, message)  # for the session a session/new is opening
        elif (only := self._only_session()) is not None and session_id is None:
            await only.on_notification(method, params, message)
        elif session_id is None and not self.sessions:
            self._hold(NO_SESSION, method, params, message)  # before its first session opened
        else:
            # A session closed here (or never opened): no session may see another's messages.
            logger.info("agent %s sent %s for no open session (%r); not recorded", self.name, method, session_id)

    def _hold(self, session_id: str, method: str, params: JsonValue, message: JsonObject) -> None:
        size = self._held_bytes.get(session_id, 0) + len(jsonio.dumps(message))
        if size > MAX_HELD_BYTES:
            self._fail_flood(
                f"it sent more than {MAX_HELD_BYTES} bytes before opening its session",
                {"kind": "early", "limit": MAX_HELD_BYTES},
            )
            return
        self._held_bytes[session_id] = size
        self._held.setdefault(session_id, deque()).append((method, params, message))

    def _only_session(self) -> SessionHandler | None:
        handlers = list(self.sessions.values())
        return handlers[0] if len(handlers) == 1 and not self.opening else None

    async def _route_request(self, method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        session_id = params.get("sessionId") if isinstance(params, dict) else None
        handler = await self._handler_for(session_id)
        if handler is None:
            raise RpcError.invalid_params(f"no open session {session_id!r}")
        busy = self._requests.get(handler, 0)
        if busy >= MAX_SESSION_REQUESTS:
            raise RpcError.internal_error(f"more than {MAX_SESSION_REQUESTS} requests in flight for this session")
        self._requests[handler] = busy + 1
        try:
            return await handler.on_request(method, params, message)
        finally:
            if (left := self._requests[handler] - 1) > 0:
                self._requests[handler] = left
            else:
                del self._requests[handler]

    async def _handler_for(self, session_id: JsonValue) -> SessionHandler | None:
        if not isinstance(session_id, str):
            return self._only_session()
        with anyio.move_on_after(self.timeout):
            # a request for the session a session/new is opening waits for its answer
            while session_id not in self.sessions and self.opening:
                await self._changed.wait()
        return self.sessions.get(session_id)

    # -- misbehaviour ----------------------------------------------------------------------------

    def _record_all(self, code: str, message: str, data: JsonObject) -> None:
        if not self.sessions:
            logger.warning("agent %s: %s", self.name, message)
        for handler in list(self.sessions.values()):
            handler.record_error(code, message, data)

    def _on_invalid(self, frame: Frame, reason: str) -> None:
        """Record invalid output (coalesced, see ``floods``) in every session on the process: whose
        it was cannot be told. Stop a process that floods it."""
        if self.stop_reason is not None:
            return
        if isinstance(frame, FrameTooLong):
            size, excerpt = frame.size, f"<{frame.size} bytes>"
        else:
            size, excerpt = len(frame), frame[:EXCERPT_CHARS].decode("utf-8", "replace")
        verdict = self._invalid.add(size, excerpt, reason)
        if verdict is Verdict.RECORD:
            self._record_all(
                "AGENT_PROTOCOL_ERROR",
                f"agent {self.name!r} wrote an invalid frame: {reason}",
                {"excerpt": excerpt, "count": 1, "bytes": size},
            )
        elif verdict is Verdict.HOLD:
            self._invalid_held.set()
        else:
            self._stop_invalid_flood()

    def _flush_invalid(self) -> None:
        held = self._invalid.take_summary()
        if held is not None:
            self._record_all(
                "AGENT_PROTOCOL_ERROR",
                f"agent {self.name!r} wrote {held.count} more invalid frame(s) ({held.bytes} bytes) since the last "
                f"report; the first: {held.reason}",
                {"excerpt": held.excerpt, "count": held.count, "bytes": held.bytes},
            )

    async def _summarize_invalid(self) -> None:
        while True:
            await self._invalid_held.wait()
            self._invalid_held = anyio.Event()
            due = self._invalid.summary_due
            if due is not None:
                await anyio.sleep(max(0.0, due - time.monotonic()))
                self._flush_invalid()

    def _stop_invalid_flood(self) -> None:
        window = self._invalid.window
        self._flush_invalid()
        self._fail_flood(
            f"it wrote {window.count} invalid frames ({window.bytes} bytes) within {FLOOD_WINDOW_SECONDS:g} s "
            f"(at most {MAX_INVALID_FRAMES} frames or {MAX_INVALID_BYTES} bytes)",
            {
                "kind": "invalid",
                "excerpt": window.excerpt,
                "count": window.count,
                "bytes": window.bytes,
                "windowSeconds": FLOOD_WINDOW_SECONDS,
                "maxFrames": MAX_INVALID_FRAMES,
                "maxBytes": MAX_INVALID_BYTES,
            },
        )

    def _fail_flood(self, what: str, data: JsonObject) -> None:
        """Stop the whole process: every session on it records why, and its turn fails."""
        self.stop_reason = f"agent {self.name!r} was stopped: {what}"
        self._record_all("AGENT_OUTPUT_FLOOD", self.stop_reason, data)
        self.stop_soon()

    def stop_soon(self) -> None:
        if self._task_group is not None and self.peer is not None:
            self._task_group.start_soon(self.peer.aclose)


class AgentPool:
    """The daemon's agent processes, by ``PoolKey``. Its processes run in ``task_group``."""

    def __init__(self, task_group: TaskGroup) -> None:
        self._task_group = task_group
        self._connections: dict[PoolKey, list[AgentConnection]] = {}
        self._prepare_lock = anyio.Lock()

    def running(self, name: str, config: AgentConfig, *, cwd: str, mcp_servers: Sequence[JsonObject]) -> bool:
        """Whether a process of this agent, started as a new session of it would be, is up and
        initialized: then the agent is usable, and judging it again (PATH, files) can be skipped."""
        shared = pool_key(name, config, cwd=cwd, mcp_servers=mcp_servers, dedicated=False)
        for key in (shared, replace(shared, dedicated=True)):
            if any(c.ready.is_set() and not c.closed for c in self._connections.get(key, [])):
                return True
        return False

    def connections(self) -> list[AgentConnection]:
        return [c for group in self._connections.values() for c in group]

    async def acquire(
        self,
        name: str,
        config: AgentConfig,
        *,
        cwd: str,
        mcp_servers: Sequence[JsonObject],
        dedicated: bool,
        record_path: Path | None = None,
    ) -> AgentConnection:
        """A started connection with room for one more session, reserved for it (the caller
        registers or unreserves); a new process when none has room.

        Raises:
            AgentUnavailable, AgentError: the process could not start.
        """
        key = pool_key(name, config, cwd=cwd, mcp_servers=mcp_servers, dedicated=dedicated or record_path is not None)
        if record_path is not None:
            # a recording is one session's traffic: its process is its own, started for it
            connection = self._spawn(key, name, config, record_path=record_path)
        else:
            connection = self._find(key) or self._spawn(key, name, config)
        connection.reserve()
        if key.dedicated:
            connection.claimed = True
        if record_path is None:
            self._top_up(key, name, config)
        try:
            if not connection.ready.is_set():  # a warm process: on without a trip round the event loop
                await connection.ready.wait()
        except BaseException:
            connection.unreserve()
            if connection.load == 0:
                with anyio.CancelScope(shield=True):
                    await connection.abandon()  # as before pooling: an aborted start stops its agent
            raise
        if connection.start_error is not None:
            connection.unreserve()
            raise connection.start_error
        return connection

    def _accepts(self, connection: AgentConnection) -> bool:
        if connection.closed:
            return False
        if connection.key.dedicated:
            return not connection.claimed
        return connection.load < connection.config.max_sessions_per_process

    def _find(self, key: PoolKey) -> AgentConnection | None:
        ready = [c for c in self._connections.get(key, []) if self._accepts(c)]
        # the fullest one with room: sessions gather on few processes, and the spare stays spare
        return max(ready, key=lambda c: (c.ready.is_set(), c.load), default=None)

    def _top_up(self, key: PoolKey, name: str, config: AgentConfig) -> None:
        """Start spares until ``spareProcesses`` connections could take one more session at once."""
        group = self._connections.get(key, [])
        group[:] = [c for c in group if not c.stopped.is_set()]
        for _ in range(config.spare_processes - sum(self._accepts(c) for c in group)):
            self._spawn(key, name, config)

    def _spawn(
        self, key: PoolKey, name: str, config: AgentConfig, *, record_path: Path | None = None
    ) -> AgentConnection:
        connection = AgentConnection(name, config, key, record_path=record_path, prepare_lock=self._prepare_lock)
        if record_path is None:
            self._connections.setdefault(key, []).append(connection)
        # a dedicated process idles out too: a spare nobody claimed (its session's has load while it lives)
        self._task_group.start_soon(self._run, connection, config.idle_seconds, name=f"agent {name}")
        return connection

    async def _run(self, connection: AgentConnection, idle_seconds: float) -> None:
        try:
            await connection.run(idle_seconds)
        finally:
            group = self._connections.get(connection.key)
            if group is not None and connection in group:
                group.remove(connection)
                if not group:
                    del self._connections[connection.key]

    async def aclose(self) -> None:
        """Stop every process (the daemon is stopping)."""
        async with anyio.create_task_group() as tg:
            for connection in self.connections():
                tg.start_soon(connection.aclose)


def agent_env(env: Mapping[str, str], configured: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the daemon's credentials, unless the agent's configuration sets them."""
    return {name: value for name, value in env.items() if name not in DAEMON_ONLY_VARIABLES or name in configured}


def write_files(files: Mapping[str, str]) -> None:
    """Write the files an agent needs before it starts, unless they already say the same.

    Raises:
        AgentUnavailable: a file cannot be written.
    """
    for name, text in files.items():
        path = Path(name)
        try:
            if not path.is_file() or path.read_text() != text:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        except OSError as exc:
            raise AgentUnavailable(f"cannot write {name}, which the agent needs: {exc.strerror or exc}") from exc
