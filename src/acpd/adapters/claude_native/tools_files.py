"""Adapters layer: claude-native's file tools, Read, Write and Edit, over the daemon's ``fs/*``.

Every read and write goes through the session's ``fs/*`` service, so it stays inside the session's
directories (or reaches the attached editor's buffers). Edits replace exact text only. They must
not open files themselves.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from acpd.errors import RpcError
from acpd.protocol import methods
from acpd.protocol.jsonio import JsonObject

from .tool_base import (
    ToolContext,
    ToolFailed,
    ToolResult,
    absolute,
    clipped,
    failed,
    fenced,
    path_arg,
    string_arg,
    text_content,
)

DEFAULT_READ_LINES: Final = 2_000


async def read_file(ctx: ToolContext, path: str, *, line: int | None = None, limit: int | None = None) -> str:
    params: JsonObject = {"path": path}
    if line is not None:
        params["line"] = line
    if limit is not None:
        params["limit"] = limit
    try:
        result = await ctx.call(methods.FS_READ_TEXT_FILE, params)
    except RpcError as exc:
        raise failed(exc) from None
    content = result.get("content") if isinstance(result, dict) else None
    return content if isinstance(content, str) else ""


async def write_file(ctx: ToolContext, path: str, content: str) -> None:
    try:
        await ctx.call(methods.FS_WRITE_TEXT_FILE, {"path": path, "content": content})
    except RpcError as exc:
        raise failed(exc) from None


async def existing_text(ctx: ToolContext, path: str) -> str | None:
    try:
        return await read_file(ctx, path)
    except ToolFailed:
        return None  # a new file


def diff(path: str, old: str | None, new: str) -> JsonObject:
    return {"type": "diff", "path": path, "oldText": old, "newText": new}


class ReadTool:
    name = "Read"
    kind = "read"
    announced = True
    description = "Read a text file. Optional 1-based line to start at and a limit of lines."
    schema: ClassVar[JsonObject] = {
        "type": "object",
        "properties": {"path": {"type": "string"}, "line": {"type": "integer"}, "limit": {"type": "integer"}},
        "required": ["path"],
    }

    def title(self, args: dict[str, Any]) -> str:
        return f"Read {args.get('path', '')}"

    def locations(self, args: dict[str, Any], cwd: str) -> list[JsonObject]:
        return [{"path": absolute(cwd, str(args["path"])), "line": int(args.get("line") or 1)}]

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        line, limit = args.get("line"), args.get("limit")
        text = await read_file(
            ctx,
            path_arg(ctx, args),
            line=line if isinstance(line, int) else None,
            limit=limit if isinstance(limit, int) else DEFAULT_READ_LINES,
        )
        return ToolResult(clipped(text), (text_content(fenced(text)),))


class WriteTool:
    name = "Write"
    kind = "edit"
    announced = True
    description = "Create or replace a text file with the given content."
    schema: ClassVar[JsonObject] = {
        "type": "object",
        "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"],
    }

    def title(self, args: dict[str, Any]) -> str:
        return f"Write {args.get('path', '')}"

    def locations(self, args: dict[str, Any], cwd: str) -> list[JsonObject]:
        return [{"path": absolute(cwd, str(args["path"]))}]

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        path, content = path_arg(ctx, args), string_arg(args, "content")
        old = await existing_text(ctx, path)
        await write_file(ctx, path, content)
        verb = "Created" if old is None else "Replaced"
        return ToolResult(f"{verb} {path} ({len(content)} characters)", (diff(path, old, content),))


class EditTool:
    name = "Edit"
    kind = "edit"
    announced = True
    description = (
        "Replace exact text in a file: old_string must occur exactly once (or set replace_all). "
        "Read the file first; whitespace must match."
    )
    schema: ClassVar[JsonObject] = {
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "old_string": {"type": "string"},
            "new_string": {"type": "string"},
            "replace_all": {"type": "boolean"},
        },
        "required": ["path", "old_string", "new_string"],
    }

    def title(self, args: dict[str, Any]) -> str:
        return f"Edit {args.get('path', '')}"

    def locations(self, args: dict[str, Any], cwd: str) -> list[JsonObject]:
        return [{"path": absolute(cwd, str(args["path"]))}]

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        path = path_arg(ctx, args)
        old_string, new_string = string_arg(args, "old_string"), string_arg(args, "new_string")
        if not old_string:
            raise ToolFailed("old_string must not be empty (use Write to create a file)")
        old = await read_file(ctx, path)
        count = old.count(old_string)
        if count == 0:
            raise ToolFailed(f"old_string was not found in {path}")
        if count > 1 and not args.get("replace_all"):
            raise ToolFailed(f"old_string occurs {count} times in {path}: give more context, or set replace_all")
        new = old.replace(old_string, new_string)
        await write_file(ctx, path, new)
        return ToolResult(f"Edited {path}: {count} replacement(s)", (diff(path, old, new),))
