"""Adapters layer: claude-native's read-only search tools, Glob and Grep, inside the session's
directories (its cwd by default, or a ``path`` in any of its ``additionalDirectories``).

They run in a worker thread on the local file system, confined by the session's ``Workspace`` (the
same check ``fs/*`` uses): they must never list or read a path that resolves out of it (through
``..`` or a symlink), and never write.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar, Final

import anyio

from acpd.errors import RpcError
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

MAX_MATCHES: Final = 500
MAX_GREP_FILE_BYTES: Final = 2 * 1024 * 1024
SKIPPED_DIRS: Final = frozenset({".git", "node_modules", "__pycache__", ".venv"})


def _base(ctx: ToolContext, args: dict[str, Any]) -> Path:
    try:
        return ctx.workspace.resolve(path_arg(ctx, args) if "path" in args else ctx.cwd)
    except RpcError as exc:
        raise failed(exc) from None


def _files(base: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, names in os.walk(base):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        found.extend(Path(root) / name for name in sorted(names))
    return found


def _glob(ctx: ToolContext, base: Path, pattern: str) -> list[str]:
    if pattern.startswith("/") or ".." in Path(pattern).parts:
        raise ToolFailed("the pattern must stay below the directory searched (no '/' at the start, no '..')")
    matches: list[str] = []
    for path in base.glob(pattern):
        if not _skipped(path, base) and _inside(ctx, path):
            matches.append(str(path.relative_to(base)))
            if len(matches) >= MAX_MATCHES:
                break
    return sorted(matches)


def _inside(ctx: ToolContext, path: Path) -> bool:
    """Whether ``path`` really (symlinks resolved) lies in the session's directories."""
    try:
        ctx.workspace.resolve(str(path))
    except RpcError:
        return False
    return True


def _skipped(path: Path, base: Path) -> bool:
    return any(part in SKIPPED_DIRS for part in path.relative_to(base).parts)


def _grep(ctx: ToolContext, base: Path, regex: re.Pattern[str], name_pattern: str | None) -> list[str]:
    lines: list[str] = []
    for path in _files(base) if base.is_dir() else [base]:
        if (name_pattern and not path.match(name_pattern)) or not _inside(ctx, path):
            continue
        try:
            if path.stat().st_size > MAX_GREP_FILE_BYTES:
                continue
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # unreadable or binary
        for number, line in enumerate(text.splitlines(), start=1):
            if regex.search(line):
                lines.append(f"{path.relative_to(base) if base.is_dir() else path.name}:{number}: {line}")
                if len(lines) >= MAX_MATCHES:
                    return lines
    return lines


def _searched_path(args: dict[str, Any], cwd: str) -> list[JsonObject]:
    return [{"path": absolute(cwd, str(args["path"]))}] if "path" in args else []


def _found(matches: list[str], none: str) -> ToolResult:
    text = "\n".join(matches) or none
    return ToolResult(clipped(text), (text_content(fenced(text)),), {"matches": len(matches)})


class GlobTool:
    name = "Glob"
    kind = "search"
    announced = True
    description = (
        "List files matching a glob pattern (e.g. '**/*.py', or '*' to list a directory), below 'path' "
        "(default: the project directory; any directory you may use)."
    )
    schema: ClassVar[JsonObject] = {
        "type": "object",
        "properties": {"pattern": {"type": "string"}, "path": {"type": "string"}},
        "required": ["pattern"],
    }

    def title(self, args: dict[str, Any]) -> str:
        return f"Glob {args.get('pattern', '')}"

    def locations(self, args: dict[str, Any], cwd: str) -> list[JsonObject]:
        return _searched_path(args, cwd)

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        pattern = string_arg(args, "pattern")
        base = await anyio.to_thread.run_sync(_base, ctx, args)
        try:
            # abandon_on_cancel: a cancelled turn must not wait for a walk of a large tree.
            matches = await anyio.to_thread.run_sync(_glob, ctx, base, pattern, abandon_on_cancel=True)
        except ValueError as exc:
            raise ToolFailed(f"bad pattern {pattern!r}: {exc}") from None
        return _found(matches, "No files matched.")


class GrepTool:
    name = "Grep"
    kind = "search"
    announced = True
    description = (
        "Search file contents with a regular expression, below 'path' (default: the project directory; "
        "any directory you may use) in files whose name matches 'glob' (optional)."
    )
    schema: ClassVar[JsonObject] = {
        "type": "object",
        "properties": {"pattern": {"type": "string"}, "path": {"type": "string"}, "glob": {"type": "string"}},
        "required": ["pattern"],
    }

    def title(self, args: dict[str, Any]) -> str:
        return f"Grep {args.get('pattern', '')}"

    def locations(self, args: dict[str, Any], cwd: str) -> list[JsonObject]:
        return _searched_path(args, cwd)

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
        pattern = string_arg(args, "pattern")
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ToolFailed(f"bad regular expression {pattern!r}: {exc}") from None
        base = await anyio.to_thread.run_sync(_base, ctx, args)
        glob = args.get("glob") if isinstance(args.get("glob"), str) else None
        lines = await anyio.to_thread.run_sync(_grep, ctx, base, regex, glob, abandon_on_cancel=True)
        return _found(lines, "No matches.")
