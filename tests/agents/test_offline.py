"""Each real agent, run by acpd with its preset's switches, tries to reach nothing but its model URL.

The daemon runs under ``strace -f``, which records every connect and send to an IP address made by
the daemon and everything it starts, through a whole ACP session: initialize, session/new, a prompt
whose tool call writes a file, and session/close. Any DNS lookup, or any connection outside
loopback, fails the test with the program and the address (and the name, where it was written).
Inside ``unshare -n`` (scripts/test) nothing could leave anyway; this proves nothing tried.

Codex runs in its "auto" mode (its sandbox lets the command write in the workspace, no approval):
under strace, its read-only mode sometimes ran the command the editor had approved inside the
read-only sandbox anyway, which refused the write (1 run in 6 here, 3 in 4 on a loaded machine;
none in 8 without strace). The audit needs the command run, not Codex's escalation path.

The agents run from an agents directory like a user's own (not root's, or under the temp dir): a
settings file acpd writes there must work for a user too (gemini-cli ignores a system settings file
anywhere but in root-owned directories).
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Final

import anyio
import pytest

from acpd.testing.daemon import Daemon
from acpd.testing.model_server import MockModelServer

from .conftest import REQUIRED, AgentDaemon, require_agent, user_agents_dir
from .network_audit import attempts, outside_loopback, strace_command
from .scenarios import SCENARIOS, WRITE
from .test_real_agents import AGENTS, TURN_SECONDS, editor_session

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.agents]

CODEX_MODE: Final = "auto"


def require_strace() -> None:
    if shutil.which("strace") is None:
        message = "strace not found on PATH: the network audit of the agents needs it (Debian: apt install strace)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.parametrize("agent", AGENTS)
async def test_through_a_whole_session_the_agent_tries_to_reach_only_its_model_url(
    agent: str, model: MockModelServer, tmp_path: Path
) -> None:
    require_agent(agent)
    require_strace()
    agent_daemon = AgentDaemon(tmp_path, model, agents_dir=user_agents_dir(tmp_path), codex_asks=agent != "codex")
    trace = tmp_path / "strace.txt"
    async with agent_daemon.running(wrapper=strace_command(trace)) as (daemon, _):
        with anyio.fail_after(TURN_SECONDS):
            async with editor_session(daemon, agent, agent_daemon.work) as (editor, new):
                if agent == "codex" and new.get("modes"):  # none when the sandbox is off (no bwrap)
                    await editor.call("session/set_mode", {"sessionId": new["sessionId"], "modeId": CODEX_MODE})
                result = await editor.prompt(new["sessionId"], SCENARIOS[agent].run(WRITE))
                await editor.call("session/close", {"sessionId": new["sessionId"]})
            await stop_under_trace(daemon)
    assert result["stopReason"] == "end_turn"
    assert (agent_daemon.work / "hi.txt").read_text() == "hi\n"
    text = trace.read_text()
    model_port = int(agent_daemon.model.url.rsplit(":", 1)[1].rstrip("/"))
    # The trace saw the agent (not only the daemon) reach the model: it would have seen the rest.
    assert [a for a in attempts(text) if a.port == model_port and "python" not in a.program], "no agent traced"
    assert [str(attempt) for attempt in outside_loopback(text)] == []


async def stop_under_trace(daemon: Daemon) -> None:
    """SIGTERM the daemon itself (strace's child) and wait for strace to end with it: the trace then
    covers the daemon's shutdown and its agents' too."""
    tracer = daemon.process.pid
    children = (await anyio.Path(f"/proc/{tracer}/task/{tracer}/children").read_text()).split()
    for child in children:
        os.kill(int(child), signal.SIGTERM)
    await daemon.process.wait()
