"""A real agent serves two acpd sessions from one process, each turn answered in its own session."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from .conftest import AgentDaemon, agent_processes, require_agent
from .test_real_agents import TURN_SECONDS, events, new_session

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.agents]


def agent_keepers() -> list[int]:
    """One keeper runs each agent process acpd started (see ``transports._keeper``)."""
    return [pid for pid, cmdline in agent_processes() if "_keeper.py" in cmdline]


def texts(log: list[dict[str, Any]]) -> str:
    found = []
    for event in log:
        params = event["payload"].get("params")
        update = params.get("update") if isinstance(params, dict) else None
        if isinstance(update, dict) and update.get("sessionUpdate") == "agent_message_chunk":
            found.append(update["content"].get("text", ""))
    return "".join(found)


@pytest.mark.parametrize("agent", ["claude", "gemini"])
async def test_two_sessions_of_a_real_agent_share_one_process(agent: str, agent_daemon: AgentDaemon) -> None:
    require_agent(agent)
    async with agent_daemon.running() as (_, http):
        sessions = [await new_session(http, agent, str(agent_daemon.work)) for _ in range(2)]
        with anyio.fail_after(TURN_SECONDS):
            for number, session_id in enumerate(sessions):
                prompt = f"mock:text=answer for session {number}"
                answer = await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": prompt})
                assert answer.json()["stopReason"] == "end_turn", answer.text
        assert len(agent_keepers()) == 1
        logs = [await events(http, session_id) for session_id in sessions]
    assert "answer for session 0" in texts(logs[0]) and "session 1" not in texts(logs[0])
    assert "answer for session 1" in texts(logs[1]) and "session 0" not in texts(logs[1])
