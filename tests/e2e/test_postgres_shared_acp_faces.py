"""End to end: ACP's remote transport (``/acp``) and ``acpd acp`` (stdio, relaying to a running
daemon) against a session another daemon holds (``--share-db``): through daemon B, a client loads
a session daemon A serves, prompts it, gets its updates in log order once each, and answers the
permission A asks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect

from acpd.protocol import jsonio
from acpd.protocol.jsonio import JsonObject, JsonValue
from acpd.rpc.peer import JsonRpcPeer
from acpd.testing.daemon import daemon_env
from acpd.transports.process import ProcessSpec, open_process_transport
from tests.daemon.helpers import all_events, new_session
from tests.e2e.test_postgres_shared_acp import (
    PROMPT,
    AcpSocket,
    chunk_texts,
    rpc,
    turn_updates,
    two_daemons_with_one_token,
)
from tests.postgres import postgres_dsn

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
__all__ = ["postgres_dsn"]

ALLOW: JsonObject = {"outcome": {"outcome": "selected", "optionId": "allow"}}


def decided_by_client(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["payload"]["result"]["_meta"]["acpd"]["decidedBy"]
        for e in events
        if e["payload"].get("result", {}).get("_meta", {}).get("acpd", {}).get("permissionId")
    ]


async def test_an_acp_sdk_style_client_on_acp_of_another_daemon_loads_prompts_and_answers_a_permission(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with two_daemons_with_one_token(tmp_path, postgres_dsn) as (a, b), a.client() as on_a:
        session_id = (await new_session(on_a, tmp_path, policy={"permissions": "ask"}))["id"]
        before = len(await all_events(on_a, session_id))
        asked: list[JsonObject] = []
        with anyio.fail_after(30):
            async with connect(b.url.replace("http://", "ws://") + "/acp", additional_headers=b.headers) as ws:
                acp = AcpSocket(ws)

                async def call(request_id: int, method: str, params: JsonObject) -> JsonObject:
                    """A request's answer; a permission asked meanwhile is allowed."""
                    await ws.send(jsonio.dumps_str(rpc(request_id, method, params)))
                    while True:
                        message = await acp.until(
                            lambda m: (
                                m.get("method") == "session/request_permission"
                                or (m.get("id") == request_id and "method" not in m)
                            )
                        )
                        if message.get("method") != "session/request_permission":
                            return message
                        asked.append(message)
                        await ws.send(jsonio.dumps_str({"jsonrpc": "2.0", "id": message["id"], "result": ALLOW}))

                await call(1, "initialize", {"protocolVersion": 1})
                loaded = await call(
                    2, "session/load", {"sessionId": session_id, "cwd": str(tmp_path), "mcpServers": []}
                )
                assert "result" in loaded, loaded
                replayed = len(acp.received)
                done = await call(
                    3, "session/prompt", {"sessionId": session_id, "prompt": [{"type": "text", "text": PROMPT}]}
                )
        events = await all_events(on_a, session_id)
    assert done["result"] == {"stopReason": "end_turn"}
    assert len(asked) == 1 and decided_by_client(events) == ["client"]
    live = [m["params"] for m in acp.received[replayed:] if m.get("method") == "session/update"]
    assert live == turn_updates(events, before)  # in log order, once each, not the prompt echoed
    assert chunk_texts(live) == ["one", "permission: allow", "two"]


class Editor:
    """An ACP client on stdio that allows what it is asked."""

    def __init__(self) -> None:
        self.updates: list[JsonObject] = []
        self.asked = 0

    async def on_notification(self, method: str, params: JsonValue, message: JsonObject) -> None:
        if method == "session/update" and isinstance(params, dict):
            self.updates.append(params)

    async def on_request(self, method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        assert method == "session/request_permission"
        self.asked += 1
        return ALLOW


async def test_acpd_acp_relaying_to_another_daemon_loads_prompts_and_answers_a_permission(
    tmp_path: Path, postgres_dsn: str
) -> None:
    editor = Editor()
    async with two_daemons_with_one_token(tmp_path, postgres_dsn) as (a, b), a.client() as on_a:
        session_id = (await new_session(on_a, tmp_path, policy={"permissions": "ask"}))["id"]
        before = len(await all_events(on_a, session_id))
        env = {**daemon_env(tmp_path / "editor"), "ACPD_TOKEN": b.token or ""}
        spec = ProcessSpec(sys.executable, ("-m", "acpd", "acp", "--url", b.url), env=env)
        async with open_process_transport(spec) as transport, anyio.create_task_group() as tg:
            peer = JsonRpcPeer(transport, on_request=editor.on_request, on_notification=editor.on_notification)
            tg.start_soon(peer.run)
            with anyio.fail_after(30):
                await peer.request("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
                params = {"sessionId": session_id, "cwd": str(tmp_path), "mcpServers": []}
                await peer.request("session/load", params)
                replayed = len(editor.updates)
                prompt = {"sessionId": session_id, "prompt": [{"type": "text", "text": PROMPT}]}
                done = await peer.request("session/prompt", prompt)
            await peer.aclose()
        events = await all_events(on_a, session_id)
    assert done == {"stopReason": "end_turn"}
    assert editor.asked == 1 and decided_by_client(events) == ["client"]
    live = editor.updates[replayed:]
    assert live == turn_updates(events, before)
    assert chunk_texts(live) == ["one", "permission: allow", "two"]
