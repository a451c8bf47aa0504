"""Test kit, mock model server: the Gemini API's wire shapes (``/v1beta/models/<model>:<method>``).

Request → ``Turn`` and planned reply → ``GenerateContentResponse`` JSON, or a stream of them (SSE
``data:`` lines with ``?alt=sse``, else one JSON array); no I/O, no planning. The model is named in
the path, so one ``GeminiApi`` is made per request. JSON-mime requests are Gemini CLI's router and
next-speaker checks; the plan answers them with ``ROUTER_JSON``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

from acpd.protocol.jsonio import JsonObject, JsonValue, objects_in
from acpd.testing._model_exchange import (
    JSON_MEDIA_TYPE,
    Answer,
    Streamed,
    content_text,
    object_or_empty,
    sse,
    text_chunks,
)
from acpd.testing._model_plan import BYTES_PER_TOKEN, Family, Said, ToolSpec, Turn, newest_user_turn
from acpd.testing._model_replies import ErrorReply

JSON_MIME: Final = "application/json"
STATUS_NAMES: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True, slots=True)
class GeminiApi:
    model_name: str
    method: str
    """``generateContent`` or ``streamGenerateContent``."""
    alt_sse: bool = False
    """``?alt=sse``: stream SSE ``data:`` lines rather than one JSON array."""
    name: str = "gemini"
    family: Family = Family.OTHER

    def read_turn(self, body: JsonObject) -> Turn:
        contents = body.get("contents")
        entries = [_said(content) for content in objects_in(contents)]
        config = object_or_empty(body.get("generationConfig"))
        return Turn(*newest_user_turn(entries), _tools(body.get("tools")), config.get("responseMimeType") == JSON_MIME)

    def model(self, body: JsonObject) -> str:
        return self.model_name

    def wants_stream(self, body: JsonObject) -> bool:
        return self.method == "streamGenerateContent"

    def error_body(self, error: ErrorReply) -> JsonObject:
        status = STATUS_NAMES.get(error.status, "UNKNOWN")
        return {"error": {"code": error.status, "message": error.message, "status": status}}

    def render_message(self, answer: Answer) -> JsonObject:
        return _chunk(answer, answer.new_id("resp"), _parts(answer), last=True)

    def render_stream(self, answer: Answer) -> Streamed:
        response_id = answer.new_id("resp")
        parts = _parts(answer, split=True)
        chunks = [_chunk(answer, response_id, [part], last=index == len(parts) - 1) for index, part in enumerate(parts)]
        if self.alt_sse:
            return Streamed([sse(chunk) for chunk in chunks])
        pieces = [(b"[" if index == 0 else b",\n") + orjson.dumps(chunk) for index, chunk in enumerate(chunks)]
        return Streamed([*pieces, b"]"], media_type=JSON_MEDIA_TYPE)


def count_tokens_body(body_bytes: int) -> JsonObject:
    return {"totalTokens": max(1, body_bytes // BYTES_PER_TOKEN)}


def _parts(answer: Answer, *, split: bool = False) -> list[JsonObject]:
    reply = answer.reply

    def pieces(text: str) -> list[str]:
        return (text_chunks(text) or [""]) if split else [text]

    parts: list[JsonObject] = []
    if reply.thinking is not None:
        parts += [{"text": piece, "thought": True} for piece in pieces(reply.thinking)]
    if reply.text is not None:
        parts += [{"text": piece} for piece in pieces(reply.text)]
    if reply.tool is not None:
        parts.append({"functionCall": {"name": reply.tool.name, "args": reply.tool.input}})
    return parts


def _chunk(answer: Answer, response_id: str, parts: list[JsonObject], *, last: bool) -> JsonObject:
    candidate: JsonObject = {"content": {"role": "model", "parts": parts}, "index": 0}
    chunk: JsonObject = {"candidates": [candidate], "modelVersion": answer.model, "responseId": response_id}
    if last:
        candidate["finishReason"] = "STOP"
        usage = answer.usage
        chunk["usageMetadata"] = {
            "promptTokenCount": usage.input_tokens,
            "candidatesTokenCount": usage.output_tokens,
            "totalTokenCount": usage.input_tokens + usage.output_tokens,
        }
    return chunk


def _said(content: JsonObject) -> Said:
    role = content.get("role", "user")
    if role == "model":
        return Said("assistant")
    parts = [part for part in content.get("parts") or [] if isinstance(part, dict)]
    texts = tuple(str(part["text"]) for part in parts if "text" in part and not part.get("thought"))
    results = tuple(_result_text(part["functionResponse"]) for part in parts if "functionResponse" in part)
    return Said("user", texts, results)


def _result_text(call: JsonValue) -> str:
    """A function response's ``output`` (Gemini CLI wraps it in ``<untrusted_context>``), else its JSON."""
    response = object_or_empty(call).get("response")
    output = object_or_empty(response).get("output")
    if isinstance(output, str):
        return output
    return content_text(output) or orjson.dumps(response).decode()


def _tools(tools: JsonValue) -> tuple[ToolSpec, ...]:
    if not isinstance(tools, list):
        return ()
    return tuple(
        ToolSpec(str(declared["name"]), _schema(declared))
        for tool in tools
        if isinstance(tool, dict)
        for declared in tool.get("functionDeclarations") or []
        if isinstance(declared, dict) and declared.get("name")
    )


def _schema(declared: JsonObject) -> JsonObject:
    return object_or_empty(declared.get("parametersJsonSchema") or declared.get("parameters"))
