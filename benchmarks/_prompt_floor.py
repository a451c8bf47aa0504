"""The least a Python daemon on acpd's HTTP stack must do for a prompt: the floor under acpd's own
round trip and daemon CPU per prompt (``versus.py --floor`` runs it beside acpd).

It serves as acpd serves: uvloop, uvicorn's server and httptools protocol as acpd configures them
(its ``ProblemHttpToolsProtocol``, which sends a response's head and body in one write; no access
log, lifespan off, no X-Forwarded-* rewriting), Starlette and orjson, with the middleware acpd puts
in front of every request: Starlette's CORS with acpd's origins outside everything, Starlette's
error middleware, acpd's ``SecurityMiddleware`` (Host and Origin allow-lists, the bearer token
from ``ACPD_TOKEN``, the body cap), and the two prompt routes handed straight to their endpoints,
past the router, as acpd does.

Behind it, ONE long-running mock agent (``python -m acpd.testing.mock_agent``, initialized at
start) on stdin/stdout pipes. The routes:

- ``POST /v1/sessions/{id}/prompt`` ``{"prompt": "text hi"}``: ``session/prompt`` to the agent,
  whose session id is ``{id}``; answers the result (``{"stopReason": …}``);
- ``POST /v1/acp/{id}``: one JSON-RPC message relayed to the agent under an id of the floor's own,
  answered with the agent's response under the client's id (a notification: 202);
- ``POST /v1/sessions`` (``session/new``, answers ``{"id": …}``) and ``GET /v1/health``, through the
  router, so that a benchmark opens sessions and waits for the start as it does with acpd.

What it leaves out, which acpd does: persistence (no store, no event log, no commit before an
answer), normalizing the agent's updates into events (they are parsed, to find the response, and
dropped: no stream, no subscribers), request models and their checks, idempotency keys, turns and
queues, permissions, the agent's own requests (never answered: the benchmark's prompts make none),
the spawn server and its warden, more than one agent, session lookup (``{id}`` goes to the agent as
it is), WebSockets and every other route.

    ACPD_TOKEN=secret .venv/bin/python benchmarks/_prompt_floor.py --port 8123
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
import orjson
from anyio.abc import ByteReceiveStream, ByteSendStream
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from acpd.daemon.http_protocol import ProblemHttpToolsProtocol
from acpd.daemon.security import SecurityMiddleware, allowed_origins
from acpd.daemon.uvicorn_parts import Config, Server
from acpd.settings import DaemonConfig

AGENT: Final = (sys.executable, "-m", "acpd.testing.mock_agent")
JSON: Final = "application/json"
Json = dict[str, Any]
Endpoint = Callable[[Request], Awaitable[Response]]


class Agent:
    """One agent process: requests written to its stdin, each answered from its stdout's frames."""

    def __init__(self, stdin: ByteSendStream, stdout: ByteReceiveStream) -> None:
        self._stdin = stdin
        self._stdout = stdout
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Json]] = {}

    async def request(self, method: str, params: object) -> Json:
        """The agent's response message (``result`` or ``error``)."""
        request_id = next(self._ids)
        answer: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = answer
        try:
            await self.notify({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
            return await answer
        finally:
            del self._waiting[request_id]

    async def notify(self, message: Json) -> None:
        await self._stdin.send(orjson.dumps(message) + b"\n")

    async def read(self) -> None:
        """Every frame until the agent's stdout ends: a response goes to its request; the rest is dropped."""
        tail = b""
        async for chunk in self._stdout:
            *lines, tail = (tail + chunk).split(b"\n")
            for line in lines:
                message = orjson.loads(line)
                answer = self._waiting.get(message.get("id")) if "method" not in message else None
                if answer is not None and not answer.done():
                    answer.set_result(message)
        for answer in self._waiting.values():
            answer.set_exception(RuntimeError("the agent's stdout ended"))


def agent_of(request: Request) -> Agent:
    agent: Agent = request.app.state.agent
    return agent


def problem(status: int, detail: str) -> Response:
    return Response(orjson.dumps({"status": status, "detail": detail}), status, media_type="application/problem+json")


async def body_of(request: Request) -> Json | None:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


async def rest_prompt(request: Request) -> Response:
    body = await body_of(request)
    text = body.get("prompt") if body else None
    if not isinstance(text, str):
        return problem(400, 'the body must be {"prompt": "<text>"}')
    params = {"sessionId": request.path_params["id"], "prompt": [{"type": "text", "text": text}]}
    answer = await agent_of(request).request("session/prompt", params)
    if "result" not in answer:
        return problem(502, f"the agent answered {answer.get('error')}")
    return Response(orjson.dumps(answer["result"]), media_type=JSON)


async def acp_post(request: Request) -> Response:
    message = await body_of(request)
    if message is None or not isinstance(message.get("method"), str):
        return problem(400, "the body must be one JSON-RPC request or notification")
    if "id" not in message:
        await agent_of(request).notify(message)
        return Response(status_code=202)
    answer = await agent_of(request).request(message["method"], message.get("params"))
    answer["id"] = message["id"]
    return Response(orjson.dumps(answer), media_type=JSON)


async def create(request: Request) -> Response:
    body = await body_of(request) or {}
    params: Json = {"cwd": body.get("cwd") or os.getcwd(), "mcpServers": []}
    answer = await agent_of(request).request("session/new", params)
    return Response(orjson.dumps({"id": answer["result"]["sessionId"]}), 201, media_type=JSON)


async def health(request: Request) -> Response:
    return Response(orjson.dumps({"status": "ok"}), media_type=JSON)


class HotRoutes:
    """The two prompt routes straight to their endpoints, everything else through the router (as acpd)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        endpoint: Endpoint | None = None
        item_id = ""
        if scope["type"] == "http" and scope["method"] == "POST":
            if path.startswith("/v1/sessions/") and path.endswith("/prompt"):
                endpoint, item_id = rest_prompt, path[len("/v1/sessions/") : -len("/prompt")]
            elif path.startswith("/v1/acp/"):
                endpoint, item_id = acp_post, path[len("/v1/acp/") :]
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        scope["path_params"] = {"id": item_id}
        await (await endpoint(Request(scope, receive, send)))(scope, receive, send)


def app_for(agent: Agent, port: int) -> ASGIApp:
    config = DaemonConfig(host="127.0.0.1", port=port, token=os.environ.get("ACPD_TOKEN"))
    inner = Starlette(
        routes=[Route("/v1/health", health, methods=["GET"]), Route("/v1/sessions", create, methods=["POST"])],
        middleware=[Middleware(SecurityMiddleware, config=config, port=port), Middleware(HotRoutes)],
    )
    inner.state.agent = agent
    origins = sorted(allowed_origins(config, port))
    return CORSMiddleware(inner, allow_origins=origins, allow_methods=["GET", "POST"], allow_headers=["*"])


async def serve(port: int) -> None:
    async with await anyio.open_process(AGENT, stderr=None) as process, anyio.create_task_group() as tg:
        assert process.stdin is not None and process.stdout is not None
        agent = Agent(process.stdin, process.stdout)
        tg.start_soon(agent.read)
        ready = await agent.request("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
        if "result" not in ready:
            raise RuntimeError(f"the agent refused initialize: {ready}")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(2048)
        config = Config(
            app_for(agent, port),
            http=ProblemHttpToolsProtocol,
            ws="none",
            lifespan="off",
            log_level="warning",
            access_log=False,
            log_config=None,
            proxy_headers=False,
        )
        gc.freeze()  # as acpd serve does once loaded: the collector skips what start-up made
        await Server(config).serve(sockets=[sock])
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    words = sys.argv[1:]  # --port N
    logging.basicConfig(level="INFO")
    anyio.run(serve, int(words[words.index("--port") + 1]), backend="asyncio", backend_options={"use_uvloop": True})
