"""A minimal ACP client for in-process tests of acpd's ACP face: it records what it receives and
answers permission requests as the test tells it."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from acpd.daemon.acp_face import AcpConnection
from acpd.daemon.manager import SessionManager
from acpd.protocol import jsonio
from acpd.protocol.framing import Frame
from acpd.protocol.jsonio import JsonObject, JsonValue
from acpd.rpc.peer import JsonRpcPeer
from acpd.transports.base import Transport
from acpd.transports.memory import create_memory_transport_pair

PermissionAnswer = Callable[[JsonObject], JsonObject | Awaitable[JsonObject]]
"""The outcome to send, or raise ``RpcError`` to answer with that error."""

CAPS_NONE: JsonObject = {"fs": {"readTextFile": False, "writeTextFile": False}, "terminal": False}


TERMINAL_ANSWERS: dict[str, JsonObject] = {
    "terminal/create": {"terminalId": "editor-term-1"},
    "terminal/output": {"output": "output shown in the editor\n", "truncated": False, "exitStatus": {"exitCode": 0}},
    "terminal/wait_for_exit": {"exitCode": 0},
    "terminal/kill": {},
    "terminal/release": {},
}
"""A pretend editor terminal: what an editor that advertised ``terminal`` answers."""


def allow(params: JsonObject) -> JsonObject:
    option = next(o for o in params["options"] if o["kind"].startswith("allow"))
    return {"outcome": {"outcome": "selected", "optionId": option["optionId"]}}


class Wiretap:
    """A transport that keeps a copy of every message it carries, as decoded JSON."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self.sent: list[JsonObject] = []
        self.received: list[JsonObject] = []

    async def send(self, frame: bytes) -> None:
        self._keep(self.sent, frame)
        await self._inner.send(frame)

    async def receive(self) -> list[Frame]:
        frames = await self._inner.receive()
        for frame in frames:
            if isinstance(frame, bytes | bytearray):
                self._keep(self.received, frame)
        return frames

    async def aclose(self) -> None:
        await self._inner.aclose()

    @staticmethod
    def _keep(into: list[JsonObject], frame: bytes | bytearray) -> None:
        message = jsonio.loads(frame)
        if isinstance(message, dict):
            into.append(message)


class AcpTestClient:
    def __init__(self, peer_factory: Callable[[AcpTestClient], JsonRpcPeer], wire: Wiretap) -> None:
        self.wire = wire
        """Every frame the client sent and received, for schema checks."""
        self.notifications: list[JsonObject] = []
        self.permission_requests: list[JsonObject] = []
        self.client_calls: list[tuple[str, JsonObject]] = []
        self.answer_permission: PermissionAnswer | None = allow
        self.permission_asked = anyio.Event()
        self.files: dict[str, str] = {}
        self._changed = anyio.Event()
        self.peer = peer_factory(self)

    async def request(self, method: str, params: JsonValue = None) -> Any:
        return await self.peer.request(method, params)

    async def initialize(self, caps: JsonObject | None = None) -> Any:
        return await self.request("initialize", {"protocolVersion": 1, "clientCapabilities": caps or CAPS_NONE})

    async def start(self, cwd: str, caps: JsonObject | None = None, **meta: Any) -> str:
        """Initialize, then create a session; its id."""
        await self.initialize(caps)
        session = await self.new_session(cwd, **meta)
        return str(session["sessionId"])

    async def new_session(self, cwd: str, **meta: Any) -> Any:
        params: JsonObject = {"cwd": cwd, "mcpServers": []}
        if meta:
            params["_meta"] = {"acpd": meta}
        return await self.request("session/new", params)

    async def prompt(self, session_id: str, text: str) -> Any:
        return await self.request(
            "session/prompt", {"sessionId": session_id, "prompt": [{"type": "text", "text": text}]}
        )

    def updates(self, session_id: str | None = None, kind: str | None = None) -> list[JsonObject]:
        found = [
            n["params"]["update"]
            for n in self.notifications
            if n["method"] == "session/update" and (session_id is None or n["params"]["sessionId"] == session_id)
        ]
        return [u for u in found if kind is None or u.get("sessionUpdate") == kind]

    def texts(self, session_id: str | None = None) -> str:
        return "".join(u["content"].get("text", "") for u in self.updates(session_id, "agent_message_chunk"))

    async def wait_until(self, check: Callable[[], bool]) -> None:
        while not check():
            changed = self._changed
            await changed.wait()

    def _notice(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def on_notification(self, method: str, params: JsonValue, message: JsonObject) -> None:
        self.notifications.append(message)
        self._notice()

    async def on_request(self, method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        assert isinstance(params, dict)
        if method == "session/request_permission":
            self.permission_requests.append(params)
            self.permission_asked.set()
            self._notice()
            if self.answer_permission is None:
                await anyio.sleep_forever()  # a human who never answers
            assert self.answer_permission is not None
            answer = self.answer_permission(params)
            return await answer if inspect.isawaitable(answer) else answer
        self.client_calls.append((method, params))
        self._notice()
        if method == "fs/read_text_file":
            return {"content": self.files.get(params["path"], "")}
        if method == "fs/write_text_file":
            self.files[params["path"]] = params["content"]
            return {}
        if method.startswith("terminal/"):
            return TERMINAL_ANSWERS[method]
        raise AssertionError(f"unexpected client call {method}")


@asynccontextmanager
async def acp_client(manager: SessionManager, **connection: Any) -> AsyncIterator[AcpTestClient]:
    """An ACP client connected in memory to a new ``AcpConnection`` on ``manager``."""
    server_end, client_end = create_memory_transport_pair()
    daemon_side = AcpConnection(manager, server_end, **connection)
    wire = Wiretap(client_end)

    def peer_for(client: AcpTestClient) -> JsonRpcPeer:
        return JsonRpcPeer(wire, on_request=client.on_request, on_notification=client.on_notification, name="client")

    client = AcpTestClient(peer_for, wire)
    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon_side.serve)
        tg.start_soon(client.peer.run)
        try:
            yield client
        finally:
            await client.peer.aclose()
            await daemon_side.aclose()
