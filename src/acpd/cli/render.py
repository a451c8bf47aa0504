"""CLI layer: a turn's records and permission requests drawn on a terminal. No HTTP, no daemon logic.

The agent's answer goes to stdout (so ``acpd prompt … > answer.txt`` keeps only it); thoughts,
tool calls, plans, daemon notices and permission requests go to stderr.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from acpd.api.events import EventRecord
from acpd.client.models import PermissionRequest
from acpd.protocol import jsonio

DIFF_LINES_SHOWN = 200
"""A longer diff is cut (the tool call's own record has it all)."""


class TurnPrinter:
    """Shows a turn's records as they come: the answer on ``out``, everything else on ``err``."""

    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.out, self.err = out, err

    def show(self, record: EventRecord) -> None:
        method = record.method
        if method == "session/update":
            self._update(record.update)
        elif method is not None and method.startswith("_acpd/") and method != "_acpd/agent_started":
            params = record.payload.params if isinstance(record.payload.params, dict) else {}
            shown = {k: v for k, v in params.items() if k != "sessionId"}
            self.err.write(f"[{method[6:]}] {jsonio.dumps_str(shown)}\n")
        self.out.flush()

    def _update(self, update: Any) -> None:
        kind = getattr(update, "session_update", None)
        content = getattr(update, "content", None)
        text = getattr(content, "text", None) if getattr(content, "type", None) == "text" else None
        if kind == "agent_message_chunk" and text is not None:
            self.out.write(text)
        elif kind == "agent_thought_chunk" and text is not None:
            self.err.write(text)
        elif kind == "tool_call":
            self.err.write(f"\n[tool] {update.title or update.tool_call_id} ({update.status})\n")
        elif kind == "tool_call_update" and update.status:
            self.err.write(f"[tool] {update.tool_call_id} {update.status}\n")
        elif kind == "plan":
            for entry in update.entries:
                self.err.write(f"[plan] {entry.status}: {entry.content}\n")

    def permission(self, request: PermissionRequest) -> None:
        """The request as a person must see it to decide: what, of which kind, and the change."""
        self.out.flush()
        kind = f" ({request.tool_kind})" if request.tool_kind else ""
        self.err.write(f"\n[permission {request.id}] {request.title}{kind}\n")
        call = request.tool_call.model_dump(mode="json", by_alias=True) if request.tool_call else {}
        for line in diff_lines(call.get("content")):
            self.err.write(f"  {line}\n")
        self.err.flush()


def diff_lines(content: object) -> list[str]:
    """A unified diff of every ``diff`` block of a tool call's content, cut at ``DIFF_LINES_SHOWN``."""
    lines: list[str] = []
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "diff":
            lines += _unified(str(block.get("path") or "?"), block.get("oldText"), str(block.get("newText") or ""))
    if len(lines) > DIFF_LINES_SHOWN:
        lines = [*lines[:DIFF_LINES_SHOWN], f"… {len(lines) - DIFF_LINES_SHOWN} more lines"]
    return lines


def _unified(path: str, old: object, new: str) -> Iterable[str]:
    before = old.splitlines() if isinstance(old, str) else []
    label = "/dev/null" if old is None else f"a/{path}"
    return difflib.unified_diff(before, new.splitlines(), label, f"b/{path}", lineterm="")
