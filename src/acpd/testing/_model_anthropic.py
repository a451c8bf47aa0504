"""Test kit, mock model server: the Anthropic Messages API's wire shapes (``POST /v1/messages``).

Request → ``Turn`` and planned reply → Message JSON or SSE events; no I/O, no planning. The stream
order is the real API's: ``message_start``, then per block ``content_block_start`` / deltas /
``content_block_stop`` (one ``ping`` after the first start), ``message_delta``, ``message_stop``.
Claude Code puts ``role: "system"`` entries inside ``messages``; they are not user turns.
"""

from __future__ import annotations

from typing import Final

import orjson

from acpd.protocol.jsonio import JsonObject, JsonValue, objects_in
from acpd.testing._model_exchange import Answer, Streamed, content_text, object_or_empty, sse, text_chunks
from acpd.testing._model_plan import BYTES_PER_TOKEN, Family, Said, ToolSpec, Turn, newest_user_turn
from acpd.testing._model_replies import ErrorReply

DEFAULT_MODEL: Final = "mock-model"
ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_DELTA_KEYS: Final = {"thinking": ("thinking_delta", "thinking"), "text": ("text_delta", "text")}


class AnthropicApi:
    name: Final = "anthropic"
    family: Final = Family.ANTHROPIC

    def read_turn(self, body: JsonObject) -> Turn:
        messages = body.get("messages")
        entries = [_said(message) for message in objects_in(messages)]
        text, result = newest_user_turn(entries)
        return Turn(text, result, _tools(body.get("tools")))

    def model(self, body: JsonObject) -> str:
        return str(body.get("model") or DEFAULT_MODEL)

    def wants_stream(self, body: JsonObject) -> bool:
        return body.get("stream") is True

    def error_body(self, error: ErrorReply) -> JsonObject:
        kind = ERROR_TYPES.get(error.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": error.message}}

    def render_message(self, answer: Answer) -> JsonObject:
        message = _message_head(answer)
        message.update(
            content=_blocks(answer),
            stop_reason=_stop_reason(answer),
            usage=_usage(answer.usage.input_tokens, answer.usage.output_tokens),
        )
        return message

    def render_stream(self, answer: Answer) -> Streamed:
        head = _message_head(answer)
        events = [_event({"type": "message_start", "message": head})]
        for index, block in enumerate(_blocks(answer)):
            events += _block_events(index, block)
            if index == 0:
                events.insert(2, _event({"type": "ping"}))
        delta = {"stop_reason": _stop_reason(answer), "stop_sequence": None}
        events.append(_event({"type": "message_delta", "delta": delta, "usage": _delta_usage(answer)}))
        events.append(_event({"type": "message_stop"}))
        return Streamed(events)


ANTHROPIC: Final = AnthropicApi()


def count_tokens_body(body_bytes: int) -> JsonObject:
    return {"input_tokens": max(1, body_bytes // BYTES_PER_TOKEN)}


def _message_head(answer: Answer) -> JsonObject:
    return {
        "id": answer.new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(answer.usage.input_tokens, 1),
    }


def _blocks(answer: Answer) -> list[JsonObject]:
    reply = answer.reply
    blocks: list[JsonObject] = []
    if reply.thinking is not None:
        blocks.append({"type": "thinking", "thinking": reply.thinking, "signature": answer.new_id("sig")})
    if reply.text is not None:
        blocks.append({"type": "text", "text": reply.text})
    if reply.tool is not None:
        call = reply.tool
        blocks.append({"type": "tool_use", "id": answer.new_id("toolu"), "name": call.name, "input": call.input})
    return blocks


def _block_events(index: int, block: JsonObject) -> list[bytes]:
    kind = block["type"]
    if kind == "tool_use":
        start: JsonObject = {**block, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": part} for part in _json_parts(block["input"])]
    else:
        delta_type, key = _DELTA_KEYS[kind]
        start = {**block, key: ""} | ({"signature": ""} if kind == "thinking" else {})
        deltas = [{"type": delta_type, key: part} for part in text_chunks(block[key])]
        if kind == "thinking":
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
    return [
        _event({"type": "content_block_start", "index": index, "content_block": start}),
        *(_event({"type": "content_block_delta", "index": index, "delta": delta}) for delta in deltas),
        _event({"type": "content_block_stop", "index": index}),
    ]


def _json_parts(arguments: JsonValue) -> list[str]:
    return text_chunks(orjson.dumps(arguments).decode())


def _stop_reason(answer: Answer) -> str:
    return "tool_use" if answer.reply.tool is not None else "end_turn"


def _usage(input_tokens: int, output_tokens: int) -> JsonObject:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def _delta_usage(answer: Answer) -> JsonObject:
    return {"output_tokens": answer.usage.output_tokens}


def _event(data: JsonObject) -> bytes:
    return sse(data, event=str(data["type"]))


def _said(message: JsonObject) -> Said:
    role = message.get("role")
    if role == "assistant":
        return Said("assistant")
    if role != "user":
        return Said("ignored")
    content = message.get("content")
    if isinstance(content, str):
        return Said("user", (content,))
    blocks = objects_in(content)
    texts = tuple(str(block.get("text", "")) for block in blocks if block.get("type") == "text")
    results = tuple(content_text(block.get("content")) for block in blocks if block.get("type") == "tool_result")
    return Said("user", texts, results)


def _tools(tools: JsonValue) -> tuple[ToolSpec, ...]:
    if not isinstance(tools, list):
        return ()
    return tuple(
        ToolSpec(str(tool["name"]), object_or_empty(tool.get("input_schema")))
        for tool in tools
        if isinstance(tool, dict) and tool.get("name")
    )
