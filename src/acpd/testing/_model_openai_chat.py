"""Test kit, mock model server: OpenAI Chat Completions' wire shapes (``POST /v1/chat/completions``).

Request → ``Turn`` and planned reply → JSON or SSE chunks (``data: [DONE]`` last); no I/O, no
planning. No agent tested uses Chat Completions any more (Codex refuses ``wire_api = "chat"``); it is
kept for custom agents. The usage chunk is sent only when ``stream_options.include_usage`` asks.
"""

from __future__ import annotations

from typing import Final

import orjson

from acpd.protocol.jsonio import JsonObject, objects_in
from acpd.testing._model_exchange import Answer, Streamed, content_text, object_or_empty, sse, text_chunks
from acpd.testing._model_openai import IGNORED_ROLES, OpenAiBodies, function_tools
from acpd.testing._model_plan import Family, Said, Turn, newest_user_turn


class ChatApi(OpenAiBodies):
    name: Final = "chat"
    family: Final = Family.OTHER

    def read_turn(self, body: JsonObject) -> Turn:
        entries = [_said_chat(message) for message in objects_in(body.get("messages"))]
        return Turn(*newest_user_turn(entries), function_tools(body.get("tools"), nested=True))

    def render_message(self, answer: Answer) -> JsonObject:
        reply, calls = answer.reply, _chat_calls(answer)
        message: JsonObject = {"role": "assistant", "content": reply.text, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        choice = {"index": 0, "message": message, "finish_reason": _finish(answer), "logprobs": None}
        return {**_chat_head(answer, "chat.completion"), "choices": [choice], "usage": _chat_usage(answer)}

    def render_stream(self, answer: Answer) -> Streamed:
        head = _chat_head(answer, "chat.completion.chunk")
        deltas: list[JsonObject] = [{"role": "assistant", "content": ""}]
        deltas += [{"content": part} for part in text_chunks(answer.reply.text or "")]
        for index, call in enumerate(_chat_calls(answer)):
            function = call["function"]
            deltas.append({"tool_calls": [{**call, "index": index, "function": {**function, "arguments": ""}}]})
            deltas += [
                {"tool_calls": [{"index": index, "function": {"arguments": part}}]}
                for part in text_chunks(function["arguments"])
            ]
        chunks = [{**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]} for delta in deltas]
        chunks.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": _finish(answer)}]})
        if _include_usage(answer):
            chunks = [{**chunk, "usage": None} for chunk in chunks]
            chunks.append({**head, "choices": [], "usage": _chat_usage(answer)})
        return Streamed([*(sse(chunk) for chunk in chunks), sse("[DONE]")])


CHAT: Final = ChatApi()


def _said_chat(message: JsonObject) -> Said:
    role = message.get("role")
    if role in ("tool", "function"):
        return Said("user", results=(content_text(message.get("content")),))
    if role in IGNORED_ROLES:
        return Said("ignored")
    return Said("user", (content_text(message.get("content")),)) if role == "user" else Said("assistant")


def _chat_calls(answer: Answer) -> list[JsonObject]:
    call = answer.reply.tool
    if call is None:
        return []
    function = {"name": call.name, "arguments": orjson.dumps(call.input).decode()}
    return [{"id": answer.new_id("call"), "type": "function", "function": function}]


def _chat_head(answer: Answer, kind: str) -> JsonObject:
    return {"id": answer.new_id("chatcmpl"), "object": kind, "created": answer.created, "model": answer.model}


def _chat_usage(answer: Answer) -> JsonObject:
    usage = answer.usage
    total = usage.input_tokens + usage.output_tokens
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens, "total_tokens": total}


def _finish(answer: Answer) -> str:
    return "tool_calls" if answer.reply.tool is not None else "stop"


def _include_usage(answer: Answer) -> bool:
    return object_or_empty(answer.body.get("stream_options")).get("include_usage") is True
