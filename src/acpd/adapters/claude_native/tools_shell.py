"""Adapters layer: claude-native's Bash and TodoWrite tools.

Bash runs a command line through the session's ``terminal/*`` service (in the session's directory,
its process group killed on timeout, cancel or release), reporting the output as it comes.
TodoWrite keeps the model's task list, which clients see as an ACP ``plan``. They must not start
a process themselves: the daemon's terminals own every command (and its keeper).
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Final

import anyio

from acpd.errors import RpcError
from acpd.protocol import methods
from acpd.protocol.jsonio import JsonObject, JsonValue

from .tool_base import ToolContext, ToolFailed, ToolResult, clipped, failed, fenced, string_arg, text_content

PROGRESS_SECONDS: Final = 0.5
"""How often a running command's output is checked for something new to show."""
PROGRESS_TAIL_CHARS: Final = 8_000
"""What a progress update shows of the output: its end (each update is recorded whole)."""
RELEASE_SECONDS: Final = 5.0
"""How long releasing a terminal may take (a relayed editor might never answer)."""
MAX_TIMEOUT_SECONDS: Final = 3_600.0
PLAN_STATUSES: Final = frozenset({"pending", "in_progress", "completed"})
PLAN_PRIORITIES: Final = frozenset({"high", "medium", "low"})


class BashTool:
    name = "Bash"
    kind = "execute"
    announced = True
    description = (
        "Run a shell command line in the session's directory. Output is returned when it ends; "
        "timeout_seconds bounds it (default from the session)."
    )
    schema: ClassVar[JsonObject] = {
        "type": "object",
        "properties": {"command": {"type": "string"}, "timeout_seconds": {"type": "number"}},
        "required": ["command"],
    }

    def title(self, args: dict[str, Any]) -> str:
        return str(args.get("command", "Bash"))

    def locations(self, args: dict[str, Any], cwd: str) -> list[JsonObject]:
        return []

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        command = string_arg(args, "command")
        wanted = args.get("timeout_seconds")
        seconds = ctx.bash_timeout_seconds
        if isinstance(wanted, int | float) and not isinstance(wanted, bool):
            if wanted <= 0:
                raise ToolFailed("timeout_seconds must be more than 0")
            seconds = min(float(wanted), MAX_TIMEOUT_SECONDS)
        created = await _call(ctx, methods.TERMINAL_CREATE, {"command": command, "cwd": ctx.cwd})
        terminal = {"terminalId": str(created.get("terminalId"))}
        try:
            status = await _wait(ctx, terminal, seconds)
            output = await _call(ctx, methods.TERMINAL_OUTPUT, terminal)
        finally:
            # Releasing kills a command still running; bounded, and its failure must not hide ours.
            with anyio.move_on_after(RELEASE_SECONDS, shield=True), contextlib.suppress(ToolFailed):
                await _call(ctx, methods.TERMINAL_RELEASE, terminal)
        text = str(output.get("output") or "")
        return _result(text, status, seconds)


async def _wait(ctx: ToolContext, terminal: JsonObject, seconds: float) -> JsonObject | None:
    """The exit status, or None when the command ran out of time (it is then killed)."""
    status: JsonObject | None = None
    try:
        with anyio.move_on_after(seconds):
            async with anyio.create_task_group() as tg:

                async def wait() -> None:
                    nonlocal status
                    status = await _call(ctx, methods.TERMINAL_WAIT_FOR_EXIT, terminal)
                    tg.cancel_scope.cancel()

                tg.start_soon(wait)
                await _show_progress(ctx, terminal)
    except* ToolFailed as group:
        raise group.exceptions[0] from None
    return status  # None: out of time; the release kills it


async def _show_progress(ctx: ToolContext, terminal: JsonObject) -> None:
    shown = ""
    while True:
        await anyio.sleep(PROGRESS_SECONDS)
        output = str((await _call(ctx, methods.TERMINAL_OUTPUT, terminal)).get("output") or "")
        if output != shown:
            shown = output
            await ctx.progress([text_content(fenced(output[-PROGRESS_TAIL_CHARS:], "console"))])


def _result(output: str, status: JsonObject | None, timeout: float) -> ToolResult:
    content = (text_content(fenced(output or "(no output)", "console")),)
    if status is None:
        return ToolResult(
            clipped(f"{output}\n[timed out after {timeout:g} s; the command was killed]"), content, error=True
        )
    code, signal = status.get("exitCode"), status.get("signal")
    ending = f"exit code {code}" if signal is None else f"killed by {signal}"
    raw: JsonValue = {"exitCode": code, "signal": signal}
    return ToolResult(clipped(f"{output}\n[{ending}]"), content, raw, error=code not in (0, None) or signal is not None)


async def _call(ctx: ToolContext, method: str, params: JsonObject) -> JsonObject:
    try:
        result = await ctx.call(method, params)
    except RpcError as exc:
        raise failed(exc) from None
    return result if isinstance(result, dict) else {}


class TodoTool:
    name = "TodoWrite"
    kind = "think"
    announced = False
    description = (
        "Keep your task list for this work: the whole list each time, each item with content and "
        "status pending | in_progress | completed (and optional priority high | medium | low)."
    )
    schema: ClassVar[JsonObject] = {
        "type": "object",
        "properties": {
            "todos": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "content": {"type": "string"},
                        "status": {"type": "string", "enum": sorted(PLAN_STATUSES)},
                        "priority": {"type": "string", "enum": sorted(PLAN_PRIORITIES)},
                    },
                    "required": ["content", "status"],
                },
            }
        },
        "required": ["todos"],
    }

    def title(self, args: dict[str, Any]) -> str:
        return "Update the plan"

    def locations(self, args: dict[str, Any], cwd: str) -> list[JsonObject]:
        return []

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        todos = args.get("todos")
        if not isinstance(todos, list):
            raise ToolFailed("'todos' must be a list")
        entries = [_entry(item) for item in todos]
        done = sum(1 for entry in entries if entry["status"] == "completed")
        return ToolResult(f"Plan updated: {done} of {len(entries)} done", plan=entries)


def _entry(item: object) -> JsonObject:
    if not isinstance(item, dict) or not isinstance(item.get("content"), str):
        raise ToolFailed("each todo needs 'content' (a string) and 'status'")
    status = item.get("status")
    if status not in PLAN_STATUSES:
        raise ToolFailed(f"status must be one of {sorted(PLAN_STATUSES)}, got {status!r}")
    priority = item.get("priority") if item.get("priority") in PLAN_PRIORITIES else "medium"
    return {"content": item["content"], "status": status, "priority": priority}
