"""Adapters layer: claude-native's conversation, rebuilt from the session's event log.

The loop marks what the Messages API needs in its updates' ``_meta.claudeNative``: each
``tool_call`` carries its ``toolUse`` (id, name, input) and each final ``tool_call_update`` its
``toolResult`` (text, isError); the todo tool's ``plan`` carries both. With the user's prompts and
the agent's text chunks, that is the whole conversation, so a restarted daemon continues it.
A model call that failed (its ``_acpd/error`` carries the ``attempt``) never joined the live
conversation, so the text it streamed before failing is left out here too. Thinking is not
replayed (the API wants its signatures, which are not kept). Pure; no I/O: it must not read the
store or call the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from acpd.protocol import methods
from acpd.protocol.events import EventRecord
from acpd.protocol.jsonio import JsonObject

META: Final = "claudeNative"
INTERRUPTED: Final = "The tool call was interrupted before it finished."

Message = dict[str, Any]


@dataclass(slots=True)
class Memory:
    messages: list[Message]
    cost: float
    """The session's cost so far (the last ``usage_update``'s), to go on counting from."""


def rebuild(records: Iterable[EventRecord]) -> Memory:
    messages: list[Message] = []
    cost = 0.0
    pending: tuple[str, int, int] | None = None  # an unanswered prompt: id, message index, blocks before it
    for record in records:
        payload = record.payload_object()
        params = payload.get("params")
        params = params if isinstance(params, dict) else {}
        method = payload.get("method")
        if method == methods.SESSION_PROMPT and record.sender == "client":
            blocks = prompt_blocks(params.get("prompt"))
            before = len(messages[-1]["content"]) if messages and messages[-1]["role"] == "user" else 0
            _add(messages, "user", blocks)
            pending = (str(payload.get("id")), len(messages) - 1, before)
        elif method == methods.ACPD_ERROR and _failed_attempt(params):
            _drop_partial_reply(messages)
        elif method == methods.SESSION_UPDATE and record.sender == "agent":
            update = params.get("update")
            if isinstance(update, dict):
                _add_update(messages, update)
                cost = _cost(update, cost)
        elif pending is not None and "method" not in payload and str(payload.get("id")) == pending[0]:
            if "error" in payload and len(messages) - 1 == pending[1]:
                _drop_prompt(messages, pending)  # refused before the model said anything
            pending = None
    if pending is not None and len(messages) - 1 == pending[1]:
        # The prompt now starting (it is logged before the agent starts): the caller adds it again.
        _drop_prompt(messages, pending)
    return Memory(_well_formed(messages), cost)


def _failed_attempt(params: JsonObject) -> bool:
    data = params.get("data")
    return isinstance(data, dict) and isinstance(data.get("attempt"), int)


def _drop_partial_reply(messages: list[Message]) -> None:
    """Forget what a failed model call streamed: a call starts after a user message (the prompt or
    tool results) and its tool uses are only recorded once it succeeds, so it is the trailing
    assistant message, if any."""
    if messages and messages[-1]["role"] == "assistant":
        messages.pop()


def _drop_prompt(messages: list[Message], pending: tuple[str, int, int]) -> None:
    _, index, before = pending
    del messages[index]["content"][before:]
    if not messages[index]["content"]:
        del messages[index]


def _cost(update: JsonObject, cost: float) -> float:
    if update.get("sessionUpdate") != "usage_update":
        return cost
    reported = update.get("cost")
    amount = reported.get("amount") if isinstance(reported, dict) else None
    return float(amount) if isinstance(amount, int | float) else cost


def prompt_blocks(prompt: object) -> list[JsonObject]:
    """ACP content blocks as Messages API blocks (text; links and embedded files as text)."""
    blocks: list[JsonObject] = []
    for block in prompt if isinstance(prompt, list) else []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            blocks.append({"type": "text", "text": block["text"]})
        elif kind == "resource_link":
            blocks.append({"type": "text", "text": f"[{block.get('name', '')}]({block.get('uri', '')})"})
        elif kind == "resource" and isinstance(block.get("resource"), dict):
            resource = block["resource"]
            text = resource.get("text") if isinstance(resource.get("text"), str) else ""
            blocks.append({"type": "text", "text": f'<file uri="{resource.get("uri", "")}">\n{text}\n</file>'})
    return blocks or [{"type": "text", "text": "(empty prompt)"}]


def _add_update(messages: list[Message], update: JsonObject) -> None:
    kind = update.get("sessionUpdate")
    meta = update.get("_meta")
    native = meta.get(META) if isinstance(meta, dict) else None
    native = native if isinstance(native, dict) else {}
    if kind == "agent_message_chunk":
        content = update.get("content")
        if isinstance(content, dict) and isinstance(content.get("text"), str) and content["text"]:
            _add_text(messages, content["text"])
    if isinstance(native.get("toolUse"), dict):
        use = native["toolUse"]
        _add(messages, "assistant", [{"type": "tool_use", "id": use["id"], "name": use["name"], "input": use["input"]}])
    if isinstance(native.get("toolResult"), dict):
        result = native["toolResult"]
        block = {"type": "tool_result", "tool_use_id": result["id"], "content": str(result.get("text", ""))}
        if result.get("isError"):
            block["is_error"] = True
        _add(messages, "user", [block])


def _add_text(messages: list[Message], text: str) -> None:
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant" and last["content"][-1].get("type") == "text":
        last["content"][-1] = {"type": "text", "text": last["content"][-1]["text"] + text}
    else:
        _add(messages, "assistant", [{"type": "text", "text": text}])


def _add(messages: list[Message], role: str, blocks: list[JsonObject]) -> None:
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": list(blocks)})


def _well_formed(messages: list[Message]) -> list[Message]:
    """What the API accepts: it starts with the user, and every tool use has its result next."""
    while messages and messages[0]["role"] != "user":
        messages.pop(0)
    fixed: list[Message] = []
    for index, message in enumerate(messages):
        fixed.append(message)
        if message["role"] != "assistant":
            continue
        uses = [b["id"] for b in message["content"] if b.get("type") == "tool_use"]
        following = messages[index + 1] if index + 1 < len(messages) else None
        answered = {b.get("tool_use_id") for b in following["content"]} if following else set()
        missing = [
            {"type": "tool_result", "tool_use_id": use, "content": INTERRUPTED, "is_error": True}
            for use in uses
            if use not in answered
        ]
        if missing:
            if following is not None and following["role"] == "user":
                following["content"][:0] = missing
            else:
                fixed.append({"role": "user", "content": missing})
    return fixed
