"""Every problem ``type`` the spec documents is produced by a request here, with the documented
status, as ``application/problem+json``, and listed for that operation and status in the spec.

Most are produced as a client would meet them. The faults a client cannot cause on demand (a store
that fails, an agent that errs mid-call, a bug) are injected where the route calls the session
manager: what is tested here is that the route answers each with its documented problem; their real
causes are tested in tests/daemon (test_store_faults, test_agent_start, test_agent_bounds).
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio
import httpx
import pytest

from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon import openapi
from acpd.daemon.acp_http import AcpConnectionClosed, AcpHttpHub
from acpd.daemon.app import create_app
from acpd.daemon.manager import SessionManager
from acpd.errors import (
    AgentError,
    Conflict,
    ConnectionClosed,
    RpcError,
    SessionClosed,
    StoreError,
    StoreFull,
    StoreLocked,
)

from .conftest import TOKEN
from .live import live_daemon

pytestmark = pytest.mark.anyio

Produce = Callable[[httpx.AsyncClient, "Setting"], Awaitable[httpx.Response]] | None
EDGE: Final = ""
"""Answered before any operation is chosen (a refused CORS preflight, a method the route does not
take): documented once, in the spec's ``x-problem-types``."""
SERVER: Final = "server"
"""Answered by the HTTP server before the app (raw bytes it cannot parse, a WebSocket handshake):
produced against a real daemon by ``test_the_server_answers_what_it_refuses_itself_as_problems``."""
FOREIGN: Final = "http://evil.example"
HOME: Final = "http://127.0.0.1:4520"


class Setting:
    """What a producer may use: the session made for it, its directory, the manager to inject into."""

    def __init__(self, manager: SessionManager, workdir: Path, session_id: str, monkeypatch: pytest.MonkeyPatch):
        self.manager = manager
        self.workdir = workdir
        self.session_id = session_id
        self.monkeypatch = monkeypatch

    def fail(self, method: str, error: BaseException) -> None:
        """The manager's ``method`` raises ``error`` from now on."""

        async def failing(*args: Any, **kwargs: Any) -> Any:
            raise error

        self.monkeypatch.setattr(self.manager, method, failing)


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    mute = AgentConfig(
        command=sys.executable,
        args=("-m", "acpd.testing.mock_agent", "--ignore", "initialize"),
        start_timeout_seconds=0.3,
    )
    agents = {
        "mute": mute,
        "dies": AgentConfig(command="sh", args=("-c", "exit 3")),
        "absent": AgentConfig(command="acpd-no-such-program-anywhere"),
    }
    return DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", token=TOKEN, agents=agents)


def create(**body: Any) -> Produce:
    async def produce(client: httpx.AsyncClient, at: Setting) -> httpx.Response:
        return await client.post("/v1/sessions", json={"cwd": str(at.workdir), **body})

    return produce


def injected(method: str, error: BaseException, route: str = "list") -> Produce:
    async def produce(client: httpx.AsyncClient, at: Setting) -> httpx.Response:
        at.fail(method, error)
        if route == "prompt":
            return await client.post(f"/v1/sessions/{at.session_id}/prompt", json={"prompt": "hi"})
        if route == "permission":
            return await client.post(f"/v1/sessions/{at.session_id}/permissions/p1", json={"reply": "once"})
        return await client.get("/v1/sessions")

    return produce


async def busy(client: httpx.AsyncClient, at: Setting) -> httpx.Response:
    url = f"/v1/sessions/{at.session_id}/prompt"
    async with anyio.create_task_group() as group:
        group.start_soon(partial(client.post, url, json={"prompt": "permission edit"}))  # waits for a reply
        with anyio.fail_after(10):
            while not (await client.get(f"/v1/sessions/{at.session_id}/permissions")).json()["items"]:
                await anyio.wait_all_tasks_blocked()
        refused = await client.post(url, json={"prompt": "hi", "queue": False})
        await client.post(f"/v1/sessions/{at.session_id}/cancel")
    return refused


async def a_bug(client: httpx.AsyncClient, at: Setting) -> httpx.Response:
    at.fail("list_sessions", RuntimeError("a bug"))
    # the app re-raises a bug to its server (which logs it) once answered: take the answer, not the raise
    transport = httpx.ASGITransport(app=create_app(at.manager), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=HOME, headers=client.headers) as raw:
        return await raw.get("/v1/sessions")


async def closed_connection(client: httpx.AsyncClient, at: Setting) -> httpx.Response:
    async def closed(*args: Any, **kwargs: Any) -> Any:
        raise AcpConnectionClosed("the ACP connection was closed before it answered")

    at.monkeypatch.setattr(AcpHttpHub, "connection", closed)
    message = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": 1}}
    return await client.post("/v1/acp/conn-1", json=message)


