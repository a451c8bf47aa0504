"""End to end: the ACP faces of a daemon that does not hold a session (``--share-db``): an ACP
client on daemon B loads and prompts a session daemon A serves, receives its updates from the
table in log order, once each, and answers a permission A asks; ACP-over-HTTP on B likewise."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect

from acpd.protocol import jsonio
from acpd.protocol.jsonio import JsonObject
from acpd.testing.daemon import Daemon, running_daemon
from tests.daemon.helpers import all_events, new_session
from tests.e2e.sse import sse_events
from tests.postgres import postgres_dsn

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
__all__ = ["postgres_dsn"]

PROMPT = "text one\npermission edit\ntext two"


@contextlib.asynccontextmanager
async def two_daemons_with_one_token(tmp_path: Path, dsn: str) -> AsyncIterator[tuple[Daemon, Daemon]]:
    """Daemons A and B on one database, sharing one bearer token (as they must)."""
    token = secrets.token_urlsafe(24)
    for name in ("a", "b"):
        data = tmp_path / name / "data"
        data.mkdir(parents=True, mode=0o700)
        (data / "token").write_text(token)
        (data / "token").chmod(0o600)
    async with (
        running_daemon(tmp_path / "a", "--db", dsn, "--share-db", "--data-dir", str(tmp_path / "a" / "data")) as a,
        running_daemon(tmp_path / "b", "--db", dsn, "--share-db", "--data-dir", str(tmp_path / "b" / "data")) as b,
    ):
        assert a.token == b.token == token
        yield a, b


def rpc(request_id: int | None, method: str, params: JsonObject) -> JsonObject:
    message: JsonObject = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        message["id"] = request_id
    return message


def turn_updates(events: list[dict[str, Any]], after: int) -> list[JsonObject]:
    """The agent's ``session/update``s the log holds after seq ``after``, in log order."""
    return [
        e["payload"]["params"]
        for e in events
        if e["seq"] > after and e["payload"].get("method") == "session/update" and e["sender"] == "agent"
    ]


def chunk_texts(updates: list[JsonObject]) -> list[object]:
    return [
        u["update"]["content"].get("text") for u in updates if u["update"]["sessionUpdate"] == "agent_message_chunk"
    ]


