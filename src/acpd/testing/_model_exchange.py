"""Test kit, mock model server: one model request, answered. The API-independent half of every endpoint.

Read the JSON body, let the API module reduce it to a ``Turn``, plan, log, wait, then send the API
module's rendering (an error, a JSON message or a paced stream). Knows no API's wire shapes: those
live in ``_model_anthropic``, ``_model_openai`` and ``_model_gemini``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive

from acpd.protocol.jsonio import JsonObject, JsonValue
from acpd.testing._model_plan import Family, Plan, TokenCount, Turn
from acpd.testing._model_replies import ErrorReply, Reply
from acpd.testing._model_state import MockState

logger = logging.getLogger(__name__)

TEXT_CHUNK_CHARS: Final = 16
SSE_MEDIA_TYPE: Final = "text/event-stream"
JSON_MEDIA_TYPE: Final = "application/json"
BAD_BODY: Final = ErrorReply(status=400, message="the request body must be a JSON object")


class StreamCut(Exception):
    """Raised mid-response (``cut``): uvicorn then closes the connection without ending the body."""


class _DropStreamCuts(logging.Filter):
    """uvicorn logs every exception that escapes the app; a deliberate cut is not worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCut))


@dataclass(frozen=True, slots=True)
class Answer:
    """Everything an API module needs to render one planned reply."""

    model: str
    plan: Plan
    usage: TokenCount
    new_id: Callable[[str], str]
    body: JsonObject
    """The request's body (some options shape the answer, e.g. Chat's ``stream_options``)."""
    created: int = 0
    """Unix seconds, for the APIs that stamp their answers."""

    @property
    def reply(self) -> Reply:
        return self.plan.reply


@dataclass(frozen=True, slots=True)
class Streamed:
    chunks: Sequence[bytes]
    media_type: str = SSE_MEDIA_TYPE


class Api(Protocol):
    """One model API's wire shapes (a module-level object, or one per request when the path matters)."""

    @property
    def name(self) -> str: ...
    @property
    def family(self) -> Family: ...
    def read_turn(self, body: JsonObject) -> Turn: ...
    def model(self, body: JsonObject) -> str: ...
    def wants_stream(self, body: JsonObject) -> bool: ...
    def error_body(self, error: ErrorReply) -> JsonObject: ...
    def render_message(self, answer: Answer) -> JsonObject: ...
    def render_stream(self, answer: Answer) -> Streamed: ...


def install_cut_log_filter() -> None:
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _DropStreamCuts) for existing in uvicorn_errors.filters):
        uvicorn_errors.addFilter(_DropStreamCuts())


async def respond(state: MockState, request: Request, api: Api) -> Response:
    raw = await request.body()
    body = _json_object(raw)
    if body is None:
        state.record(request, api=api.name, body_bytes=len(raw))
        return error_response(api, BAD_BODY)
    plan = state.plan(api.read_turn(body), api.family)
    usage = plan.usage(len(raw))
    state.record(request, api=api.name, body=body, body_bytes=len(raw), plan=plan, usage=usage)
    if plan.reply.delay_seconds and not await sleep_unless_disconnected(request.receive, plan.reply.delay_seconds):
        return Response(status_code=499)  # nobody is listening any more
    if plan.reply.error is not None:
        return error_response(api, plan.reply.error)
    answer = Answer(api.model(body), plan, usage, state.next_id, body, int(time.time()))
    if api.wants_stream(body):
        streamed = api.render_stream(answer)
        chunks = paced(streamed.chunks, delay_seconds=state.event_delay_seconds, cut=plan.reply.cut)
        return StreamingResponse(chunks, media_type=streamed.media_type)
    return json_response(api.render_message(answer), cut=plan.reply.cut)


def error_response(api: Api, error: ErrorReply) -> Response:
    headers = {} if error.retry_after_seconds is None else {"retry-after": f"{error.retry_after_seconds:g}"}
    return JSONResponse(api.error_body(error), status_code=error.status, headers=headers)


def json_response(body: JsonObject, *, cut: bool = False) -> Response:
    data = orjson.dumps(body)
    if not cut:
        return Response(data, media_type=JSON_MEDIA_TYPE)
    half = len(data) // 2
    return StreamingResponse(paced([data[:half], data[half:]], cut=True), media_type=JSON_MEDIA_TYPE)


async def paced(chunks: Sequence[bytes], *, delay_seconds: float = 0.0, cut: bool = False) -> AsyncIterator[bytes]:
    """The chunks, ``delay_seconds`` apart; with ``cut``, only the first half, then the connection drops."""
    count = max(1, len(chunks) // 2) if cut else len(chunks)
    for index, chunk in enumerate(chunks[:count]):
        if index and delay_seconds:
            await anyio.sleep(delay_seconds)
        yield chunk
    if cut:
        raise StreamCut("mock: cut")


async def sleep_unless_disconnected(receive: Receive, seconds: float) -> bool:
    """Sleep; ``False`` if the client hung up first (a cancel test must not leave the handler sleeping)."""
    disconnected = False

    async def watch(scope: anyio.CancelScope) -> None:
        nonlocal disconnected
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        scope.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(watch, group.cancel_scope)
        await anyio.sleep(seconds)
        group.cancel_scope.cancel()
    return not disconnected


def sse(data: JsonObject | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else orjson.dumps(data).decode()
    return (f"event: {event}\n" if event else "").encode() + f"data: {payload}\n\n".encode()


def text_chunks(text: str) -> list[str]:
    return [text[start : start + TEXT_CHUNK_CHARS] for start in range(0, len(text), TEXT_CHUNK_CHARS)]


def content_text(content: JsonValue) -> str:
    """A string, or the ``text`` fields of a list of parts joined: every API's shape for message content."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def object_or_empty(value: JsonValue) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _json_object(raw: bytes) -> JsonObject | None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None
