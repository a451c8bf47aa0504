"""Adapters layer: any agent that speaks ACP over stdio, spawned as a child process.

The daemon is the agent's ACP client. This module spawns the command, negotiates the session
(``session/load`` or ``session/resume`` when the agent offers them and there is one to continue),
forwards turns and settings, and hands everything the agent says to the ``SessionHost``. It must
not decide policy (permissions, limits) nor persist anything: that is the daemon's job. What it
does bound is what a misbehaving agent costs: a start that hangs (``startTimeoutSeconds``), invalid
output and messages nobody asked for (``floods``), requests it leaves waiting on the daemon.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup, TaskStatus

from acpd import __version__
from acpd.adapters.base import BackendState, SessionHost
from acpd.adapters.floods import (
    FLOOD_WINDOW_SECONDS,
    MAX_INVALID_BYTES,
    MAX_INVALID_FRAMES,
    MAX_UNSOLICITED_FRAMES,
    FrameRate,
    InvalidFrames,
    Verdict,
)
from acpd.adapters.homes import prepare_home
from acpd.adapters.secrets import Redactor
from acpd.adapters.toolcalls import ToolCallLedger, usage_of, usage_update_for
from acpd.config import AgentConfig
from acpd.errors import (
    AgentError,
    AgentExited,
    AgentStartTimeout,
    AgentUnavailable,
    ConnectionClosed,
    RpcError,
)
from acpd.protocol import jsonrpc, methods
from acpd.protocol.framing import Frame, FrameTooLong
from acpd.protocol.jsonio import JsonObject, JsonValue
from acpd.rpc.peer import JsonRpcPeer
from acpd.transports.base import Transport
from acpd.transports.process import (
    STDIN_CLOSE_GRACE_SECONDS,
    ProcessSpec,
    ProcessTransport,
    open_process_transport,
    process_mark,
)
from acpd.transports.recording import RecordingTransport

logger = logging.getLogger(__name__)

EXCERPT_CHARS: Final = 200
STDERR_DETAIL_CHARS: Final = 2000
"""How much of a failed agent's stderr its start error shows (redacted)."""
MAX_AGENT_REQUESTS: Final = 128
"""Requests an agent may have waiting on the daemon at once (permissions, fs, terminals); more are refused."""
EXIT_WAIT_SECONDS: Final = 1.0
"""After an agent closed its output during its start, how long to wait for its exit status."""


