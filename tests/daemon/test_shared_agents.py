"""Sessions share an agent process: each still sees only its own updates, permissions, files and
terminals; a cancel, a close or a crash is contained as far as one process allows."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import TaskGroup

from acpd.config import AgentConfig, DaemonConfig
from acpd.daemon import session as session_module
from acpd.daemon.manager import SessionManager
from acpd.store.memory import MemoryEventStore
from tests.processes import pidfds, wait_all_ended

from .helpers import all_events, daemon_frames, new_session, updates, wait_for_frame

pytestmark = pytest.mark.anyio

MOCK = (sys.executable, "-m", "acpd.testing.mock_agent")


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    agents = {
        "solo": AgentConfig(command=MOCK[0], args=MOCK[1:], process_per_session=True),
        "stubborn": AgentConfig(command=MOCK[0], args=(*MOCK[1:], "--ignore", "session/cancel")),
        "brief": AgentConfig(command=MOCK[0], args=MOCK[1:], idle_seconds=0.1),
        "brief-solo": AgentConfig(command=MOCK[0], args=MOCK[1:], idle_seconds=0.1, process_per_session=True),
    }
    return DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", agents=agents)


async def pid_of(manager: SessionManager, session_id: str) -> int | None:
    return (await manager.runtime(session_id)).agent_process_id


async def prompt(client: httpx.AsyncClient, session_id: str, text: str) -> httpx.Response:
    return await client.post(f"/v1/sessions/{session_id}/prompt", json={"prompt": text})


async def prompt_in_background(tg: TaskGroup, client: httpx.AsyncClient, session_id: str, text: str) -> dict[str, Any]:
    into: dict[str, Any] = {}

    async def run() -> None:
        response = await prompt(client, session_id, text)
        into.update(response.json(), status=response.status_code)

    tg.start_soon(run)
    return into


def texts(events: list[dict[str, Any]]) -> str:
    return "".join(u["content"].get("text", "") for u in updates(events, "agent_message_chunk"))


async def test_two_sessions_share_one_process_and_each_sees_only_its_own_updates(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    first, second = await new_session(client, workdir), await new_session(client, workdir)
    assert await pid_of(manager, first["id"]) == await pid_of(manager, second["id"]) is not None
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            answers = [
                await prompt_in_background(tg, client, first["id"], "text alpha-1\nsleep 0.2\ntext alpha-2"),
                await prompt_in_background(tg, client, second["id"], "text beta-1\nsleep 0.2\ntext beta-2"),
            ]
    assert [a["stopReason"] for a in answers] == ["end_turn", "end_turn"]
    first_text, second_text = (
        texts(await all_events(client, first["id"])),
        texts(await all_events(client, second["id"])),
    )
    assert "alpha" in first_text and "beta" not in first_text
    assert "beta" in second_text and "alpha" not in second_text


async def test_a_permission_request_reaches_only_its_own_session(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    asking = await new_session(client, workdir)
    other = await new_session(client, workdir)
    assert await pid_of(manager, asking["id"]) == await pid_of(manager, other["id"])
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            answer = await prompt_in_background(tg, client, asking["id"], "permission edit")
            await wait_for_frame(manager, asking["id"], "session/request_permission")
            assert (await client.get(f"/v1/sessions/{other['id']}/permissions")).json()["items"] == []
            pending = (await client.get(f"/v1/sessions/{asking['id']}/permissions")).json()["items"]
            assert len(pending) == 1
            url = f"/v1/sessions/{asking['id']}/permissions/{pending[0]['id']}"
            assert (await client.post(url, json={"reply": "once"})).status_code == 200
    assert "permission: allow" in answer["text"]
    assert daemon_frames(await all_events(client, other["id"]), "session/request_permission") == []


async def test_files_and_terminals_follow_each_sessions_own_workspace_and_policy(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path, tmp_path: Path
) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "note.txt").write_text("only for the first")
    first = await new_session(client, workdir, additionalDirectories=[str(extra)], policy={"permissions": "allow"})
    second = await new_session(client, workdir, policy={"permissions": "deny"})
    assert await pid_of(manager, first["id"]) == await pid_of(manager, second["id"])
    with anyio.fail_after(20):
        assert "only for the first" in (await prompt(client, first["id"], f"read {extra / 'note.txt'}")).json()["text"]
        assert (
            "only for the first"
            not in (await prompt(client, second["id"], f"read {extra / 'note.txt'}")).json()["text"]
        )
        assert "hi-from-first" in (await prompt(client, first["id"], "run echo hi-from-first")).json()["text"]
        refused = (await prompt(client, second["id"], "run echo hi-from-second")).json()["text"]
    assert "run refused" in refused and "hi-from-second" not in refused.replace("echo hi-from-second", "")


async def test_a_cancel_in_one_session_leaves_the_other_running(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    cancelled, running = await new_session(client, workdir), await new_session(client, workdir)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            first = await prompt_in_background(tg, client, cancelled["id"], "text started\nsleep 30")
            second = await prompt_in_background(tg, client, running["id"], "text started\nsleep 1\ntext finished")
            await wait_for_frame(manager, cancelled["id"], "session/update")
            await wait_for_frame(manager, running["id"], "session/update")
            assert (await client.post(f"/v1/sessions/{cancelled['id']}/cancel")).status_code == 200
    assert first["stopReason"] == "cancelled"
    assert second["stopReason"] == "end_turn" and "finished" in second["text"]


async def test_closing_one_session_leaves_the_process_to_the_other(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    closed, kept = await new_session(client, workdir), await new_session(client, workdir)
    pid = await pid_of(manager, kept["id"])
    await manager.close(closed["id"])
    with anyio.fail_after(20):
        again = await prompt(client, kept["id"], "text still here")
    assert again.json()["stopReason"] == "end_turn"
    assert await pid_of(manager, kept["id"]) == pid
    exited = daemon_frames(await all_events(client, closed["id"]), "_acpd/agent_exited")
    assert exited[-1]["exitCode"] is None and exited[-1]["expected"] is True


async def test_a_crash_of_the_shared_process_ends_both_turns_with_an_error_and_both_sessions_go_on(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    waiting, crashing = await new_session(client, workdir), await new_session(client, workdir)
    old = await pid_of(manager, waiting["id"])
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            first = await prompt_in_background(tg, client, waiting["id"], "text started\nsleep 30")
            await wait_for_frame(manager, waiting["id"], "session/update")
            second = await prompt_in_background(tg, client, crashing["id"], "crash 7")
    assert first["status"] == second["status"] == 502
    assert first["type"] == second["type"] == "urn:acpd:problem:agent-exited"
    for session in (waiting, crashing):
        exited = daemon_frames(await all_events(client, session["id"]), "_acpd/agent_exited")
        assert exited[-1]["exitCode"] == 7
    with anyio.fail_after(20):
        for session in (waiting, crashing):
            assert (await prompt(client, session["id"], "text back")).json()["stopReason"] == "end_turn"
    new = await pid_of(manager, waiting["id"])
    assert new == await pid_of(manager, crashing["id"]) and new != old


async def test_an_agent_with_process_per_session_gives_each_session_its_own(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    first = await new_session(client, workdir, agent="solo")
    second = await new_session(client, workdir, agent="solo")
    assert await pid_of(manager, first["id"]) != await pid_of(manager, second["id"])
    await manager.close(first["id"])
    exited = daemon_frames(await all_events(client, first["id"]), "_acpd/agent_exited")
    assert exited[-1]["exitCode"] is not None  # its own process was stopped


async def test_sessions_in_other_directories_or_with_other_mcp_servers_get_other_processes(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = {"name": "files", "command": "true", "args": [], "env": []}
    base = await new_session(client, workdir)
    pids = {
        await pid_of(manager, base["id"]),
        await pid_of(manager, (await new_session(client, elsewhere))["id"]),
        await pid_of(manager, (await new_session(client, workdir, mcpServers=[server]))["id"]),
    }
    assert len(pids) == 3


async def test_recording_agents_gives_each_session_its_own_process_and_recording(tmp_path: Path, workdir: Path) -> None:
    record = tmp_path / "record"
    config = DaemonConfig(data_dir=str(tmp_path / "data"), db=":memory:", record_agents=str(record))
    async with SessionManager(config, MemoryEventStore()).running() as manager:
        first = await manager.create({"agent": "mock", "cwd": str(workdir)})
        second = await manager.create({"agent": "mock", "cwd": str(workdir)})
        assert first.agent_process_id != second.agent_process_id
    assert sorted(p.name for p in record.iterdir()) == sorted(
        f"{runtime.session_id}.mock.jsonl" for runtime in (first, second)
    )


async def test_a_turn_ignoring_its_cancel_on_a_shared_process_is_detached_and_the_process_serves_on(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "CANCEL_GRACE_SECONDS", 0.2)
    stuck = await new_session(client, workdir, agent="stubborn")
    other = await new_session(client, workdir, agent="stubborn")
    pid = await pid_of(manager, other["id"])
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            answer = await prompt_in_background(tg, client, stuck["id"], "text started\nsleep 30")
            await wait_for_frame(manager, stuck["id"], "session/update")
            await client.post(f"/v1/sessions/{stuck['id']}/cancel")
        assert answer["stopReason"] == "cancelled"
        assert (await prompt(client, other["id"], "text on")).json()["stopReason"] == "end_turn"
    assert await pid_of(manager, other["id"]) == pid
    codes = [e["code"] for e in daemon_frames(await all_events(client, stuck["id"]), "_acpd/error")]
    assert codes == ["CANCEL_IGNORED", "CONTAINMENT_SHARED"]


async def test_a_process_left_without_sessions_exits_after_its_idle_time(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    session = await new_session(client, workdir, agent="brief")
    pid = await pid_of(manager, session["id"])
    assert pid is not None
    with pidfds([pid]) as fds:
        await manager.close(session["id"])
        with anyio.fail_after(10):
            await wait_all_ended(fds)


async def test_a_spare_process_per_session_that_no_session_claims_exits_after_its_idle_time(
    client: httpx.AsyncClient, manager: SessionManager, workdir: Path
) -> None:
    session = await new_session(client, workdir, agent="brief-solo")
    mine = await pid_of(manager, session["id"])
    pool = manager._pools.acp() if manager._pools is not None else None
    assert pool is not None
    with anyio.fail_after(10):
        while not (spares := [c.proc.pid for c in pool.connections() if not c.claimed and c.proc is not None]):
            await anyio.wait_all_tasks_blocked()
    with pidfds(spares[:1]) as fds:
        with anyio.fail_after(10):
            await wait_all_ended(fds)
    assert await pid_of(manager, session["id"]) == mine  # the session's own process serves on


def test_codex_keeps_a_process_per_session_by_default_and_other_agents_share_theirs(tmp_path: Path) -> None:
    agents = DaemonConfig(
        data_dir=str(tmp_path), agents={"mine": AgentConfig.model_validate({"command": "x", "processPerSession": True})}
    )
    resolved = agents.all_agents()
    assert resolved["codex"].dedicated_processes()
    assert not any(resolved[name].dedicated_processes() for name in ("claude", "gemini", "opencode", "mock"))
    assert resolved["mine"].dedicated_processes()
    assert (resolved["mock"].spare_processes, resolved["mock"].max_sessions_per_process) == (1, 256)
    assert resolved["mock"].idle_seconds == 60
