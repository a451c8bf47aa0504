"""End to end: ACP over HTTP survives a kill -9 mid-turn: every message a client saw on its SSE
stream is there again, the same, when it reads the connection's stream after a restart (the
connection's log, which refers to the session's records as they are appended, never commits
before them)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from acpd.protocol import jsonio
from acpd.protocol.jsonio import JsonObject
from acpd.testing.daemon import running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SEEN_BEFORE_THE_KILL = 20_000


def rpc(request_id: int, method: str, params: JsonObject) -> JsonObject:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


async def messages(response: httpx.Response) -> AsyncIterator[tuple[int, str]]:
    """(SSE id, data) of each message event."""
    number = 0
    async for line in response.aiter_lines():
        if line.startswith("id: "):
            number = int(line[4:])
        elif line.startswith("data: "):
            yield number, line[6:]


async def test_a_kill_9_mid_turn_loses_no_message_the_connections_stream_showed(tmp_path: Path) -> None:
    seen: dict[int, str] = {}
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        with anyio.fail_after(60):
            await http.post("/v1/acp/killed?agent=mock", json=rpc(1, "initialize", {"protocolVersion": 1}))
            new = await http.post(
                "/v1/acp/killed", json=rpc(2, "session/new", {"cwd": str(tmp_path), "mcpServers": []})
            )
            session_id = new.json()["result"]["sessionId"]
            prompt = {"sessionId": session_id, "prompt": [{"type": "text", "text": "chunks 50000\nsleep 60"}]}
            async with anyio.create_task_group() as tg:

                async def post_prompt() -> None:
                    with contextlib.suppress(httpx.HTTPError):  # the daemon is killed under it on purpose
                        await http.post("/v1/acp/killed", json=rpc(3, "session/prompt", prompt))

                tg.start_soon(post_prompt)
                async with http.stream("GET", "/v1/acp/killed") as response:
                    async for number, data in messages(response):
                        seen[number] = data
                        if len(seen) == SEEN_BEFORE_THE_KILL:
                            await daemon.kill()
                            break
                tg.cancel_scope.cancel()
        assert daemon.process.returncode == -9, "the daemon must have died by SIGKILL mid-turn"
    assert sorted(seen) == list(range(1, len(seen) + 1))
    replayed: dict[int, str] = {}
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        with anyio.fail_after(60):
            async with http.stream("GET", "/v1/acp/killed", headers={"Last-Event-ID": "0"}) as response:
                async for number, data in messages(response):
                    replayed[number] = data
                    if number >= max(seen):
                        break
    assert {number: replayed.get(number) for number in seen} == seen
    updates = [jsonio.loads(data).get("params", {}).get("update", {}) for data in seen.values()]
    texts = [u["content"]["text"] for u in updates if u.get("sessionUpdate") == "agent_message_chunk"]
    assert texts == [f"c{i} " for i in range(len(texts))]
    assert len(texts) > SEEN_BEFORE_THE_KILL // 2