PRODUCERS: Final[dict[str, tuple[str, Produce]]] = {
    "invalid-input": ("createSession", create(surprise=1)),
    "agent-not-found": ("createSession", create(agent="no-such-agent")),
    "invalid-setting": ("createSession", create(agent="mock", model="no-such-model")),
    "session-exists": ("createSession", lambda c, at: c.post("/v1/sessions", json={"id": at.session_id})),
    "agent-exited": ("createSession", create(agent="dies")),
    "agent-start-timeout": ("createSession", create(agent="mute")),
    "agent-unavailable": ("createSession", create(agent="absent")),
    "unsupported-media-type": (
        "createSession",
        lambda c, at: c.post("/v1/sessions", content=b"{}", headers={"Content-Type": "text/plain"}),
    ),
    "payload-too-large": ("createSession", lambda c, at: c.post("/v1/sessions", content=b" " * (2**25))),
    "unauthorized": ("listSessions", lambda c, at: c.get("/v1/sessions", headers={"Authorization": "Bearer no"})),
    "origin-not-allowed": ("listSessions", lambda c, at: c.get("/v1/sessions", headers={"Origin": FOREIGN})),
    "host-not-allowed": ("listSessions", lambda c, at: c.get("/v1/sessions", headers={"Host": "evil.example"})),
    "cors-refused": (
        EDGE,
        lambda c, at: c.options("/v1/sessions", headers={"Origin": HOME, "Access-Control-Request-Method": "PUT"}),
    ),
    "method-not-allowed": (EDGE, lambda c, at: c.put("/v1/sessions")),
    "malformed-request": (SERVER, None),
    "forbidden": (SERVER, None),
    "not-found": ("docsAsset", lambda c, at: c.get("/docs/no-such-asset.js")),
    "session-not-found": ("getSession", lambda c, at: c.get("/v1/sessions/no-such-session")),
    "permission-not-found": (
        "answerPermission",
        lambda c, at: c.post(f"/v1/sessions/{at.session_id}/permissions/p404", json={"reply": "once"}),
    ),
    "acp-connection-not-found": ("streamAcpMessages", lambda c, at: c.get("/v1/acp/no-such-connection")),
    "upgrade-required": ("rpc", lambda c, at: c.get("/v1/rpc")),
    "not-acceptable": ("streamAcpRemote", lambda c, at: c.get("/acp", headers={"Accept": "application/json"})),
    "batch-not-supported": ("postAcpRemoteMessage", lambda c, at: c.post("/acp", json=[{"jsonrpc": "2.0"}])),
    "session-busy": ("prompt", busy),
    "session-closed": ("prompt", injected("prompt", SessionClosed("the session was closed"), "prompt")),
    "agent-error": ("prompt", injected("prompt", AgentError("the agent failed"), "prompt")),
    "rpc-error": ("prompt", injected("prompt", RpcError(-32603, "Internal error"), "prompt")),
    "connection-closed": ("prompt", injected("prompt", ConnectionClosed("closed"), "prompt")),
    "conflict": ("answerPermission", injected("runtime", Conflict("settled by another client"), "permission")),
    "acp-connection-closed": ("postAcpMessage", closed_connection),
    "internal-error": ("listSessions", a_bug),
    "store-error": ("listSessions", injected("list_sessions", StoreError("the database failed"))),
    "store-full": ("listSessions", injected("list_sessions", StoreFull("database or disk is full"))),
    "store-locked": ("listSessions", injected("list_sessions", StoreLocked("another acpd owns it"))),
}


def test_every_documented_problem_type_has_a_producer_here() -> None:
    assert set(PRODUCERS) == set(openapi.PROBLEMS)


@pytest.mark.parametrize("kind", sorted(k for k, (where, _) in PRODUCERS.items() if where != SERVER))
async def test_a_documented_problem_type_is_produced_with_its_status_for_its_operation(
    kind: str, client: httpx.AsyncClient, manager: SessionManager, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await client.post("/v1/sessions", json={"id": "target", "agent": "mock", "cwd": str(workdir)})
    assert created.status_code == 201, created.text
    operation_id, produce = PRODUCERS[kind]
    assert produce is not None

    with anyio.fail_after(20):
        response = await produce(client, Setting(manager, workdir, "target", monkeypatch))

    status = openapi.PROBLEMS[kind][0]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"urn:acpd:problem:{kind}"
    if operation_id == EDGE:
        assert openapi.build_spec()["x-problem-types"][f"urn:acpd:problem:{kind}"]["status"] == status
    else:
        assert f"urn:acpd:problem:{kind}" in documented(operation_id, status)


def documented(operation_id: str, status: int) -> list[str]:
    """The problem types the spec lists for this operation and status."""
    spec = openapi.build_spec()
    for item in spec["paths"].values():
        for operation in item.values():
            if operation["operationId"] == operation_id:
                schema = operation["responses"][str(status)]["content"]["application/problem+json"]["schema"]
                types: list[str] = schema["allOf"][1]["properties"]["type"]["enum"]
                return types
    raise AssertionError(f"no operation {operation_id!r}")


HANDSHAKE: Final = (
    b"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nAuthorization: Bearer {token}\r\n\r\n"
)


@pytest.mark.parametrize(
    ("kind", "request_bytes"),
    [
        ("malformed-request", b"NOT HTTP AT ALL\r\n\r\n"),
        ("malformed-request", HANDSHAKE.replace(b"{path}", b"/v1/rpc").replace(b"{key}", b"not-a-key")),
        (
            "forbidden",
            HANDSHAKE.replace(b"{path}", b"/v1/no-such-socket").replace(b"{key}", b"dGhlIHNhbXBsZSBub25jZQ=="),
        ),
    ],
)
def test_the_server_answers_what_it_refuses_itself_as_problems(kind: str, request_bytes: bytes, tmp_path: Path) -> None:
    with live_daemon(tmp_path) as live:
        port = int(live.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(request_bytes.replace(b"{token}", live.token.encode()))
            answer = b"".join(iter(lambda: conn.recv(65536), b""))

    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert status == openapi.PROBLEMS[kind][0], answer
    assert b"content-type: application/problem+json" in head.lower()
    assert json.loads(body)["type"] == f"urn:acpd:problem:{kind}"
    assert f"urn:acpd:problem:{kind}" in openapi.build_spec()["x-problem-types"]
