"""Everything acpd's ACP face says validates against the official ACP v1 JSON schema: every frame
a client receives (updates live, echoed and replayed, permission requests, answers, errors), whatever
the backend: the mock agent, claude-native against the mock model, and each real agent's recorded
conversation replayed."""

from __future__ import annotations

import sys
from pathlib import Path

import acp.schema
import anyio
import pytest

from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.manager import SessionManager
from acpd.errors import RpcError
from acpd.protocol.jsonio import JsonObject
from acpd.store.memory import MemoryEventStore
from acpd.testing.model_server import ErrorReply, Reply, ToolCall, serve_mock_model
from tests.acp_schema import conversation_problems, problems
from tests.golden.test_golden import RECORDINGS, REPLAY_AGENT, prompt_of

from .acp_client import AcpTestClient, acp_client

pytestmark = pytest.mark.anyio

SCRIPT = "text hello\nthink it over\ntool read Look\nplan 2\nusage 100 20 0.5\ntitle A title\npermission edit"


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    second = AgentConfig(
        command=sys.executable, args=("-m", "acpd.testing.mock_agent", "--state-dir", str(tmp_path / "mock-b"))
    )
    return DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", agents={"mock-b": second})


async def test_every_update_and_answer_of_a_busy_session_validates_against_the_acp_schema(
    manager: SessionManager, workdir: Path
) -> None:
    problems("SessionNotification", {})  # fails or skips now if the schema is not installed
    answers: list[tuple[str, object]] = []
    async with acp_client(manager) as editor, acp_client(manager) as watcher:
        with anyio.fail_after(20):
            answers.append(("InitializeResponse", await editor.initialize()))
            await watcher.initialize()
            new = await editor.new_session(str(workdir))
            answers.append(("NewSessionResponse", new))
            sid = new["sessionId"]
            resumed = await watcher.request("session/resume", {"sessionId": sid, "cwd": str(workdir)})
            answers.append(("ResumeSessionResponse", resumed))
            answers.append(("PromptResponse", await editor.prompt(sid, SCRIPT)))
            answers.append(
                (
                    "SetSessionModeResponse",
                    await editor.request("session/set_mode", {"sessionId": sid, "modeId": "plan"}),
                )
            )
            for config_id, value in (("model", "mock-large"), ("effort", "high"), ("agent", "mock-b")):
                params = {"sessionId": sid, "configId": config_id, "value": value}
                answers.append(
                    ("SetSessionConfigOptionResponse", await editor.request("session/set_config_option", params))
                )
            answers.append(("PromptResponse", await editor.prompt(sid, "context")))
            answers.append(("ListSessionsResponse", await editor.request("session/list", {})))
        async with acp_client(manager) as loader:
            with anyio.fail_after(20):
                await loader.initialize()
                load = {"sessionId": sid, "cwd": str(workdir), "mcpServers": []}
                answers.append(("LoadSessionResponse", await loader.request("session/load", load)))
            replayed = loader.notifications
    received = [n for n in editor.notifications + watcher.notifications + replayed if n["method"] == "session/update"]
    kinds = {n["params"]["update"]["sessionUpdate"] for n in received}
    assert kinds >= {
        "agent_message_chunk",
        "agent_thought_chunk",
        "tool_call",
        "tool_call_update",
        "plan",
        "usage_update",
        "session_info_update",
        "current_mode_update",
        "config_option_update",
        "user_message_chunk",
    }
    for notification in received:
        assert problems("SessionNotification", notification["params"]) == [], notification
        # and the Python SDK's pydantic models of the same schema accept them too
        acp.schema.SessionNotification.model_validate(notification["params"])
    for definition, answer in answers:
        assert problems(definition, answer) == [], (definition, answer)
    for request in editor.permission_requests + watcher.permission_requests:
        assert problems("RequestPermissionRequest", request) == [], request
    for client in (editor, watcher, loader):
        assert conversation_problems(client.wire.sent, client.wire.received) == []


def assert_every_frame_valid(*clients: AcpTestClient) -> None:
    for client in clients:
        assert client.wire.received
        assert conversation_problems(client.wire.sent, client.wire.received) == []