async def test_an_acp_client_on_another_daemon_loads_and_prompts_a_session_and_answers_its_permission(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with two_daemons_with_one_token(tmp_path, postgres_dsn) as (a, b), a.client() as on_a:
        session_id = (await new_session(on_a, tmp_path, policy={"permissions": "ask"}))["id"]
        before = len(await all_events(on_a, session_id))
        url = b.url.replace("http://", "ws://") + "/v1/rpc"
        received: list[JsonObject] = []
        asked: list[JsonObject] = []
        with anyio.fail_after(30):
            async with connect(url, additional_headers=b.headers) as ws:

                async def call(request_id: int, method: str, params: JsonObject) -> JsonObject:
                    await ws.send(jsonio.dumps_str(rpc(request_id, method, params)))
                    while True:
                        message: JsonObject = jsonio.loads(await ws.recv())
                        if message.get("method") == "session/request_permission":
                            asked.append(message)
                            reply = {"outcome": {"outcome": "selected", "optionId": "allow"}}
                            await ws.send(jsonio.dumps_str({"jsonrpc": "2.0", "id": message["id"], "result": reply}))
                        elif message.get("id") == request_id and "method" not in message:
                            return message
                        else:
                            received.append(message)

                await call(1, "initialize", {"protocolVersion": 1})
                loaded = await call(
                    2, "session/load", {"sessionId": session_id, "cwd": str(tmp_path), "mcpServers": []}
                )
                assert "result" in loaded, loaded
                replayed = len(received)
                prompt = {"sessionId": session_id, "prompt": [{"type": "text", "text": PROMPT}]}
                done = await call(3, "session/prompt", prompt)
        events = await all_events(on_a, session_id)
    assert done["result"] == {"stopReason": "end_turn"}
    assert len(asked) == 1
    decided = [e for e in events if e["payload"].get("result", {}).get("_meta", {}).get("acpd", {}).get("permissionId")]
    assert decided[0]["payload"]["result"]["_meta"]["acpd"]["decidedBy"] == "client"
    live = [m["params"] for m in received[replayed:] if m.get("method") == "session/update"]
    # exactly the turn's updates as logged on A: none missing, none repeated, in log order, and
    # not the client's own prompt echoed back
    assert live == turn_updates(events, before)
    assert chunk_texts(live) == ["one", "permission: allow", "two"]


async def test_acp_over_http_on_another_daemon_prompts_a_session_it_does_not_serve(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with (
        two_daemons_with_one_token(tmp_path, postgres_dsn) as (a, b),
        a.client() as on_a,
        b.client() as on_b,
    ):
        session_id = (await new_session(on_a, tmp_path))["id"]
        before = len(await all_events(on_a, session_id))
        seen: list[JsonObject] = []
        with anyio.fail_after(30):
            await on_b.post("/v1/acp/orchestrator?agent=mock", json=rpc(1, "initialize", {"protocolVersion": 1}))
            resumed = await on_b.post(
                "/v1/acp/orchestrator", json=rpc(2, "session/resume", {"sessionId": session_id, "cwd": str(tmp_path)})
            )
            assert "result" in resumed.json(), resumed.text
            async with on_b.stream("GET", "/v1/acp/orchestrator") as stream:
                answer: dict[str, Any] = {}

                async def prompt() -> None:
                    params = {"sessionId": session_id, "prompt": [{"type": "text", "text": "chunks 500"}]}
                    answer.update(
                        (await on_b.post("/v1/acp/orchestrator", json=rpc(3, "session/prompt", params))).json()
                    )

                async with anyio.create_task_group() as tg:
                    tg.start_soon(prompt)
                    async for line in stream.aiter_lines():
                        if line.startswith("data: "):
                            message = jsonio.loads(line[6:])
                            seen.append(message)
                            if message.get("id") == 3 and "method" not in message:
                                break
        events = await all_events(on_a, session_id)
    assert answer["result"] == {"stopReason": "end_turn"}
    live = [m["params"] for m in seen if m.get("method") == "session/update"]
    assert live == turn_updates(events, before)
    assert chunk_texts(live) == [f"c{i} " for i in range(500)]


class AcpSocket:
    """The in-repo way to talk ACP over ``/v1/rpc``: requests, and what else came meanwhile."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.received: list[JsonObject] = []

    async def notify(self, method: str, params: JsonObject) -> None:
        await self.ws.send(jsonio.dumps_str(rpc(None, method, params)))

    async def call(self, request_id: int, method: str, params: JsonObject) -> JsonObject:
        await self.ws.send(jsonio.dumps_str(rpc(request_id, method, params)))
        return await self.until(lambda m: m.get("id") == request_id and "method" not in m)

    async def until(self, wanted: Any) -> JsonObject:
        while True:
            message: JsonObject = jsonio.loads(await self.ws.recv())
            if wanted(message):
                return message
            self.received.append(message)


def is_chunk(text: str) -> Any:
    def wanted(message: JsonObject) -> bool:
        update = message.get("params", {}).get("update", {}) if message.get("method") == "session/update" else {}
        return update.get("sessionUpdate") == "agent_message_chunk" and update["content"].get("text") == text

    return wanted


async def test_settings_and_a_cancel_from_an_acp_client_on_another_daemon_reach_the_owner(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with two_daemons_with_one_token(tmp_path, postgres_dsn) as (a, b), a.client() as on_a:
        session_id = (await new_session(on_a, tmp_path))["id"]
        url = b.url.replace("http://", "ws://") + "/v1/rpc"
        with anyio.fail_after(30):
            async with connect(url, additional_headers=b.headers) as ws:
                acp = AcpSocket(ws)
                await acp.call(1, "initialize", {"protocolVersion": 1})
                await acp.call(2, "session/resume", {"sessionId": session_id, "cwd": str(tmp_path)})
                mode = await acp.call(3, "session/set_mode", {"sessionId": session_id, "modeId": "plan"})
                prompt = {"sessionId": session_id, "prompt": [{"type": "text", "text": "text started\nsleep 60"}]}
                await ws.send(jsonio.dumps_str(rpc(4, "session/prompt", prompt)))
                await acp.until(is_chunk("started"))
                await acp.notify("session/cancel", {"sessionId": session_id})
                cancelled = await acp.until(lambda m: m.get("id") == 4)
            held = (await on_a.get(f"/v1/sessions/{session_id}")).json()
    assert mode == {"jsonrpc": "2.0", "id": 3, "result": {}}
    assert held["mode"] == "plan"
    assert cancelled["result"] == {"stopReason": "cancelled"}


async def test_an_acp_client_on_another_daemon_goes_on_there_once_the_owner_is_killed(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with two_daemons_with_one_token(tmp_path, postgres_dsn) as (a, b), b.client() as on_b:
        async with a.client() as on_a:
            session_id = (await new_session(on_a, tmp_path))["id"]
        url = b.url.replace("http://", "ws://") + "/v1/rpc"
        with anyio.fail_after(60):
            async with connect(url, additional_headers=b.headers) as ws:
                acp = AcpSocket(ws)
                await acp.call(1, "initialize", {"protocolVersion": 1})
                await acp.call(2, "session/load", {"sessionId": session_id, "cwd": str(tmp_path), "mcpServers": []})
                first = await acp.call(
                    3, "session/prompt", {"sessionId": session_id, "prompt": [{"type": "text", "text": "text on a"}]}
                )
                await a.kill()
                second = await acp.call(
                    4, "session/prompt", {"sessionId": session_id, "prompt": [{"type": "text", "text": "text on b"}]}
                )
        events = await all_events(on_b, session_id)
    assert first["result"] == second["result"] == {"stopReason": "end_turn"}
    texts = [
        m["params"]["update"]["content"]["text"]
        for m in acp.received
        if m.get("method") == "session/update" and m["params"]["update"]["sessionUpdate"] == "agent_message_chunk"
    ]
    assert texts == ["on a", "on b"]  # each once, though the session moved from A to B between them
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


async def test_a_permission_asked_before_an_acp_client_attached_on_another_daemon_is_asked_of_it_too(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with two_daemons_with_one_token(tmp_path, postgres_dsn) as (a, b), a.client() as on_a:
        session_id = (await new_session(on_a, tmp_path, policy={"permissions": "ask"}))["id"]
        answers: list[httpx.Response] = []

        async def prompt() -> None:
            answers.append(await on_a.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "permission edit"}))

        url = b.url.replace("http://", "ws://") + "/v1/rpc"
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(prompt)
                async with on_a.stream("GET", f"/v1/sessions/{session_id}/events/stream") as response:
                    async for event in sse_events(response):
                        if event["payload"].get("method") == "session/request_permission":
                            break
                async with connect(url, additional_headers=b.headers) as ws:
                    acp = AcpSocket(ws)
                    await acp.call(1, "initialize", {"protocolVersion": 1})
                    await acp.call(2, "session/resume", {"sessionId": session_id, "cwd": str(tmp_path)})
                    asked = await acp.until(lambda m: m.get("method") == "session/request_permission")
                    reply = {"outcome": {"outcome": "selected", "optionId": "allow"}}
                    await ws.send(jsonio.dumps_str({"jsonrpc": "2.0", "id": asked["id"], "result": reply}))
                    await acp.until(is_chunk("permission: allow"))
    assert answers[0].status_code == 200
    assert "permission: allow" in answers[0].json()["text"]
