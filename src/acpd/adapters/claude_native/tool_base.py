"""Adapters layer: what a claude-native tool is, and what it may use while it runs.

A tool gets its input from the model, does its work only through the ``ToolContext`` (the daemon's
``fs/*`` and ``terminal/*`` services, which keep it inside the session's directories, or local
read-only searches confined the same way), and returns what the model reads back plus what ACP
clients see. It never records events or asks permission itself: the loop does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol

from acpd.adapters.workspace import Workspace
from acpd.errors import RpcError
from acpd.protocol.jsonio import JsonObject, JsonValue

MAX_RESULT_CHARS: Final = 30_000
"""What a tool hands back to the model at most; the rest is cut, and the cut is said."""


class ToolFailed(Exception):
    """The tool could not do what was asked; the message goes back to the model as an error."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    text: str
    """What the model reads back."""
    content: tuple[JsonObject, ...] = ()
    """ACP ``ToolCallContent`` for clients (text, diffs)."""
    raw_output: JsonValue = None
    error: bool = False
    """The model reads the text as a failure (``is_error``); the call ends ``failed``."""
    plan: list[JsonObject] | None = None
    """For the todo tool: the entries of an ACP ``plan`` update."""


ClientCall = Callable[[str, JsonObject], Awaitable[JsonValue]]
"""The daemon's ``fs/*`` / ``terminal/*`` service: ``(method, params) → result``."""
Progress = Callable[[list[JsonObject]], Awaitable[None]]
"""Report a tool's content so far (the bash tool's output as it comes)."""


@dataclass(slots=True)
class ToolContext:
    cwd: str
    call: ClientCall
    workspace: Workspace
    progress: Progress
    bash_timeout_seconds: float


class Tool(Protocol):
    name: str
    kind: str
    """ACP ``ToolKind``: ``read``, ``edit``, ``search``, ``execute``, ``think``…"""
    announced: bool
    """False for a tool whose effect is its own update (the todo list becomes a ``plan``)."""
    description: str
    schema: ClassVar[JsonObject]

    def title(self, args: dict[str, Any]) -> str: ...

    def locations(self, args: dict[str, Any], cwd: str) -> list[JsonObject]:
        """ACP ``ToolCallLocation``s: absolute paths."""
        ...

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolResult: ...


def failed(exc: RpcError) -> ToolFailed:
    """A refused ``fs/*`` or ``terminal/*`` call as the model should read it: the detail, not the code."""
    data = exc.data
    detail = data.get("detail") if isinstance(data, dict) else None
    return ToolFailed(str(detail) if detail else exc.message)


def text_content(text: str) -> JsonObject:
    return {"type": "content", "content": {"type": "text", "text": text}}


def fenced(text: str, language: str = "") -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def clipped(text: str) -> str:
    if len(text) <= MAX_RESULT_CHARS:
        return text
    return text[:MAX_RESULT_CHARS] + f"\n[… {len(text) - MAX_RESULT_CHARS} more characters cut]"


def string_arg(args: dict[str, Any], name: str) -> str:
    """Raises: ToolFailed: missing or not a string."""
    value = args.get(name)
    if not isinstance(value, str):
        raise ToolFailed(f"'{name}' must be a string")
    return value


def path_arg(ctx: ToolContext, args: dict[str, Any], name: str = "path") -> str:
    """An absolute path; a relative one is taken from the session's directory."""
    return absolute(ctx.cwd, string_arg(args, name))


def absolute(cwd: str, path: str) -> str:
    return path if path.startswith("/") else f"{cwd.rstrip('/')}/{path}"
