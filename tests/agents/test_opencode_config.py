"""opencode under acpd runs with a config home of acpd's (its plugin install is kept off the
network there), yet reads the user's own opencode config, and the commands it runs find the rest
of the user's config; nothing is written into the user's config directory."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from .conftest import AgentDaemon, require_agent
from .scenarios import SCENARIOS
from .test_real_agents import TURN_SECONDS, editor_session

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.agents]


def snapshot(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): path.read_text() if path.is_file() else "" for path in directory.rglob("*")
    }


async def test_opencode_reads_the_users_config_its_commands_see_theirs_and_neither_is_written(
    agent_daemon: AgentDaemon,
) -> None:
    require_agent("opencode")
    config = agent_daemon.home / "config"  # the daemon's $XDG_CONFIG_HOME
    (config / "opencode").mkdir(parents=True)
    # With its $schema, as opencode leaves a config file it loads (it adds one where it is missing).
    reviewer = {
        "$schema": "https://opencode.ai/config.json",
        "agent": {"reviewer": {"mode": "primary", "description": "Reviews the change"}},
    }
    (config / "opencode" / "opencode.json").write_text(json.dumps(reviewer))
    (config / "marker").mkdir()
    (config / "marker" / "value").write_text("the user's own\n")
    before = snapshot(config)
    async with agent_daemon.running() as (daemon, _):
        with anyio.fail_after(TURN_SECONDS):
            async with editor_session(daemon, "opencode", agent_daemon.work) as (editor, new):
                command = 'cat "$XDG_CONFIG_HOME/marker/value"'
                result = await editor.prompt(new["sessionId"], SCENARIOS["opencode"].run(command))
    assert result["stopReason"] == "end_turn"
    assert "reviewer" in json.dumps(new)
    text = "".join(u["content"].get("text", "") for u in editor.updates if u["sessionUpdate"] == "agent_message_chunk")
    assert "Tool said: the user's own" in text
    assert snapshot(config) == before
