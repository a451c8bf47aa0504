"""Daemon layer: a session's event log as a Markdown transcript a person reads. Pure; no I/O.

``MarkdownTranscript`` takes the records one at a time and hands back text as soon as it can be
written: a reply streams through as its chunks come, a tool call is written once it ends (or at the
end of its turn), so a session of any length renders with memory for one turn's open tool calls.
Every backend's log reads the same, since every backend's output is ACP ``session/update`` frames.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from acpd.protocol import methods
from acpd.protocol.audit import prompt_text
from acpd.protocol.events import EventRecord
from acpd.protocol.jsonio import JsonObject, JsonValue, object_of, objects_in

MAX_OUTPUT_LINES: Final = 40
"""Lines of a tool call's text output kept; the rest is said to be clipped."""
MAX_PROMPT_CHARS: Final = 20_000
FINISHED: Final = frozenset({"completed", "failed"})
PLAN_MARKS: Final = {"completed": "x", "in_progress": " ", "pending": " "}


def header(doc: Mapping[str, object]) -> str:
    """The title and the session's facts."""
    title = doc.get("title") or f"Session {doc.get('id')}"
    info = object_of(doc.get("agentInfo"))
    named = " ".join(str(info[key]) for key in ("name", "version") if info.get(key))
    agent = str(doc.get("agent") or "") + (f" ({named})" if named else "")
    facts = [
        ("Session", f"`{doc.get('id')}`"),
        ("Agent", agent),
        ("Model", doc.get("model")),
        ("Mode", doc.get("mode")),
        ("Directory", f"`{doc['cwd']}`" if doc.get("cwd") else None),
        ("Project", doc.get("project")),
        ("Created", doc.get("createdAt")),
        ("Updated", doc.get("updatedAt")),
        ("Turns", doc.get("turns")),
        ("Usage", usage_line(doc.get("usage"))),
    ]
    rows = "".join(f"| {name} | {_cell(value)} |\n" for name, value in facts if value not in (None, ""))
    return f"# {_line(str(title))}\n\n| | |\n|---|---|\n{rows}\n"


def usage_line(usage: object) -> str | None:
    """``12 input · 30 output · 5 cached tokens · $0.0100``, from an ACP usage object or
    the session's totals; None when there is nothing to say."""
    if not isinstance(usage, dict):
        return None
    parts = [
        f"{usage[key]:,} {name}"
        for key, name in (
            ("inputTokens", "input"),
            ("outputTokens", "output"),
            ("cachedReadTokens", "cached"),
            ("thoughtTokens", "thinking"),
        )
        if isinstance(usage.get(key), int)
    ]
    text = " · ".join(parts) + (" tokens" if parts else "")
    cost = usage.get("cost") or usage.get("costUSD")
    amount = cost.get("amount") if isinstance(cost, dict) else cost
    if isinstance(amount, (int, float)) and not isinstance(amount, bool):
        text += f"{' · ' if text else ''}${amount:.4f}"
    return text or None