async def test_every_frame_of_a_busy_claude_native_session_validates_against_the_acp_schema(
    tmp_path: Path, workdir: Path
) -> None:
    todos = [{"content": "Write it", "status": "in_progress"}, {"content": "Check it", "status": "pending"}]
    async with serve_mock_model() as model:
        native = AgentConfig(kind="claude-native", model_url=model.url)
        config = DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", agents={"claude-native": native})
        store = MemoryEventStore()
        async with SessionManager(config, store).running() as manager, acp_client(manager) as editor:
            with anyio.fail_after(30):
                sid = await editor.start(str(workdir), agent="claude-native")
                effort = {"sessionId": sid, "configId": "effort", "value": "low"}
                await editor.request("session/set_config_option", effort)
                model.push(
                    Reply(thinking="First a plan.", tool=ToolCall(name="TodoWrite", input={"todos": todos})),
                    Reply(text="Writing. ", tool=ToolCall(name="Write", input={"path": "a.txt", "content": "a\n"})),
                    Reply(tool=ToolCall(name="Edit", input={"path": "a.txt", "old_string": "a", "new_string": "b"})),
                    Reply(tool=ToolCall(name="Bash", input={"command": "cat a.txt"})),
                    Reply(tool=ToolCall(name="Glob", input={"pattern": "*.txt"})),
                )
                await editor.prompt(sid, "Do the work")  # permissions asked, diffs, a plan, usage, thinking
                model.push(Reply(tool=ToolCall(name="Write", input={"path": "b.txt", "content": "b"})))
                editor.answer_permission = _reject
                await editor.prompt(sid, "Write another")  # a rejection
                model.push(Reply(error=ErrorReply(status=529, retry_after_seconds=0)), Reply(text="Back."))
                await editor.prompt(sid, "Again")  # an overloaded API, notified and retried
                model.push(Reply(error=ErrorReply(status=400, message="bad")))
                with pytest.raises(RpcError):
                    await editor.prompt(sid, "Fail")  # an API error answers the prompt with an error
                model.push(Reply(tool=ToolCall(name="Bash", input={"command": "sleep 30"})))
                editor.answer_permission = None  # nobody answers: the turn is cancelled while it asks
                editor.permission_asked = anyio.Event()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(editor.prompt, sid, "Sleep")
                    await editor.permission_asked.wait()
                    await editor.peer.notify("session/cancel", {"sessionId": sid})
            async with acp_client(manager) as loader:
                with anyio.fail_after(20):
                    await loader.initialize()
                    await loader.request("session/load", {"sessionId": sid, "cwd": str(workdir), "mcpServers": []})
        await store.aclose()
    kinds = {u["sessionUpdate"] for u in editor.updates(sid)}
    assert kinds >= {"agent_message_chunk", "agent_thought_chunk", "tool_call", "tool_call_update", "plan"}
    assert kinds >= {"usage_update", "config_option_update"}
    assert len(editor.permission_requests) >= 4
    assert any(n["method"] == "_acpd/error" for n in editor.notifications)
    assert_every_frame_valid(editor, loader)


def _reject(params: JsonObject) -> JsonObject:
    option = next(o for o in params["options"] if o["kind"].startswith("reject"))
    return {"outcome": {"outcome": "selected", "optionId": option["optionId"]}}


@pytest.mark.parametrize("recording", RECORDINGS, ids=[path.name.split(".")[0] for path in RECORDINGS])
async def test_every_frame_of_a_real_agents_recorded_conversation_validates_against_the_acp_schema(
    recording: Path, tmp_path: Path, workdir: Path
) -> None:
    replay = AgentConfig(command=sys.executable, args=(str(REPLAY_AGENT), str(recording)))
    config = DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", agents={"replay": replay})
    store = MemoryEventStore()
    async with SessionManager(config, store).running() as manager, acp_client(manager) as editor:
        with anyio.fail_after(30):
            sid = await editor.start(str(workdir), agent="replay")
            prompt = {"sessionId": sid, "prompt": prompt_of(recording)}
            answer = await editor.request("session/prompt", prompt)
        async with acp_client(manager) as loader:
            with anyio.fail_after(20):
                await loader.initialize()
                await loader.request("session/load", {"sessionId": sid, "cwd": str(workdir), "mcpServers": []})
    await store.aclose()
    assert answer["stopReason"] == "end_turn"
    assert any(u["sessionUpdate"] == "tool_call" for u in editor.updates(sid))
    assert editor.permission_requests  # each recording asks once, and the editor was asked
    assert_every_frame_valid(editor, loader)
