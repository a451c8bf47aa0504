"""Test kit: one prompt turn of the mock agent, run command by command. Stdlib and orjson only.

A turn talks to its client only through ``AgentPort`` (the connection in ``mock_agent``), so it
knows the ACP payloads but not the framing. Every update it emits also goes into the session's
history. A cancel reaches a turn as ``asyncio.CancelledError`` at its next ``await``; the turn
yields between commands and between blocks of chunks so that this happens promptly.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Final, NoReturn, Protocol

import orjson

from acpd.testing import _mock_hostile
from acpd.testing._mock_io import write_stderr, write_stderr_bytes
from acpd.testing._mock_rpc import INTERNAL_ERROR, RpcFault
from acpd.testing._mock_script import Command
from acpd.testing._mock_sessions import CONTEXT_SIZE_TOKENS, JsonObject, MockSession

CHUNK_BLOCK_BYTES: Final = 2 * 1024 * 1024
"""Pre-encoded chunk lines are written in blocks of about this size, checking for a cancel between blocks."""
FIRST_BLOCK_BYTES: Final = 8 * 1024
"""The first block is small, so that the first chunk leaves at once instead of after 2 MiB are encoded."""
GARBAGE_LINE: Final = b"this line is not JSON: the mock agent was told to misbehave\n"
PERMISSION_OPTIONS: Final = (
    ("allow", "Allow", "allow_once"),
    ("always", "Always allow", "allow_always"),
    ("reject", "Reject", "reject_once"),
)
_ALLOWING: Final = frozenset({"allow", "always"})
_TEXT_MARK: Final = "@@mock-chunk-text@@"


class AgentPort(Protocol):
    """What a turn needs from the agent's connection."""

    def send_update(self, session_id: str, update: JsonObject, meta: JsonObject | None = None) -> None: ...

    def write_raw(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    async def call(self, method: str, params: JsonObject) -> Any:
        """Send a request to the client and return its result. Raises ``RpcFault`` on an error answer."""

    async def crash(self, code: int) -> NoReturn: ...


class Turn:
    """Runs one prompt's commands (or its echo) and builds the prompt response."""

    def __init__(self, port: AgentPort, session: MockSession, text: str, commands: list[Command] | None) -> None:
        self._port = port
        self._session = session
        self._text = text
        self._commands = commands
        self.stop_reason = "end_turn"
        self._ended = False
        self._usage: tuple[int, int] | None = None
        self._handlers: dict[str, Callable[[Command], Awaitable[None]]] = {
            "text": self._say,
            "chunks": self._chunks,
            "think": self._think,
            "tool": self._tool,
            "permission": self._permission,
            "plan": self._plan,
            "usage": self._add_usage,
            "sleep": self._sleep,
            "detach": self._detach,
            "error": self._error,
            "crash": self._crash,
            "garbage": self._garbage,
            "stderr": self._stderr,
            "stderr-flood": self._stderr_flood,
            "title": self._title,
            "mode": self._mode,
            "read": self._read,
            "write": self._write,
            "run": self._run,
            "meta": self._meta,
            "hostile": self._hostile,
            "context": self._context,
            "attachments": self._attachments,
            "big": self._big,
            "stop": self._stop,
        }

    async def run(self) -> None:
        """Run to the end. Raises ``RpcFault`` for the ``error`` command."""
        if self._commands is None:
            await self._chunk(f"Echo: {self._text}")
            return
        for command in self._commands:
            await self._handlers[command.name](command)
            if self._ended:
                return
            await asyncio.sleep(0)  # lets the reader take in a session/cancel between commands

    def response(self) -> JsonObject:
        response: JsonObject = {"stopReason": self.stop_reason}
        if self._usage is not None:
            inputs, outputs = self._usage
            response["usage"] = {"inputTokens": inputs, "outputTokens": outputs, "totalTokens": inputs + outputs}
        return response

    async def _emit(self, update: JsonObject) -> None:
        self._session.record(update)
        self._port.send_update(self._session.id, update)
        await self._port.drain()

    async def _chunk(self, text: str, kind: str = "agent_message_chunk") -> None:
        await self._emit({"sessionUpdate": kind, "content": {"type": "text", "text": text}})

    async def _context(self, cmd: Command) -> None:
        context = self._session.context
        await self._chunk(f"context: {context}" if context is not None else "context: none")

    async def _attachments(self, cmd: Command) -> None:
        await self._chunk("attachments: " + ("; ".join(self._session.attachments) or "none"))

    async def _say(self, cmd: Command) -> None:
        await self._chunk(cmd.text)

    async def _think(self, cmd: Command) -> None:
        await self._chunk(cmd.text, "agent_thought_chunk")

    async def _big(self, cmd: Command) -> None:
        await self._chunk("x" * cmd.ints[0])

    async def _chunks(self, cmd: Command) -> None:
        count, size = cmd.ints
        prefix, suffix = self._chunk_frame()
        line_bytes = len(prefix) + len(suffix) + max(size, 8)
        per_block = max(1, CHUNK_BLOCK_BYTES // line_bytes)
        first_block = max(1, FIRST_BLOCK_BYTES // line_bytes)
        sent: list[bytes] = []
        try:
            for start, end in _blocks(count, first_block, per_block):
                texts = [_chunk_text(index, size) for index in range(start, end)]
                self._port.write_raw(b"".join([prefix + text + suffix for text in texts]))
                sent.append(b"".join(texts))
                await self._port.drain()
                await asyncio.sleep(0)  # a cancel is noticed between blocks
        finally:
            # History keeps what was sent as one chunk: same text, and a replay that stays small.
            if sent:
                text = b"".join(sent).decode()
                self._session.record(
                    {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}}
                )

    def _chunk_frame(self) -> tuple[bytes, bytes]:
        """The bytes of a chunk notification before and after its text, which needs no JSON escaping."""
        update = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": _TEXT_MARK}}
        frame = orjson.dumps(
            {"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": self._session.id, "update": update}}
        )
        prefix, suffix = frame.split(_TEXT_MARK.encode())
        return prefix, suffix + b"\n"

    async def _tool(self, cmd: Command) -> None:
        call_id = self._session.next_tool_call_id()
        title = cmd.text or f"Mock {cmd.word}"
        await self._emit(self._tool_call(call_id, title, cmd.word))
        await self._complete_tool(call_id, title)

    async def _permission(self, cmd: Command) -> None:
        call_id = self._session.next_tool_call_id()
        tool_call = self._tool_call(call_id, f"Mock {cmd.word} needing permission", cmd.word)
        outcome = await self._ask(tool_call)
        if outcome == "cancelled":
            return
        if outcome in _ALLOWING:
            await self._complete_tool(call_id, tool_call["title"])
        await self._chunk(f"permission: {outcome}")

    async def _ask(self, tool_call: JsonObject) -> str:
        """Announce ``tool_call`` and ask the client's permission for it: the outcome. A refused
        call is marked failed; a cancelled one ends the turn."""
        await self._emit(tool_call)
        options = [{"optionId": option, "name": name, "kind": kind} for option, name, kind in PERMISSION_OPTIONS]
        request_call = {key: tool_call[key] for key in ("toolCallId", "title", "kind", "status", "rawInput")}
        params = {"sessionId": self._session.id, "toolCall": request_call, "options": options}
        try:
            outcome = _outcome(await self._port.call("session/request_permission", params))
        except RpcFault as fault:
            outcome = f"error {fault.message}"
        if outcome == "cancelled":
            self._end("cancelled")
        elif outcome not in _ALLOWING:
            update = {"sessionUpdate": "tool_call_update", "toolCallId": tool_call["toolCallId"], "status": "failed"}
            await self._emit(update)
        return outcome

    def _tool_call(self, call_id: str, title: str, kind: str) -> JsonObject:
        path = os.path.join(self._session.cwd, "mock.txt")
        return {
            "sessionUpdate": "tool_call",
            "toolCallId": call_id,
            "title": title,
            "kind": kind,
            "status": "pending",
            "rawInput": {"path": path, "kind": kind},
            "locations": [{"path": path, "line": 1}],
        }

    async def _complete_tool(self, call_id: str, title: str) -> None:
        await self._emit({"sessionUpdate": "tool_call_update", "toolCallId": call_id, "status": "in_progress"})
        content = [{"type": "content", "content": {"type": "text", "text": f"{title}: done"}}]
        await self._emit(
            {
                "sessionUpdate": "tool_call_update",
                "toolCallId": call_id,
                "status": "completed",
                "content": content,
                "rawOutput": {"ok": True},
            }
        )

    async def _plan(self, cmd: Command) -> None:
        entries = [
            {"content": f"Step {index + 1}", "priority": "medium", "status": "in_progress" if index == 0 else "pending"}
            for index in range(cmd.ints[0])
        ]
        await self._emit({"sessionUpdate": "plan", "entries": entries})

    async def _add_usage(self, cmd: Command) -> None:
        inputs, outputs = cmd.ints
        update: JsonObject = {"sessionUpdate": "usage_update", "used": inputs + outputs, "size": CONTEXT_SIZE_TOKENS}
        if cmd.number is not None:
            update["cost"] = {"amount": cmd.number, "currency": "USD"}
        before = self._usage or (0, 0)
        self._usage = (before[0] + inputs, before[1] + outputs)
        await self._emit(update)

    async def _sleep(self, cmd: Command) -> None:
        await asyncio.sleep(cmd.number or 0.0)

    async def _detach(self, cmd: Command) -> None:
        # Like codex-acp: the command runs in a session of its own, and a cancel ends the turn
        # without stopping it. Its pid is in the tool call so that a test can watch it.
        seconds = cmd.number or 0.0
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", f"import time; time.sleep({seconds!r})", start_new_session=True
        )
        call_id = self._session.next_tool_call_id()
        update = self._tool_call(call_id, f"Detached sleep {seconds:g}", "execute")
        await self._emit({**update, "status": "in_progress", "rawInput": {"pid": process.pid, "seconds": seconds}})
        await process.wait()
        await self._complete_tool(call_id, update["title"])

    async def _error(self, cmd: Command) -> None:
        raise RpcFault(cmd.ints[0], cmd.text)

    async def _crash(self, cmd: Command) -> None:
        await self._port.crash(cmd.ints[0])

    async def _garbage(self, cmd: Command) -> None:
        count = cmd.ints[0] if cmd.ints else 1
        per_block = CHUNK_BLOCK_BYTES // len(GARBAGE_LINE)
        for start in range(0, count, per_block):
            self._port.write_raw(GARBAGE_LINE * min(per_block, count - start))
            await self._port.drain()

    async def _stderr(self, cmd: Command) -> None:
        write_stderr(cmd.text)

    async def _stderr_flood(self, cmd: Command) -> None:
        # Written from a thread: the agent keeps reading its stdin while the daemon drains stderr.
        await asyncio.to_thread(write_stderr_bytes, cmd.ints[0])

    async def _title(self, cmd: Command) -> None:
        await self._emit({"sessionUpdate": "session_info_update", "title": cmd.text})

    async def _mode(self, cmd: Command) -> None:
        self._session.set_value("mode", cmd.word)
        await self._emit({"sessionUpdate": "current_mode_update", "currentModeId": cmd.word})
        await self._emit({"sessionUpdate": "config_option_update", "configOptions": self._session.config_options()})

    async def _read(self, cmd: Command) -> None:
        params = {"sessionId": self._session.id, "path": self._resolve(cmd.text)}
        try:
            text = _string_field(await self._port.call("fs/read_text_file", params), "content")
        except RpcFault as fault:
            text = f"read error: {fault.message}"
        await self._chunk(text)

    async def _write(self, cmd: Command) -> None:
        path = self._resolve(cmd.word)
        params = {"sessionId": self._session.id, "path": path, "content": cmd.text}
        try:
            await self._port.call("fs/write_text_file", params)
            text = f"wrote {len(cmd.text)} chars to {path}"
        except RpcFault as fault:
            text = f"write error: {fault.message}"
        await self._chunk(text)

    async def _run(self, cmd: Command) -> None:
        # Like a real agent's shell tool: the command runs only once the client allows it.
        call_id = self._session.next_tool_call_id()
        tool_call = {**self._tool_call(call_id, f"Run {cmd.text}", "execute"), "rawInput": {"command": cmd.text}}
        outcome = await self._ask(tool_call)
        if outcome == "cancelled":
            return
        if outcome not in _ALLOWING:
            await self._chunk(f"run refused: {outcome}")
            return
        await self._emit({"sessionUpdate": "tool_call_update", "toolCallId": call_id, "status": "in_progress"})
        text = await self._terminal(cmd.text)
        status = "failed" if text.startswith("run error:") else "completed"
        await self._emit({"sessionUpdate": "tool_call_update", "toolCallId": call_id, "status": status})
        await self._chunk(text)

    async def _terminal(self, command: str) -> str:
        """A ``terminal/*`` round trip for ``command``: its output, or what went wrong."""
        session_id = self._session.id
        create = {"sessionId": session_id, "command": "sh", "args": ["-c", command]}
        try:
            terminal = {
                "sessionId": session_id,
                "terminalId": _string_field(await self._call("create", create), "terminalId"),
            }
        except RpcFault as fault:
            return f"run error: {fault.message}"
        try:
            await self._call("wait_for_exit", terminal)
            text = _string_field(await self._call("output", terminal), "output")
        except RpcFault as fault:
            text = f"run error: {fault.message}"
        # Not in a finally: on cancel the turn answers at once instead of waiting for this reply.
        try:
            await self._call("release", terminal)
        except RpcFault as fault:
            text += f"\nrelease error: {fault.message}"
        return text

    async def _call(self, terminal_method: str, params: JsonObject) -> Any:
        return await self._port.call(f"terminal/{terminal_method}", params)

    async def _meta(self, cmd: Command) -> None:
        update = {
            "sessionUpdate": "agent_message_chunk",
            "content": {"type": "text", "text": "meta", "_meta": _mock_meta()},
            "_meta": _mock_meta(),
        }
        self._session.record(update)
        self._port.send_update(self._session.id, update, meta=_mock_meta())
        await self._emit({"sessionUpdate": "_mock/custom", "value": 1})

    async def _hostile(self, cmd: Command) -> None:
        path = os.path.join(self._session.cwd, "hostile.html")
        for update in _mock_hostile.updates(self._session.next_tool_call_id(), path):
            await self._emit(update)

    async def _stop(self, cmd: Command) -> None:
        self.stop_reason = cmd.word

    def _end(self, stop_reason: str) -> None:
        self.stop_reason = stop_reason
        self._ended = True

    def _resolve(self, path: str) -> str:
        return os.path.join(self._session.cwd, path) if self._session.cwd else path


def _chunk_text(index: int, size: int) -> bytes:
    label = b"c%d " % index
    return label.ljust(size, b"x") if size > len(label) else label


def _mock_meta() -> JsonObject:
    return {"mock": {"x": 1}}


def _outcome(reply: Any) -> str:
    """``cancelled``, the selected option id, or ``invalid reply``."""
    outcome = reply.get("outcome") if isinstance(reply, dict) else None
    if isinstance(outcome, dict):
        if outcome.get("outcome") == "cancelled":
            return "cancelled"
        if outcome.get("outcome") == "selected" and isinstance(outcome.get("optionId"), str):
            return str(outcome["optionId"])
    return "invalid reply"


def _string_field(reply: Any, name: str) -> str:
    value = reply.get(name) if isinstance(reply, dict) else None
    if not isinstance(value, str):
        raise RpcFault(INTERNAL_ERROR, f"the client's reply has no string {name!r}")
    return value


def _blocks(count: int, first: int, size: int) -> list[tuple[int, int]]:
    """``[start, end)`` index ranges covering ``count`` chunks: ``first`` of them, then ``size`` each."""
    bounds = [0, min(count, first), *range(first + size, count, size), count]
    return [(start, end) for start, end in itertools.pairwise(bounds) if end > start]