class AcpBackend:
    """One agent process serving one daemon session."""

    def __init__(
        self,
        name: str,
        config: AgentConfig,
        *,
        cwd: str,
        mcp_servers: Sequence[JsonObject] = (),
        record_dir: str | None = None,
    ) -> None:
        self.name = name
        self._record_dir = record_dir
        self._config = config
        self._cwd = cwd
        self._mcp_servers = list(mcp_servers)
        self._peer: JsonRpcPeer | None = None
        self._proc: ProcessTransport | None = None
        self._host: SessionHost | None = None
        self._backend_session_id: str | None = None
        self._replaying = False
        self._cancelled = False  # during a turn: a cancel was sent, so stop what the turn left running
        self._ledger = ToolCallLedger()
        self._usage_reported = False  # during a turn: the agent sent a usage_update
        self._context_size: int | None = None  # the window its last usage_update named
        self._stopped = anyio.Event()
        self._env = {**os.environ, **config.env}
        self._redact = Redactor(self._env)  # its stderr and recordings keep none of these secrets
        self._starting = "start"  # the step of the start under way, for its error messages
        self._invalid = InvalidFrames()
        self._invalid_held = anyio.Event()  # set when an invalid frame waits for its summary
        self._unsolicited = FrameRate(MAX_UNSOLICITED_FRAMES)  # what it sends outside a turn
        self._in_turn = False
        self._stop_reason: str | None = None  # why the daemon stopped a misbehaving agent
        self._task_group: TaskGroup | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self, host: SessionHost, *, resume_id: str | None, task_status: TaskStatus[BackendState]) -> None:
        self._host = host
        spec = ProcessSpec(
            command=self._config.command,
            args=tuple(self._config.args),
            env=_agent_env(self._env, self._config.env),
            cwd=self._config.cwd or self._cwd,
            stdin_close_grace_seconds=STDIN_CLOSE_GRACE_SECONDS if self._config.exits_on_stdin_close else 0.0,
        )
        returncode: int | None = None
        stderr_tail = ""
        started = False
        failure: AgentError | None = None
        try:
            await anyio.to_thread.run_sync(write_files, self._config.files)
            await anyio.to_thread.run_sync(prepare_home, self._config.home)
            async with open_process_transport(spec) as proc:
                self._proc = proc
                peer = JsonRpcPeer(
                    self._recorded(proc, host.session_id),
                    on_request=self._on_request,
                    on_notification=self._on_notification,
                    on_invalid=self._on_invalid,
                    answer_invalid=False,
                    max_incoming=MAX_AGENT_REQUESTS,
                    name=f"agent:{self.name}",
                )
                self._peer = peer
                async with anyio.create_task_group() as tg:
                    self._task_group = tg
                    tg.start_soon(peer.run)
                    tg.start_soon(self._summarize_invalid)
                    try:
                        state = await self._start(peer, resume_id)
                    except AgentError as exc:
                        # Raised below, outside the task group (which would wrap it), once the
                        # process is gone and its exit status and last stderr are known.
                        failure = exc
                        await self._wait_exit_after(exc, proc)
                    else:
                        started = True
                        task_status.started(state)
                        await peer.wait_closed()
                    self._flush_invalid()
                    tg.cancel_scope.cancel()
            returncode, stderr_tail = proc.returncode, self._redact(proc.stderr_tail())
            if failure is not None:
                raise self._start_failure(failure, proc.exited.is_set(), returncode, stderr_tail) from failure
        finally:
            self._stopped.set()
            if started:
                host.backend_exited(returncode, stderr_tail)

    def _recorded(self, transport: Transport, session_id: str) -> Transport:
        if not self._record_dir:
            return transport
        path = Path(self._record_dir) / f"{session_id}.{self.name}.jsonl"
        return RecordingTransport(transport, path, scrub=self._redact)

    async def _start(self, peer: JsonRpcPeer, resume_id: str | None) -> BackendState:
        """Initialize the agent and open its session, within the agent's start timeout.

        Raises:
            AgentStartTimeout: no session in time; AgentError: the agent refused or went away.
        """
        timeout = self._config.start_timeout_seconds
        with anyio.move_on_after(timeout if timeout is not None else math.inf):
            return await self._open_session(peer, resume_id)
        raise AgentStartTimeout(
            f"agent {self.name!r} did not {self._starting} within {timeout:g} s",
            data={"agent": self.name, "startTimeoutSeconds": timeout},
        )

    async def _wait_exit_after(self, failure: AgentError, proc: ProcessTransport) -> None:
        """An agent that closed its output is usually exiting: let its exit status be known."""
        if isinstance(failure.__cause__, ConnectionClosed):
            with anyio.move_on_after(EXIT_WAIT_SECONDS):
                await proc.exited.wait()

    def _start_failure(self, failure: AgentError, exited: bool, returncode: int | None, stderr: str) -> AgentError:
        """The error a failed start answers with: why, and the end of what the agent printed."""
        tail = stderr.strip()[-STDERR_DETAIL_CHARS:]
        hint = f"; its stderr ends with: {tail}" if tail else "; it wrote nothing to stderr"
        data = {**(failure.data if isinstance(failure.data, dict) else {}), "agent": self.name, "stderrTail": tail}
        if self._stop_reason is not None:
            return AgentError(self._stop_reason + hint, data=data)
        if isinstance(failure, AgentStartTimeout):
            return AgentStartTimeout(failure.message + hint, data=data)
        if exited and isinstance(failure.__cause__, ConnectionClosed):
            data["exitCode"] = returncode
            return AgentExited(
                f"agent {self.name!r} exited with status {returncode} before it could {self._starting}{hint}",
                data=data,
            )
        return AgentError(failure.message + hint, data=data)

    async def _open_session(self, peer: JsonRpcPeer, resume_id: str | None) -> BackendState:
        try:
            self._starting = "answer initialize"
            init = _object(
                await peer.request(
                    methods.INITIALIZE,
                    {
                        "protocolVersion": methods.PROTOCOL_VERSION,
                        "clientCapabilities": self._config.client_capabilities.to_wire(),
                        "clientInfo": {"name": "acpd", "version": __version__},
                    },
                )
            )
            caps = _object(init.get("agentCapabilities"))
            resumable = resume_id if self._config.continue_sessions else None
            self._starting = "continue its session"
            state = await self._continue_session(peer, caps, resumable) if resumable else None
            if state is None:
                self._starting = "answer session/new"
                result = _object(
                    await peer.request(methods.SESSION_NEW, {"cwd": self._cwd, "mcpServers": self._mcp_servers})
                )
                session_id = result.get("sessionId")
                state = _state(result, "new", session_id if isinstance(session_id, str) else None)
        except (RpcError, ConnectionClosed) as exc:
            raise AgentError(f"agent {self.name!r} failed to open a session: {exc}") from exc
        state.agent_info = _object(init.get("agentInfo"))
        state.capabilities = caps
        self._backend_session_id = state.backend_session_id
        return state

    async def _continue_session(self, peer: JsonRpcPeer, caps: JsonObject, resume_id: str) -> BackendState | None:
        """Resume (no replay) or load (replay suppressed) the earlier backend session, if offered."""
        params = {"sessionId": resume_id, "cwd": self._cwd, "mcpServers": self._mcp_servers}
        if "resume" in _object(caps.get("sessionCapabilities")):
            how = methods.SESSION_RESUME
        elif caps.get("loadSession"):
            how = methods.SESSION_LOAD
        else:
            return None
        # Our log already has the history; what the agent replays while loading must not be recorded twice.
        self._replaying = how == methods.SESSION_LOAD
        try:
            result = _object(await peer.request(how, params))
        except RpcError as exc:
            logger.info("agent %s could not %s session %s (%s); starting a new one", self.name, how, resume_id, exc)
            return None
        finally:
            self._replaying = False
        return _state(result, how.removeprefix("session/"), resume_id)

    async def aclose(self) -> None:
        if self._peer is not None:
            await self._peer.aclose()
            with anyio.CancelScope(shield=True):
                await self._stopped.wait()

    # -- calls from the daemon -------------------------------------------------------------------

    def _live_peer(self) -> JsonRpcPeer:
        if self._peer is None or self._peer.closed:
            raise AgentExited(self._stop_reason or f"agent {self.name!r} is not running{self._stderr_hint()}")
        return self._peer

    async def prompt(self, prompt: list[JsonObject]) -> JsonObject:
        peer = self._live_peer()
        mark = process_mark()
        self._cancelled = False
        self._usage_reported = False
        result: JsonObject = {}
        self._in_turn = True
        try:
            result = _object(
                await peer.request(methods.SESSION_PROMPT, {"sessionId": self._backend_session_id, "prompt": prompt})
            )
        except ConnectionClosed as exc:
            raise AgentExited(
                self._stop_reason or f"agent {self.name!r} exited during the turn{self._stderr_hint()}"
            ) from exc
        finally:
            self._in_turn = False
            with anyio.CancelScope(shield=True):
                if self._cancelled and self._proc is not None and self._config.stop_detached_on_cancel:
                    # codex-acp answers a cancel but leaves the command running in its own session.
                    await self._proc.stop_detached_since(mark)
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
        if self._peer is not None and not self._peer.closed:
            await self._peer.notify(methods.SESSION_CANCEL, {"sessionId": self._backend_session_id})

    async def set_mode(self, mode_id: str) -> None:
        await self._live_peer().request(
            methods.SESSION_SET_MODE, {"sessionId": self._backend_session_id, "modeId": mode_id}
        )

    async def set_config_option(self, config_id: str, value: Any) -> list[JsonObject] | None:
        params: JsonObject = {"sessionId": self._backend_session_id, "configId": config_id, "value": value}
        if isinstance(value, bool):
            params["type"] = "boolean"
        result = _object(await self._live_peer().request(methods.SESSION_SET_CONFIG_OPTION, params))
        options = result.get("configOptions")
        return options if isinstance(options, list) else None

    async def set_model(self, model_id: str) -> None:
        await self._live_peer().request(
            methods.SESSION_SET_MODEL, {"sessionId": self._backend_session_id, "modelId": model_id}
        )

    # -- calls from the agent --------------------------------------------------------------------

    async def _on_notification(self, method: str, params: JsonValue, message: JsonObject) -> None:
        if self._replaying and method == methods.SESSION_UPDATE:
            return
        if not self._solicited(method):
            return
        host = self._require_host()
        if isinstance(params, dict) and "sessionId" in params:
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

    def _note_usage(self, update: JsonObject) -> None:
        self._usage_reported = True
        size = update.get("size")
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            self._context_size = size

    async def _emit_update(self, update: JsonObject) -> None:
        host = self._require_host()
        await host.emit(jsonrpc.notification(methods.SESSION_UPDATE, {"sessionId": host.session_id, "update": update}))

    async def _on_request(self, method: str, params: JsonValue, message: JsonObject) -> JsonValue:
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

    def _on_invalid(self, frame: Frame, reason: str) -> None:
        """Record invalid output, coalesced (see ``floods``); stop an agent that floods it."""
        if self._stop_reason is not None:
            return  # being stopped: what it still writes is not worth a record
        if isinstance(frame, FrameTooLong):
            size, excerpt = frame.size, f"<{frame.size} bytes>"
        else:
            size, excerpt = len(frame), frame[:EXCERPT_CHARS].decode("utf-8", "replace")
        verdict = self._invalid.add(size, excerpt, reason)
        if verdict is Verdict.RECORD:
            self._require_host().record_error(
                "AGENT_PROTOCOL_ERROR",
                f"agent {self.name!r} wrote an invalid frame: {reason}",
                {"excerpt": excerpt, "count": 1, "bytes": size},
            )
        elif verdict is Verdict.HOLD:
            self._invalid_held.set()
        else:
            self._stop_invalid_flood()

    def _flush_invalid(self) -> None:
        """Record the invalid frames held since the last record, as one summary."""
        held = self._invalid.take_summary()
        if held is not None:
            self._require_host().record_error(
                "AGENT_PROTOCOL_ERROR",
                f"agent {self.name!r} wrote {held.count} more invalid frame(s) ({held.bytes} bytes) since the last "
                f"report; the first: {held.reason}",
                {"excerpt": held.excerpt, "count": held.count, "bytes": held.bytes},
            )

    async def _summarize_invalid(self) -> None:
        """Summarize held invalid frames at most every ``SUMMARY_SECONDS`` while the agent runs."""
        while True:
            await self._invalid_held.wait()
            self._invalid_held = anyio.Event()
            due = self._invalid.summary_due
            if due is not None:
                await anyio.sleep(max(0.0, due - time.monotonic()))
                self._flush_invalid()

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

    def _stop_invalid_flood(self) -> None:
        window = self._invalid.window
        self._flush_invalid()
        self._stop_flooding(
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

    def _stop_flooding(self, what: str, data: JsonObject) -> None:
        """Record why, and stop the agent: the turn (or the start) under way fails with the reason."""
        self._stop_reason = f"agent {self.name!r} was stopped: {what}"
        self._require_host().record_error("AGENT_OUTPUT_FLOOD", self._stop_reason, data)
        if self._task_group is not None and self._peer is not None:
            self._task_group.start_soon(self._peer.aclose)

    def _require_host(self) -> SessionHost:
        assert self._host is not None, "run() sets the host before the peer starts"
        return self._host

    def _stderr_hint(self) -> str:
        tail = self._redact(self._proc.stderr_tail()).strip() if self._proc is not None else ""
        return f"; its stderr ends with: {tail[-EXCERPT_CHARS:]}" if tail else ""


DAEMON_ONLY_VARIABLES: Final = ("ACPD_TOKEN", "ACPD_TOKEN_FILE")
"""The daemon's own credentials: an agent (and every command it runs itself) has no use for them."""


def _agent_env(env: Mapping[str, str], configured: Mapping[str, str]) -> dict[str, str]:
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


def _object(value: JsonValue) -> JsonObject:
    return value if isinstance(value, dict) else {}


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
