"""Per-agent switching through acpd: model, mode and thought level, for each agent that offers them,
reach the agent (and, for the model, the model API it calls)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from acpd.testing.model_server import MockModelServer

from .conftest import AgentDaemon, require_agent, require_codex_sandbox
from .test_real_agents import AGENTS, TURN_SECONDS, new_session

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.agents]

CATEGORY = {"model": "model", "mode": "mode", "thoughtLevel": "thought_level"}


def choices(session: dict[str, Any], key: str) -> tuple[Any, list[str]]:
    """The current value of a setting and the values the agent offers for it."""
    for option in session.get("configOptions") or []:
        if option.get("category") == CATEGORY[key]:
            return option.get("currentValue"), [o["value"] for o in option.get("options", []) if "value" in o]
    if key == "mode" and session.get("modes"):
        modes = session["modes"]
        return modes.get("currentModeId"), [m["id"] for m in modes.get("availableModes", [])]
    if key == "model" and session.get("models"):
        models = session["models"]
        return models.get("currentModelId"), [m["modelId"] for m in models.get("availableModels", [])]
    return None, []


def pick(key: str, current: Any, offered: list[str]) -> str | None:
    others = [value for value in offered if value != current and value != "default"]
    if key == "model" and isinstance(current, str) and "/" in current:
        # opencode: stay with the provider the model URL serves
        others = [value for value in others if value.split("/")[0] == current.split("/")[0]]
    if key == "mode":
        # a mode that still runs tools and still asks
        others = [value for value in others if value not in ("plan", "yolo", "bypassPermissions", "dontAsk")] or others
    return others[0] if others else None


@pytest.mark.parametrize("agent", AGENTS)
async def test_model_mode_and_thought_level_switch_through_acpd(
    agent: str, tmp_path: Path, model: MockModelServer
) -> None:
    require_agent(agent)
    if agent == "codex":
        require_codex_sandbox()  # without it the sandbox is turned off, and Codex then offers no modes
    # Codex offers modes only with its own approval policy; Gemini switches modes only when trusted.
    agent_daemon = AgentDaemon(tmp_path, model, codex_asks=False, trust=True)
    async with agent_daemon.running() as (_, http):
        session_id = await new_session(http, agent, str(agent_daemon.work), permissions="allow")
        session = (await http.get(f"/v1/sessions/{session_id}")).json()
        wanted = {}
        for key in CATEGORY:
            value = pick(key, *choices(session, key))
            if value is not None:
                wanted[key] = value
        assert "model" in wanted and "mode" in wanted, f"{agent} offers {session}"
        with anyio.fail_after(TURN_SECONDS):
            patched = await http.patch(f"/v1/sessions/{session_id}", json=wanted)
            assert patched.status_code == 200, patched.text
            answer = await http.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": "mock:text=switched"})
        after = (await http.get(f"/v1/sessions/{session_id}")).json()
    assert answer.json()["stopReason"] == "end_turn"
    for key, value in wanted.items():
        assert after[key] == value
        assert choices(after, key)[0] == value
    last = agent_daemon.model.requests[-1]
    sent = f"{last.path} {last.body.get('model') if isinstance(last.body, dict) else ''}"
    model_id = wanted["model"].split("/")[-1]
    assert model_id in sent or model_id.removeprefix("claude-") in sent, f"{wanted['model']} not in {sent}"
