"""Test kit, mock model server: OpenAI's wire shapes, Responses (``/v1/responses``) and Chat Completions.

Request → ``Turn`` and planned reply → JSON or SSE; no I/O, no planning. Codex (the Responses user)
fails a turn whose stream lacks ``response.completed`` with ``usage``, and sends ``role: "developer"``
items, which are not user turns. Only ``function`` tools are offered to the plan (Codex's ``custom``,
``namespace`` and ``web_search`` tools are not called by the mock).
"""

from __future__ import annotations

from typing import Final

import orjson

from acpd.protocol.jsonio import JsonObject, JsonValue, objects_in
from acpd.testing._model_exchange import Answer, Streamed, content_text, object_or_empty, sse, text_chunks
from acpd.testing._model_plan import Family, Said, ToolSpec, Turn, newest_user_turn
from acpd.testing._model_replies import ErrorReply

DEFAULT_MODEL: Final = "mock-model"
ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
_ERROR_CODES: Final = {429: "rate_limit_exceeded"}
IGNORED_ROLES: Final = frozenset({"system", "developer"})
_RESULT_ITEMS: Final = frozenset({"function_call_output", "custom_tool_call_output"})


def openai_error_body(error: ErrorReply) -> JsonObject:
    kind = ERROR_TYPES.get(error.status, "server_error")
    return {"error": {"message": error.message, "type": kind, "param": None, "code": _ERROR_CODES.get(error.status)}}


class OpenAiBodies:
    """What the Responses and Chat Completions APIs read and answer alike."""

    def model(self, body: JsonObject) -> str:
        return str(body.get("model") or DEFAULT_MODEL)

    def wants_stream(self, body: JsonObject) -> bool:
        return body.get("stream") is True

    def error_body(self, error: ErrorReply) -> JsonObject:
        return openai_error_body(error)


class ResponsesApi(OpenAiBodies):
    name: Final = "responses"
    family: Final = Family.OTHER

    def read_turn(self, body: JsonObject) -> Turn:
        items = body.get("input")
        if isinstance(items, str):
            return Turn(items, None, function_tools(body.get("tools"), nested=False))
        entries = [_said_item(item) for item in objects_in(items)]
        return Turn(*newest_user_turn(entries), function_tools(body.get("tools"), nested=False))

    def render_message(self, answer: Answer) -> JsonObject:
        return {**_response_head(answer, answer.new_id("resp"), "completed"), **_response_tail(answer, _items(answer))}

    def render_stream(self, answer: Answer) -> Streamed:
        response_id = answer.new_id("resp")
        items = _items(answer)
        head = _response_head(answer, response_id, "in_progress")
        events: list[JsonObject] = [
            {"type": "response.created", "response": head},
            {"type": "response.in_progress", "response": head},
        ]
        for index, item in enumerate(items):
            events += _item_events(index, item)
        done = {**_response_head(answer, response_id, "completed"), **_response_tail(answer, items)}
        events.append({"type": "response.completed", "response": done})
        return Streamed([sse({**event, "sequence_number": n}, event["type"]) for n, event in enumerate(events)])


RESPONSES: Final = ResponsesApi()


def _said_item(item: JsonObject) -> Said:
    kind = item.get("type", "message")
    if kind in _RESULT_ITEMS:
        return Said("user", results=(content_text(item.get("output")),))
    if kind != "message":
        return Said("assistant")  # function_call, reasoning, …: the model's side
    role = item.get("role")
    if role in IGNORED_ROLES:
        return Said("ignored")
    return Said("user", (content_text(item.get("content")),)) if role == "user" else Said("assistant")


def _items(answer: Answer) -> list[JsonObject]:
    reply, items = answer.reply, []
    if reply.thinking is not None:
        summary = [{"type": "summary_text", "text": reply.thinking}]
        items.append({"id": answer.new_id("rs"), "type": "reasoning", "summary": summary})
    if reply.text is not None:
        part = {"type": "output_text", "text": reply.text, "annotations": []}
        message = {"id": answer.new_id("msg"), "type": "message", "role": "assistant", "content": [part]}
        items.append({**message, "status": "completed"})
    if reply.tool is not None:
        call = {"id": answer.new_id("fc"), "type": "function_call", "call_id": answer.new_id("call")}
        arguments = orjson.dumps(reply.tool.input).decode()
        items.append({**call, "name": reply.tool.name, "arguments": arguments, "status": "completed"})
    return items


def _item_events(index: int, item: JsonObject) -> list[JsonObject]:
    where = {"output_index": index}
    kind = item["type"]
    if kind == "message":
        started = {**item, "status": "in_progress", "content": []}
        middle = _text_events({**where, "item_id": item["id"], "content_index": 0}, item["content"][0])
    elif kind == "function_call":
        started = {**item, "status": "in_progress", "arguments": ""}
        middle = _argument_events({**where, "item_id": item["id"]}, item["arguments"])
    else:
        started, middle = {**item, "summary": []}, []
    return [
        {"type": "response.output_item.added", **where, "item": started},
        *middle,
        {"type": "response.output_item.done", **where, "item": item},
    ]


def _text_events(where: JsonObject, part: JsonObject) -> list[JsonObject]:
    return [
        {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
        *({"type": "response.output_text.delta", **where, "delta": delta} for delta in text_chunks(part["text"])),
        {"type": "response.output_text.done", **where, "text": part["text"]},
        {"type": "response.content_part.done", **where, "part": part},
    ]


def _argument_events(where: JsonObject, arguments: str) -> list[JsonObject]:
    return [
        *(
            {"type": "response.function_call_arguments.delta", **where, "delta": delta}
            for delta in text_chunks(arguments)
        ),
        {"type": "response.function_call_arguments.done", **where, "arguments": arguments},
    ]


def _response_head(answer: Answer, response_id: str, status: str) -> JsonObject:
    return {
        "id": response_id,
        "object": "response",
        "created_at": answer.created,
        "status": status,
        "model": answer.model,
        "output": [],
        "usage": None,
        "error": None,
        "incomplete_details": None,
        "parallel_tool_calls": False,
        "tool_choice": "auto",
        "tools": [],
    }


def _response_tail(answer: Answer, items: list[JsonObject]) -> JsonObject:
    usage = answer.usage
    return {
        "output": items,
        "usage": {
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.input_tokens + usage.output_tokens,
        },
    }


def function_tools(tools: JsonValue, *, nested: bool) -> tuple[ToolSpec, ...]:
    """Function tools: ``{"type": "function", "name", "parameters"}``, or nested under ``function`` (Chat)."""
    if not isinstance(tools, list):
        return ()
    specs = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") != "function":
            continue
        declared = object_or_empty(tool.get("function")) if nested else tool
        if declared.get("name"):
            specs.append(ToolSpec(str(declared["name"]), object_or_empty(declared.get("parameters"))))
    return tuple(specs)
