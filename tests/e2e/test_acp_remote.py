"""End to end: the official ACP SDKs' remote clients, unchanged, against ``/acp`` on a real daemon:
the Python SDK's Streamable HTTP (``create_http_stream``) and WebSocket
(``create_websocket_stream``), and the TypeScript SDK's ``createHttpStream`` and
``createWebSocketStream``."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from acp import text_block

from acpd.testing.daemon import Daemon, running_daemon

from .acp_sdk import RecordingClient, Remote, chunk_text, remote_url, sdk_client
from .clients import client_env, require_clients, run_steps

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

REMOTES: list[Remote] = ["http", "ws"]


@pytest.mark.parametrize("remote", REMOTES)
async def test_the_sdk_runs_a_session_on_acp_and_loads_it_after_a_daemon_restart(
    remote: Remote, tmp_path: Path, workdir: Path
) -> None:
    first = RecordingClient()
    async with running_daemon(tmp_path) as daemon, sdk_client(daemon, remote, first) as acp:
        with anyio.fail_after(30):
            new = await acp.new_session(cwd=str(workdir), mcp_servers=[])
            script = "text one\ntool read Read it\npermission edit\ntext two"
            answer = await acp.prompt(session_id=new.session_id, prompt=[text_block(script)])
            await acp.set_session_mode(session_id=new.session_id, mode_id="plan")
            listed = await acp.list_sessions()
    assert answer.stop_reason == "end_turn"
    assert first.asked == 1
    assert first.texts() == ["one", "permission: allow", "two"]
    assert "tool_call" in first.kinds() and "tool_call_update" in first.kinds()
    assert "current_mode_update" in first.kinds()
    assert {"_acpd/agent_started", "_acpd/settings_changed"} <= set(first.extensions)
    assert {s.session_id for s in listed.sessions} == {new.session_id}

    again = RecordingClient()
    async with running_daemon(tmp_path) as daemon, sdk_client(daemon, remote, again) as acp:
        with anyio.fail_after(30):
            loaded = await acp.load_session(cwd=str(workdir), session_id=new.session_id, mcp_servers=[])
            replayed = list(again.updates)
            after = await acp.prompt(session_id=new.session_id, prompt=[text_block("text three")])
    assert loaded is not None and loaded.modes is not None
    assert loaded.modes.current_mode_id == "plan"
    assert [chunk_text(u) for _, u in replayed if chunk_text(u)] == first.texts()
    assert after.stop_reason == "end_turn"
    assert again.texts()[-1] == "three"


def ts_env(daemon: Daemon, home: Path, workdir: Path) -> dict[str, str]:
    # node 20's WebSocket (the platform's, which the SDK uses) is behind a flag
    return {**client_env(home, workdir), "ACPD_TOKEN": daemon.token or "", "NODE_OPTIONS": "--experimental-websocket"}


@pytest.mark.parametrize("remote", REMOTES)
async def test_the_typescript_sdks_remote_clients_run_a_session_on_acp_and_load_it_after_a_daemon_restart(
    remote: Remote, tmp_path: Path, workdir: Path
) -> None:
    require_clients()
    async with running_daemon(tmp_path) as daemon:
        url = remote_url(daemon, remote)
        basic = await run_steps("sdk_http.mjs", ["basic", url], ts_env(daemon, tmp_path, workdir), workdir)
    assert basic["initialize"]["agentInfo"]["name"] == "acpd"
    assert basic["prompt"]["stopReason"] == "end_turn"
    assert [chunk_text(u) for u in basic["prompt"]["updates"] if chunk_text(u)] == ["one", "permission: allow", "two"]
    assert {"tool_call", "tool_call_update"} <= set(basic["prompt"]["kinds"])
    assert basic["permission"]["count"] == 1
    assert "current_mode_update" in basic["set_mode"]["kinds"]
    assert basic["session_list"]["containsSession"] is True
    session_id = basic["done"]["sessionId"]

    async with running_daemon(tmp_path) as daemon:
        url = remote_url(daemon, remote)
        loaded = await run_steps("sdk_http.mjs", ["load", url, session_id], ts_env(daemon, tmp_path, workdir), workdir)
    replayed = loaded["session_load"]
    assert replayed["currentModeId"] == "plan"
    assert [chunk_text(u) for u in replayed["updates"] if chunk_text(u)] == ["one", "permission: allow", "two"]
    assert [chunk_text(u) for u in loaded["prompt"]["updates"] if chunk_text(u)] == ["three"]
