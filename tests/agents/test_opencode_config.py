"""opencode under acpd runs with a config home of acpd's (its plugin install is kept off the
network there), yet reads the user's own opencode config, and the commands it runs find the rest
of the user's config; nothing is written into the user's config directory."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect

from .conftest import AgentDaemon, require_agent
from .scenarios import SCENARIOS
from .test_real_agents import TURN_SECONDS, Editor

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
        url = daemon.url.replace("http://", "ws://") + "/v1/rpc?agent=opencode"
        editor = Editor()
        with anyio.fail_after(TURN_SECONDS):
            async with connect(url, additional_headers=daemon.headers) as ws:
                editor.ws = ws
                await editor.call("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
                new = await editor.call("session/new", {"cwd": str(agent_daemon.work), "mcpServers": []})
                command = 'cat "$XDG_CONFIG_HOME/marker/value"'
                prompt = [{"type": "text", "text": SCENARIOS["opencode"].run(command)}]
                result = await editor.call("session/prompt", {"sessionId": new["sessionId"], "prompt": prompt})
    assert result["stopReason"] == "end_turn"
    assert "reviewer" in json.dumps(new)
    text = "".join(u["content"].get("text", "") for u in editor.updates if u["sessionUpdate"] == "agent_message_chunk")
    assert "Tool said: the user's own" in text
    assert snapshot(config) == before
