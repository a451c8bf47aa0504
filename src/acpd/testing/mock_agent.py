"""Test kit: ``python -m acpd.testing.mock_agent``, a scripted ACP v1 agent over stdio.

The quick start's default backend and the workhorse of tests and benchmarks. It must start fast,
so it imports only the stdlib and orjson: no pydantic, no acp SDK, no anyio, nothing else of acpd
(hence plain asyncio and its own tiny JSON-RPC loop). Prompts are scripts in the language of
``docs/mock-agent.md``; anything else is echoed. stdout carries only JSON-RPC lines (and the one
line the ``garbage`` command asks for); logs go to stderr.

The reader never waits for a turn: prompts run in their own tasks, one at a time per session, so
replies to the agent's own requests and ``session/cancel`` are read while a turn runs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

import orjson

from acpd import __version__
from acpd.testing._mock_io import LineSplitter, StdioChannel
from acpd.testing._mock_rpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RESOURCE_NOT_FOUND,
    RpcFault,
)
from acpd.testing._mock_script import ScriptError, parse_prompt
from acpd.testing._mock_sessions import MODE_IDS, JsonObject, MockSession, SessionStore
from acpd.testing._mock_turn import Turn

logger = logging.getLogger(__name__)

PROTOCOL_VERSION: Final = 1

RequestId = int | str | None
Handler = Callable[[JsonObject], Awaitable[JsonObject]]


@dataclass(frozen=True, slots=True)
class MockOptions:
    """What the command line chose."""

    load: bool = True
    resume: bool = True
    list_sessions: bool = True
    state_dir: Path | None = None
    name: str = "acpd-mock"
    ignore: frozenset[str] = frozenset()
    """Requests never answered (an agent that hangs while it starts, for start timeouts)."""
    text_only: bool = False
    """Advertise no image, audio or embedded-context prompts (an agent that takes text only)."""


class MockAgent:
    """One client connection: decodes lines, answers requests, runs turns, correlates our own requests."""

    def __init__(self, channel: StdioChannel, options: MockOptions) -> None:
        self._channel = channel
        self._options = options
        self._sessions = SessionStore(options.state_dir)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._prompts: dict[RequestId, asyncio.Task[None]] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._handlers: dict[str, Handler] = {
            "initialize": self._initialize,
            "session/new": self._new_session,
            "session/close": self._close_session,
            "session/set_mode": self._set_mode,
            "session/set_config_option": self._set_config_option,
            "session/set_model": self._set_model,
        }
        if options.load:
            self._handlers["session/load"] = self._load_session
        if options.resume:
            self._handlers["session/resume"] = self._resume_session
        if options.list_sessions:
            self._handlers["session/list"] = self._list_sessions

    async def serve(self) -> None:
        """Answer the client until stdin ends; then end running turns as cancelled and flush."""
        splitter = LineSplitter()
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            while data := await self._channel.read():
                for line in splitter.feed(data):
                    await self._handle_line(line)
            for line in splitter.finish():
                await self._handle_line(line)
            # Nobody will answer our requests any more.
            for task in list(self._prompts.values()):
                task.cancel()
        await self._channel.flush()

    # -- what a turn uses (AgentPort) --

    def send_update(self, session_id: str, update: JsonObject, meta: JsonObject | None = None) -> None:
        params: JsonObject = {"sessionId": session_id, "update": update}
        if meta is not None:
            params["_meta"] = meta
        self._send({"jsonrpc": "2.0", "method": "session/update", "params": params})

    def write_raw(self, data: bytes) -> None:
        self._channel.write(data)

    async def drain(self) -> None:
        await self._channel.drain()

    async def call(self, method: str, params: JsonObject) -> Any:
        request_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        try:
            return await future
        except asyncio.CancelledError:
            # ACP's cancel cascade: tell the client we no longer need its answer.
            self._send({"jsonrpc": "2.0", "method": "$/cancel_request", "params": {"requestId": request_id}})
            raise
        finally:
            del self._pending[request_id]

    async def crash(self, code: int) -> NoReturn:
        self._sessions.save_all()
        await self._channel.flush()
        sys.stderr.flush()
        os._exit(code)

    # -- decoding --

    async def _handle_line(self, line: bytes | None) -> None:
        if line is None:
            self._send_error(None, RpcFault(PARSE_ERROR, "Parse error", {"detail": "line too long"}))
            return
        if not line.strip():
            return
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            self._send_error(None, RpcFault(PARSE_ERROR, "Parse error", {"detail": str(exc)}))
            return
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            self._invalid(message, "not a JSON-RPC 2.0 object")
        elif "method" in message:
            await self._handle_call(message)
        elif "id" in message and ("result" in message or "error" in message):
            self._handle_response(message)
        else:
            self._invalid(message, "neither a request, a notification nor a response")

    async def _handle_call(self, message: JsonObject) -> None:
        method, params = message["method"], message.get("params", {})
        if not isinstance(method, str) or ("id" in message and not _is_request_id(message["id"])):
            self._invalid(message, "bad method or id")
        elif "id" not in message:
            self._handle_notification(method, params)
        elif not isinstance(params, dict):
            self._send_error(message["id"], RpcFault(INVALID_PARAMS, "Invalid params", {"detail": "not an object"}))
        elif method == "session/prompt":
            self._start_prompt(message["id"], params)
        else:
            await self._handle_request(message["id"], method, params)

    async def _handle_request(self, request_id: RequestId, method: str, params: JsonObject) -> None:
        if method in self._options.ignore:
            return
        handler = self._handlers.get(method)
        try:
            if handler is None:
                raise RpcFault(METHOD_NOT_FOUND, "Method not found", {"method": method})
            result = await handler(params)
        except RpcFault as fault:
            self._send_error(request_id, fault)
        except Exception:  # the per-request boundary: a bug answers -32603 and the agent lives on
            logger.exception("%s failed", method)
            self._send_error(request_id, RpcFault(INTERNAL_ERROR, "Internal error"))
        else:
            self._send({"jsonrpc": "2.0", "id": request_id, "result": result})

    def _handle_notification(self, method: str, params: Any) -> None:
        """Only cancels matter; other notifications are ignored, as ACP asks."""
        if not isinstance(params, dict) or method in self._options.ignore:
            return
        running: list[asyncio.Task[None]] = []
        if method == "session/cancel" and isinstance(params.get("sessionId"), str):
            session = self._sessions.get(params["sessionId"])
            running = list(session.tasks) if session else []
        elif method == "$/cancel_request" and _is_request_id(params.get("requestId")):
            prompt = self._prompts.get(params["requestId"])
            running = [prompt] if prompt else []
        for task in running:
            task.cancel()

    def _handle_response(self, message: JsonObject) -> None:
        request_id = message["id"]
        ours = isinstance(request_id, int) and not isinstance(request_id, bool)
        future = self._pending.get(request_id) if ours else None
        if future is None or future.done():
            logger.debug("reply to no pending request: %s", request_id)
        elif "error" in message:
            error = message["error"] if isinstance(message["error"], dict) else {}
            code = error["code"] if isinstance(error.get("code"), int) else INTERNAL_ERROR
            future.set_exception(RpcFault(code, str(error.get("message", "error")), error.get("data")))
        else:
            future.set_result(message["result"])

    # -- turns --

    def _start_prompt(self, request_id: RequestId, params: JsonObject) -> None:
        try:
            session = self._open_session(params)
            prompt = params.get("prompt")
            if not isinstance(prompt, list) or not all(isinstance(block, dict) for block in prompt):
                raise RpcFault(INVALID_PARAMS, "Invalid params", {"detail": "prompt must be a list of content blocks"})
            texts = [
                (b["text"], _is_context(b))
                for b in prompt
                if b.get("type") == "text" and isinstance(b.get("text"), str)
            ]
            context = [t for t, is_context in texts if is_context]
            if context:
                session.context = "\n".join(context)
            session.attachments = [_attachment(b) for b in prompt if b.get("type") in ATTACHMENTS]
            text = "\n".join(t for t, is_context in texts if not is_context)
            try:
                commands = parse_prompt(text)
            except ScriptError as exc:
                raise RpcFault(INVALID_PARAMS, f"Invalid mock script: {exc}") from None
        except RpcFault as fault:
            self._send_error(request_id, fault)
            return
        assert self._tasks is not None
        turn = Turn(self, session, text, commands)
        task = self._tasks.create_task(self._run_turn(request_id, session, prompt, turn))
        task.add_done_callback(lambda done: self._finish_turn(request_id, session, turn, done))
        session.tasks.add(task)
        self._prompts[request_id] = task

    async def _run_turn(self, request_id: RequestId, session: MockSession, prompt: list[Any], turn: Turn) -> None:
        try:
            async with session.lock:
                for block in prompt:
                    session.record({"sessionUpdate": "user_message_chunk", "content": block})
                await turn.run()
        except asyncio.CancelledError:
            # session/cancel, $/cancel_request or end of input: the prompt still gets its answer.
            if (task := asyncio.current_task()) is not None:
                task.uncancel()
            self._answer_cancelled(request_id, turn)
        except RpcFault as fault:
            self._send_error(request_id, fault)
        except Exception:  # the per-turn boundary: a bug answers -32603 and the agent lives on
            logger.exception("prompt failed")
            self._send_error(request_id, RpcFault(INTERNAL_ERROR, "Internal error"))
        else:
            self._send({"jsonrpc": "2.0", "id": request_id, "result": turn.response()})

    def _finish_turn(self, request_id: RequestId, session: MockSession, turn: Turn, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            # Cancelled before its first step, so _run_turn never ran to answer.
            self._answer_cancelled(request_id, turn)
        session.tasks.discard(task)
        if self._prompts.get(request_id) is task:
            del self._prompts[request_id]
        self._sessions.save(session)

    def _answer_cancelled(self, request_id: RequestId, turn: Turn) -> None:
        turn.stop_reason = "cancelled"
        self._send({"jsonrpc": "2.0", "id": request_id, "result": turn.response()})

    # -- methods --

    async def _initialize(self, params: JsonObject) -> JsonObject:
        session_capabilities: JsonObject = {"close": {}}
        if self._options.resume:
            session_capabilities["resume"] = {}
        if self._options.list_sessions:
            session_capabilities["list"] = {}
        capabilities = {
            "loadSession": self._options.load,
            "promptCapabilities": {
                "embeddedContext": not self._options.text_only,
                "image": not self._options.text_only,
                "audio": not self._options.text_only,
            },
            "sessionCapabilities": session_capabilities,
        }
        return {
            "protocolVersion": PROTOCOL_VERSION,
            "agentCapabilities": capabilities,
            "agentInfo": {"name": self._options.name, "version": __version__},
            "authMethods": [],
        }

    async def _new_session(self, params: JsonObject) -> JsonObject:
        session = self._sessions.create(_string(params, "cwd"))
        return {"sessionId": session.id, **self._settings(session)}

    async def _load_session(self, params: JsonObject) -> JsonObject:
        session = self._reopen(params)
        for update in session.history:
            self.send_update(session.id, update)
            await self._channel.drain()
        return self._settings(session)

    async def _resume_session(self, params: JsonObject) -> JsonObject:
        return self._settings(self._reopen(params))

    async def _list_sessions(self, params: JsonObject) -> JsonObject:
        cwd = params.get("cwd")
        return {"sessions": [s.info() for s in self._sessions.all() if not isinstance(cwd, str) or s.cwd == cwd]}

    async def _close_session(self, params: JsonObject) -> JsonObject:
        session = self._sessions.get(_string(params, "sessionId"))
        if session is not None:
            if running := list(session.tasks):
                for task in running:
                    task.cancel()
                await asyncio.wait(running)  # their "cancelled" answers go out before ours
            session.open = False
        return {}

    async def _set_mode(self, params: JsonObject) -> JsonObject:
        session = self._open_session(params)
        mode_id = _string(params, "modeId")
        if mode_id not in MODE_IDS:
            raise RpcFault(INVALID_PARAMS, f"unknown mode {mode_id!r}", {"modes": sorted(MODE_IDS)})
        self._change(session, "mode", mode_id)
        return {}

    async def _set_config_option(self, params: JsonObject) -> JsonObject:
        session = self._open_session(params)
        self._change(session, _string(params, "configId"), _string(params, "value"))
        return {"configOptions": session.config_options()}

    async def _set_model(self, params: JsonObject) -> JsonObject:
        self._change(self._open_session(params), "model", _string(params, "modelId"))
        return {}

    def _change(self, session: MockSession, config_id: str, value: str) -> None:
        try:
            session.set_value(config_id, value)
        except ValueError as exc:
            raise RpcFault(INVALID_PARAMS, str(exc)) from None
        self._sessions.save(session)
        if config_id == "mode":
            self.send_update(session.id, {"sessionUpdate": "current_mode_update", "currentModeId": value})
        options = session.config_options()
        self.send_update(session.id, {"sessionUpdate": "config_option_update", "configOptions": options})

    def _settings(self, session: MockSession) -> JsonObject:
        return {"modes": session.modes(), "configOptions": session.config_options()}

    def _reopen(self, params: JsonObject) -> MockSession:
        session = self._known_session(params)
        if isinstance(params.get("cwd"), str):
            session.set_cwd(params["cwd"])
        session.open = True
        self._sessions.save(session)
        return session

    def _known_session(self, params: JsonObject) -> MockSession:
        session_id = _string(params, "sessionId")
        session = self._sessions.get(session_id)
        if session is None:
            raise RpcFault(RESOURCE_NOT_FOUND, "Session not found", {"sessionId": session_id})
        return session

    def _open_session(self, params: JsonObject) -> MockSession:
        session = self._known_session(params)
        if not session.open:
            raise RpcFault(RESOURCE_NOT_FOUND, "Session not open: load or resume it first", {"sessionId": session.id})
        return session

    # -- encoding --

    def _send(self, message: JsonObject) -> None:
        self._channel.write(orjson.dumps(message) + b"\n")

    def _send_error(self, request_id: RequestId, fault: RpcFault) -> None:
        self._send({"jsonrpc": "2.0", "id": request_id, "error": fault.to_wire()})

    def _invalid(self, message: Any, detail: str) -> None:
        request_id = message.get("id") if isinstance(message, dict) else None
        fault = RpcFault(INVALID_REQUEST, "Invalid request", {"detail": detail})
        self._send_error(request_id if _is_request_id(request_id) else None, fault)


def _is_request_id(value: Any) -> bool:
    return value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _string(params: JsonObject, name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str):
        raise RpcFault(INVALID_PARAMS, f"{name} must be a string", {"field": name})
    return value


def _parse_args(argv: Sequence[str] | None) -> MockOptions:
    parser = argparse.ArgumentParser(
        prog="python -m acpd.testing.mock_agent", description="A scripted ACP agent over stdio (docs/mock-agent.md)."
    )
    parser.add_argument("--no-load", action="store_true", help="do not advertise or serve session/load")
    parser.add_argument("--no-resume", action="store_true", help="do not advertise or serve session/resume")
    parser.add_argument("--no-list", action="store_true", help="do not advertise or serve session/list")
    parser.add_argument("--state-dir", type=Path, help="keep each session's history in DIR/<sessionId>.jsonl")
    parser.add_argument("--name", default="acpd-mock", help="agentInfo.name (default: acpd-mock)")
    parser.add_argument(
        "--text-only", action="store_true", help="advertise no image, audio or embedded-context prompts"
    )
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="METHOD",
        help="never answer this request, nor heed this notification (repeatable)",
    )
    args = parser.parse_args(argv)
    return MockOptions(
        load=not args.no_load,
        resume=not args.no_resume,
        list_sessions=not args.no_list,
        state_dir=args.state_dir,
        name=args.name,
        ignore=frozenset(args.ignore),
        text_only=args.text_only,
    )


async def _serve(options: MockOptions) -> int:
    channel = await StdioChannel.open()
    try:
        await MockAgent(channel, options).serve()
    finally:
        channel.close()
    return 0


ATTACHMENTS = ("image", "audio", "resource")


def _attachment(block: JsonObject) -> str:
    """What arrived of a non-text block: ``image image/png 68 bytes`` (the data decoded), or
    ``resource file:///x 12 chars``."""
    if block.get("type") == "resource":
        resource = block.get("resource")
        resource = resource if isinstance(resource, dict) else {}
        text = resource.get("text")
        size = f"{len(text)} chars" if isinstance(text, str) else f"{len(_decoded(resource.get('blob')))} bytes"
        return f"resource {resource.get('uri')} {size}"
    return f"{block.get('type')} {block.get('mimeType')} {len(_decoded(block.get('data')))} bytes"


def _decoded(data: object) -> bytes:
    try:
        return base64.b64decode(str(data), validate=True)
    except ValueError:
        return b""


def _is_context(block: JsonObject) -> bool:
    """A block acpd marked as carried context (``_meta.acpd.context``), not the user's words."""
    meta = block.get("_meta")
    acpd = meta.get("acpd") if isinstance(meta, dict) else None
    return isinstance(acpd, dict) and acpd.get("context") is True


def main(argv: Sequence[str] | None = None) -> int:
    """Run the mock agent on this process's stdin and stdout until stdin ends; return the exit status."""
    options = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="acpd-mock: %(levelname)s %(message)s")
    try:
        return asyncio.run(_serve(options))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
