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
from acpd.protocol.jsonio import JsonObject, objects_in

META: Final = "claudeNative"
INTERRUPTED: Final = "The tool call was interrupted before it finished."
TURN_STOPPED: Final = "(The turn was stopped here.)"
"""The assistant note that closes a tool loop a stopped turn left open, before the next prompt."""

Message = dict[str, Any]


@dataclass(slots=True)
class Memory:
    messages: list[Message]
    cost: float
    """The session's cost so far (the last ``usage_update``'s), to go on counting from."""


def rebuild(records: Iterable[EventRecord]) -> Memory:
    messages: list[Message] = []
    cost = 0.0
    pending: tuple[str, PromptMark] | None = None  # an unanswered prompt: its request id, where it went
    for record in records:
        payload = record.payload_object()
        params = payload.get("params")
        params = params if isinstance(params, dict) else {}
        method = payload.get("method")
        if method == methods.SESSION_PROMPT and record.sender == "client":
            pending = (str(payload.get("id")), add_prompt(messages, prompt_blocks(params.get("prompt"))))
        elif method == methods.ACPD_ERROR and _failed_attempt(params):
            _drop_partial_reply(messages)
        elif method == methods.ACPD_TURN_INTERRUPTED:
            pending = None  # the daemon stopped in that turn: its prompt stays, as a cancelled one does
        elif method == methods.SESSION_UPDATE and record.sender == "agent":
            update = params.get("update")
            if isinstance(update, dict):
                _add_update(messages, update)
                cost = _cost(update, cost)
        elif pending is not None and "method" not in payload and str(payload.get("id")) == pending[0]:
            if "error" in payload:
                forget_prompt(messages, pending[1])  # refused before the model said anything
            pending = None
    if pending is not None:
        # The prompt now starting (it is logged before the agent starts): the caller adds it again.
        forget_prompt(messages, pending[1])
    return Memory(_well_formed(_tidy(messages)), cost)


@dataclass(frozen=True, slots=True)
class PromptMark:
    """Where ``add_prompt`` put a prompt, so that ``forget_prompt`` can take it out again."""

    index: int
    """The user message that holds it."""
    before: int
    """That message's blocks before the prompt's."""
    closed_tools: bool
    """Whether an assistant note was added first to close an interrupted tool loop."""


def add_prompt(messages: list[Message], blocks: list[JsonObject]) -> PromptMark:
    """Add a user prompt where the API accepts it.

    After an unanswered prompt (a turn that ended before the model answered) it joins that one.
    After tool results (a turn stopped between tool steps), an assistant note closes the tool
    loop first: with extended thinking on, the API wants a loop still open to go on from a
    thinking block, which the rebuilt memory does not have.
    """
    _settle_end(messages)
    last = messages[-1] if messages else None
    closed = last is not None and last["role"] == "user" and _has_tool_results(last)
    if closed:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": TURN_STOPPED}]})
    elif last is not None and last["role"] == "user":
        before = len(last["content"])
        last["content"].extend(blocks)
        return PromptMark(len(messages) - 1, before, closed_tools=False)
    messages.append({"role": "user", "content": list(blocks)})
    return PromptMark(len(messages) - 1, 0, closed_tools=closed)


def forget_prompt(messages: list[Message], mark: PromptMark) -> None:
    """Take out a prompt the model never answered (nothing came after it); else leave all as is."""
    if len(messages) - 1 != mark.index:
        return  # the model answered (a step or more): the conversation keeps the prompt
    del messages[mark.index]["content"][mark.before :]
    if not messages[mark.index]["content"]:
        del messages[mark.index]
        if mark.closed_tools:
            messages.pop()  # the note that closed the tool loop for it


def _settle_end(messages: list[Message]) -> None:
    """End the conversation as a stopped turn leaves it, the same way live and in a rebuild: an
    answer of blank text only is dropped, and tool uses left without results are answered."""
    while messages and messages[-1]["role"] == "assistant" and all(blank_text(b) for b in messages[-1]["content"]):
        messages.pop()
    if messages and messages[-1]["role"] == "assistant":
        uses = [b["id"] for b in messages[-1]["content"] if b.get("type") == "tool_use"]
        if uses:  # the daemon stopped while they ran
            messages.append({"role": "user", "content": [_interrupted(use) for use in uses]})


def blank_text(block: JsonObject) -> bool:
    """A text block with nothing but whitespace, which the API refuses."""
    return block.get("type") == "text" and not str(block.get("text", "")).strip()


def _interrupted(tool_use_id: str) -> JsonObject:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": INTERRUPTED, "is_error": True}


def _has_tool_results(message: Message) -> bool:
    return any(block.get("type") == "tool_result" for block in message["content"])


def _tidy(messages: list[Message]) -> list[Message]:
    """Without blank text blocks (the API refuses them) and the messages they leave empty, with
    neighbours of the same role joined again."""
    tidied: list[Message] = []
    for message in messages:
        blocks = [b for b in message["content"] if not blank_text(b)]
        if blocks:
            _add(tidied, message["role"], blocks)
    return tidied


def _failed_attempt(params: JsonObject) -> bool:
    data = params.get("data")
    return isinstance(data, dict) and isinstance(data.get("attempt"), int)


def _drop_partial_reply(messages: list[Message]) -> None:
    """Forget what a failed model call streamed: a call starts after a user message (the prompt or
    tool results) and its tool uses are only recorded once it succeeds, so it is the trailing
    assistant message, if any."""
    if messages and messages[-1]["role"] == "assistant":
        messages.pop()


def _cost(update: JsonObject, cost: float) -> float:
    if update.get("sessionUpdate") != "usage_update":
        return cost
    reported = update.get("cost")
    amount = reported.get("amount") if isinstance(reported, dict) else None
    return float(amount) if isinstance(amount, int | float) else cost


def prompt_blocks(prompt: object) -> list[JsonObject]:
    """ACP content blocks as Messages API blocks (text and images; links and embedded files as text)."""
    blocks: list[JsonObject] = []
    for block in objects_in(prompt):
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            blocks.append({"type": "text", "text": block["text"]})
        elif kind == "resource_link":
            blocks.append({"type": "text", "text": f"[{block.get('name', '')}]({block.get('uri', '')})"})
        elif kind == "image" and isinstance(block.get("data"), str):
            source = {"type": "base64", "media_type": block.get("mimeType"), "data": block["data"]}
            blocks.append({"type": "image", "source": source})
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
        args = use.get("input") if isinstance(use.get("input"), dict) else {}
        _add(messages, "assistant", [{"type": "tool_use", "id": use["id"], "name": use["name"], "input": args}])
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
        missing = [_interrupted(use) for use in uses if use not in answered]
        if missing:
            if following is not None and following["role"] == "user":
                following["content"][:0] = missing
            else:
                fixed.append({"role": "user", "content": missing})
    return fixed