class MarkdownTranscript:
    """Feed it a session's records in order (``feed``), then ``end``; each returns the text due."""

    def __init__(self) -> None:
        self._turn = 0
        self._block = ""  # what the last text written was: "reply", "thought" or ""
        self._tools: dict[str, JsonObject] = {}  # this turn's tool calls not yet written
        self._asked: dict[str, JsonObject] = {}  # permission requests by JSON-RPC id, awaiting a reply

    def feed(self, record: EventRecord) -> str:
        message = object_of(record.payload_object())
        method = message.get("method")
        params = object_of(message.get("params"))
        if method == methods.SESSION_PROMPT and record.sender == "client":
            return self._prompt(record.turn, params)
        if method == methods.SESSION_UPDATE:
            return self._update(object_of(params.get("update")))
        if method == methods.SESSION_REQUEST_PERMISSION:
            self._asked[str(message.get("id"))] = params
            return ""
        if method is None and record.sender == "client" and str(message.get("id")) in self._asked:
            return self._permission(self._asked.pop(str(message.get("id"))), message)
        if method is None and message.get("id") == f"turn-{record.turn}":
            return self._turn_end(message)
        if method == methods.ACPD_TURN_INTERRUPTED:
            return self._close_block() + self._open_tools() + "*The turn was interrupted: the daemon restarted.*\n\n"
        if method == methods.ACPD_ERROR:
            return self._close_block() + f"> **Error** {_line(str(params.get('message', '')))}\n\n"
        return ""

    def end(self) -> str:
        return self._close_block() + self._open_tools()

    # -- one kind of record each ------------------------------------------------------------------

    def _prompt(self, turn: int, params: JsonObject) -> str:
        text = self.end()
        self._turn = turn
        prompt = prompt_text(params.get("prompt"))[:MAX_PROMPT_CHARS]
        quoted = "\n".join(f"> {line}" if line else ">" for line in prompt.splitlines()) or ">"
        return text + f"## Turn {turn}\n\n**Prompt**\n\n{quoted}\n\n"

    def _update(self, update: JsonObject) -> str:
        kind = update.get("sessionUpdate")
        if kind in ("agent_message_chunk", "agent_thought_chunk"):
            return self._chunk("reply" if kind == "agent_message_chunk" else "thought", update)
        if kind == "tool_call":
            self._tools[str(update.get("toolCallId"))] = dict(update)
            return ""
        if kind == "tool_call_update":
            return self._tool_update(update)
        if kind == "plan":
            return self._close_block() + _plan(update.get("entries"))
        return ""

    def _chunk(self, block: str, update: JsonObject) -> str:
        content = object_of(update.get("content"))
        text = content.get("text") if content.get("type") == "text" else None
        if not isinstance(text, str) or not text:
            return ""
        opened = ""
        if self._block != block:
            opened = self._close_block() + ("<details><summary>Thinking</summary>\n\n" if block == "thought" else "")
            self._block = block
        return opened + text

    def _close_block(self) -> str:
        block, self._block = self._block, ""
        if block == "thought":
            return "\n\n</details>\n\n"
        return "\n\n" if block == "reply" else ""

    def _tool_update(self, update: JsonObject) -> str:
        tool_id = str(update.get("toolCallId"))
        call = self._tools.setdefault(tool_id, {"toolCallId": tool_id})
        call.update({key: value for key, value in update.items() if value is not None and key != "sessionUpdate"})
        if call.get("status") not in FINISHED:
            return ""
        del self._tools[tool_id]
        return self._close_block() + _tool_call(call)

    def _open_tools(self) -> str:
        text = "".join(_tool_call(call) for call in self._tools.values())
        self._tools.clear()
        return text

    def _permission(self, asked: JsonObject, reply: JsonObject) -> str:
        tool = object_of(asked.get("toolCall"))
        result = object_of(reply.get("result"))
        outcome = object_of(result.get("outcome"))
        decided = object_of(object_of(result.get("_meta")).get("acpd")).get("decidedBy")
        chosen = outcome.get("optionId") if outcome.get("outcome") == "selected" else outcome.get("outcome")
        names = {o.get("optionId"): o.get("name") for o in objects_in(asked.get("options"))}
        answer = names.get(chosen) or chosen or ("error" if "error" in reply else "no answer")
        what = _line(str(tool.get("title") or tool.get("toolCallId") or "a tool call"))
        kind = f" ({tool['kind']})" if tool.get("kind") else ""
        by = f", decided by {decided}" if decided else ""
        return self._close_block() + f"**Permission** asked for {what}{kind}: **{_line(str(answer))}**{by}\n\n"

    def _turn_end(self, response: JsonObject) -> str:
        text = self.end()
        result = object_of(response.get("result"))
        if "error" in response:
            error = object_of(response.get("error"))
            return text + f"*Turn {self._turn} failed: {_line(str(error.get('message', 'error')))}*\n\n"
        usage = usage_line(result.get("usage"))
        return text + f"*Turn {self._turn} ended: {result.get('stopReason')}{f' · {usage}' if usage else ''}*\n\n"


def _tool_call(call: JsonObject) -> str:
    title = _line(str(call.get("title") or "tool call"))
    lines = [f"**Tool call** {title} · {call.get('kind') or 'other'} · {call.get('status') or 'pending'}\n"]
    locations = [_location(place) for place in objects_in(call.get("locations"))]
    if locations:
        lines.append(f"\nLocations: {', '.join(locations)}\n")
    lines.extend(_tool_content(item) for item in objects_in(call.get("content")))
    return "".join(lines) + "\n"


def _tool_content(item: JsonObject) -> str:
    if item.get("type") == "diff":
        import difflib  # only an export with a diff needs it: not at the daemon's start

        old = str(item.get("oldText") or "")
        new = str(item.get("newText") or "")
        path = str(item.get("path") or "file")
        diff = difflib.unified_diff(old.splitlines(), new.splitlines(), path, path, lineterm="")
        return _fenced("diff", "\n".join(diff))
    if item.get("type") == "terminal":
        return f"\nTerminal `{item.get('terminalId')}`\n"
    content = object_of(item.get("content"))
    text = content.get("text")
    if not isinstance(text, str) or not text:
        return ""
    lines = text.splitlines()
    clipped = len(lines) > MAX_OUTPUT_LINES
    body = "\n".join(lines[:MAX_OUTPUT_LINES]) + (f"\n… {len(lines) - MAX_OUTPUT_LINES} more lines" if clipped else "")
    return _fenced("", body)


def _plan(entries: JsonValue) -> str:
    items = [
        f"- [{PLAN_MARKS.get(str(e.get('status')), ' ')}] {_line(str(e.get('content', '')))}"
        + (" *(in progress)*" if e.get("status") == "in_progress" else "")
        for e in objects_in(entries)
    ]
    return "**Plan**\n\n" + "\n".join(items) + "\n\n"


def _location(place: JsonObject) -> str:
    line = place.get("line")
    return f"`{place.get('path')}{f':{line}' if isinstance(line, int) else ''}`"


def _fenced(language: str, body: str) -> str:
    fence = "```"
    while fence in body:
        fence += "`"
    return f"\n{fence}{language}\n{body}\n{fence}\n"


def _line(text: str) -> str:
    """One line, safe in a table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _cell(value: object) -> str:
    return _line(str(value))
