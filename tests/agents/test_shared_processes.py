"""A real agent serves two acpd sessions from one process, each turn answered in its own session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from .conftest import AgentDaemon, agent_processes, require_agent
from .test_real_agents import TURN_SECONDS, events, new_session

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.agents]


def started_agents() -> list[int]:
    """The agent processes acpd started: each is the child of a warden, a fork of the spawn server
    (see ``transports.contained``); what the agent itself starts is not counted."""
    return [pid for pid, _ in agent_processes() if "_spawner.py" in _cmdline(_parent(pid))]


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


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
        assert len(started_agents()) == 1
        logs = [await events(http, session_id) for session_id in sessions]
    assert "answer for session 0" in texts(logs[0]) and "session 1" not in texts(logs[0])
    assert "answer for session 1" in texts(logs[1]) and "session 0" not in texts(logs[1])
