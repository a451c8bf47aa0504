"""claude-native in process: the loop against acpd's mock model server, over REST."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.app import create_app
from acpd.daemon.manager import SessionManager
from acpd.store.memory import MemoryEventStore
from acpd.testing.model_server import ErrorReply, MockModelServer, Reply, ToolCall, serve_mock_model

pytestmark = pytest.mark.anyio


@pytest.fixture
async def model() -> AsyncIterator[MockModelServer]:
    async with serve_mock_model() as server:
        yield server


@pytest.fixture
async def http(model: MockModelServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    native = AgentConfig(kind="claude-native", model_url=model.url)
    config = DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", agents={"claude-native": native})
    store = MemoryEventStore()
    async with SessionManager(config, store).running() as manager:
        transport = httpx.ASGITransport(app=create_app(manager))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:4520", timeout=30) as client:
            yield client
    await store.aclose()


async def session(http: httpx.AsyncClient, cwd: Path, permissions: str = "allow") -> str:
    body = {"agent": "claude-native", "cwd": str(cwd), "policy": {"permissions": permissions}}
    response = await http.post("/v1/sessions", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def prompt(http: httpx.AsyncClient, session_id: str, text: str) -> dict[str, Any]:
    with anyio.fail_after(20):
        return dict((await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": text})).json())


async def updates(http: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    items = (await http.get(f"/v1/sessions/{session_id}/events", params={"limit": 1000})).json()["items"]
    return [e["payload"]["params"]["update"] for e in items if e["payload"].get("method") == "session/update"]


async def test_a_text_reply_streams_and_the_usage_totals_match_what_the_model_reported(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path)
    answer = await prompt(http, session_id, "mock:text=Hello from the loop")
    assert answer["stopReason"] == "end_turn"
    assert answer["text"] == "Hello from the loop"
    reported = [request.usage for request in model.requests if request.usage is not None]
    assert answer["usage"]["inputTokens"] == sum(u.input_tokens for u in reported)
    assert answer["usage"]["outputTokens"] == sum(u.output_tokens for u in reported)
    kinds = [u["sessionUpdate"] for u in await updates(http, session_id)]
    assert "usage_update" in kinds


async def test_multi_step_tool_use_writes_a_real_file_and_shows_its_diff(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path)
    model.push(Reply(tool=ToolCall(name="Write", input={"path": "notes.txt", "content": "hello\n"})))
    answer = await prompt(http, session_id, "Write a note")
    assert answer["stopReason"] == "end_turn"
    assert (tmp_path / "notes.txt").read_text() == "hello\n"
    assert "All done. Tool said: Created" in answer["text"]
    seen = await updates(http, session_id)
    [call] = [u for u in seen if u["sessionUpdate"] == "tool_call"]
    assert (call["kind"], call["title"]) == ("edit", "Write notes.txt")
    [done] = [u for u in seen if u.get("status") == "completed"]
    assert done["content"] == [
        {"type": "diff", "path": str(tmp_path / "notes.txt"), "oldText": None, "newText": "hello\n"}
    ]


async def test_the_shell_tool_runs_in_the_session_directory(http: httpx.AsyncClient, tmp_path: Path) -> None:
    session_id = await session(http, tmp_path)
    answer = await prompt(http, session_id, "Say hi with the shell")  # the mock model calls Bash `echo hi`
    assert "All done. Tool said: hi" in answer["text"]


async def test_the_todo_tool_becomes_a_plan(http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path) -> None:
    session_id = await session(http, tmp_path)
    todos = [{"content": "Read", "status": "completed"}, {"content": "Write", "status": "in_progress"}]
    model.push(Reply(tool=ToolCall(name="TodoWrite", input={"todos": todos})))
    await prompt(http, session_id, "Plan it")
    [plan] = [u for u in await updates(http, session_id) if u["sessionUpdate"] == "plan"]
    assert [(e["content"], e["status"]) for e in plan["entries"]] == [("Read", "completed"), ("Write", "in_progress")]


async def test_a_refused_credential_is_a_clear_error(http: httpx.AsyncClient, tmp_path: Path) -> None:
    session_id = await session(http, tmp_path)
    answer = await prompt(http, session_id, "mock:error=401 message=bad key")
    assert answer["error"]["data"]["code"] == "MODEL_AUTH"
    events = (await http.get(f"/v1/sessions/{session_id}/events")).json()["items"]
    errors = [e["payload"]["params"] for e in events if e["payload"].get("method") == "_acpd/error"]
    assert errors[0]["code"] == "MODEL_AUTH"


async def test_an_overloaded_model_is_retried_and_the_turn_goes_on(
    http: httpx.AsyncClient, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await session(http, tmp_path)
    model.push(Reply(error=ErrorReply(status=529, retry_after_seconds=0)), Reply(text="made it"))
    answer = await prompt(http, session_id, "hello")
    assert answer["text"] == "made it"
    events = (await http.get(f"/v1/sessions/{session_id}/events")).json()["items"]
    [error] = [e["payload"]["params"] for e in events if e["payload"].get("method") == "_acpd/error"]
    assert error["code"] == "MODEL_OVERLOADED"
