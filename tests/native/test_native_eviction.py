"""claude-native sessions leave memory when idle and come back with their conversation; while
live, sessions with the same model URL and credentials share one SDK client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from acpd.adapters.claude_native import clients
from acpd.adapters.claude_native.backend import client_options
from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon.manager import SessionManager
from acpd.protocol import methods
from acpd.store.memory import MemoryEventStore
from acpd.testing.model_server import MockModelServer

pytestmark = pytest.mark.anyio


async def new(manager: SessionManager, cwd: Path, agent: str = "claude-native") -> str:
    body = {"agent": agent, "cwd": str(cwd), "policy": {"permissions": "allow"}}
    return (await manager.create(body)).session_id


async def answered(manager: SessionManager, session_id: str, text: str) -> dict[str, Any]:
    turn = await manager.prompt(session_id, text)
    with anyio.fail_after(20):
        await turn.done.wait()
    return turn.answer(session_id)


def options(manager: SessionManager, agent: str = "claude-native") -> dict[str, Any]:
    return client_options(manager.config.all_agents()[agent])


async def later(manager: SessionManager) -> int:
    return await manager.evict_idle(now=anyio.current_time() + manager.config.idle_seconds + 1)


async def test_sessions_with_the_same_model_url_share_one_sdk_client_until_the_last_leaves(
    manager: SessionManager, tmp_path: Path
) -> None:
    first = await new(manager, tmp_path)
    second = await new(manager, tmp_path)
    assert clients.users(options(manager)) == 2
    await answered(manager, first, "mock:text=one")
    await answered(manager, second, "mock:text=two")
    await manager.close(first)
    assert clients.users(options(manager)) == 1
    assert await later(manager) == 1
    assert clients.users(options(manager)) == 0


async def test_sessions_with_other_credentials_get_a_client_of_their_own(
    model: MockModelServer, tmp_path: Path
) -> None:
    agents = {
        "claude-native": AgentConfig(kind="claude-native", model_url=model.url),
        "keyed": AgentConfig(kind="claude-native", model_url=model.url, env={"ANTHROPIC_API_KEY": "sk-other-key"}),
    }
    config = DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", agents=agents)
    store = MemoryEventStore()
    async with SessionManager(config, store).running() as manager:
        await new(manager, tmp_path)
        await new(manager, tmp_path, "keyed")
        assert clients.users(options(manager)) == 1
        assert clients.users(options(manager, "keyed")) == 1
    await store.aclose()


async def test_an_evicted_session_answers_its_next_prompt_with_the_whole_conversation(
    manager: SessionManager, model: MockModelServer, tmp_path: Path
) -> None:
    session_id = await new(manager, tmp_path)
    await answered(manager, session_id, "mock:text=remember the word teal")
    assert await later(manager) == 1
    assert manager.live_sessions() == []
    answer = await answered(manager, session_id, "mock:text=what was the word?")
    assert answer["stopReason"] == "end_turn"
    sent = json.dumps(model.requests[-1].body)
    assert "remember the word teal" in sent  # the conversation, rebuilt from the log
    records = await manager.store.read(session_id, limit=1000)
    frames = [r.payload_object() for r in records]
    evicted = [f["params"] for f in frames if f.get("method") == methods.ACPD_SESSION_EVICTED]
    assert [e["reason"] for e in evicted] == ["idle"]
    started = [f["params"]["how"] for f in frames if f.get("method") == methods.ACPD_AGENT_STARTED]
    assert started == ["new", "resume"]


async def test_sessions_with_the_same_policy_share_one_policy_object(manager: SessionManager, tmp_path: Path) -> None:
    first = await manager.runtime(await new(manager, tmp_path))
    second = await manager.runtime(await new(manager, tmp_path))
    assert first.policy is second.policy
    await manager.update(second.session_id, {"policy": {"maxSteps": 3}})
    assert first.policy is not second.policy
    assert first.policy.max_steps is None
    assert second.policy.max_steps == 3
