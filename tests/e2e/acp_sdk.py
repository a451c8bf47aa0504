"""The official ACP Python SDK as a client of a running daemon, over ``/acp``: its own
``create_http_stream`` and ``create_websocket_stream``, unchanged, and a Client that records what
it is sent and answers permission requests with a chosen option."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
from acp import connect_to_agent
from acp.client.connection import ClientSideConnection
from acp.http import create_http_stream
from acp.schema import AllowedOutcome, RequestPermissionResponse
from acp.ws import create_websocket_stream

from acpd.testing.daemon import Daemon

Remote = Literal["http", "ws"]


class RecordingClient:
    """An ACP client: keeps every ``session/update`` in arrival order; allows each permission."""

    def __init__(self, option: str = "allow") -> None:
        self.updates: list[tuple[str, dict[str, Any]]] = []
        self.asked = 0
        self.extensions: list[str] = []
        self._option = option
        self._changed = anyio.Event()

    async def request_permission(self, session_id: str, tool_call: Any, options: Any, **kwargs: Any) -> Any:
        self.asked += 1
        return RequestPermissionResponse(outcome=AllowedOutcome(outcome="selected", option_id=self._option))

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        self.extensions.append(f"_{method}")  # the SDK hands it over without its leading "_"

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        self.updates.append((session_id, update.model_dump(mode="json", by_alias=True, exclude_none=True)))
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def wait_for(self, text: str) -> None:
        """Until an agent message chunk with ``text`` arrived (callers bound the wait)."""
        while text not in self.texts():
            await self._changed.wait()

    def texts(self) -> list[str]:
        return [text for _, u in self.updates if (text := chunk_text(u)) is not None]

    def kinds(self) -> list[str]:
        return [u["sessionUpdate"] for _, u in self.updates]


def chunk_text(update: dict[str, Any]) -> str | None:
    if update.get("sessionUpdate") != "agent_message_chunk":
        return None
    content = update.get("content")
    return content.get("text") if isinstance(content, dict) else None


def remote_url(daemon: Daemon, remote: Remote, agent: str = "mock") -> str:
    base = daemon.url.replace("http://", "ws://") if remote == "ws" else daemon.url
    return f"{base}/acp?agent={agent}"


@asynccontextmanager
async def sdk_client(daemon: Daemon, remote: Remote, client: RecordingClient) -> AsyncIterator[ClientSideConnection]:
    """The SDK's connection to the daemon's ``/acp``, initialized; closed (DELETE for HTTP) on exit."""
    url = remote_url(daemon, remote)
    if remote == "http":
        transport = create_http_stream(url, headers=daemon.headers)
    else:
        transport = await create_websocket_stream(url, headers=daemon.headers)
    connection = connect_to_agent(client, transport)  # type: ignore[arg-type]
    try:
        await connection.initialize(protocol_version=1)
        yield connection
    finally:
        await connection.close()
