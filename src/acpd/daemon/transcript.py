"""Daemon layer: the earlier conversation as text, for a backend that starts without it.

When a session switches agent, or its agent cannot load or resume its own session after a restart,
the new backend knows nothing of what was said. acpd then puts the transcript, rebuilt from the
event log, in front of the next prompt. Pure functions over records; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from acpd.protocol import methods
from acpd.protocol.audit import prompt_text
from acpd.protocol.events import EventRecord
from acpd.protocol.jsonio import JsonObject

from .acp_views import parse_frame

MAX_TRANSCRIPT_CHARS: Final = 24_000
"""The newest part of the conversation kept; older turns are cut, and the cut is said."""
PREAMBLE: Final = (
    "This session continues a conversation held earlier, possibly with another agent. "
    "The transcript so far follows; use it as context for the user's next message.\n"
)
TRUNCATED: Final = "[earlier turns truncated]\n"


def conversation(records: Iterable[EventRecord]) -> Iterator[tuple[str, str]]:
    """``(role, text)`` pairs in order: each user prompt, then what the agent said and did."""
    agent_text: list[str] = []
    for record in records:
        method, message = parse_frame(record)
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        if method == methods.SESSION_PROMPT and record.sender == "client":
            if agent_text:
                yield "agent", "".join(agent_text).strip()
                agent_text = []
            yield "user", prompt_text(params.get("prompt"))
        elif method == methods.SESSION_UPDATE:
            line = _update_text(params.get("update"))
            if line is not None:
                agent_text.append(line)
    if agent_text:
        yield "agent", "".join(agent_text).strip()


def transcript_block(records: Iterable[EventRecord], *, max_chars: int = MAX_TRANSCRIPT_CHARS) -> JsonObject | None:
    """The conversation as one text content block, newest turns kept; None if nothing was said."""
    lines = [f"{'User' if role == 'user' else 'Assistant'}: {text}\n" for role, text in conversation(records) if text]
    if not lines:
        return None
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        if size + len(line) > max_chars:
            kept.append(TRUNCATED)
            break
        kept.append(line)
        size += len(line)
    body = "".join(reversed(kept))
    text = f"{PREAMBLE}<transcript>\n{body}</transcript>\n"
    # marked, so a backend (or acpd's mock) can tell carried context from what the user typed
    return {"type": "text", "text": text, "_meta": {"acpd": {"context": True}}}


def _update_text(update: object) -> str | None:
    if not isinstance(update, dict):
        return None
    kind = update.get("sessionUpdate")
    if kind == "agent_message_chunk":
        content = update.get("content")
        if isinstance(content, dict) and isinstance(content.get("text"), str):
            return str(content["text"])
    if kind == "tool_call":
        return f"\n[tool call: {update.get('title') or update.get('toolCallId')}]\n"
    return None
