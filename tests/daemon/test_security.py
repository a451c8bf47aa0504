"""The security edge with a token: bearer headers, and ?access_token= on WebSockets only."""

from __future__ import annotations

from typing import Any

import pytest

from acpd.config import DaemonConfig
from acpd.daemon.security import SecurityMiddleware

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token-value"


async def call(
    scope_type: str,
    *,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    extensions: dict[str, Any] | None = None,
) -> list[Any]:
    """Run one request through the middleware; what reached the app, or what was sent back."""
    reached: list[Any] = []
    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    middleware = SecurityMiddleware(app, config=DaemonConfig(token=TOKEN), port=4520)
    scope = {
        "type": scope_type,
        "path": "/v1/rpc",
        "query_string": query,
        "headers": [(b"host", b"127.0.0.1:4520"), *(headers or [])],
        "extensions": extensions or {},
    }
    await middleware(scope, receive, send)
    return reached or sent


async def test_a_websocket_may_carry_the_token_as_access_token() -> None:
    assert await call("websocket", query=f"access_token={TOKEN}".encode()) == ["/v1/rpc"]


async def test_a_websocket_with_a_wrong_token_is_closed_with_policy_violation() -> None:
    sent = await call("websocket", query=b"access_token=wrong")
    assert sent[0]["type"] == "websocket.close"
    assert sent[0]["code"] == 1008


async def test_a_refused_websocket_gets_the_problem_where_the_server_offers_a_denial_response() -> None:
    sent = await call("websocket", query=b"access_token=wrong", extensions={"websocket.http.response": {}})
    assert [m["type"] for m in sent] == ["websocket.http.response.start", "websocket.http.response.body"]
    assert sent[0]["status"] == 401
    assert b"urn:acpd:problem:unauthorized" in sent[1]["body"]


async def test_plain_http_does_not_accept_the_token_in_the_query() -> None:
    sent = await call("http", query=f"access_token={TOKEN}".encode())
    assert sent[0]["status"] == 401


async def test_a_bearer_header_works_for_both() -> None:
    bearer = [(b"authorization", f"Bearer {TOKEN}".encode())]
    assert await call("http", headers=bearer) == ["/v1/rpc"]
    assert await call("websocket", headers=bearer) == ["/v1/rpc"]
