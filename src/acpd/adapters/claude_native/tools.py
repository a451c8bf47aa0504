"""Adapters layer: claude-native's built-in tools by name, and what each needs permission for.

The mode decides here whether a call runs, is asked about or is refused; it must not apply the
session's permission policy (the loop routes changing calls to the daemon's broker for that).
"""

from __future__ import annotations

from typing import Final

from acpd.protocol.jsonio import JsonObject

from .tool_base import Tool
from .tools_files import EditTool, ReadTool, WriteTool
from .tools_search import GlobTool, GrepTool
from .tools_shell import BashTool, TodoTool

TOOLS: Final[dict[str, Tool]] = {
    tool.name: tool for tool in (ReadTool(), WriteTool(), EditTool(), GlobTool(), GrepTool(), BashTool(), TodoTool())
}
MODES: Final = ("default", "acceptEdits", "plan", "bypassPermissions")
MODE_DESCRIPTIONS: Final = {
    "default": "Ask before editing files or running commands",
    "acceptEdits": "Edit files without asking; ask before running commands",
    "plan": "Read and plan only: no edits, no commands",
    "bypassPermissions": "Never ask (the session's permission policy still applies)",
}
CHANGING_KINDS: Final = frozenset({"edit", "delete", "move", "execute"})


def tool_params() -> list[JsonObject]:
    """The tools as the Messages API takes them."""
    return [{"name": t.name, "description": t.description, "input_schema": t.schema} for t in TOOLS.values()]


def decision(mode: str, tool: Tool, always: set[str]) -> str:
    """``run``, ``ask`` or ``refuse`` for a tool call in a mode (``always``: tools allowed for good)."""
    if tool.kind not in CHANGING_KINDS:
        return "run"
    if mode == "plan":
        return "refuse"
    if mode == "bypassPermissions" or tool.name in always:
        return "run"
    if mode == "acceptEdits" and tool.kind == "edit":
        return "run"
    return "ask"
