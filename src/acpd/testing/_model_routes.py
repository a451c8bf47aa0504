"""Test kit, mock model server: the HTTP surface. Thin: route, log, hand model requests to ``respond``.

Every request except the control API's (``/_mock/...``) is logged. Routing quirks: a ``HEAD`` on any
path is 200 (agents probe base URLs), and a known path with the wrong method is 404 like any unknown
path, never 405, so agents see one error shape.
"""

from __future__ import annotations

import logging
from typing import Final

import orjson
from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from acpd.protocol.jsonio import JsonObject
from acpd.testing._model_anthropic import ANTHROPIC, count_tokens_body
from acpd.testing._model_exchange import error_response, install_cut_log_filter, respond
from acpd.testing._model_gemini import GeminiApi
from acpd.testing._model_gemini import count_tokens_body as gemini_count_tokens_body
from acpd.testing._model_openai import RESPONSES
from acpd.testing._model_openai_chat import CHAT
from acpd.testing._model_replies import ErrorReply, Reply
from acpd.testing._model_state import MockState

logger = logging.getLogger(__name__)

MOCK_MODEL_ID: Final = "mock-model"
GEMINI_GENERATE: Final = frozenset({"generateContent", "streamGenerateContent"})
ALL_METHODS: Final = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_REPLIES: Final = TypeAdapter(list[Reply])


def create_app(state: MockState) -> Starlette:
    install_cut_log_filter()
    endpoints = _Endpoints(state)
    routes = [
        Route("/{rest:path}", endpoints.simple, methods=["HEAD"]),  # first: HEAD on any path, POST-only ones too
        Route("/v1/messages", endpoints.messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", endpoints.count_tokens, methods=["POST"]),
        Route("/v1/responses", endpoints.responses, methods=["POST"]),
        Route("/v1/chat/completions", endpoints.chat, methods=["POST"]),
        Route("/v1beta/models/{target:path}", endpoints.gemini, methods=["POST"]),
        Route("/v1/models", endpoints.simple, methods=["GET"]),
        Route("/health", endpoints.simple, methods=["GET"]),
        Route("/_mock/script", endpoints.script, methods=["POST"]),
        Route("/_mock/requests", endpoints.log, methods=["GET", "DELETE"]),
        Route("/{rest:path}", endpoints.not_found, methods=ALL_METHODS),
    ]
    return Starlette(routes=routes)


class _Endpoints:
    def __init__(self, state: MockState) -> None:
        self.state = state

    async def messages(self, request: Request) -> Response:
        return await respond(self.state, request, ANTHROPIC)

    async def responses(self, request: Request) -> Response:
        return await respond(self.state, request, RESPONSES)

    async def chat(self, request: Request) -> Response:
        return await respond(self.state, request, CHAT)

    async def gemini(self, request: Request) -> Response:
        target, _, method = request.path_params["target"].rpartition(":")
        if method in GEMINI_GENERATE:
            api = GeminiApi(target, method, alt_sse=request.query_params.get("alt") == "sse")
            return await respond(self.state, request, api)
        if method == "countTokens":
            body = await self._record_body(request, "gemini")
            return JSONResponse(gemini_count_tokens_body(len(body)))
        return await self.not_found(request)

    async def count_tokens(self, request: Request) -> Response:
        body = await self._record_body(request, "anthropic")
        return JSONResponse(count_tokens_body(len(body)))

    async def simple(self, request: Request) -> Response:
        self.state.record(request, api="other")
        if request.method == "HEAD":
            return Response()
        return JSONResponse(_models() if request.url.path == "/v1/models" else {"status": "ok"})

    async def not_found(self, request: Request) -> Response:
        await self._record_body(request, "other")
        return error_response(ANTHROPIC, ErrorReply(status=404, message=f"mock: no route {request.url.path}"))

    async def script(self, request: Request) -> Response:
        try:
            specs = orjson.loads(await request.body())
            replies = _REPLIES.validate_python(specs if isinstance(specs, list) else [specs])
        except (orjson.JSONDecodeError, ValidationError) as exc:
            return error_response(ANTHROPIC, ErrorReply(status=400, message=f"bad reply specs: {exc}"))
        self.state.push(replies)
        return JSONResponse({"queued": self.state.queued()})

    async def log(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.clear()
            return Response(status_code=204)
        entries = [entry.model_dump(mode="json") for entry in self.state.requests]
        return Response(orjson.dumps(entries), media_type="application/json")

    async def _record_body(self, request: Request, api: str) -> bytes:
        body = await request.body()
        self.state.record(request, api=api, body=_json_or_none(body), body_bytes=len(body))
        return body


def _models() -> JsonObject:
    """One model, in a shape both the Anthropic and the OpenAI model lists accept."""
    entry = {
        "id": MOCK_MODEL_ID,
        "type": "model",
        "object": "model",
        "display_name": "Mock model",
        "created_at": "2025-01-01T00:00:00Z",
        "created": 1735689600,
        "owned_by": "acpd",
    }
    return {"object": "list", "data": [entry], "has_more": False, "first_id": MOCK_MODEL_ID, "last_id": MOCK_MODEL_ID}


def _json_or_none(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
