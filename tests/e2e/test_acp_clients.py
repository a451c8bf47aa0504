"""End to end with ACP clients nobody here wrote: the official TypeScript SDK (1.9.0) and acpx on
``acpd acp``, the sandbox-agent TypeScript SDK on ``/v1/acp``, all pinned and installed from npm by
scripts/setup-clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from acpd.testing.daemon import running_daemon
from acpd.testing.model_server import serve_mock_model
from tests.daemon.helpers import all_events, new_session
from tests.processes import pidfds, wait_all_ended

from .clients import acpd_acp, client_env, processes_with_home, require_clients, run_acpx, run_steps

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture(autouse=True)
def _clients() -> None:
    require_clients()


def kinds(step: dict[str, Any]) -> list[str]:
    return [u["sessionUpdate"] for u in step["updates"]]


async def test_the_acp_sdk_runs_a_session_on_acpd_acp_and_loads_it_after_a_restart(
    tmp_path: Path, workdir: Path
) -> None:
    env = client_env(tmp_path, workdir)
    basic = await run_steps("sdk_v1_stdio.mjs", ["basic", "--", *acpd_acp("--standalone")], env, workdir)
    assert basic["initialize"]["agentCapabilities"]["loadSession"] is True
    assert basic["done"]["stopReasons"] == ["end_turn", "end_turn"]
    assert basic["permission"]["count"] == 1
    assert basic["set_mode"]["modeId"] == "plan"
    assert "current_mode_update" in basic["set_mode"]["kinds"]
    assert basic["session_list"]["containsSession"] is True
    assert basic["session_close"]["response"] == {}
    session_id = basic["done"]["sessionId"]

    # a new `acpd acp` process is a restarted daemon: the history comes back from the store
    loaded = await run_steps("sdk_v1_stdio.mjs", ["load", session_id, "--", *acpd_acp("--standalone")], env, workdir)
    replayed = loaded["session_load"]
    assert replayed["kinds"][0] == "user_message_chunk"
    assert {"agent_message_chunk", "tool_call", "tool_call_update"} <= set(replayed["kinds"])
    texts = [u["content"]["text"] for u in replayed["updates"] if u["sessionUpdate"] == "user_message_chunk"]
    assert texts == ["text hello", "permission execute"]


async def test_the_acp_sdk_runs_claude_native_turns_whose_permission_requests_it_accepts(
    tmp_path: Path, workdir: Path
) -> None:
    async with serve_mock_model() as model:  # each prompt: the model runs Bash, which the default mode asks for
        env = {**client_env(tmp_path, workdir), "ACPD_MODEL_URL": model.url}
        editor = acpd_acp("--standalone", "--agent", "claude-native")
        basic = await run_steps("sdk_v1_stdio.mjs", ["basic", "--", *editor], env, workdir)
    assert basic["done"]["stopReasons"] == ["end_turn", "end_turn"]
    [asked] = basic["permission"]["requests"]  # the SDK validates each request: sessionId included
    assert asked["request"]["sessionId"] == basic["done"]["sessionId"]
    assert asked["answer"]["outcome"] == "selected"
    chunks = [u for u in basic["prompt"]["updates"] if u["sessionUpdate"] == "agent_message_chunk"]
    assert "".join(u["content"]["text"] for u in chunks).startswith("All done. Tool said: hi")


async def test_acpd_acp_relays_to_the_running_daemon_so_rest_and_the_editor_share_sessions(
    tmp_path: Path, workdir: Path
) -> None:
    env = client_env(tmp_path, workdir)
    async with running_daemon(tmp_path) as daemon, daemon.client() as http:
        editor = acpd_acp("--url", daemon.url)
        basic = await run_steps("sdk_v1_stdio.mjs", ["basic", "--", *editor], env, workdir)
        session_id = basic["done"]["sessionId"]
        # the editor's session is the daemon's: REST sees its turns
        events = await all_events(http, session_id)
        prompts = [e for e in events if e["payload"].get("method") == "session/prompt"]
        assert len(prompts) == 2

        # and the other way round: a REST session loads in the editor with its history
        created = await new_session(http, workdir)
        await http.post(f"/v1/sessions/{created['id']}/prompt", json={"prompt": "text made over rest"})
        loaded = await run_steps("sdk_v1_stdio.mjs", ["load", created["id"], "--", *editor], env, workdir)
    updates = loaded["session_load"]["updates"]
    assert [u["content"]["text"] for u in updates if u["sessionUpdate"] == "agent_message_chunk"] == ["made over rest"]


async def test_acpx_runs_a_turn_with_a_permission_round_trip_through_acpd(tmp_path: Path, workdir: Path) -> None:
    env = client_env(tmp_path, workdir)
    frames = await run_acpx(
        ["--approve-all", "--format", "json", "exec", "permission execute"], acpd_acp("--standalone"), env, workdir
    )
    asked = [f for f in frames if f.get("method") == "session/request_permission"]
    assert len(asked) == 1
    after = frames[frames.index(asked[0]) :]  # ids repeat across directions: look after the request
    answer = next(f for f in after if f.get("id") == asked[0]["id"] and "result" in f)
    assert answer["result"]["outcome"] == {"outcome": "selected", "optionId": "allow"}
    assert frames[-1]["result"]["stopReason"] == "end_turn"
    texts = [f["params"]["update"]["content"]["text"] for f in frames if _is_chunk(f)]
    assert texts == ["permission: allow"]


def _is_chunk(frame: dict[str, Any]) -> bool:
    return frame.get("method") == "session/update" and frame["params"]["update"]["sessionUpdate"] == (
        "agent_message_chunk"
    )


async def test_acpx_keeps_a_session_across_processes_sets_its_mode_and_closes_it(tmp_path: Path, workdir: Path) -> None:
    env = client_env(tmp_path, workdir)
    agent = acpd_acp("--standalone")
    try:
        await run_acpx(["--ttl", "1", "sessions", "new"], agent, env, workdir)
        frames = await run_acpx(
            ["--ttl", "1", "--approve-all", "--format", "json", "text remembered"], agent, env, workdir
        )
        assert frames[-1]["result"]["stopReason"] == "end_turn"
        assert [f["params"]["update"]["content"]["text"] for f in frames if _is_chunk(f)] == ["remembered"]
        mode = await run_acpx(["--ttl", "1", "--format", "json", "set-mode", "plan"], agent, env, workdir)
        assert mode[-1]["action"] == "mode_set"
        assert mode[-1]["modeId"] == "plan"
        await run_acpx(["--ttl", "1", "sessions", "close"], agent, env, workdir)
    finally:
        # acpx's queue owner lingers for its TTL; nothing it started may outlive it
        with pidfds(processes_with_home(tmp_path)) as fds, anyio.fail_after(30):
            await wait_all_ended(fds)


async def test_the_sandbox_agent_sdk_works_unchanged_against_v1_acp(tmp_path: Path, workdir: Path) -> None:
    env = client_env(tmp_path, workdir)
    async with running_daemon(tmp_path) as daemon:
        env["SANDBOX_AGENT_TOKEN"] = daemon.token or ""
        steps = await run_steps("sandbox_agent_sdk.mjs", [daemon.url, "mock"], env, workdir)
    assert steps["create_session"]["agentSessionId"]
    assert steps["prompt"]["stopReason"] == "end_turn"
    assert steps["permission"]["count"] == 1
    assert steps["set_mode"]["currentModeId"] == "plan"
    assert steps["get_events"]["contiguous"] is True
    assert steps["list_sessions"]["ids"] == [steps["done"]["sessionId"]]
    assert steps["resume_session"]["newConnection"] is True
    assert steps["destroy_session"]["destroyedAt"]
    assert steps["dispose"]["ms"] < 1000  # sandbox-agent's own DELETE hangs until the SDK's 2 s timeout
    assert steps["done"]["permissions"] == 1
