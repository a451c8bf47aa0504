"""claude-native takes a conversation it did not hold from the log, natively: a fork, an import
and an agent switch continue with the earlier turns as Messages API messages (tool uses and
results included), not as a transcript carried in front of the prompt."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from acpd.daemon.manager import SessionManager
from acpd.testing.model_server import MockModelServer, Reply, ToolCall
from tests.native.conftest import client_of
from tests.native.test_claude_native import prompt, session

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http(manager: SessionManager) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(manager) as client:
        yield client


async def daemon_frames(http: httpx.AsyncClient, session_id: str, method: str) -> list[dict[str, Any]]:
    items = (await http.get(f"/v1/sessions/{session_id}/events", params={"limit": 1000})).json()["items"]
    return [e["payload"]["params"] for e in items if e["payload"].get("method") == method]


def roles(model: MockModelServer) -> list[str]:
    return [m["role"] for m in model.requests[-1].body["messages"]]


async def test_a_fork_of_a_native_session_continues_with_its_tool_use_as_messages(
    model: MockModelServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    model.push(Reply(tool=ToolCall(name="Write", input={"path": "a.txt", "content": "A\n"})))
    source = await session(http, tmp_path)
    assert (await prompt(http, source, "Write a file"))["stopReason"] == "end_turn"
    response = await http.post(f"/v1/sessions/{source}/fork", json={})
    assert response.status_code == 201, response.text
    fork = response.json()["id"]
    answer = await prompt(http, fork, "mock:text=I remember")
    assert answer["stopReason"] == "end_turn"
    messages = model.requests[-1].body["messages"]
    assert roles(model) == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"][0]["text"] == "Write a file"
    assert messages[1]["content"][-1]["name"] == "Write"
    assert messages[2]["content"][0]["type"] == "tool_result"
    assert messages[-1]["content"] == [{"type": "text", "text": "mock:text=I remember"}]  # nothing carried
    assert await daemon_frames(http, fork, "_acpd/context_carried") == []
    started = (await daemon_frames(http, fork, "_acpd/agent_started"))[-1]  # the first is the source's
    assert (started["how"], started.get("fromLog")) == ("new", True)


async def test_a_mock_session_forked_onto_claude_native_gives_the_model_its_turns_as_messages(
    model: MockModelServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    created = await http.post("/v1/sessions", json={"agent": "mock", "cwd": str(tmp_path)})
    source = created.json()["id"]
    assert (await prompt(http, source, "text the secret is kumquat"))["stopReason"] == "end_turn"
    response = await http.post(f"/v1/sessions/{source}/fork", json={"agent": "claude-native"})
    fork = response.json()["id"]
    await prompt(http, fork, "mock:text=noted")
    messages = model.requests[-1].body["messages"]
    assert roles(model) == ["user", "assistant", "user"]
    assert messages[0]["content"][0]["text"] == "text the secret is kumquat"
    assert "the secret is kumquat" in messages[1]["content"][0]["text"]
    assert await daemon_frames(http, fork, "_acpd/context_carried") == []


async def test_a_native_session_imported_on_another_daemon_continues_natively(
    model: MockModelServer, http: httpx.AsyncClient, manager: SessionManager, tmp_path: Path
) -> None:
    source = await session(http, tmp_path)
    await prompt(http, source, "mock:text=first answer")
    exported = (await http.get(f"/v1/sessions/{source}/export", params={"format": "jsonl"})).content
    await http.delete(f"/v1/sessions/{source}")
    with anyio.fail_after(10):
        imported = await http.post("/v1/sessions/import", content=exported)
    assert imported.status_code == 201, imported.text
    await prompt(http, source, "mock:text=second answer")
    assert roles(model) == ["user", "assistant", "user"]
    assert model.requests[-1].body["messages"][1]["content"][0]["text"] == "first answer"
