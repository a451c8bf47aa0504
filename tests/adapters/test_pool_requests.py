"""A shared agent process's requests to the daemon are budgeted per session: one session's flood
of unanswered requests is refused past its budget while the other sessions' requests go on; text
chunks a session took are its own, even when recording them fails."""

from __future__ import annotations

import sys

import anyio
import pytest

from acpd.adapters.acp_pool import MAX_SESSION_REQUESTS, AgentConnection, pool_key
from acpd.adapters.chunks import learn
from acpd.config import AgentConfig
from acpd.errors import RpcError
from acpd.protocol import jsonio
from acpd.protocol.framing import Frame
from acpd.protocol.jsonio import JsonObject, JsonValue

pytestmark = pytest.mark.anyio


class Session:
    """A session whose answers wait until ``release`` is set."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.served = 0

    async def on_notification(self, method: str, params: JsonValue, message: JsonObject) -> None:
        raise AssertionError("no notification expected")

    async def on_request(self, method: str, params: JsonValue, message: JsonObject) -> JsonValue:
        self.served += 1
        await self.release.wait()
        return {"outcome": {"outcome": "cancelled"}}

    def record_error(self, code: str, message: str, data: JsonObject) -> None:
        raise AssertionError(message)

    def connection_lost(self) -> None:
        pass


def connection() -> AgentConnection:
    config = AgentConfig(command=sys.executable)
    return AgentConnection("shared", config, pool_key("shared", config, cwd="/", mcp_servers=[], dedicated=False))


async def test_one_sessions_flood_of_requests_is_refused_past_its_budget_and_another_sessions_request_is_served() -> (
    None
):
    agent, flooding, quiet = connection(), Session(), Session()
    await agent.register("a", flooding)
    await agent.register("b", quiet)

    async def ask(session_id: str) -> JsonValue:
        params: JsonObject = {"sessionId": session_id, "toolCall": {"toolCallId": "t"}, "options": []}
        return await agent._route_request("session/request_permission", params, {"id": 1, "params": params})

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(MAX_SESSION_REQUESTS):
                tg.start_soon(ask, "a")
            while flooding.served < MAX_SESSION_REQUESTS:
                await anyio.wait_all_tasks_blocked()
            with pytest.raises(RpcError) as refused:
                await ask("a")
            assert f"more than {MAX_SESSION_REQUESTS} requests in flight" in str(refused.value.to_wire())
            quiet.release.set()
            assert await ask("b") == {"outcome": {"outcome": "cancelled"}}
            flooding.release.set()
        # answered, the budget is whole again
        assert await ask("a") == {"outcome": {"outcome": "cancelled"}}


class FailingSink(Session):
    """A session whose recording of taken text chunks fails after the first of them."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded: list[str] = []

    def takes_texts(self) -> bool:
        return True

    async def on_texts(self, envelope: object, texts: list[str]) -> None:
        self.recorded.append(texts[0])
        raise RuntimeError("the log failed")


async def test_text_chunks_taken_by_a_session_that_fails_to_record_them_are_not_handed_back_to_be_parsed_again() -> (
    None
):
    agent, session = connection(), FailingSink()
    await agent.register("a", session)
    chunk = {"jsonrpc": "2.0", "method": "session/update"}
    messages: list[JsonObject] = []
    for text in ("one", "two", "three"):
        update = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}}
        messages.append({**chunk, "params": {"sessionId": "a", "update": update}})
    frames: list[Frame] = [jsonio.dumps(m) for m in messages]
    template = learn(messages[0], "a", "a")
    assert template is not None
    agent.learn_texts(template, session)
    # all three taken: handed back, the one recorded before the failure would be recorded twice
    assert await agent._claim_texts(frames, 0, len(frames)) == len(frames)
    assert session.recorded == ["one"]
