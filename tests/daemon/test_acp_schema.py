"""Everything acpd's ACP face says validates against the official ACP v1 JSON schema: the
session/update notifications a client receives (live, echoed, replayed) and the answers."""

from __future__ import annotations

import sys
from pathlib import Path

import acp.schema
import anyio
import pytest

from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.manager import SessionManager
from tests.acp_schema import problems

from .acp_client import acp_client

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
